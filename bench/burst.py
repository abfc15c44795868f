"""First byte when N streams open at once: each gateway, started fresh, gets N new connections
in the same instant, one stream each, and the time to each stream's first byte is recorded.

The full run's top level opens its streams over a one-second ramp; this is the issue's harder
case (all at once, on connections that did not exist), which is where accept, request-head
parsing and per-request admission queue up. Also reported: the gateway's CPU time over the
burst, and how long its accept queue held connections (the listening socket's backlog,
sampled from ``/proc/net/tcp``), i.e. when the gateway had accepted the whole burst.

``--trees`` runs each router gateway from other source trees too (e.g. the base commit,
``git archive HEAD | tar -x -C /tmp/base``), interleaved round by round with this one, so that
a change is compared with its baseline in the same run. ``--pin`` gives the gateway core 0 and
the fake and the load generator core 1, as the full run does; either way compare within a run.

Run: ``python -m bench.burst [--gateways router,router-bare] [--streams 1000] [--rounds 3]
[--trees /tmp/base] [--pin]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from . import gateways, procstat
from .loadgen import Stats, percentile

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column (include/net/tcp_states.h)
BACKLOG_PERIOD = 0.02  # seconds between samples of the accept queue


def accept_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the IPv4 socket listening on ``port``.

    For a listening socket, /proc/net/tcp's ``rx_queue`` is its accept queue's length
    (``sk_ack_backlog``: net/ipv4/tcp_ipv4.c, ``get_tcp4_sock``)."""
    hex_port = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == _LISTEN and fields[1].endswith(hex_port):
                return int(fields[4].split(":")[1], 16)
    return None


class BacklogWatch:
    """Samples :func:`accept_queue` in a thread: its peak, and when it last held anything."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self.last_busy = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BacklogWatch:
        self.started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(BACKLOG_PERIOD):
            waiting = accept_queue(self.port) or 0
            if waiting:
                self.peak = max(self.peak, waiting)
                self.last_busy = time.time()


def burst(
    name: str,
    streams: int,
    chunks: int,
    workdir: Path,
    tree: Path | None = None,
    cpus: tuple[set[int], set[int]] | None = None,
) -> dict[str, Any]:
    """One burst on a fresh ``name``, run from ``tree``'s sources when given; ``cpus``: the
    gateway's cores and those of the fake and the load generator."""
    fake_port, port = gateways.free_port(), gateways.free_port()
    fake = gateways.start_fake(fake_port, chunks, 20, max_seconds=600)
    if cpus is not None:
        procstat.pin(fake.pid, cpus[1])
    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    launch = gateways.prepare(name, port, fake_port, home, False, "claude-sonnet-4-5")
    if tree is not None:
        # Without the working directory on sys.path (PYTHONSAFEPATH, Python 3.11), PYTHONPATH
        # decides where `-m trio_router` comes from, in the spawned workers too.
        launch.env.update(PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    running = gateways.Running(name, launch, port, home / "log", cpus and cpus[0])
    try:
        gateways.wait_ready(running, launch.ready_timeout)
        spec = gateways.SPECS[name]
        key = gateways.APIKEY
        if spec.family == "router" and not spec.bare:
            key = gateways.client_key(port)
        time.sleep(1.0)
        pids = running.pids()
        before = procstat.sample(pids)
        start_at = time.time() + 0.5  # the load generator is up by then
        argv = [
            sys.executable, "-m", "bench.loadgen", "--port", str(port),
            "--conns", str(streams), "--duration", "0.05", "--grace", "120",
            "--expect-chunks", str(chunks), "--key", key, "--start-at", str(start_at),
        ]  # fmt: skip
        with BacklogWatch(port) as backlog:
            out = subprocess.run(
                argv,
                cwd=gateways.REPO,
                capture_output=True,
                timeout=300,
                check=True,
                preexec_fn=procstat.pinned_exec(cpus and cpus[1]),
            )
        after = procstat.sample(pids)
        stats = msgspec.json.decode(out.stdout, type=Stats)
    finally:
        running.stop()
        fake.terminate()
        fake.wait(timeout=10)

    def ms(q: float) -> float | None:
        value = percentile(stats.ttfb, q)
        return None if value is None else round(value / 1000, 1)

    accepted = backlog.last_busy + BACKLOG_PERIOD - start_at if backlog.peak else 0.0
    return {
        "gateway": name,
        "tree": str(tree) if tree is not None else "",
        "streams": stats.requests,
        "ok": stats.ok,
        "errors": stats.errors,
        "ttfb_p50_ms": ms(0.5),
        "ttfb_p99_ms": ms(0.99),
        "cpu_s": round(procstat.cpu_seconds(before, after), 2),
        "backlog_peak": backlog.peak,
        "accepted_all_ms": round(accepted * 1000),
    }


def _median(rows: list[dict[str, Any]], field: str) -> float | None:
    values = [row[field] for row in rows if row[field] is not None]
    return round(statistics.median(values), 1) if values else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--gateways", default="router,router-bare")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per stream")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--trees", default="", help="comma-separated source trees to run the routers from too"
    )
    parser.add_argument("--pin", action="store_true", help="gateway on core 0, the rest on 1")
    args = parser.parse_args(argv)
    cores = procstat.cores()
    cpus = ({cores[0]}, {cores[1]}) if args.pin and len(cores) >= 2 else None
    trees: list[Path | None] = [None, *(Path(t).resolve() for t in args.trees.split(",") if t)]
    results = []
    with tempfile.TemporaryDirectory(prefix="burst-") as tmp:
        for _ in range(args.rounds):
            for name in args.gateways.split(","):
                family = gateways.SPECS[name].family
                for tree in trees if family == "router" else [None]:
                    results.append(burst(name, args.streams, args.chunks, Path(tmp), tree, cpus))
    print(
        "| gateway | tree | streams ok | first byte p50 / p99 ms | CPU s over the burst "
        "| accept queue: peak, emptied at ms |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['gateway']} | {r['tree'] or 'this'} | {r['ok']}/{r['streams']} "
            f"| {r['ttfb_p50_ms']} / {r['ttfb_p99_ms']} | {r['cpu_s']} "
            f"| {r['backlog_peak']}, {r['accepted_all_ms']} |"
        )
    if args.rounds > 1:
        print(f"\nMedians over {args.rounds} rounds:\n")
        print("| gateway | tree | first byte p50 / p99 ms | CPU s | accept queue emptied at ms |")
        print("|---|---|---|---|---|")
        for key in dict.fromkeys((r["gateway"], r["tree"]) for r in results):
            rows = [r for r in results if (r["gateway"], r["tree"]) == key]
            print(
                f"| {key[0]} | {key[1] or 'this'} | {_median(rows, 'ttfb_p50_ms')} / "
                f"{_median(rows, 'ttfb_p99_ms')} | {_median(rows, 'cpu_s')} "
                f"| {_median(rows, 'accepted_all_ms')} |"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
