"""The accept loop: every connection waiting in the backlog, up to :data:`BATCH` per loop pass.

``trio.serve_listeners`` takes one connection per scheduler pass: ``SocketListener.accept``
ends each accept with a checkpoint, so under a burst the 1000th connection waits for 999
passes, and each pass also runs every task made runnable meanwhile (the streams already
going). Here one wake of the listening socket accepts until ``EAGAIN`` (accept(2): a
non-blocking socket with no pending connection fails with ``EAGAIN``/``EWOULDBLOCK``), as
libuv's ``uv__server_io`` (src/unix/stream.c) does, bounded so that a flood cannot hold
the loop.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from .logs import logger

BATCH = 64  # connections accepted per wake, at most; then the loop runs everything else once
# Out of descriptors or kernel memory: retry after a pause, as trio.serve_listeners does
# (trio/_highlevel_serve_listeners.py, ACCEPT_CAPACITY_ERRNOS and SLEEP_TIME).
_CAPACITY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
CAPACITY_SLEEP = 0.1
# A connection that failed before we took it (reset, or refused by a firewall): skip it. The
# list is trio.SocketListener's (trio/_highlevel_socket.py, _ignorable_accept_errno_names),
# after accept(2)'s "Error handling": Linux passes pending network errors on to accept.
_SKIP_NAMES = (
    "EPERM",
    "ECONNABORTED",
    "EPROTO",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ENOSR",
    "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT",
    "ETIMEDOUT",
    "ECONNRESET",
)
_SKIP = {getattr(errno, name) for name in _SKIP_NAMES if hasattr(errno, name)}

Handler = Callable[[trio.SocketStream], Awaitable[object]]


async def _run(handler: Handler, stream: trio.SocketStream) -> None:
    """One connection's task; the stream is closed whatever the handler did (as
    serve_listeners' ``_run_handler``)."""
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def serve(handler: Handler, sock: socket.socket, handler_nursery: trio.Nursery) -> NoReturn:
    """Accept on the listening ``sock`` until cancelled, each connection's ``handler`` started in
    ``handler_nursery``. ``sock`` is ours: it is closed when this ends (cancelled: at once, so
    that from then on the kernel refuses new connections or other workers take them)."""
    sock.setblocking(False)
    try:
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(BATCH):
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _SKIP:
                        continue
                    if exc.errno not in _CAPACITY:
                        raise
                    name = errno.errorcode.get(exc.errno, str(exc.errno))
                    logger.error(
                        "accept returned %s (%s); retrying in %s s",
                        name,
                        os.strerror(exc.errno),
                        CAPACITY_SLEEP,
                    )
                    await trio.sleep(CAPACITY_SLEEP)
                    break
                # SocketStream sets TCP_NODELAY (and TCP_NOTSENT_LOWAT) as trio's listener does.
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                handler_nursery.start_soon(_run, handler, stream)
    finally:
        sock.close()
