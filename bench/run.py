"""``python -m bench run``: the whole benchmark, one command.

Starts the fake upstream, then for each gateway (always first: straight to the fake, the
reference every "added" figure is measured against) starts it pinned to core 0, drives it with
load generator processes on core 1, reads its process tree's CPU and memory from /proc, stops
it, and finally writes ``results.json``, ``results.md`` and PNG plots. A gateway that cannot run
is recorded with its error. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from . import claude_code, faults, gateways, peers, procstat, profile, report
from .loadgen import Stats, percentile

BENCH = Path(__file__).resolve().parent
DEFAULT_GATEWAYS = (
    "router,router-bare,router2,plain,ccr,litellm,router-deepseek,router-gemini,ccr-deepseek,"
    "ccr-gemini"
)


class Plan(msgspec.Struct):
    gateways: list[str]
    streams: list[int]
    nonstream: list[int]
    chunks: int
    interval_ms: float
    chunk_chars: int
    duration: float
    nonstream_duration: float
    soak: float
    loadgen_procs: int
    fake_procs: int
    install: bool
    micro: bool
    claude_code: bool
    faults: bool
    profile: bool
    pin: bool
    quick: bool


def parse(argv: list[str] | None) -> tuple[Plan, Path, str] | None:
    """The plan, results folder and command line of ``run``; None for ``install``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the benchmark")
    sub.add_parser("install", help="only install the peers into bench/.cache")
    run.add_argument(
        "--quick", action="store_true", help="CI smoke test: tiny load, under 2 minutes"
    )
    run.add_argument(
        "--gateways",
        help=f"comma list out of {', '.join(gateways.SPECS)} "
        f"(default: {DEFAULT_GATEWAYS}; quick: plain)",
    )
    run.add_argument("--streams", help="concurrent stream levels (default 1,50,100,200,500,1000)")
    run.add_argument("--nonstream", help="non-streaming concurrency levels (default 1,32,256)")
    run.add_argument("--chunks", type=int, help="content chunks per stream (default 200)")
    run.add_argument("--interval-ms", type=float, help="spacing of chunks (default 20)")
    run.add_argument("--chunk-chars", type=int, default=24, help="text per chunk (default 24)")
    run.add_argument("--duration", type=float, help="seconds each stream phase starts streams for")
    run.add_argument("--nonstream-duration", type=float, help="seconds per non-streaming phase")
    run.add_argument(
        "--soak", type=float, help="router at the top stream level this long (default 60)"
    )
    run.add_argument("--loadgen-procs", type=int, default=2, help="load generator processes")
    run.add_argument("--fake-procs", type=int, default=1, help="fake upstream processes")
    run.add_argument("--no-install", action="store_true", help="don't install missing peers")
    run.add_argument("--no-micro", action="store_true", help="skip the in-process micro-benchmarks")
    run.add_argument(
        "--no-claude-code",
        action="store_true",
        help="skip the CPU per Claude Code-sized request (bench/claude_code.py)",
    )
    run.add_argument(
        "--no-faults",
        action="store_true",
        help="skip the fault phase: a provider failing 20 %% of requests (bench/faults.py)",
    )
    run.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy profile of Python gateways"
    )
    run.add_argument("--no-pin", action="store_true", help="don't pin processes to cores")
    run.add_argument(
        "--out", help="results folder (default bench/results; quick: bench/.cache/results-quick)"
    )
    args = parser.parse_args(argv)
    if args.command == "install":
        return None
    if args.command != "run":
        parser.print_help()
        raise SystemExit(2)
    quick = args.quick

    def levels(text: str | None, default: str) -> list[int]:
        return [int(x) for x in (text or default).split(",") if x.strip()]

    plan = Plan(
        gateways=[
            g for g in (args.gateways or ("plain" if quick else DEFAULT_GATEWAYS)).split(",") if g
        ],
        streams=levels(args.streams, "1,20" if quick else "1,50,100,200,500,1000"),
        nonstream=levels(args.nonstream, "1,8" if quick else "1,32,256"),
        chunks=args.chunks or (20 if quick else 200),
        interval_ms=args.interval_ms or (10.0 if quick else 20.0),
        chunk_chars=args.chunk_chars,
        duration=args.duration or (1.5 if quick else 12.0),
        nonstream_duration=args.nonstream_duration or (1.5 if quick else 6.0),
        soak=args.soak if args.soak is not None else (0.0 if quick else 60.0),
        loadgen_procs=max(1, args.loadgen_procs),
        fake_procs=max(1, args.fake_procs),
        install=not args.no_install and not quick,
        micro=not args.no_micro,
        claude_code=not args.no_claude_code,
        faults=not args.no_faults,
        profile=not args.no_profile and not quick,
        pin=not args.no_pin,
        quick=quick,
    )
    unknown = [g for g in plan.gateways if g not in gateways.SPECS]
    if unknown:
        parser.error(f"unknown gateways: {', '.join(unknown)}")
    return (
        plan,
        Path(args.out or (peers.CACHE / "results-quick" if quick else BENCH / "results")),
        " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    )


class Bench:
    def __init__(self, plan: Plan, workdir: Path, out_dir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.out_dir = out_dir
        all_cores = procstat.cores()
        self.pinned = plan.pin and len(all_cores) >= 2
        # The gateway gets core 0 to itself; the fake, the load generators and we share core 1.
        self.gw_cpus: set[int] | None = {all_cores[0]} if self.pinned else None
        self.side_cpus: set[int] | None = {all_cores[1]} if self.pinned else None
        self.fake_port = gateways.free_port()
        self.fakes: list[subprocess.Popen[bytes]] = []
        self.stream_seconds = plan.chunks * plan.interval_ms / 1000
        # The key the load generators present: the current gateway's client key, if it has one.
        self.key = gateways.APIKEY

    # --- processes ------------------------------------------------------------------------

    def _popen(self, argv: list[str], cpus: set[int] | None, **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=gateways.REPO,
            preexec_fn=procstat.pinned_exec(cpus),
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def start_fake(self) -> None:
        p = self.plan
        budget = 4 * 3600
        for i in range(p.fake_procs):
            log = (self.workdir / f"fake-{i}.log").open("wb")
            self.fakes.append(
                self._popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.fake_upstream",
                        "--port",
                        str(self.fake_port),
                        "--chunks",
                        str(p.chunks),
                        "--interval-ms",
                        str(p.interval_ms),
                        "--chunk-chars",
                        str(p.chunk_chars),
                        "--max-seconds",
                        str(budget),
                    ],
                    self.side_cpus,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, _ = gateways.probe(
                self.fake_port, "openai", "/v1/chat/completions", b'{"model":"m"}', 2
            )
            if status == 200:
                return
            time.sleep(0.1)
        raise RuntimeError("the fake upstream did not start")

    def stop_fake(self) -> None:
        for proc in self.fakes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.fakes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _pin_fakes(self, cpus: set[int]) -> None:
        for pid in self.fake_pids():
            procstat.pin(pid, cpus)

    def fake_pids(self) -> list[int]:
        return procstat.tree([p.pid for p in self.fakes])

    # --- one phase ------------------------------------------------------------------------

    def phase(
        self,
        port: int,
        protocol: str,
        stream: bool,
        conns: int,
        duration: float,
        expect: int,
        loadgen_cpus: set[int] | None,
        pids: Callable[[], list[int]],
        series: list[tuple[float, float]] | None = None,
    ) -> dict[str, Any]:
        """Drive ``conns`` connections for ``duration`` s; stats, CPU and memory of ``pids``."""
        nprocs = min(conns, self.plan.loadgen_procs if conns >= 200 else 1)
        ramp = min(1.0, duration / 4) if conns > 1 else 0.0
        grace = max(20.0, 4 * self.stream_seconds) if stream else 15.0
        if self.plan.quick:
            grace = 10.0
        start_at = time.time() + 1.0
        procs = []
        for i in range(nprocs):
            share = conns // nprocs + (1 if i < conns % nprocs else 0)
            argv = [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--protocol",
                protocol,
                "--conns",
                str(share),
                "--duration",
                str(duration),
                "--ramp",
                str(ramp),
                "--grace",
                str(grace),
                "--start-at",
                repr(start_at),
                "--expect-chunks",
                str(expect),
                "--key",
                self.key,
            ]
            if not stream:
                argv.append("--no-stream")
            procs.append(
                self._popen(argv, loadgen_cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        time.sleep(max(0.0, start_at - time.time()))
        tree = pids()
        before = procstat.sample(tree)
        t0 = time.time()
        peak_rss = before.rss_kb
        hard = t0 + duration + grace + 20
        outputs: list[tuple[bytes, bytes]] = []
        while any(p.poll() is None for p in procs) and time.time() < hard:
            time.sleep(0.25)
            now = procstat.sample(tree)
            peak_rss = max(peak_rss, now.rss_kb)
            if series is not None:
                series.append((round(time.time() - t0, 2), round(now.rss_kb / 1024, 1)))
        after = procstat.sample(tree)
        wall = time.time() - t0
        for p in procs:
            if p.poll() is None:
                p.kill()
            out, err = p.communicate(timeout=10)
            outputs.append((out, err))
        stats = Stats()
        for out, err in outputs:
            try:
                stats.add(msgspec.json.decode(out, type=Stats))
            except msgspec.DecodeError:
                stats.error("loadgen", err.decode("utf-8", "replace")[-300:] or "no output")
        cpu = max(0.0, procstat.cpu_seconds(before, after))
        result: dict[str, Any] = {
            "concurrency": conns,
            "requests": stats.requests,
            "ok": stats.ok,
            "errors": stats.errors,
            "error_samples": stats.error_samples,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 4),
            "cpu_pct": round(100 * cpu / wall, 1) if wall else None,
            "cpu_s_schedstat": round((after.sched_ns - before.sched_ns) / 1e9, 4),
            "cpu_s_stat": round((after.stat_ns - before.stat_ns) / 1e9, 4),
            "cpu_s_by_process": procstat.split(before, after),
            "rss_peak_mb": round(peak_rss / 1024, 1),
            "hwm_mb": round(after.hwm_kb / 1024, 1),
            "processes": after.pids,
        }

        def ms(hist: dict[int, int], q: float) -> float | None:
            value = percentile(hist, q)
            return None if value is None else round(value / 1000, 3)

        if stream:
            chunks = stats.text_chunks + stats.reasoning_chunks
            result.update(
                chunks=chunks,
                chunks_per_s=round(chunks / wall, 1) if wall else None,
                cpu_us_per_chunk=round(cpu * 1e6 / chunks, 2) if chunks else None,
                ttfb_p50_ms=ms(stats.ttfb, 0.5),
                ttfb_p99_ms=ms(stats.ttfb, 0.99),
                ttft_p50_ms=ms(stats.ttft, 0.5),
                ttft_p99_ms=ms(stats.ttft, 0.99),
                chunk_p50_ms=ms(stats.latency, 0.5),
                chunk_p99_ms=ms(stats.latency, 0.99),
                gap_p99_ms=ms(stats.chunk_gap, 0.99),
            )
        else:
            result.update(
                req_per_s=round(stats.ok / wall, 1) if wall else None,
                cpu_us_per_req=round(cpu * 1e6 / stats.ok, 1) if stats.ok else None,
                latency_p50_ms=ms(stats.request_time, 0.5),
                latency_p99_ms=ms(stats.request_time, 0.99),
            )
        return result

    def profile(
        self,
        name: str,
        running: gateways.Running,
        protocol: str,
        loadgen_cpus: set[int] | None,
        result: dict[str, Any],
    ) -> None:
        """An extra streaming phase under py-spy, for the Python gateways; kept apart from the
        measured phases because sampling costs the gateway a little."""
        p = self.plan
        if not p.profile or gateways.SPECS[name].family == "ccr":
            return
        binary = profile.pyspy(p.install)
        if binary is None:
            result["profile"] = {"error": "py-spy is not available"}
            return
        level = 100 if 100 in p.streams else max(p.streams)
        print(f"  {name}: profile at {level} streams", flush=True)
        raw = self.out_dir / f"profile-{name}.txt"
        spy = profile.record(binary, running.proc.pid, p.duration + 1, raw, self.side_cpus)
        phase = self.phase(
            running.port, protocol, True, level, p.duration, p.chunks, loadgen_cpus, running.pids
        )
        try:
            _, err = spy.communicate(timeout=p.duration + 60)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate(timeout=10)
        self.settle(running.pids)
        if not raw.exists():
            result["profile"] = {
                "error": f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"
            }
            return
        result["profile"] = {
            "file": raw.name,
            "concurrency": level,
            "cpu_us_per_chunk": phase.get("cpu_us_per_chunk"),
            **profile.summarize(raw),
        }

    def settle(self, pids: Callable[[], list[int]], limit: float = 15.0) -> None:
        """Wait (bounded) until the gateway stops working off the last phase's leftovers."""
        deadline = time.monotonic() + limit
        tree = pids()
        while time.monotonic() < deadline:
            a = procstat.sample(tree)
            time.sleep(0.5)
            if procstat.cpu_seconds(a, procstat.sample(tree)) < 0.05:
                return

    # --- one gateway ----------------------------------------------------------------------

    def gateway(self, name: str) -> dict[str, Any]:
        p = self.plan
        result: dict[str, Any] = {"status": "ok", "stream": [], "nonstream": []}
        running: gateways.Running | None = None
        variant = name.endswith(("-deepseek", "-gemini"))
        if name == "direct":
            port, protocol, pids = self.fake_port, "openai", self.fake_pids
            # The reference: the best the harness does on the whole machine (no gateway needs a
            # core), so the fake and the load generators are unpinned for it.
            loadgen_cpus = None
            self._pin_fakes(set(procstat.cores()))
            result.update(version="bench.fake_upstream", workers=1, pinned=False)
        else:
            spec = gateways.SPECS[name]
            port = gateways.free_port()
            try:
                launch = gateways.prepare(
                    name, port, self.fake_port, self.workdir, p.install, "claude-sonnet-4-5"
                )
            except gateways.Unavailable as exc:
                return {"status": "error", "error": str(exc)}
            pin = spec.workers == 1 and self.pinned
            result.update(
                version=launch.version, workers=spec.workers, pinned=pin, upstream=spec.upstream
            )
            running = gateways.Running(
                name, launch, port, self.workdir / f"{name}.log", self.gw_cpus if pin else None
            )
            protocol, pids = "anthropic", running.pids
            loadgen_cpus = self.side_cpus if pin else None
        try:
            if running is not None:
                gateways.wait_ready(running, launch.ready_timeout)
                if spec.family == "router" and not spec.bare:
                    self.key = gateways.client_key(port)
            # Warm-up (not recorded): JITs, connection pools and lazy imports.
            self.phase(
                port, protocol, True, 10, 1.0 if p.quick else 2.0, p.chunks, loadgen_cpus, pids
            )
            self.settle(pids)
            result["rss_idle_mb"] = round(procstat.sample(pids()).rss_kb / 1024, 1)
            levels = p.streams
            if variant:
                levels = [n for n in p.streams if n == 100] or [min(p.streams)]
            for n in levels:
                print(f"  {name}: {n} streams", flush=True)
                result["stream"].append(
                    self.phase(port, protocol, True, n, p.duration, p.chunks, loadgen_cpus, pids)
                )
                self.settle(pids)
            for n in [] if variant else p.nonstream:
                print(f"  {name}: non-streaming, concurrency {n}", flush=True)
                result["nonstream"].append(
                    self.phase(
                        port, protocol, False, n, p.nonstream_duration, 0, loadgen_cpus, pids
                    )
                )
                self.settle(pids)
            if running is not None and spec.workers == 1 and not variant:
                self.profile(name, running, protocol, loadgen_cpus, result)
            if name == "router" and p.soak > 0:
                n = max(p.streams)
                print(f"  {name}: soak, {n} streams for {p.soak:.0f} s", flush=True)
                series: list[tuple[float, float]] = []
                soak = self.phase(
                    port, protocol, True, n, p.soak, p.chunks, loadgen_cpus, pids, series
                )
                soak["rss_series"] = series
                result["soak"] = soak
        except gateways.Unavailable as exc:
            result.update(status="error", error=str(exc))
        finally:
            self.key = gateways.APIKEY
            if name == "direct" and self.side_cpus is not None:
                self._pin_fakes(self.side_cpus)
            if running is not None:
                running.stop()
                if result["status"] != "ok":
                    result["log_tail"] = running.log_tail()
        return result


def _versions() -> dict[str, str]:
    node = shutil.which("node")
    out = {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cores": str(os.cpu_count()),
    }
    if node:
        proc = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        out["node"] = proc.stdout.strip()
    return out


def run(plan: Plan, out_dir: Path, command: str) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = peers.CACHE / "run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(plan, workdir, out_dir)
    if bench.side_cpus is not None:
        os.sched_setaffinity(0, bench.side_cpus)
    results: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": _versions(),
        "plan": msgspec.to_builtins(plan),
        "pinned": bench.pinned,
        "gateways": {},
    }
    if plan.micro:
        print("micro-benchmarks", flush=True)
        micro = subprocess.run(
            [sys.executable, "-m", "bench.micro", *(["--quick"] if plan.quick else [])],
            capture_output=True,
            cwd=gateways.REPO,
            timeout=600,
            check=False,
            preexec_fn=procstat.pinned_exec(bench.gw_cpus),
        )
        try:
            results["micro"] = msgspec.json.decode(micro.stdout)
        except msgspec.DecodeError:
            results["micro"] = {"error": micro.stderr.decode("utf-8", "replace")[-1000:]}
    bench.start_fake()
    try:
        cc_names: list[str] = [n for n in ("router", "ccr") if n in plan.gateways]
        if plan.claude_code and cc_names:
            print("claude code-sized requests", flush=True)
            if "router" in cc_names:
                cc_names.insert(1, "router-nolc")  # the router without the rule, for reference
            results["claude_code"] = claude_code.run(
                cc_names, bench.fake_port, workdir, plan.install, bench.gw_cpus, plan.quick
            )
        if plan.faults and "router" in plan.gateways:
            print("fault phase: 20 % of upstream requests fail with 503", flush=True)
            results["faults"] = faults.run(
                bench.fake_port, workdir, plan.install, bench.gw_cpus, plan.quick
            )
        for name in ["direct", *plan.gateways]:
            print(f"gateway {name}", flush=True)
            started = time.monotonic()
            results["gateways"][name] = bench.gateway(name)
            results["gateways"][name]["seconds"] = round(time.monotonic() - started, 1)
            if results["gateways"][name]["status"] != "ok":
                print(f"  {name} failed: {results['gateways'][name]['error'][:300]}", flush=True)
    finally:
        bench.stop_fake()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_bytes(
        msgspec.json.format(msgspec.json.encode(results), indent=1)
    )
    report.write(results, out_dir)
    return results


def main(argv: list[str] | None = None) -> None:
    parsed = parse(argv)
    if parsed is None:
        print("claude-code-router:", peers.install_ccr())
        print("litellm:", peers.install_litellm())
        print("py-spy:", profile.pyspy(allow_install=True))
        return
    plan, out_dir, command = parsed
    started = time.monotonic()
    results = run(plan, out_dir, command)
    print(f"done in {time.monotonic() - started:.0f} s: {out_dir}/results.md", flush=True)
    broken = harness_failures(results)
    for line in broken:
        print(f"FAILED: {line}", file=sys.stderr)
    if broken and plan.quick:
        raise SystemExit(1)


def harness_failures(results: dict[str, Any]) -> list[str]:
    """What makes the smoke test fail: our own gateways not running or answering nothing.

    Peers that cannot run are reported in the results, not failures; slowness never is.
    """
    failures = []
    for name, gw in results.get("claude_code", {}).get("gateways", {}).items():
        if name.startswith("router") and (gw.get("status") != "ok" or gw.get("error_count")):
            failures.append(f"claude code request, {name}: {gw.get('error') or gw['errors']}")
    for name, gw in results.get("faults", {}).get("gateways", {}).items():
        if name.startswith("router") and gw.get("status") != "ok":
            failures.append(f"fault phase, {name}: {gw.get('error', '')[:500]}")
    for name, gw in results["gateways"].items():
        if name != "direct" and gateways.SPECS[name].family not in ("plain", "router"):
            continue
        if gw.get("status") != "ok":
            failures.append(f"{name}: {gw.get('error', '')[:500]}")
            continue
        for row in [*gw.get("stream", []), *gw.get("nonstream", [])]:
            if not row["ok"]:
                failures.append(
                    f"{name} @{row['concurrency']}: no request succeeded {row['errors']}"
                )
    return failures
