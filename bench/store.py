"""The store's hot-path calls on SQLite and on PostgreSQL: ``record()`` and ``admit()``
throughput, wall latency and CPU per call at 1, 32, 200 and 1000 concurrent callers, and the
burst of issue 20 (1000 admits of one key with all four limits, all at once).

    .venv/bin/python -m bench.store [--ops 2000] [--rounds 3] [--base DIR] [--sqlite-only]

``busy`` is one key's admits with a full minute behind them (see below).

``--base DIR`` runs the same SQLite cells on another tree too (``git -C . archive HEAD | tar -x
-C DIR``: the code before a change), each cell of each tree in a fresh process with a fresh
file, the trees taking turns cell by cell so that a neighbour's load hits both alike; every
figure is the median over ``--rounds``. CPU is the process's (event loop and store thread).

PostgreSQL is Debian's, started by tests/postgres.py in a temp dir with ``fsync`` on (a real
commit costs a WAL flush); SQLite is the WAL file with ``synchronous=NORMAL`` the router uses.
Each caller is a trio task, as each request is; both stores run in worker threads.

SQLite before (one ``BEGIN IMMEDIATE`` and one thread trip per call) and after group admission
and group commit (the calls waiting share the next transaction, up to 64), 2026-12-01, 2 cores
shared with the lead's CI (load average 0.8-1.0 during this run), 2000 calls per cell (the
burst: 1000), median of 3 rounds:

    cell          callers   calls/s before/after   p50 ms before/after   p99 ms b/a    CPU us b/a
    record              1    1,795 /  2,031          0.40 /  0.35         1.3 /  1.2     445 / 393
    record             32    1,717 /  5,390          14.4 /   5.6        40.4 / 32.1     465 / 172
    record            200    2,139 /  6,749          92.1 /  27.5         113 /   38     387 / 148
    record           1000    1,780 /  6,128           497 /   131         551 /  154     467 / 163
    admit               1    2,367 /  2,074          0.35 /  0.43         0.8 /  0.7     393 / 446
    admit              32    2,161 /  4,884          13.7 /   6.4        38.5 / 11.3     430 / 204
    admit             200    2,416 /  5,258          81.2 /  32.5         115 /   64     385 / 190
    admit            1000    2,534 /  4,856           320 /   144         373 /  233     367 / 205
    burst, one key   1000      817 /  1,426           520 /   253       1,122 /  660   1,112 / 701

A lone call costs what it did (it runs at once, in a transaction of its own, with no cancel
scope; the 1-caller rows differ within this machine's noise, either way). Under concurrency a
call costs 1.6-2.9x less CPU and its p50 is 2-3.8x shorter, because one thread trip, one
``BEGIN IMMEDIATE`` and one commit serve every call that queued meanwhile. What remains per call
is its own SQL: the burst's admits (rpm, tpm, concurrent and budget on one key) read the whole
minute's window each, which grows with the burst.

A busy key (``busy``): the admits of one key whose last minute already holds 15,000 requests
and their tokens (250 requests/s, the router's non-streamed rate at 32 connections here), at 32
callers. Before, a row per request in ``rate_events``: each admit counted the window's rows for
rpm and summed them again for tpm. After, ``rate_buckets`` (store/windows.py): at most 61 rows a
key. 2026-12-01, two runs of each, helpers' benches running alongside (load average 3-4):

    cell          callers   calls/s before/after   p50 ms before/after   CPU us before/after
    busy               32      183 / 4,383            164 /  4.6          5,275 /   147
                               172 / 9,061            216 /  3.3          5,792 /    85

That was the cost the full run of 2026-12-01 found in the production config: its one client key
carried every request of the run, so every admit read up to a minute of them.

PostgreSQL, same run (HEAD; ``record()`` group-committed, ``admit()`` one transaction each):

    callers            1               32               200               1000
    pg      record    379/s 2.6 ms   2441/s 12.5 ms   6352/s 23 ms    10358/s 83 ms
    pg      admit     687/s 1.4 ms    896/s 31.5 ms    858/s 209 ms     719/s 1224 ms

Why PostgreSQL needs no Redis beside it. ``record()`` is group-committed: one caller pays a WAL
flush per request, but at 32 and more callers one transaction carries tens of requests, so its
throughput grows with the load. ``admit()`` is one short transaction under the key's advisory
lock with ``synchronous_commit`` off (a window's rows need no flush): callers of one key queue on
its lock, which is the serialisation the limit needs and Redis would impose the same way, one
hop further and with one more service to run and secure. Redis would not remove PostgreSQL
either: usage must be durable there.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from trio_router.store import ClientKey, Store

CONCURRENCY = (1, 32, 200, 1000)
BURST = 1000  # issue 20: 1000 streams opened at once, each admitted by the store
# A busy key's last minute: 250 requests/s (the router's non-streamed rate at 32 connections
# here) for 60 s, each with its tokens recorded. Every admit of the key reads that window.
BUSY_WINDOW = 15_000
HEAD = Path(__file__).resolve().parents[1]


def client_key(key_id: str, **limits: Any) -> ClientKey:
    from trio_router.store import ClientKey, Limits

    return ClientKey(
        id=key_id,
        name=key_id,
        user="bench",
        prefix="tr-xxxxxxxx",
        secret_hash=key_id * 4,
        limits=Limits(**limits),
        routes=None,
        models=None,
        expires_at=None,
        disabled=False,
        created_at=time.time(),
    )


async def measure(
    call: Callable[[int], Awaitable[object]], callers: int, ops: int
) -> dict[str, float]:
    """``ops`` calls from ``callers`` tasks: calls per second, p50 and p99 ms, CPU us per call."""
    latencies: list[float] = []
    counter = iter(range(ops))

    async def caller() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    cpu, began = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rate": ops / took,
        "p50": cuts[49] * 1000,
        "p99": cuts[98] * 1000,
        "cpu": cpu / ops * 1e6,
    }


async def hot_path(store: Store, op: str, callers: int, ops: int) -> dict[str, float]:
    """One cell: ``op`` (record, admit, burst, busy) at ``callers``, with keys of its own."""
    from trio_router.store import RequestRecord

    if op == "burst":
        one = client_key(
            f"burst-{callers}", rpm=10**6, tpm=10**9, concurrent=10**4, budget_tokens=10**12
        )
        await store.create_key(one)
        return await measure(lambda i: store.admit(one, f"lease-{i}", "w", 30.0), BURST, BURST)
    if op == "busy":
        busy = client_key(f"busy-{callers}", rpm=10**6, tpm=10**9)
        await store.create_key(busy)

        async def request(i: int) -> None:
            await store.admit(busy, None, "w", 30.0)
            await store.record(RequestRecord("s", "p", 100, 20, key_id=busy.id, rated=True))

        await measure(request, 200, BUSY_WINDOW)  # the window fills; not measured
        return await measure(lambda i: store.admit(busy, None, "w", 30.0), callers, ops)
    keys = [client_key(f"{op}-{callers}-{i}", rpm=10**5, tpm=10**9) for i in range(16)]
    for made in keys:
        await store.create_key(made)

    async def record(i: int) -> None:
        k = keys[i % len(keys)]
        await store.record(
            RequestRecord(f"session-{i % 50}", "p", 100, 20, key_id=k.id, rated=True, model="m")
        )

    async def admit(i: int) -> None:
        await store.admit(keys[i % len(keys)], None, "w", 30.0)

    return await measure(record if op == "record" else admit, callers, ops)


def child(tree: str, op: str, callers: int, ops: int) -> None:
    """One SQLite cell with ``tree``'s trio_router, in a fresh file; prints its figures."""
    sys.path.insert(0, tree)
    from trio_router.store.sqlite import SQLiteStore

    assert Path(sys.modules["trio_router"].__file__ or "").is_relative_to(tree)
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "usage.sqlite3")

        async def run() -> dict[str, float]:
            figures = await hot_path(store, op, callers, ops)
            await store.aclose()
            return figures

        print(json.dumps(trio.run(run)))


