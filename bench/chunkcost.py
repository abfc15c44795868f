"""Instructions per streamed chunk and per request, counted by callgrind: repeatable figures
on a machine whose CPU time is shared.

CPU time per chunk moves 10-30 % between runs when other programs share the cores (caches,
frequency, the scheduler); the number of instructions a gateway executes for the same work
does not. The gateway runs under ``valgrind --tool=callgrind --instr-atstart=no`` (startup and
imports run uninstrumented), and counting is switched on, zeroed and dumped around each phase
with ``callgrind_control`` (https://valgrind.org/docs/manual/cl-manual.html#cl-manual.options):
the dump's ``totals`` is every instruction the process ran in user space during that phase.

Under callgrind a Python gateway runs some 50x slower, so the streams are few and far apart
(default 8 streams, a chunk every 60 ms): no chunk waits for another, and each upstream read
carries one event, as at moderate load. ``--streams 40 --interval-ms 20`` saturates it instead,
so that reads carry several events: what coalescing saves when events queue up.

Run: ``python -m bench.chunkcost [--gateways router,router-bare,plain] [--chunks 100]``
(prints a table and JSON; about a minute per gateway). Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from . import gateways
from .loadgen import Stats

_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def _control(pids: list[int], *args: str) -> None:
    """``callgrind_control`` for each of the gateway's processes (a worker runs under the
    master's valgrind through ``--trace-children``); never for anyone else's."""
    for pid in pids:
        subprocess.run(
            ["callgrind_control", *args, str(pid)], check=False, capture_output=True, timeout=120
        )


def _dumped(folder: Path, before: set[Path], processes: int) -> int:
    """Instructions in the dumps that ``callgrind_control -d`` just wrote, summed."""
    deadline = time.monotonic() + 60
    total: dict[Path, int] = {}
    while time.monotonic() < deadline:
        for path in set(folder.glob("cg.*")) - before - set(total):
            found = _TOTALS.search(path.read_bytes())
            if found:
                total[path] = int(found[1])
        if len(total) >= processes:
            break
        time.sleep(0.2)
    if not total:
        raise RuntimeError("callgrind wrote no dump")
    return sum(total.values())


def _load(
    port: int, key: str, stream: bool, conns: int, duration: float, chunks: int
) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.loadgen", "--port", str(port), "--conns", str(conns),
        "--duration", str(duration), "--grace", "600", "--expect-chunks", str(chunks),
        "--key", key,
    ]  # fmt: skip
    if not stream:
        argv.append("--no-stream")
    out = subprocess.run(argv, cwd=gateways.REPO, capture_output=True, timeout=900, check=True)
    stats = msgspec.json.decode(out.stdout, type=Stats)
    return msgspec.to_builtins(stats)  # type: ignore[no-any-return]


def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One gateway: instructions per chunk (streams) and per request (not streamed)."""
    fake_port, port = gateways.free_port(), gateways.free_port()
    fake = gateways.start_fake(fake_port, args.chunks, args.interval_ms, max_seconds=3600)
    home = workdir / name
    home.mkdir()
    launch = gateways.prepare(name, port, fake_port, home, False, "claude-sonnet-4-5")
    out = home / "cg.%p"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",
        f"--callgrind-out-file={out}",
    ]
    running = gateways.Running(
        name, launch._replace(argv=argv + launch.argv), port, home / "log", None
    )
    result: dict[str, Any] = {"gateway": name}
    try:
        gateways.wait_ready(running, 600)
        spec = gateways.SPECS[name]
        key = gateways.APIKEY
        if spec.family == "router" and not spec.bare:
            key = gateways.client_key(port, timeout=60)
        pids = running.pids()
        _control(pids, "-i", "on")
        _load(port, key, True, 2, 0.5, args.chunks)  # warm-up: pools, caches, lazy imports
        phases = [("stream", True, args.streams), ("stream again", True, args.streams)]
        for label, stream, conns in [*phases, ("nonstream", False, 1)]:
            _control(pids, "-z")
            before = set(home.glob("cg.*"))
            stats = _load(port, key, stream, conns, args.duration, args.chunks)
            _control(pids, "-d")
            instructions = _dumped(home, before, len(pids))
            count = stats["text_chunks"] if stream else stats["ok"]
            result[label] = {
                "instructions": instructions,
                "count": count,
                "errors": stats["errors"],
                "per_item": round(instructions / count) if count else None,
            }
    finally:
        running.stop()
        fake.terminate()
        fake.wait(timeout=10)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chunkcost", description=__doc__)
    parser.add_argument("--gateways", default="router,router-bare,plain")
    parser.add_argument("--chunks", type=int, default=100, help="text chunks per stream")
    parser.add_argument("--interval-ms", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of new streams")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (Debian: valgrind) is needed")
    results = []
    with tempfile.TemporaryDirectory(prefix="chunkcost-") as tmp:
        for name in args.gateways.split(","):
            print(f"{name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, args, Path(tmp)))
    print("| gateway | instructions per chunk (run 1 / run 2) | per non-streamed request |")
    print("|---|---|---|")
    for r in results:
        s, a, n = r.get("stream", {}), r.get("stream again", {}), r.get("nonstream", {})
        print(
            f"| {r['gateway']} | {s.get('per_item')} / {a.get('per_item')} "
            f"({s.get('count')} + {a.get('count')} chunks) "
            f"| {n.get('per_item')} ({n.get('count')} requests) |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
