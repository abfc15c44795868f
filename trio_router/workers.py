"""Serving: the listening sockets, one worker's serve loop with its graceful drain, and the
master that runs several workers.

Each worker has a listening socket of its own, bound with ``SO_REUSEPORT``: Linux then hashes
each new connection to one of them (socket(7), SO_REUSEPORT), so the workers share the load.
One socket that every worker accepts from is not balanced: the kernel wakes whichever worker
waits, and the busiest one, back from its event loop soonest, takes most connections.

``SO_REUSEPORT`` also lets any process of the same user join the group, e.g. a stale instance
started on the port by mistake, which would then take its share of the traffic. So the port is
first probed with a bind *without* it, which fails while anyone listens there, and once our
sockets listen, ``/proc/net/tcp`` (Linux) is read for a listener on the same address that is
not ours: of two instances started at the same moment, the later one sees the other.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import trio

from . import accept, logs, metrics
from .drain import Drain, Draining

# A taken port: EADDRINUSE, or WSAEADDRINUSE (10048) from Windows sockets.
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
# After the last request ends (or was cut), how long idle connections get to close.
CLOSE_SECONDS = 5.0
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column (include/net/tcp_states.h)


class BindError(Exception):
    """The router cannot listen where it was asked to; the message says what to do."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(text: str) -> int:
    """``--workers``: a number, or ``auto`` for :func:`available_cores`."""
    return available_cores() if text == "auto" else int(text)


def _taken(host: str, port: int) -> BindError:
    return BindError(
        f"port {port} on {host} is already in use (another trio-router?): "
        "stop that program, or choose another port with --port or PORT"
    )


