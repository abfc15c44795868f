"""``results.md`` and the PNG plots, from the results dictionary ``run`` writes as JSON.

"Added" figures subtract going straight to the fake at the same concurrency in the same run;
ratios divide by it. Figures vary 10-30 % between runs on a shared machine, so only figures of
one run are compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LATENCY_BOUND_MS = 25.0


def _by_level(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {row["concurrency"]: row for row in rows}


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _errors(row: dict[str, Any]) -> str:
    errors: dict[str, int] = row.get("errors") or {}
    if not errors:
        return "0"
    return ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items()))


def capacity(rows: list[dict[str, Any]], direct: dict[int, dict[str, Any]]) -> int | None:
    """Largest tested stream level with p99 added chunk latency under the bound and no errors."""
    best = None
    for row in sorted(rows, key=lambda r: r["concurrency"]):
        ref = direct.get(row["concurrency"], {})
        added = _sub(row.get("chunk_p99_ms"), ref.get("chunk_p99_ms"))
        if added is None or added >= LATENCY_BOUND_MS or row.get("errors"):
            break
        best = row["concurrency"]
    return best


def summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Headline figures per gateway, also used for the targets."""
    gws = results["gateways"]
    direct = _by_level(gws.get("direct", {}).get("stream", []))
    out: dict[str, dict[str, Any]] = {}
    for name, gw in gws.items():
        if gw.get("status") != "ok":
            continue
        stream = _by_level(gw.get("stream", []))
        nonstream = _by_level(gw.get("nonstream", []))
        one = stream.get(1, {})
        out[name] = {
            "cpu_us_per_chunk": {n: row.get("cpu_us_per_chunk") for n, row in stream.items()},
            "capacity": capacity(gw.get("stream", []), direct),
            "ttfb_added_p50_ms_at_1": _sub(
                one.get("ttfb_p50_ms"), direct.get(1, {}).get("ttfb_p50_ms")
            ),
            "req_per_s": {n: row.get("req_per_s") for n, row in nonstream.items()},
            "rss_peak_mb": max(
                [row.get("rss_peak_mb") or 0 for row in gw.get("stream", [])] or [0]
            ),
        }
    return out


