"""Log files in ``logs/`` with size-based rotation, the config's levels, and safe lines.

Levels are the seed's ``fatal, error, warn, info, debug, trace``; ``trace`` sits below DEBUG.
Every record is formatted by :class:`SafeFormatter`, so no call site can forget that a message
may quote a secret (a header, a URL) or text a client controls (a path, a session id, a model).
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def setup(
    *,
    enabled: bool,
    level: str,
    directory: Path,
    secrets: Iterable[str],
    max_bytes: int = MAX_BYTES,
    backup_count: int = BACKUP_COUNT,
) -> Path | None:
    """Configure the ``trio_router`` logger; returns the log file path, or None when off.

    Warnings and worse (those the level lets through) also go to stderr, one line each, so
    that a failing upstream or a problem at start-up shows where the router was started.
    """
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
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
    formatter = SafeFormatter(secrets)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG_FILE
    # Several worker processes append to one file; each rotates when it sees the size limit.
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
    )
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return path