def _socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as error:  # socket.gaierror: a host name that does not resolve
        raise BindError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # As hypercorn's own sockets (hypercorn.config.Config._create_sockets).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno in _IN_USE:
            raise _taken(host, port) from None
        raise BindError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def listen(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port``, one per worker, or a BindError.

    With one worker (or no ``SO_REUSEPORT``) it is one socket without it: then no other
    process can bind the port at all. They listen at once: a connection that arrives while
    the workers start waits in the backlog instead of being refused.
    """
    if count == 1 or not REUSE_PORT:
        sock = _socket(host, port, reuse_port=False)
        sock.listen(backlog)
        return [sock]
    _socket(host, port, reuse_port=False).close()  # the probe: fails if anyone listens
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_socket(host, port, reuse_port=True))
            sockets[-1].listen(backlog)
        if _foreign_listener(sockets):
            raise _taken(host, port)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _foreign_listener(sockets: list[socket.socket]) -> bool:
    """Whether a socket that is not one of ``sockets`` listens on their address (Linux)."""
    ours = {str(os.fstat(sock.fileno()).st_ino) for sock in sockets}
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode (proc(5))
        rows.extend(fields for line in lines if len(fields := line.split()) > 9)
    addresses = {row[1] for row in rows if row[9] in ours}
    return any(row[1] in addresses and row[3] == _LISTEN and row[9] not in ours for row in rows)


def serve(
    hc: Any,
    sock: socket.socket,
    drain_timeout: float,
    stop: EventType | None = None,
    log_pipe: Connection | None = None,
) -> None:
    """One worker, to its end: the app served on ``sock`` until SIGTERM (or Ctrl-C, or
    ``stop`` set by the master), then drained. It is the spawned workers' target too."""
    if log_pipe is not None:
        logs.use_writer(log_pipe)
    try:
        from hypercorn.utils import wrap_app

        from .app import create_app

        drain = Drain()
        # hypercorn types apps with its own TypedDict events; ours takes plain mappings.
        wrapped = Draining(create_app(), drain)
        app = wrap_app(wrapped, hc.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
        trio.run(partial(_serve, app, hc, sock, drain, drain_timeout, stop))
    finally:
        logs.close_writer()


async def _serve(
    app: Any,
    hc: Any,
    sock: socket.socket,
    drain: Drain,
    drain_timeout: float,
    stop: EventType | None,
) -> None:
    """hypercorn's ``worker_serve`` (hypercorn/trio/run.py), with the drain between SIGTERM
    and the end: the listener closes at once, ``context.terminated`` (which closes idle
    keep-alive connections) only when the last request ended, so that a request arriving on
    one meanwhile gets a 503 with ``connection: close`` instead of a reset."""
    from hypercorn.trio.lifespan import Lifespan
    from hypercorn.trio.statsd import StatsdLogger
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState, LifespanState

    hc.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, hc, lifespan_state)
    context = WorkerContext(None)
    stopping = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as watchers:
            watchers.start_soon(_watch_signals, signals, stopping, drain)
            if stop is not None:
                watchers.start_soon(_watch_master, stop, stopping)
            async with trio.open_nursery() as lifespan_nursery:
                await lifespan_nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                async with trio.open_nursery() as server_nursery:
                    state = ConnectionState(lifespan_state.copy())
                    handler = partial(TCPServer, app, hc, context, state)
                    async with trio.open_nursery() as accepting:
                        # Not trio.serve_listeners: it accepts one connection per loop pass.
                        accepting.start_soon(accept.serve, handler, sock, server_nursery)
                        await stopping.wait()
                        drain.begin(drain_timeout)
                        accepting.cancel_scope.cancel()  # the listener closes: no new connection
                    await drain.idle.wait()
                    await context.terminated.set()
                    server_nursery.cancel_scope.deadline = trio.current_time() + CLOSE_SECONDS
                await lifespan.wait_for_shutdown()
                lifespan_nursery.cancel_scope.cancel()
            watchers.cancel_scope.cancel()


async def _watch_signals(signals: Any, stopping: trio.Event, drain: Drain) -> None:
    """The first SIGTERM or SIGINT drains; one more cuts what is still open, now."""
    async for _ in signals:
        if drain.draining:
            drain.begin(0)
        stopping.set()


async def _watch_master(stop: EventType, stopping: trio.Event) -> None:
    while not stop.is_set():
        await trio.sleep(0.1)  # as hypercorn's check_multiprocess_shutdown_event
    stopping.set()


def serve_workers(
    hc: Any, sockets: list[socket.socket], drain_timeout: float, log_file: Path
) -> int:
    """The master: ``len(sockets)`` workers, each on its own socket, until SIGTERM or Ctrl-C.

    - SIGTERM or SIGINT: every worker drains (``stop``); a second one is forwarded as SIGTERM,
      which cuts their open streams now. Ctrl-C reaches the workers from the terminal too.
    - SIGHUP is forwarded: each worker applies the config file live (reload.py). hypercorn's
      own master would restart them instead, cutting every open stream.
    - A worker that fails stops them all; one that exits cleanly is replaced.
    - The log file has one writer, here (logs.LogWriter); the workers send their lines.
    - Prometheus' multiprocess directory is made fresh here, before any worker starts, and a
      worker that exits is marked dead in it (metrics.py).

    Workers are spawned, so they inherit what the master ignores until then: SIGINT and
    SIGHUP, so that an early one does not end a worker before it listens for them.
    """
    from multiprocessing import get_context
    from multiprocessing.connection import wait
    from multiprocessing.process import BaseProcess

    context = get_context("spawn")
    stop = context.Event()
    metrics_dir, made_metrics_dir = metrics.prepare_multiprocess_dir()
    writer = logs.LogWriter(log_file)
    workers: list[BaseProcess] = []
    spare = list(sockets)  # bound and listening, not handed to a worker yet
    host, port = sockets[0].getsockname()[:2]
    inherited = [getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)]
    signalled = 0

    def shutdown(*_: Any) -> None:
        nonlocal signalled
        signalled += 1
        if signalled > 1:
            forward(signal.SIGTERM)
        stop.set()

    def forward(number: int, *_: Any) -> None:
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, number)

    def spawn() -> None:
        if spare:
            sock = spare.pop()
        else:  # a replacement: it joins the group of the others
            sock = _socket(host, port, reuse_port=True)
            sock.listen(hc.backlog)
        pipe = writer.add()
        worker = context.Process(
            target=serve,
            kwargs={
                "hc": hc,
                "sock": sock,
                "drain_timeout": drain_timeout,
                "stop": stop,
                "log_pipe": pipe,
            },
        )
        worker.start()
        # The worker has its own copies now. Ours must go: a socket still open here would
        # stay in the SO_REUSEPORT group after its worker closed it, taking connections that
        # nobody accepts; a pipe end still open here would never tell the writer it ended.
        sock.close()
        pipe.close()
        workers.append(worker)

    def reaped(worker: BaseProcess) -> int:
        """A worker that exited: its exit code (0 for a clean one)."""
        workers.remove(worker)
        if worker.pid is not None:
            metrics.mark_process_dead(worker.pid)
        return worker.exitcode or 0

    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), shutdown)
    code = 0
    try:
        while not stop.is_set():
            for number in inherited:
                signal.signal(number, signal.SIG_IGN)
            while len(workers) < len(sockets):
                spawn()
            signal.signal(signal.SIGINT, shutdown)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, forward)
            wait([worker.sentinel for worker in workers])
            for worker in [worker for worker in workers if worker.exitcode is not None]:
                exit_code = reaped(worker)
                code = code or exit_code
            if code:
                stop.set()  # a worker failed: stop them all, as hypercorn does
        for worker in list(workers):
            worker.join()  # each drains its requests, up to DRAIN_TIMEOUT_MS
            exit_code = reaped(worker)
            code = code or exit_code
    finally:
        for sock in spare:
            sock.close()
        writer.close()
        if made_metrics_dir:
            metrics.remove_multiprocess_dir(metrics_dir)
    return code
