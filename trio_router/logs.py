"""Log files in ``logs/`` with size-based rotation, the config's levels, and safe lines.

Levels are the seed's ``fatal, error, warn, info, debug, trace``; ``trace`` sits below DEBUG.
Every record is formatted by :class:`SafeFormatter` (or :class:`JsonFormatter` with
``LOG_FORMAT: "json"``), so no call site can forget that a message may quote a secret (a
header, a URL) or text a client controls (a path, a session id, a model).

With several workers the file has one writer: each worker formats its records and sends the
lines through a pipe (:func:`use_writer`) to the master's :class:`LogWriter`, which alone
appends and rotates. Two processes rotating one file each lose the lines written between the
other's rename and reopen.
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

import msgspec

from .masking import Redactor

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
LOG_FILE = "trio-router.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5

logger = logging.getLogger("trio_router")

# C0, DEL and C1 controls, and the two Unicode line separators: whatever a log reader (or
# str.splitlines) could take for the end of a line, or a terminal for a command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    """``\\n``, ``\\r``, ``\\t``, else ``\\xNN`` (or ``\\uNNNN``) for a control character."""
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class SafeFormatter(logging.Formatter):
    """Every configured secret redacted, and no line anyone but the router can start.

    A message is escaped onto one line. A traceback stays multi-line, its other controls
    escaped and each of its lines indented: an exception's text may come from a client too,
    and an indented line cannot pass for a record of its own.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s [pid %(process)d] %(message)s", "%Y-%m-%dT%H:%M:%S%z"
        )
        self.redact = Redactor(secrets)

    def one_line(self, text: str) -> str:
        """``text`` redacted and escaped onto one line."""
        return _CONTROL.sub(_escaped, self.redact(text))

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = self.one_line(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return self._block(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._block(stack_info)

    def _block(self, text: str) -> str:
        text = _CONTROL_BUT_NEWLINE.sub(_escaped, self.redact(text))
        return "  " + text.replace("\n", "\n  ")


class JsonFormatter(SafeFormatter):
    """One JSON object per line for log shippers: ``time``, ``level``, ``pid``, ``message``,
    the record's named arguments (``logger.info("%(status)d", {"status": 200})``) as fields,
    and ``exception`` for a traceback; redacted and escaped as the text lines are."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        line: dict[str, Any] = {
            # RFC 3339 with milliseconds, as shippers (Loki, Elasticsearch, Vector) parse it.
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}"
            + time.strftime("%z", time.localtime(record.created)),
            "level": record.levelname,
            "pid": record.process,
            "message": self.one_line(record.message),
        }
        if isinstance(record.args, Mapping):
            for name, value in record.args.items():
                if name not in line:
                    line[name] = (
                        value
                        if isinstance(value, (int, float, bool)) or value is None
                        else self.one_line(str(value))
                    )
        if record.exc_info:
            line["exception"] = _CONTROL_BUT_NEWLINE.sub(
                _escaped, self.redact(self.formatException_raw(record.exc_info))
            )
        return msgspec.json.encode(line).decode()

    def formatException_raw(self, ei: Any) -> str:
        """The traceback as logging writes it, not indented: JSON escapes its newlines."""
        return logging.Formatter.formatException(self, ei)


class ConsoleFormatter(SafeFormatter):
    """One line per record, for the terminal: a traceback is summed up by its exception.

    The full traceback stays in the log file; with no log file, the terminal gets it.
    """

    def __init__(self, secrets: Iterable[str], *, tracebacks: bool) -> None:
        super().__init__(secrets)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        if self.tracebacks or error is None:
            return super().format(record)
        # A copy: the file handler formats the same record, traceback and all.
        line = copy.copy(record)
        line.exc_info = line.exc_text = line.stack_info = None
        summary = self.one_line(f"{type(error).__name__}: {error}")
        return f"{super().format(line)} [{summary}; traceback in the log file]"


LogFormat = Literal["text", "json"]
# The process's own: the format set at start (a reload keeps it), and the pipe to the master's
# writer when this is one of several workers.
_format: LogFormat = "text"
_writer: _PipeHandler | None = None


class _PipeHandler(logging.Handler):
    """Sends formatted lines to the master's :class:`LogWriter`, from a thread of its own.

    ``emit`` only queues the line: the event loop never waits for the pipe. The thread sends
    whatever has queued up as one message, so a busy worker pays one write per batch.
    """

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._send, name="log-writer", daemon=True)
        self.thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(self.format(record))
        except Exception:
            self.handleError(record)

    def _send(self) -> None:
        done = False
        while not done:
            batch = [self.lines.get()]
            while not self.lines.empty():
                batch.append(self.lines.get())
            done = None in batch
            lines = [line for line in batch if line is not None]
            if lines:
                try:
                    self.connection.send(lines)
                except OSError:  # the master is gone: nothing is left to write to
                    return

    def flush(self) -> None:
        """Everything emitted so far sent; the pipe closed. Called once, at the worker's end."""
        if self.thread.is_alive():
            self.lines.put(None)
            self.thread.join()
        self.connection.close()


def use_writer(connection: Connection) -> None:
    """Make this worker send its log file's lines through ``connection`` from now on."""
    global _writer
    _writer = _PipeHandler(connection)


def close_writer() -> None:
    """Send every line still queued to the master: a worker calls it as it ends."""
    if _writer is not None:
        _writer.flush()


class LogWriter:
    """The master's side: the one process that appends to the log file and rotates it.

    A thread reads every worker's pipe and writes their lines in the order they arrive; a
    pipe that ends (its worker exited) is dropped. :meth:`add` gives a new worker its pipe.
    """

    def __init__(
        self, path: Path, max_bytes: int = MAX_BYTES, backup_count: int = BACKUP_COUNT
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
        self.file.setFormatter(logging.Formatter("%(message)s"))
        self._pipes: list[Connection] = []
        self._lock = threading.Lock()
        # Written to when a pipe is added, so that the thread waits on the new one too.
        self._wake_read, self._wake = _pipe()
        self.thread = threading.Thread(target=self._run, name="log-file", daemon=True)
        self.thread.start()

    def add(self) -> Connection:
        """A new pipe; the worker gets the returned end, to pass to :func:`use_writer`."""
        ours, theirs = _pipe()
        with self._lock:
            self._pipes.append(ours)
        self._wake.send(None)
        return theirs

    def _run(self) -> None:
        while True:
            with self._lock:
                pipes = [self._wake_read, *self._pipes]
            for ready in wait(pipes):
                assert isinstance(ready, Connection)
                try:
                    lines = ready.recv()
                except (EOFError, OSError):
                    with self._lock:
                        self._pipes.remove(ready)
                    ready.close()
                    continue
                if ready is self._wake_read:
                    if lines == "stop":
                        return
                    continue
                for line in lines:
                    self.file.emit(logging.makeLogRecord({"msg": line}))

    def close(self) -> None:
        """Write what every pipe still holds, then stop: call it once every worker ended."""
        until = time.monotonic() + 10
        while time.monotonic() < until:  # the workers are gone: their pipes end once drained
            with self._lock:
                if not self._pipes:
                    break
            time.sleep(0.01)
        self._wake.send("stop")
        self.thread.join()
        self.file.close()


def _pipe() -> tuple[Connection, Connection]:
    from multiprocessing import Pipe

    read, write = Pipe(duplex=False)
    return read, write


def setup(
    *,
    enabled: bool,
    level: str,
    directory: Path,
    secrets: Iterable[str],
    max_bytes: int = MAX_BYTES,
    backup_count: int = BACKUP_COUNT,
    log_format: LogFormat | None = None,
) -> Path | None:
    """Configure the ``trio_router`` logger; returns the log file path, or None when off.

    Warnings and worse (those the level lets through) also go to stderr, one line each, so
    that a failing upstream or a problem at start-up shows where the router was started.
    ``log_format`` is the file's (None: the one set before; ``LOG_FORMAT`` is read at start).
    """
    global _format
    if log_format is not None:
        _format = log_format
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler is not _writer:  # the pipe outlives a reload's new setup
            handler.close()
    for old in list(logger.filters):
        logger.removeFilter(old)
    logger.propagate = False
    logger.setLevel(LEVELS[level])
    secrets = list(secrets)
    stderr = logging.StreamHandler()
    stderr.setLevel(max(LEVELS[level], logging.WARNING))
    stderr.setFormatter(ConsoleFormatter(secrets, tracebacks=not enabled))
    logger.addHandler(stderr)
    if not enabled:
        return None
    formatter = JsonFormatter(secrets) if _format == "json" else SafeFormatter(secrets)
    path = directory / LOG_FILE
    writes: logging.Handler
    if _writer is not None:
        writes = _writer  # the master writes the file (workers.py)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        writes = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
    writes.setFormatter(formatter)
    logger.addHandler(writes)
    return path