def _targets(results: dict[str, Any], heads: dict[str, dict[str, Any]]) -> list[str]:
    router = heads.get("router")
    if router is None:
        return ["The router did not run in this run: no target can be checked."]
    lines = ["| target | figure | met |", "|---|---|---|"]

    def row(target: str, figure: str, met: bool | None) -> None:
        lines.append(
            f"| {target} | {figure} | {'-' if met is None else ('yes' if met else 'NO')} |"
        )

    cpu = router["cpu_us_per_chunk"]
    for level, limit in ((100, 60.0), (1000, 45.0)):
        value = cpu.get(level)
        row(
            f"CPU per chunk at {level} streams <= {limit:.0f} us",
            f"{_fmt(value)} us",
            None if value is None else value <= limit,
        )
    ccr = heads.get("ccr")
    gws = results["gateways"]
    if ccr is not None:
        pairs = [(n, v, ccr["cpu_us_per_chunk"].get(n)) for n, v in cpu.items()]
        met = all(v is not None and c is not None and v < c for _, v, c in pairs)
        figure = "; ".join(f"{n}: {_fmt(v)} vs {_fmt(c)}" for n, v, c in pairs)
        row("CPU per chunk below CCR's at every level", figure, met)
        # The top level's streams all open within its first second (the ramp).
        top: int = max(cpu, default=0)
        ours = _by_level(gws["router"].get("stream", [])).get(top, {})
        theirs = _by_level(gws["ccr"].get("stream", [])).get(top, {})
        keys = ("ttfb_p50_ms", "ttfb_p99_ms")
        values: list[tuple[float | None, float | None]] = [
            (ours.get(k), theirs.get(k)) for k in keys
        ]
        figures = [f"{k[5:8]}: {_fmt(ours.get(k))} vs {_fmt(theirs.get(k))} ms" for k in keys]
        known = [(a, b) for a, b in values if a is not None and b is not None]
        row(
            f"first byte p50 and p99 below CCR's when {top} streams open within 1 s",
            "; ".join(figures),
            all(a < b for a, b in known) if len(known) == len(keys) else None,
        )
        for level in (32, 256):
            rps, ccr_rps = router["req_per_s"].get(level), ccr["req_per_s"].get(level)
            row(
                f"non-streaming req/s at {level} >= 1.3x CCR's",
                f"{_fmt(rps)} vs {_fmt(ccr_rps)}"
                + (f" ({rps / ccr_rps:.2f}x)" if rps and ccr_rps else ""),
                None if rps is None or ccr_rps is None else rps >= 1.3 * ccr_rps,
            )
    cc = (results.get("claude_code") or {}).get("gateways", {})
    if cc.get("router", {}).get("status") == "ok" and cc.get("ccr", {}).get("status") == "ok":
        ratios = {
            kind: cc["ccr"][kind]["cpu_ms_p50"] / cc["router"][kind]["cpu_ms_p50"]
            for kind in ("turn1_cold", "turn1", "turn2")
            if cc["router"].get(kind, {}).get("cpu_ms_p50") and cc["ccr"].get(kind)
        }
        row(
            "Claude Code-sized request >= 5x cheaper than CCR",
            "; ".join(f"{kind}: {ratio:.1f}x" for kind, ratio in ratios.items()) or "-",
            min(ratios.values()) >= 5 if ratios else None,
        )
    litellm = heads.get("litellm")
    if litellm is not None:
        # At 1 stream every gateway's figure is mostly idle and per-request overhead.
        pairs = [(n, v, litellm["cpu_us_per_chunk"].get(n)) for n, v in cpu.items() if n >= 50]
        ratios_l = [c / v for _, v, c in pairs if v and c]
        row(
            "at least 10x cheaper than LiteLLM (levels from 50 streams)",
            f"{min(ratios_l):.1f}x at worst" if ratios_l else "-",
            min(ratios_l) >= 10 if ratios_l else None,
        )
    cap = router["capacity"]
    row(
        "one worker carries 200 streams, p99 added chunk latency < 25 ms",
        f"{cap if cap is not None else 'none'} of the tested levels",
        None if cap is None else cap >= 200,
    )
    soak = gws["router"].get("soak")
    if soak:
        series = [mb for _, mb in soak.get("rss_series", [])]
        if series:
            half = len(series) // 2
            early, late = max(series[: half or 1]), max(series[half:] or series)
            flat = late <= early * 1.1 + 5
            per_worker = soak["rss_peak_mb"] / max(1, soak.get("processes", 1))
            row(
                f"memory <= 120 MB per worker at {soak['concurrency']} streams, flat over "
                f"{soak['wall_s']:.0f} s",
                f"peak {soak['rss_peak_mb']:.0f} MB over {soak.get('processes')} processes; "
                f"first half max {early:.0f}, second half max {late:.0f}",
                per_worker <= 120 and flat,
            )
    bare = heads.get("router-bare")
    if bare is not None:
        # Not a target: what the production config's features cost, same run.
        figure = "; ".join(
            f"{n}: {_fmt(v)} vs {_fmt(bare['cpu_us_per_chunk'].get(n))}" for n, v in cpu.items()
        )
        row("(reference) CPU per chunk, production config vs bare", figure, None)
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def _pair(row: dict[str, Any], ref: dict[str, Any], key: str) -> str:
    """``p50/p99`` and, against the reference row, ``(added p50/added p99)``."""
    p50, p99 = row.get(f"{key}_p50_ms"), row.get(f"{key}_p99_ms")
    text = f"{_fmt(p50, 2)}/{_fmt(p99, 2)}"
    if ref:
        added50 = _sub(p50, ref.get(f"{key}_p50_ms"))
        added99 = _sub(p99, ref.get(f"{key}_p99_ms"))
        text += f" ({_signed(added50)}/{_signed(added99)})"
    return text


