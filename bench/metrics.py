"""The CPU a streamed chunk costs with Prometheus metrics on and off (``METRICS`` in the config).

The router runs as ``trio-router start`` (one worker) in front of the fake upstream; streams
of ``--chunks`` chunks each, a few at once, go through it, and the worker's CPU time
(``/proc``'s schedstat, bench/procstat.py) over a round is divided by the chunks relayed. The
rounds alternate on and off so that a neighbour's load falls on both alike; the median per mode
is reported. Metrics cost one integer increment per chunk (a count the hot path already
kept) and a few label lookups per request, so the two figures should agree within the noise,
and the per-stream figure shows what the once-per-request part costs.

Run: ``python -m bench.metrics [--quick]`` (prints a table and JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from . import gateways
from .procstat import cpu_seconds, sample, tree

REPO = Path(__file__).resolve().parent.parent
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def _start_router(
    folder: Path, fake_port: int, metrics: bool
) -> tuple[subprocess.Popen[bytes], int]:
    port = gateways.free_port()
    config = gateways.ccr_style_config(port, fake_port, "openai")
    config["METRICS"] = metrics
    path = folder / f"config-{'on' if metrics else 'off'}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRIO_ROUTER_DATA_DIR": str(folder)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_router", "start", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, process)
    return process, port


async def _streams(port: int, count: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
    ) as client:

        async def one() -> None:
            async with client.stream("POST", "/v1/messages", json=BODY) as response:
                assert response.status_code == 200, response.status_code
                async for _ in response.aiter_raw():
                    pass

        async def worker(n: int) -> None:
            for _ in range(n):
                await one()

        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                nursery.start_soon(worker, count // concurrency + (i < count % concurrency))


def _round(process: subprocess.Popen[bytes], port: int, streams: int, concurrency: int) -> float:
    """The router's CPU seconds for ``streams`` streams."""
    pids = tree([process.pid])
    before = sample(pids)
    trio.run(_streams, port, streams, concurrency)
    return cpu_seconds(before, sample(pids))


def run(chunks: int, streams: int, rounds: int, concurrency: int) -> dict[str, Any]:
    fake_port = gateways.free_port()
    fake = gateways.start_fake(fake_port, chunks, 0)
    routers: dict[bool, tuple[subprocess.Popen[bytes], int]] = {}
    spent: dict[bool, list[float]] = {True: [], False: []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
            for metrics in (True, False):
                routers[metrics] = _start_router(Path(folder), fake_port, metrics)
                _round(*routers[metrics], max(4, streams // 10), concurrency)  # warm up
            for _ in range(rounds):
                for metrics in (True, False):
                    spent[metrics].append(_round(*routers[metrics], streams, concurrency))
    finally:
        for process, _ in routers.values():
            process.terminate()
            process.wait(timeout=15)
        fake.terminate()
        fake.wait(timeout=15)
    result: dict[str, Any] = {"chunks": chunks, "streams": streams, "rounds": rounds}
    for metrics, name in ((True, "on"), (False, "off")):
        median = statistics.median(spent[metrics])
        result[name] = {
            "us_per_chunk": round(median / (streams * chunks) * 1e6, 3),
            "us_per_stream": round(median / streams * 1e6, 1),
            "cpu_s_rounds": [round(s, 3) for s in spent[metrics]],
        }
    result["extra_us_per_chunk"] = round(
        result["on"]["us_per_chunk"] - result["off"]["us_per_chunk"], 3
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer streams and rounds")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    streams, rounds = (40, 3) if args.quick else (200, 5)
    result = run(args.chunks, streams, rounds, args.concurrency)
    print(f"{'metrics':8} {'us/chunk':>9} {'us/stream':>10}  rounds (CPU s)")
    for name in ("on", "off"):
        row = result[name]
        figures = f"{row['us_per_chunk']:9.3f} {row['us_per_stream']:10.1f}"
        print(f"{name:8} {figures}  {row['cpu_s_rounds']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
