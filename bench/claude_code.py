"""CPU per Claude Code-sized request, with a ``longContext`` rule configured.

The request is the one Claude Code 2.1.197 sent for a tool round trip
(``tests/fixtures/claude_code/cli_2_1_197_tool_use_{1,2}.json``: 24 tools, a long system prompt,
86 KB), sent one at a time on a keep-alive connection, and the gateway's process tree's CPU is
read from /proc around each one. Three kinds, each a fresh conversation per repetition:

- ``turn1_cold``: the first turn with every text made new (a nonce in the system prompt, each
  tool description and the user's message), so nothing can come from a cache;
- ``turn1``: the first turn of a new session: the system prompt and tools as every session
  sends them, only the user's message new;
- ``turn2``: that session's second turn (the first turn's history, the tool call and its result).

Both gateways route with ``longContext``, so both count the request's tokens (the router with
cl100k_base; claude-code-router counts with tiktoken too). The answers are not streamed (the
request's ``stream`` is set to false): per-chunk work is the stream phases' business; this
measures what a request costs before and around its answer.
"""

from __future__ import annotations

import copy
import http.client
import json
import statistics
import time
from pathlib import Path
from typing import Any

from . import gateways, procstat

FIXTURES = gateways.REPO / "tests" / "fixtures" / "claude_code"
FIRST, SECOND = "cli_2_1_197_tool_use_1.json", "cli_2_1_197_tool_use_2.json"
KINDS = ("turn1_cold", "turn1", "turn2")
# The rule both gateways run with: Claude Code's requests count ~17k tokens, so they stay on
# the default route, but only after counting.
RULES = {"longContext": "fake,m", "longContextThreshold": 60000}


def _stamp(body: dict[str, Any], nonce: str, everything: bool) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["stream"] = False
    first = body["messages"][0]
    blocks = first["content"]
    if isinstance(blocks, str):
        first["content"] = f"[{nonce}] {blocks}"
    else:
        text = next(b for b in blocks if b.get("type") == "text")
        text["text"] = f"[{nonce}] {text['text']}"
    if everything:
        for block in body["system"]:
            block["text"] = f"[{nonce}] {block['text']}"
        for tool in body["tools"]:
            tool["description"] = f"[{nonce}] {tool.get('description', '')}"
    return body


def requests(repeats: int, tag: str) -> list[tuple[str, bytes]]:
    """(kind, body) in the order they are sent: per repetition a cold first turn, then a new
    session's first and second turn."""
    first = json.loads((FIXTURES / FIRST).read_text())
    second = json.loads((FIXTURES / SECOND).read_text())
    out = []
    for i in range(repeats):
        cold = f"{tag}-cold-{i}"
        session = f"{tag}-session-{i}"
        out.append(("turn1_cold", json.dumps(_stamp(first, cold, True)).encode()))
        out.append(("turn1", json.dumps(_stamp(first, session, False)).encode()))
        out.append(("turn2", json.dumps(_stamp(second, session, False)).encode()))
    return out


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request(
        "POST",
        "/v1/messages",
        body=body,
        headers={
            "content-type": "application/json",
            "x-api-key": "bench",
            "anthropic-version": "2023-06-01",
        },
    )
    response = conn.getresponse()
    return response.status, response.read()


def measure(running: gateways.Running, repeats: int, warmup: int) -> dict[str, Any]:
    """CPU ms of the gateway per request, by kind; the request count and any errors."""
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: list[str] = []
    try:
        for _, body in requests(warmup, "warmup"):
            _post(conn, body)
        time.sleep(0.5)
        for kind, body in requests(repeats, "run"):
            tree = running.pids()
            before = procstat.sample(tree)
            status, answer = _post(conn, body)
            # Let what follows the answer (the log line, the usage record) land in this window.
            time.sleep(0.05)
            after = procstat.sample(tree)
            if status != 200 or b"~T" not in answer:
                errors.append(f"{kind}: {status} {answer[:300].decode('utf-8', 'replace')}")
                continue
            cpu[kind].append(procstat.cpu_seconds(before, after) * 1000)
    except (OSError, http.client.HTTPException) as exc:
        errors.append(f"connection: {exc}")
    finally:
        conn.close()
    result: dict[str, Any] = {"repeats": repeats, "errors": errors[:5], "error_count": len(errors)}
    for kind, values in cpu.items():
        result[kind] = {
            "n": len(values),
            "cpu_ms_p50": round(statistics.median(values), 2) if values else None,
            "cpu_ms_mean": round(statistics.fmean(values), 2) if values else None,
        }
    return result


def run(
    names: list[str],
    fake_port: int,
    workdir: Path,
    install: bool,
    cpus: set[int] | None,
    quick: bool,
) -> dict[str, Any]:
    """The scenario for each of ``names`` (``router``, ``router-nolc``, ``ccr``) in turn."""
    repeats, warmup = (3, 1) if quick else (30, 3)
    results: dict[str, Any] = {
        "request": {
            "fixture": FIRST,
            "bytes": (FIXTURES / FIRST).stat().st_size,
            "tools": len(json.loads((FIXTURES / FIRST).read_text())["tools"]),
        },
        "rules": RULES,
        "gateways": {},
    }
    for name in names:
        print(f"  claude code request: {name}", flush=True)
        spec = gateways.SPECS["router" if name == "router-nolc" else name]
        port = gateways.free_port()
        try:
            launch = gateways.prepare(
                "router" if name == "router-nolc" else name,
                port,
                fake_port,
                workdir / f"cc-{name}",
                install,
                "claude-sonnet-4-5",
                rules=None if name == "router-nolc" else RULES,
            )
        except gateways.Unavailable as exc:
            results["gateways"][name] = {"status": "error", "error": str(exc)}
            continue
        running = gateways.Running(
            name, launch, port, workdir / f"cc-{name}.log", cpus if spec.workers == 1 else None
        )
        try:
            gateways.wait_ready(running, launch.ready_timeout)
            result = measure(running, repeats, warmup)
            result.update(status="ok", version=launch.version, longContext=name != "router-nolc")
        except gateways.Unavailable as exc:
            result = {"status": "error", "error": str(exc)}
        finally:
            running.stop()
        if result["status"] != "ok" or result["error_count"]:
            result["log_tail"] = running.log_tail()
        results["gateways"][name] = result
    results["longContext_cost"] = _rule_cost(results["gateways"])
    return results


def _rule_cost(measured: dict[str, Any]) -> dict[str, float] | None:
    """What the ``longContext`` rule adds per request (CPU ms at p50, by kind): the router's
    figure less ``router-nolc``'s, both from this run, so the machine's load cancels out."""
    with_rule, without = measured.get("router"), measured.get("router-nolc")
    if not with_rule or not without:
        return None
    if with_rule["status"] != "ok" or without["status"] != "ok":
        return None
    cost = {}
    for kind in KINDS:
        a, b = with_rule.get(kind, {}).get("cpu_ms_p50"), without.get(kind, {}).get("cpu_ms_p50")
        if a is not None and b is not None:
            cost[kind] = round(a - b, 2)
    return cost