def sqlite_cells(trees: dict[str, Path], ops: int, rounds: int) -> None:
    cells = [(op, n) for op in ("record", "admit") for n in CONCURRENCY]
    cells += [("burst", BURST), ("busy", 32)]
    names = list(trees)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    print(
        f"{'sqlite':<7} {'callers':>7}  "
        + "  ".join(f"{n:>8} calls/s  p50 ms   p99 ms  CPU us" for n in names),
        flush=True,
    )
    for op, callers in cells:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                command = [sys.executable, "-P", __file__, "--child", str(trees[name])]
                command += [op, str(callers), "--ops", str(max(ops, callers))]
                out = subprocess.run(
                    command, check=True, capture_output=True, text=True, cwd=trees[name]
                ).stdout
                runs[name].append(json.loads(out))
        medians = {
            name: {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
            for name in names
        }
        line = f"{op:<7} {callers:>7}  " + "  ".join(
            f"{name:>8} {m['rate']:>7.0f}  {m['p50']:>7.2f}  {m['p99']:>7.1f}  {m['cpu']:>6.0f}"
            for name, m in medians.items()
        )
        if len(names) == 2:
            before, after = medians[names[1]], medians[names[0]]
            line += (
                f"   x{after['rate'] / before['rate']:.2f} calls/s,"
                f" p50 /{before['p50'] / after['p50']:.2f},"
                f" p99 /{before['p99'] / after['p99']:.2f},"
                f" CPU /{before['cpu'] / after['cpu']:.2f}"
            )
        print(line, flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)


async def postgres_cells(store: Store, ops: int) -> None:
    for callers in CONCURRENCY:
        for op in ("record", "admit"):
            m = await hot_path(store, op, callers, max(ops, callers))
            print(
                f"postgresql {op:<7} {callers:>4} callers  {m['rate']:>8.0f}/s"
                f"  p50 {m['p50']:>7.2f} ms  p99 {m['p99']:>7.2f} ms  CPU {m['cpu']:>6.0f} us",
                flush=True,
            )
    await store.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="SQLite runs per cell (median)")
    parser.add_argument("--base", type=Path, help="a tree to compare SQLite against")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--child", nargs=3, metavar=("TREE", "OP", "CALLERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        tree, op, callers = args.child
        child(tree, op, int(callers), args.ops)
        return 0
    trees = {"after": HEAD} | ({"before": args.base.resolve()} if args.base else {})
    sqlite_cells(trees, args.ops, args.rounds)
    if not args.sqlite_only:
        sys.path.insert(0, str(HEAD))
        from tests.postgres import running_postgres
        from trio_router.store.postgres import PostgresStore

        with running_postgres(fsync=True) as server:
            trio.run(postgres_cells, PostgresStore(server.create_database()), args.ops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
