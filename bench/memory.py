"""Memory of one router worker: RSS idle and with N streams open, and the KB each stream adds.

The router runs as in the full bench (``gateways.router_config``, a client key with every limit,
one worker), against the fake upstream with streams long enough to stay open for the whole
level: each of N connections opens one stream, and RSS is sampled every 0.25 s while all N are
open (``--hold`` seconds), then the load generator is stopped and the next level starts. "idle"
is after a warm-up (non-streamed requests and a few short streams, so the lazily loaded parts
such as the upstream pool and genai-prices' data are in), "after" once the last level closed.

``--trees name=path,...`` runs the same measurement on other source trees (e.g. HEAD unpacked
with ``git archive HEAD | tar -x -C /tmp/base``), one after the other in the same run.

Run: ``python -m bench.memory [--streams 100,1000] [--hold 20] [--trees base=/tmp/base,new=.]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import gateways, procstat

# Long streams send a chunk every 250 ms: on 2 shared cores, 1000 streams at the full run's 20 ms
# keep the loop so busy that most of them wait in admission and never reach the upstream.
LONG_INTERVAL_MS = 250
SOAK_INTERVAL_MS = 20
SAMPLE_S = 0.25
SETTLE_S = 2.0
OPEN_TIMEOUT_S = 120.0  # for all N streams to reach the upstream (admission queues a burst)
SOAK_CHUNKS = 200  # the full run's streams: 200 chunks, 20 ms apart


def _rss_mb(pids: list[int]) -> float:
    return procstat.sample(pids).rss_kb / 1024


def _upstream_connections(fake_port: int) -> int:
    """Established TCP connections to the fake (the router's upstream connections: open
    streams, plus the few idle ones its pool keeps), from /proc/net/tcp (proc(5))."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == fake_port:
                count += 1
    return count


def _loadgen(
    port: int, key: str, conns: int, ramp: float, duration: float, stream: bool = True
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "bench.loadgen", "--port", str(port), "--conns", str(conns),
        "--duration", str(duration), "--ramp", str(ramp), "--grace", "3600", "--key", key,
    ]  # fmt: skip
    if not stream:
        argv.append("--no-stream")
    return subprocess.Popen(
        argv, cwd=gateways.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def _settle(pids: list[int], seconds: float) -> float:
    """RSS after ``seconds`` of quiet: the median of the last second's samples."""
    time.sleep(max(0.0, seconds - 1.0))
    samples = []
    for _ in range(4):
        samples.append(_rss_mb(pids))
        time.sleep(SAMPLE_S)
    return statistics.median(samples)


def measure(
    name: str,
    tree: Path,
    levels: list[int],
    hold: float,
    soak: bool,
    fake_port: int,
    workdir: Path,
) -> dict[str, Any]:
    port = gateways.free_port()
    home = workdir / name
    home.mkdir()
    launch = gateways.prepare("router", port, fake_port, home, False, "claude-sonnet-4-5")
    # -P: the tree on PYTHONPATH is imported, not the working directory's trio_router.
    argv = [launch.argv[0], "-P", *launch.argv[1:]]
    launch = launch._replace(argv=argv, env={**launch.env, "PYTHONPATH": f"{tree}:{gateways.REPO}"})
    running = gateways.Running(name, launch, port, home / "log", None)
    result: dict[str, Any] = {"tree": name, "path": str(tree), "levels": []}
    try:
        gateways.wait_ready(running, launch.ready_timeout)
        key = gateways.client_key(port)
        pids = running.pids()
        result["started_mb"] = round(_rss_mb(pids), 1)
        warm = _loadgen(port, key, 8, 0.0, 2.0, stream=False)
        time.sleep(2.0)
        _stop(warm)
        warm = _loadgen(port, key, 8, 0.0, 0.0)
        time.sleep(2.0)
        _stop(warm)
        idle = _settle(pids, 3.0)
        result["idle_mb"] = round(idle, 1)
        for n in levels:
            ramp = min(2.0, n / 500)
            # Long streams: one per connection, all open once the upstream has them all.
            # Soak: the bench's streams, each connection starting the next when one ends.
            gen = _loadgen(port, key, n, ramp, ramp + OPEN_TIMEOUT_S + hold if soak else ramp)
            started = time.monotonic()
            if soak:
                time.sleep(ramp + SETTLE_S)
            else:
                while (
                    _upstream_connections(fake_port) < n
                    and time.monotonic() - started < OPEN_TIMEOUT_S
                ):
                    time.sleep(SAMPLE_S)
                time.sleep(SETTLE_S)
            opened = time.monotonic() - started
            samples, open_counts = [], []
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                samples.append(_rss_mb(pids))
                open_counts.append(_upstream_connections(fake_port))
                time.sleep(SAMPLE_S)
            _stop(gen)
            half = len(samples) // 2
            level = {
                "streams": n,
                "open_s": round(opened, 1),
                "upstream_open_min": min(open_counts),
                "median_mb": round(statistics.median(samples), 1),
                "max_mb": round(max(samples), 1),
                "first_half_max_mb": round(max(samples[: half or 1]), 1),
                "second_half_max_mb": round(max(samples[half:]), 1),
                "kb_per_stream": round((statistics.median(samples) - idle) * 1024 / n, 1),
            }
            result["levels"].append(level)
            time.sleep(3.0)
        result["after_mb"] = round(_settle(pids, 3.0), 1)
    finally:
        running.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--streams", default="100,1000", help="levels, comma-separated")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds sampled per level")
    parser.add_argument(
        "--soak", action="store_true", help="the full run's 4 s streams, restarted as they end"
    )
    parser.add_argument("--trees", default=f"router={gateways.REPO}", help="name=path,...")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.streams.split(",")]
    trees = [(n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.trees.split(","))]
    # Without --soak every stream outlasts its level: the ramp, the wait for all to open, the
    # hold, and slack.
    interval = SOAK_INTERVAL_MS if args.soak else LONG_INTERVAL_MS
    long = int((2.0 + OPEN_TIMEOUT_S + SETTLE_S + args.hold + 10.0) * 1000 / interval)
    chunks = SOAK_CHUNKS if args.soak else long
    fake_port = gateways.free_port()
    fake = gateways.start_fake(fake_port, chunks, interval, max_seconds=3600)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
            for name, tree in trees:
                results.append(
                    measure(name, tree, levels, args.hold, args.soak, fake_port, Path(tmp))
                )
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print("| tree | started MB | idle MB | streams (upstream min) | open s | RSS median / max MB "
          "| halves max MB | KB per stream | after MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for level in r["levels"]:
            print(
                f"| {r['tree']} | {r['started_mb']} | {r['idle_mb']} | {level['streams']} "
                f"({level['upstream_open_min']}) | {level['open_s']} | "
                f"{level['median_mb']} / {level['max_mb']} | {level['first_half_max_mb']} / "
                f"{level['second_half_max_mb']} | {level['kb_per_stream']} | {r['after_mb']} |"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
