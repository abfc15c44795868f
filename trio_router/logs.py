"""Log files in ``logs/`` with size-based rotation, the config's levels, and key redaction.

Levels are the seed's ``fatal, error, warn, info, debug, trace``; ``trace`` sits below DEBUG.
Every record passes a filter that replaces any configured secret (the router key, provider keys)
with ``***``, so no key reaches a file even if a message quotes a header or a URL.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterable
from pathlib import Path

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


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a key that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if masked is not message and masked != message:
            record.msg, record.args = masked, None
        return True


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

    Warnings and worse also go to stderr, so a problem at start-up shows where it was started.
    """
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for old in list(logger.filters):
        logger.removeFilter(old)
    logger.propagate = False
    logger.setLevel(LEVELS[level])
    redact = RedactSecrets(secrets)
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s [pid %(process)d] %(message)s", "%Y-%m-%dT%H:%M:%S%z"
    )
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(formatter)
    stderr.addFilter(redact)
    logger.addHandler(stderr)
    if not enabled:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG_FILE
    # Several worker processes append to one file; each rotates when it sees the size limit.
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
    )
    handler.setFormatter(formatter)
    handler.addFilter(redact)
    logger.addHandler(handler)
    return path