def _intro(results: dict[str, Any]) -> list[str]:
    plan = results["plan"]
    m = results["machine"]
    placement = (
        "gateway pinned to core 0, fake upstream and load generators on core 1 (two-worker "
        "gateways and the straight-to-fake reference unpinned)."
        if results["pinned"]
        else "nothing pinned."
    )
    return [
        "# Benchmark results",
        "",
        f"Command: `{results['command']}`  ",
        f"Run: {results['started']} to {results.get('finished', '?')}; Python {m.get('python')}, "
        f"Node {m.get('node', '-')}, kernel {m.get('kernel')}, {m.get('cores')} cores; {placement}",
        "",
        f"Streams: {plan['chunks']} chunks of {plan['chunk_chars']} characters, "
        f"{plan['interval_ms']:g} ms apart (OpenAI-compatible unless the gateway name says "
        f"otherwise); each phase starts streams for {plan['duration']:g} s; non-streaming phases "
        f"last {plan['nonstream_duration']:g} s. CPU is the gateway's whole process tree "
        "(schedstat), divided by the text chunks delivered. 'Added' = this gateway minus straight "
        "to the fake, same concurrency, same run. Figures vary 10-30 % between runs on this "
        "shared machine: compare only within a run.",
    ]


def markdown(results: dict[str, Any]) -> str:
    gws = results["gateways"]
    direct = _by_level(gws.get("direct", {}).get("stream", []))
    direct_ns = _by_level(gws.get("direct", {}).get("nonstream", []))
    heads = summary(results)
    out = _intro(results)
    rows = []
    for name, gw in gws.items():
        status = "ok" if gw.get("status") == "ok" else f"could not run: {gw.get('error', '')[:400]}"
        rows.append([name, gw.get("version", "-"), status.replace("\n", " ").replace("|", "/")])
    out += ["", "## Gateways", "", *_table(["gateway", "version", "status"], rows)]
    rows = []
    for name, h in heads.items():
        if name == "direct":
            continue
        cpu = h["cpu_us_per_chunk"]
        rows.append(
            [
                name,
                _fmt(cpu.get(100)),
                _fmt(cpu.get(1000)),
                str(h["capacity"] or "-"),
                _fmt(h["req_per_s"].get(32)),
                _fmt(h["ttfb_added_p50_ms_at_1"], 2),
                _fmt(h["rss_peak_mb"], 0),
            ]
        )
    header = [
        "gateway",
        "CPU us/chunk @100",
        "@1000",
        "streams carried (p99 added < 25 ms)",
        "req/s @32",
        "added TTFB p50 @1 (ms)",
        "peak RSS (MB)",
    ]
    out += ["", "## Headline", "", *_table(header, rows), *_ratios(heads)]
    rows = []
    for name, gw in gws.items():
        for row in gw.get("stream", []):
            ref = direct.get(row["concurrency"], {}) if name != "direct" else {}
            added99 = _sub(row.get("chunk_p99_ms"), ref.get("chunk_p99_ms")) if ref else None
            latency = f"{_fmt(row.get('chunk_p50_ms'), 2)}/{_fmt(row.get('chunk_p99_ms'), 2)}"
            rows.append(
                [
                    name,
                    str(row["concurrency"]),
                    _fmt(row.get("cpu_us_per_chunk")),
                    _fmt(row.get("cpu_pct")),
                    _fmt(row.get("chunks_per_s"), 0),
                    _pair(row, ref, "ttfb"),
                    _pair(row, ref, "ttft"),
                    latency + ("" if added99 is None else f" ({_signed(added99)})"),
                    _fmt(row.get("rss_peak_mb"), 0),
                    f"{row['ok']}/{row['requests']}",
                    _errors(row),
                ]
            )
    header = [
        "gateway",
        "streams",
        "CPU us/chunk",
        "CPU %",
        "chunks/s",
        "TTFB p50/p99 ms (added)",
        "TTFT p50/p99 ms (added)",
        "chunk latency p50/p99 ms (added p99)",
        "peak RSS MB",
        "ok/requests",
        "errors",
    ]
    out += ["", "## Streaming", "", *_table(header, rows)]
    ref_top = direct.get(max(direct)) if direct else None
    if ref_top and (ref_top.get("chunk_p99_ms") or 0) > LATENCY_BOUND_MS:
        out += [
            "",
            f"At {ref_top['concurrency']} streams the straight-to-fake reference itself is loaded "
            f"(p99 chunk latency {ref_top['chunk_p99_ms']:.0f} ms: the fake and the load "
            "generators share the machine), so 'added' figures there are understated.",
        ]
    balance = [
        f"- {name} @{row['concurrency']}: {', '.join(f'{s:.1f}' for s in row['cpu_s_by_process'])}"
        for name, gw in gws.items()
        if (gw.get("workers") or 1) > 1
        for row in gw.get("stream", [])
        if row.get("cpu_s_by_process")
    ]
    if balance:
        out += [
            "",
            "CPU seconds per process of multi-worker gateways (busiest first):",
            "",
            *balance,
        ]
    rows = []
    for name, gw in gws.items():
        for row in gw.get("nonstream", []):
            ref_rps = direct_ns.get(row["concurrency"], {}).get("req_per_s")
            rps = row.get("req_per_s")
            rows.append(
                [
                    name,
                    str(row["concurrency"]),
                    _fmt(rps),
                    _fmt(rps / ref_rps if ref_rps and rps is not None else None, 3),
                    f"{_fmt(row.get('latency_p50_ms'), 2)}/{_fmt(row.get('latency_p99_ms'), 2)}",
                    _fmt(row.get("cpu_us_per_req")),
                    _fmt(row.get("rss_peak_mb"), 0),
                    _errors(row),
                ]
            )
    header = [
        "gateway",
        "concurrency",
        "req/s",
        "x of straight-to-fake",
        "latency p50/p99 ms",
        "CPU us/request",
        "peak RSS MB",
        "errors",
    ]
    out += ["", "## Non-streaming", "", *_table(header, rows)]
    soak = gws.get("router", {}).get("soak")
    if soak:
        out += [
            "",
            f"Soak: router, {soak['concurrency']} streams for {results['plan']['soak']:g} s: CPU "
            f"{_fmt(soak.get('cpu_us_per_chunk'))} us/chunk, chunk latency p99 "
            f"{_fmt(soak.get('chunk_p99_ms'), 2)} ms, peak RSS {soak['rss_peak_mb']:.0f} MB "
            f"({soak.get('processes')} processes), errors {_errors(soak)}; RSS over time in "
            "soak_rss.png.",
        ]
    out += _profiles(gws)
    out += _claude_code(results.get("claude_code"))
    out += _faults(results.get("faults"))
    out += _micro(results.get("micro"))
    out += ["", "## Targets (issue 20)", "", *_targets(results, heads)]
    samples = [
        f"- {name} @{row['concurrency']}{' non-streaming' if 'req_per_s' in row else ''}: {s}"
        for name, gw in gws.items()
        for row in [*gw.get("stream", []), *gw.get("nonstream", [])]
        for s in row.get("error_samples", [])[:2]
    ]
    if samples:
        out += ["", "## Error samples", "", *[s.replace("\n", " ")[:400] for s in samples[:40]]]
    return "\n".join(out) + "\n"


