"""What the machinery under every streamed chunk costs, piece by piece, in one trio process.

Each case runs the same operation many times over a socket pair (the peer drained in the same
loop, so buffers never fill) and reports CPU microseconds per operation; the cases are
interleaved round by round so that a noisy neighbour hits them alike. With ``--callgrind`` the
process must run under ``valgrind --tool=callgrind --instr-atstart=no``; each case then also
reports instructions per operation (repeatable; see chunkcost.py), counted with
``callgrind_control`` around that case alone.

Cases:

- ``yield``: one trio scheduler trip (``cancel_shielded_checkpoint``) with 100 other tasks
  parked: what each extra checkpoint on the send path costs.
- ``wait_read``: ``wait_readable`` then ``os.read`` on a socket that already holds data (trio
  re-arms its EPOLLONESHOT registration, parks the task and wakes it on the next poll);
  ``read_first``: ``os.read`` straight away, what a reader does when it knows data is waiting.
- ``send_all``: ``SocketStream.send_all`` of a 120-byte chunk; ``protocol_send``: the same
  inside hypercorn 0.18's ``TCPServer.protocol_send`` pattern (a ``trio.Lock`` and a shielded
  cancel scope around it); ``nowait_lock``: the lock taken with ``acquire_nowait`` when free,
  the change proposed to hypercorn; ``lock_only`` and ``scope_only`` split the pattern's cost.

Run: ``python -m bench.sendpath [--rounds 5 --n 20000]``;
``valgrind --tool=callgrind --instr-atstart=no python -m bench.sendpath --callgrind --n 2000``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

CHUNK = b"x" * 120  # an SSE text delta event, as the router sends it
_TOTALS = re.compile(rb"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


class _Counter:
    """Instructions of this process between ``start`` and ``stop`` (under callgrind)."""

    def __init__(self) -> None:
        self.pid = str(os.getpid())

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, self.pid], check=True, capture_output=True)

    def start(self) -> None:
        self._control("-i", "on")
        self._control("-z")

    def stop(self) -> int:
        before = set(Path.cwd().glob("callgrind.out.*"))
        self._control("-d")
        self._control("-i", "off")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for path in sorted(set(Path.cwd().glob("callgrind.out.*")) - before):
                found = _TOTALS.search(path.read_bytes())
                if found:
                    path.unlink()
                    return int(found[1])
            time.sleep(0.1)
        raise RuntimeError("callgrind wrote no dump")


Case = Callable[[int], Awaitable[None]]


async def _cases(n_parked: int = 100) -> tuple[dict[str, Case], Callable[[], None]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    peer = b.fileno()
    lock = trio.Lock()

    def drain() -> None:
        try:
            while os.read(peer, 1 << 20):
                pass
        except BlockingIOError:
            pass

    async def yield_(n: int) -> None:
        for _ in range(n):
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_read(n: int) -> None:
        fd = b.fileno()
        for _ in range(n):
            a.send(CHUNK)
            await trio.lowlevel.wait_readable(fd)
            os.read(fd, 65536)

    async def read_first(n: int) -> None:
        fd = b.fileno()
        for _ in range(n):
            a.send(CHUNK)
            os.read(fd, 65536)
            await trio.lowlevel.cancel_shielded_checkpoint()  # the read path's one checkpoint

    async def send_all(n: int) -> None:
        for i in range(n):
            await stream.send_all(CHUNK)
            if i & 63 == 0:
                drain()
        drain()

    async def protocol_send(n: int) -> None:
        for i in range(n):
            async with lock:
                with trio.CancelScope() as scope:
                    scope.shield = True
                    await stream.send_all(CHUNK)
            if i & 63 == 0:
                drain()
        drain()

    async def nowait_lock(n: int) -> None:
        for i in range(n):
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:
                await lock.acquire()
            try:
                with trio.CancelScope() as scope:
                    scope.shield = True
                    await stream.send_all(CHUNK)
            finally:
                lock.release()
            if i & 63 == 0:
                drain()
        drain()

    async def lock_only(n: int) -> None:
        for i in range(n):
            async with lock:
                await stream.send_all(CHUNK)
            if i & 63 == 0:
                drain()
        drain()

    async def scope_only(n: int) -> None:
        for i in range(n):
            with trio.CancelScope() as scope:
                scope.shield = True
                await stream.send_all(CHUNK)
            if i & 63 == 0:
                drain()
        drain()

    cases: dict[str, Case] = {
        "yield": yield_,
        "wait_read": wait_read,
        "read_first": read_first,
        "send_all": send_all,
        "lock_only": lock_only,
        "scope_only": scope_only,
        "protocol_send": protocol_send,
        "nowait_lock": nowait_lock,
    }

    def close() -> None:
        a.close()
        b.close()

    return cases, close


async def _run(rounds: int, n: int, counter: _Counter | None) -> dict[str, dict[str, float]]:
    cpu: dict[str, list[float]] = {}
    instructions: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        for _ in range(100):  # parked tasks: a loop that carries streams
            nursery.start_soon(trio.sleep_forever)
        cases, close = await _cases()
        for case in cases.values():
            await case(200)  # warm-up
        for _ in range(rounds):
            for name, case in cases.items():
                t0 = time.process_time_ns()
                await case(n)
                cpu.setdefault(name, []).append((time.process_time_ns() - t0) / n / 1000)
        if counter is not None:
            for name, case in cases.items():
                counter.start()
                await case(n)
                instructions[name] = counter.stop() // n
        close()
        nursery.cancel_scope.cancel()
    out: dict[str, dict[str, float]] = {}
    for name, samples in cpu.items():
        out[name] = {
            "cpu_us_min": round(min(samples), 2),
            "cpu_us_median": round(sorted(samples)[len(samples) // 2], 2),
        }
        if name in instructions:
            out[name]["instructions"] = instructions[name]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sendpath", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000, help="operations per case and round")
    parser.add_argument("--callgrind", action="store_true", help="running under callgrind")
    args = parser.parse_args(argv)
    counter = _Counter() if args.callgrind else None
    results = trio.run(_run, args.rounds, args.n, counter)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
