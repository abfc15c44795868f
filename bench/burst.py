"""First byte when N streams open at once: each gateway, started fresh, gets N new connections
in the same instant, one stream each, and the time to each stream's first byte is recorded.

The full run's top level opens its streams over a one-second ramp; this is the issue's harder
case (all at once, on connections that did not exist), which is where accept, request-head
parsing and per-request admission queue up. The gateway's CPU time over the burst is
reported too. Unpinned: compare gateways within one run only.

Run: ``python -m bench.burst [--gateways router,router-bare] [--streams 1000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from . import gateways, procstat
from .loadgen import Stats, percentile


def burst(name: str, streams: int, chunks: int, workdir: Path) -> dict[str, Any]:
    fake_port, port = gateways.free_port(), gateways.free_port()
    fake = gateways.start_fake(fake_port, chunks, 20, max_seconds=600)
    home = workdir / name
    home.mkdir()
    launch = gateways.prepare(name, port, fake_port, home, False, "claude-sonnet-4-5")
    running = gateways.Running(name, launch, port, home / "log", None)
    try:
        gateways.wait_ready(running, launch.ready_timeout)
        spec = gateways.SPECS[name]
        key = gateways.APIKEY
        if spec.family == "router" and not spec.bare:
            key = gateways.client_key(port)
        time.sleep(1.0)
        tree = running.pids()
        before = procstat.sample(tree)
        argv = [
            sys.executable, "-m", "bench.loadgen", "--port", str(port),
            "--conns", str(streams), "--duration", "0.05", "--grace", "120",
            "--expect-chunks", str(chunks), "--key", key,
        ]  # fmt: skip
        out = subprocess.run(argv, cwd=gateways.REPO, capture_output=True, timeout=300, check=True)
        after = procstat.sample(tree)
        stats = msgspec.json.decode(out.stdout, type=Stats)
    finally:
        running.stop()
        fake.terminate()
        fake.wait(timeout=10)

    def ms(q: float) -> float | None:
        value = percentile(stats.ttfb, q)
        return None if value is None else round(value / 1000, 1)

    return {
        "gateway": name,
        "streams": stats.requests,
        "ok": stats.ok,
        "errors": stats.errors,
        "ttfb_p50_ms": ms(0.5),
        "ttfb_p99_ms": ms(0.99),
        "cpu_s": round(procstat.cpu_seconds(before, after), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--gateways", default="router,router-bare")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per stream")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="burst-") as tmp:
        for name in args.gateways.split(","):
            results.append(burst(name, args.streams, args.chunks, Path(tmp)))
    print("| gateway | streams ok | first byte p50 / p99 ms | CPU s over the burst |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['gateway']} | {r['ok']}/{r['streams']} | {r['ttfb_p50_ms']} / "
            f"{r['ttfb_p99_ms']} | {r['cpu_s']} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