def _ratios(heads: dict[str, dict[str, Any]]) -> list[str]:
    router = heads.get("router")
    if router is None:
        return []
    lines = []
    for peer in ("plain", "ccr", "litellm"):
        other = heads.get(peer)
        if other is None:
            continue
        parts = []
        for level, value in sorted(router["cpu_us_per_chunk"].items()):
            theirs = other["cpu_us_per_chunk"].get(level)
            if value and theirs:
                parts.append(f"{theirs / value:.1f}x @{level}")
        if parts:
            lines.append(
                f"- Router CPU per chunk vs {peer}: {peer} costs " + ", ".join(parts) + "."
            )
    return ["", *lines] if lines else []


def _profiles(gws: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, gw in gws.items():
        prof = gw.get("profile")
        if not prof:
            continue
        if "error" in prof:
            out += ["", f"Profile of {name}: {prof['error']}"]
            continue

        def shares(items: list[list[Any]]) -> str:
            return ", ".join(f"{k} {v:.0f} %" for k, v in items[:8])

        out += [
            "",
            f"### {name}: {prof['samples']} py-spy samples at {prof['concurrency']} streams "
            f"({_fmt(prof.get('cpu_us_per_chunk'))} us/chunk while sampled; stacks in "
            f"{prof['file']})",
            "",
            f"- self time by package: {shares(prof['self_by_package'])}",
            f"- by library (runtime charged to its caller): {shares(prof['by_library'])}",
            "- top functions (self):",
            *[f"  - {pct:.1f} % {func}" for func, pct in prof["top_self_functions"][:10]],
        ]
    return ["", "## Where the time goes (py-spy)", *out] if out else []


def _claude_code(cc: dict[str, Any] | None) -> list[str]:
    """CPU per Claude Code-sized request (bench/claude_code.py), with ratios to the router."""
    if not cc:
        return []
    request = cc["request"]
    out = [
        "",
        f"## CPU per Claude Code-sized request ({request['tools']} tools, "
        f"{request['bytes'] // 1000} KB, not streamed; `longContext` configured)",
        "",
    ]
    kinds = {"turn1_cold": "turn 1, nothing cached", "turn1": "turn 1, new session"}
    kinds["turn2"] = "turn 2"
    router = cc["gateways"].get("router", {})
    header = ["gateway", *[f"{label}, ms (p50)" for label in kinds.values()]]
    rows = []
    for name, gw in cc["gateways"].items():
        if gw.get("status") != "ok":
            rows.append([name, f"error: {gw.get('error', '')[:200]}", "", ""])
            continue
        cells = [name if gw.get("longContext") else f"{name} (no `longContext` rule)"]
        for kind in kinds:
            value = gw[kind]["cpu_ms_p50"]
            ours = router.get(kind, {}).get("cpu_ms_p50") if router.get("status") == "ok" else None
            ratio = f" ({value / ours:.1f}x router)" if value and ours and name != "router" else ""
            cells.append(f"{_fmt(value, 2)}{ratio}")
        if gw.get("error_count"):
            cells[0] += f" ({gw['error_count']} errors: {gw['errors'][0][:120]})"
        rows.append(cells)
    return [*out, *_table(header, rows)]


def _faults(faults: dict[str, Any] | None) -> list[str]:
    """The fault phase (bench/faults.py): what a client sees of a provider failing 20 %."""
    if not faults:
        return []
    out = [
        "",
        f"## Fault phase: {faults['fail_rate_pct']} % of upstream requests fail with 503",
        "",
        f"{faults['requests']} non-streamed requests over {faults['threads']} connections per "
        f"run, {faults['think_ms']} ms apart on each; added latency is the same gateway's "
        "against the healthy fake subtracted.",
        "",
    ]
    header = ["gateway", "client-visible errors", "p50 ms", "p99 ms", "added p50 ms"]
    header.append("added p99 ms")
    rows = []
    for name, gw in faults["gateways"].items():
        if gw.get("status") != "ok":
            rows.append([name, f"error: {gw.get('error', '')[:200]}", "", "", "", ""])
            continue
        faulty = gw["faulty"]
        label = f"{name} ({', '.join(f'{k}: {v}' for k, v in gw['config'].items()) or 'defaults'})"
        rows.append(
            [
                label,
                f"{_fmt(faulty['error_rate_pct'], 2)} % of {faulty['requests']}",
                _fmt(faulty["latency_p50_ms"], 2),
                _fmt(faulty["latency_p99_ms"], 2),
                _fmt(gw.get("added_p50_ms"), 2),
                _fmt(gw.get("added_p99_ms"), 2),
            ]
        )
    return [*out, *_table(header, rows)]


def _micro(micro: dict[str, Any] | None) -> list[str]:
    if not micro:
        return []
    if "error" in micro:
        return ["", "## In-process micro-benchmarks", "", f"Not run: {micro['error']}"]
    rows = []
    for name, f in micro.get("formats", {}).items():
        if "error" in f:
            rows.append([name, f"error: {f['error']}", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                f"{f['per_chunk_us']:.2f}",
                f"{f['per_chunk_translate_only_us']:.2f}",
                f"{f['build_request_us']['median_us']:.1f}",
                f"{f['build_request_100k_us']['median_us']:.0f}",
                f"{f['parse_response_us']['median_us']:.1f}",
            ]
        )
    header = [
        "format",
        "us/chunk (translate + SSE encode)",
        "us/chunk (translate)",
        "build_request us",
        "build_request, 100k-token request, us",
        "parse_response us",
    ]
    out = ["", "## In-process micro-benchmarks (router formats, core 0)", "", *_table(header, rows)]
    tokens = micro.get("tokens")
    if tokens and "error" not in tokens:
        median_ms = tokens["count_tokens_us"]["median_us"] / 1000
        cached = tokens.get("count_tokens_cached_us")
        again = (
            f"; counted again, every text cached: {cached['median_us'] / 1000:.2f} ms"
            if cached
            else ""
        )
        out += [
            "",
            f"Token counter on a Claude Code-shaped request of {tokens['request_tokens']:,} tokens "
            f"({tokens['request_bytes']:,} bytes of JSON): median {median_ms:.1f} ms{again}.",
        ]
    elif tokens:
        out += ["", f"Token counter: {tokens['error']}"]
    return out


def plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    """PNG plots; skipped (with a note) where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [
            "matplotlib is not installed: no plots (pip install matplotlib, or the bench extra)."
        ]
    gws = results["gateways"]
    written = []

    def line_plot(filename: str, title: str, ylabel: str, value: Any, log_y: bool = False) -> None:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, gw in gws.items():
            xs, ys = [], []
            for row in gw.get("stream", []):
                y = value(name, row)
                if y is not None:
                    xs.append(row["concurrency"])
                    ys.append(y)
            if xs:
                if name == "direct":
                    ax.plot(xs, ys, marker="o", label=name, color="black", linestyle="--")
                else:
                    ax.plot(xs, ys, marker="o", label=name)
        levels = sorted({row["concurrency"] for gw in gws.values() for row in gw.get("stream", [])})
        ax.set_xscale("log")
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.minorticks_off()
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        written.append(filename)

    line_plot(
        "cpu_per_chunk.png",
        "Gateway CPU per streamed chunk",
        "microseconds (log)",
        lambda name, row: None if name == "direct" else row.get("cpu_us_per_chunk"),
        log_y=True,
    )
    line_plot(
        "chunk_latency_p99.png",
        "p99 chunk latency (dashed: straight to the fake)",
        "ms (log)",
        lambda name, row: row.get("chunk_p99_ms"),
        log_y=True,
    )
    line_plot(
        "rss.png",
        "Peak RSS of the gateway's processes",
        "MB",
        lambda name, row: None if name == "direct" else row.get("rss_peak_mb"),
    )
    names = [n for n, gw in gws.items() if gw.get("nonstream")]
    if names:
        levels = sorted({row["concurrency"] for n in names for row in gws[n]["nonstream"]})
        fig, ax = plt.subplots(figsize=(8, 5))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            by = _by_level(gws[name]["nonstream"])
            ax.bar(
                [j + i * width for j in range(len(levels))],
                [by.get(level, {}).get("req_per_s") or 0 for level in levels],
                width,
                label=name,
            )
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(levels))], [str(level) for level in levels]
        )
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("requests/s (log)")
        ax.set_title("Non-streaming throughput")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "nonstream_rps.png", dpi=100)
        plt.close(fig)
        written.append("nonstream_rps.png")
    soak = gws.get("router", {}).get("soak")
    if soak and soak.get("rss_series"):
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot([t for t, _ in soak["rss_series"]], [mb for _, mb in soak["rss_series"]])
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS MB")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Router RSS over the soak ({soak['concurrency']} streams)")
        fig.tight_layout()
        fig.savefig(out_dir / "soak_rss.png", dpi=100)
        plt.close(fig)
        written.append("soak_rss.png")
    return ["Plots: " + ", ".join(written) + "."] if written else []


def write(results: dict[str, Any], out_dir: Path) -> None:
    notes = plots(results, out_dir)
    text = markdown(results)
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    (out_dir / "results.md").write_text(text)
