"""Reading (keys masked) and rewriting the config file, with timestamped backups.

A write never leaves a torn file: the new text goes to a temporary file in the same directory,
is flushed to disk, then renamed over the config (atomic on POSIX). Writers in every worker
process take an exclusive ``flock`` first, so two updates cannot interleave their backups.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from . import config as config_module
from .masking import SECRET_FIELDS, mask

BACKUP_DIR = ".backups"


def masked(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {
            k: mask(v) if k in SECRET_FIELDS and isinstance(v, str) else masked(v)
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [masked(v) for v in raw]
    return raw


def restore_masked(new: Any, old: Any) -> Any:
    """A client that saves what GET returned sends masked keys back: keep the real ones."""
    if isinstance(new, dict) and isinstance(old, dict):
        result = {}
        for key, value in new.items():
            previous = old.get(key)
            if (
                key in SECRET_FIELDS
                and isinstance(value, str)
                and isinstance(previous, str)
                and value != previous
                and value == mask(previous)
            ):
                result[key] = previous
            else:
                result[key] = restore_masked(value, previous)
        return result
    if isinstance(new, list) and isinstance(old, list):
        # Providers are matched by name, since a list may be reordered.
        by_name = {p.get("name"): p for p in old if isinstance(p, dict)}
        return [
            restore_masked(v, by_name.get(v.get("name")) if isinstance(v, dict) else None)
            for v in new
        ]
    return new


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.parent / BACKUP_DIR / f".{path.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _backup_unlocked(path: Path) -> Path | None:
    if not path.exists():
        return None
    now = datetime.datetime.now(datetime.UTC)
    stamp = now.strftime("%Y-%m-%dT%H-%M-%S-") + f"{now.microsecond // 1000:03d}Z"
    directory = path.parent / BACKUP_DIR
    target = directory / f"{path.stem}.{stamp}{path.suffix}"
    n = 1
    while target.exists():
        target = directory / f"{path.stem}.{stamp}-{n}{path.suffix}"
        n += 1
    _atomic_write(target, path.read_bytes())
    return target


def backup(path: Path) -> Path | None:
    with _locked(path):
        return _backup_unlocked(path)


def write(
    path: Path,
    body: bytes,
    env: dict[str, str],
    check: Callable[[config_module.Config], None] = lambda config: None,
) -> tuple[Path | None, dict[str, Any]]:
    """Validate ``body`` as a whole config, back up the current file, then replace it.

    Raises :class:`config.ConfigError` (nothing written) when the new config is invalid;
    ``check`` may raise it too, for what only the server can check (transformer names).
    """
    source = "request body"
    new = config_module.decode_json(body, source)
    with _locked(path):
        old: dict[str, Any] = {}
        if path.exists():
            with contextlib.suppress(config_module.ConfigError):
                old = config_module.decode_json(path.read_bytes(), str(path))
        new = restore_masked(new, old)
        check(config_module.parse(new, source, env))
        backup_path = _backup_unlocked(path)
        _atomic_write(path, msgspec.json.format(msgspec.json.encode(new), indent=2) + b"\n")
    return backup_path, new
