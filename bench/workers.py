"""``--workers 2`` against one worker: the same streams, the CPU each chunk costs and how the
connections split between the workers.

    python -m bench.workers            # 200 streams for 20 s per run
    python -m bench.workers --quick    # 100 streams for 8 s

Targets (issue 18): with two workers, total CPU per streamed chunk within 10 % of one
worker's, and the connections split within 10 % between the two (each worker holds 45-55 %).
The gateways are unpinned (two workers need both cores); the fake and the load generator share
them, the same for both runs. The split is read from ``/proc`` during the run: each worker's
established connections on the router's port.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .gateways import APIKEY, Running, free_port, prepare, start_fake, wait_ready
from .loadgen import LoadGen, build_target
from .procstat import cpu_seconds, sample, split, tree

CHUNKS = 200
INTERVAL_MS = 20


def _established(port: int) -> dict[str, int]:
    """Inode of each established connection to ``port`` (proc(5), /proc/net/tcp)."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found[fields[9]] = 1  # 01: TCP_ESTABLISHED
    return found


def _connections_per_pid(pids: list[int], port: int) -> dict[int, int]:
    established = _established(port)
    counts: dict[int, int] = {}
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
        if held := len(inodes & established.keys()):
            counts[pid] = held
    return counts


def measure(
    workers: int, fake_port: int, workdir: Path, conns: int, seconds: float
) -> dict[str, Any]:
    """One router run: CPU per chunk over the whole process tree, and the connection split."""
    port = free_port()
    launch = prepare("router2" if workers == 2 else "router", port, fake_port, workdir, False, "")
    log = workdir / f"router-{workers}.log"
    running = Running(f"router{workers}", launch, port, log, None)
    try:
        wait_ready(running, launch.ready_timeout)
        target = build_target("anthropic", "127.0.0.1", port, True, None, CHUNKS, "", APIKEY)
        pids = running.pids()
        before = sample(pids)
        start = time.time() + 0.2
        gen = LoadGen("127.0.0.1", port, target, conns, start, seconds, 1.0, 30.0)
        split_at = start + seconds / 2
        # The load generator is one selector loop: read the split from a thread mid-run.
        connections: dict[int, int] = {}

        def read_split() -> None:
            time.sleep(max(0.0, split_at - time.time()))
            connections.update(_connections_per_pid(tree([running.proc.pid])[1:], port))

        reader = threading.Thread(target=read_split)
        reader.start()
        stats = gen.run()
        reader.join()
        after = sample(pids)
        cpu = cpu_seconds(before, after)
        chunks = max(1, stats.text_chunks)
        held = sorted(connections.values(), reverse=True)
        return {
            "workers": workers,
            "streams_ok": stats.ok,
            "errors": stats.errors,
            "chunks": stats.text_chunks,
            "cpu_s": round(cpu, 3),
            "cpu_us_per_chunk": round(cpu / chunks * 1e6, 2),
            "cpu_split_s": split(before, after),
            "connections_per_worker": held,
            "largest_share": round(held[0] / sum(held), 3) if held else None,
        }
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 streams, 8 s per run")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    conns, seconds = (100, 8.0) if args.quick else (200, 20.0)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        workdir = Path(tmp)
        fake_port = free_port()
        fake = start_fake(fake_port, CHUNKS, INTERVAL_MS)
        try:
            runs = [measure(n, fake_port, workdir, conns, seconds) for n in (1, 2)]
        finally:
            fake.terminate()
            fake.wait(10)
    one, two = runs
    ratio = two["cpu_us_per_chunk"] / one["cpu_us_per_chunk"]
    result = {
        "runs": runs,
        "cpu_per_chunk_ratio": round(ratio, 3),
        "cpu_target_met": abs(ratio - 1) <= 0.10,
        "split_target_met": two["largest_share"] is not None and two["largest_share"] <= 0.55,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
