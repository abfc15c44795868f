"""Reading (secrets masked) and rewriting the config file, with timestamped backups.

A write never leaves a torn file: the new text goes to a temporary file in the same directory,
is flushed to disk, then renamed over the config (atomic on POSIX). Writers in every worker
process take an exclusive file lock first (``filelock``: ``flock`` on POSIX, ``msvcrt`` locking
on Windows), so two updates cannot interleave their backups; under that lock, temporary files
that a killed writer left behind are removed and old backups pruned.

A client that saves what GET showed sends the masks back. A mask is restored to the real secret
only at the same place of the same provider (same ``name`` and ``api_base_url``), or of the same
``transformers`` entry (same ``path``): otherwise a request could move a provider's key to a
server of its choosing. Any other mask, or one that matches no current secret, is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from filelock import FileLock

from . import config as config_module
from .masking import (
    SECRET_FIELDS,
    SECRET_LISTS,
    URL_FIELDS,
    is_secret_name,
    mask,
    mask_url,
    url_secrets,
)

BACKUP_DIR = ".backups"
# What masking.mask makes of a key: "****", or its first and last four characters around "****".
_MASK = re.compile(r"\*{4}|.{4}\*{4}.{4}", re.S)
# Fields that decide which code the router runs: set in the file, never through the API.
FILE_ONLY_FIELDS = ("TRANSFORMERS_DIR",)
# The keys a POST may remove only when it says so (they are what protects the router).
AUTH_FIELDS = {"APIKEY": "/v1/* (and /api/* without ADMIN_KEY)", "ADMIN_KEY": "/api/*"}
SOURCE = "request body"


def looks_masked(value: str) -> bool:
    return bool(_MASK.fullmatch(value))


def _shown_header(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not is_secret_name(name):
        return value
    words = value.split()
    if words and words[-1].startswith("$"):
        return value  # "Bearer $TOKEN": a reference, not a secret
    return mask(value)


def masked(raw: Any) -> Any:
    """The config as GET shows it: every secret masked, ``$VAR`` references kept."""
    if isinstance(raw, dict):
        return {k: _masked_field(k, v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [masked(v) for v in raw]
    return raw


def _masked_field(key: str, value: Any) -> Any:
    if key in SECRET_FIELDS and isinstance(value, str):
        return mask(value)
    if key in SECRET_LISTS and isinstance(value, list):
        return [mask(v) if isinstance(v, str) else v for v in value]
    if key in URL_FIELDS and isinstance(value, str):
        return mask_url(value)
    if key == "headers" and isinstance(value, dict):
        return {k: _shown_header(k, v) for k, v in value.items()}
    return masked(value)


def _place(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Restorer:
    """Undoes :func:`masked` from the current config, and lists each mask it must refuse."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def secret(self, value: str, previous: Any, where: str, why: str) -> str:
        if not looks_masked(value):
            return value
        if isinstance(previous, str) and previous and value == mask(previous):
            return previous
        self.problems.append(
            f"{where}: {value!r} is a masked secret that cannot be restored ({why}): "
            "send the real value"
        )
        return value

    def url(self, value: str, previous: Any, where: str, why: str) -> str:
        if isinstance(previous, str) and value == mask_url(previous):
            return previous
        for secret in url_secrets(value):
            self.secret(secret, None, where, why)
        return value

    def headers(self, value: dict[str, Any], previous: Any, where: str, why: str) -> Any:
        before = (
            {k.lower(): v for k, v in previous.items() if isinstance(k, str)}
            if isinstance(previous, dict)
            else {}
        )
        return {
            k: self.secret(v, before.get(k.lower()), _place(where, k), why)
            if isinstance(v, str) and is_secret_name(k)
            else v
            for k, v in value.items()
        }

    def secrets(self, value: list[Any], previous: Any, where: str, why: str) -> list[Any]:
        """A list of secrets (a key pool), each mask restored on its own: from the same place
        when that key has this mask, else from the one current key that has it, so that a pool
        may be reordered or shortened by a client that saw only masks."""
        before: list[Any] = previous if isinstance(previous, list) else []
        restored: list[Any] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not looks_masked(item):
                restored.append(item)
                continue
            same = before[i] if i < len(before) else None
            if not (isinstance(same, str) and mask(same) == item):
                matches = {k for k in before if isinstance(k, str) and k and mask(k) == item}
                same = matches.pop() if len(matches) == 1 else None
            restored.append(self.secret(item, same, f"{where}[{i}]", why))
        return restored

    def field(self, key: str, value: Any, previous: Any, where: str, why: str) -> Any:
        if key in SECRET_FIELDS and isinstance(value, str):
            return self.secret(value, previous, where, why)
        if key in SECRET_LISTS and isinstance(value, list):
            return self.secrets(value, previous, where, why)
        if key in URL_FIELDS and isinstance(value, str):
            return self.url(value, previous, where, why)
        if key == "headers" and isinstance(value, dict):
            return self.headers(value, previous, where, why)
        return self.tree(value, previous, where, why)

    def tree(self, new: Any, old: Any, where: str, why: str) -> Any:
        """``new`` with each mask restored from the same place in ``old``."""
        if isinstance(new, dict):
            before = old if isinstance(old, dict) else {}
            return {
                k: self.field(k, v, before.get(k), _place(where, k), why) for k, v in new.items()
            }
        if isinstance(new, list):
            before_list = old if isinstance(old, list) else []
            return [
                self.tree(v, before_list[i] if i < len(before_list) else None, f"{where}[{i}]", why)
                for i, v in enumerate(new)
            ]
        return new

    def provider(self, new: Any, old: dict[str, Any] | None, where: str) -> Any:
        """Secrets come back only when the provider keeps its name and ``api_base_url``."""
        if not isinstance(new, dict):
            return new
        url, old_url = new.get("api_base_url"), (old or {}).get("api_base_url")
        same_url = isinstance(old_url, str) and url in (old_url, mask_url(old_url))
        if old is None:
            why = f"there is no provider {new.get('name')!r} in the current config"
        elif not same_url:
            why, old = "the provider's api_base_url changed", None
        else:
            why = "it matches no current secret of this provider"
        return self.tree(new, old, where, why)


def _by(items: Any, key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {
        item[key]: item
        for item in items
        if isinstance(item, dict) and isinstance(item.get(key), str)
    }


def _match(table: dict[str, dict[str, Any]], item: Any, key: str) -> dict[str, Any] | None:
    found = item.get(key) if isinstance(item, dict) else None
    return table.get(found) if isinstance(found, str) else None


def restore_masked(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the masks GET showed replaced by the real secrets from ``old``.

    Raises :class:`config.ConfigError` listing every mask that cannot be restored.
    """
    restorer = _Restorer()
    result: dict[str, Any] = {}
    for key, value in new.items():
        if key == "Providers" and isinstance(value, list):
            # Matched by name, since the list may be reordered.
            providers = _by(old.get(key), "name")
            result[key] = [
                restorer.provider(p, _match(providers, p, "name"), f"{key}[{i}]")
                for i, p in enumerate(value)
            ]
        elif key == "transformers" and isinstance(value, list):
            entries = _by(old.get(key), "path")
            why = "it matches no current secret of a transformer with this path"
            result[key] = [
                restorer.tree(t, _match(entries, t, "path"), f"{key}[{i}]", why)
                for i, t in enumerate(value)
            ]
        else:
            result[key] = restorer.field(key, value, old.get(key), key, "it matches no current key")
    if restorer.problems:
        raise config_module.ConfigError(SOURCE, restorer.problems)
    return result


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive across processes and threads: a new lock object (and file handle) each time."""
    lock_path = path.parent / BACKUP_DIR / f".{path.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path):
        yield


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
    if os.name == "nt":
        return  # Windows cannot open a directory to fsync it; NTFS journals the rename
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # POSIX makes the rename durable only once its directory is synced
    finally:
        os.close(dir_fd)


def _stale(path: Path) -> list[Path]:
    """Temporary files of writes that were killed before their rename (ours are under the lock)."""
    directory = path.parent / BACKUP_DIR
    found = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    if directory.is_dir():
        found += directory.glob(f".{glob.escape(path.stem)}.*{glob.escape(path.suffix)}.*.tmp")
    return found


def backups(path: Path) -> list[Path]:
    """The backups of ``path``, oldest first (their names sort by time)."""
    directory = path.parent / BACKUP_DIR
    if not directory.is_dir():
        return []
    pattern = re.compile(
        rf"{re.escape(path.stem)}\.(\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{{3}}Z)(?:-(\d+))?"
        + re.escape(path.suffix)
    )
    found: list[tuple[tuple[str, int], Path]] = []
    for entry in directory.iterdir():
        match = pattern.fullmatch(entry.name)
        if match:
            found.append(((match[1], int(match[2] or 0)), entry))
    return [entry for _, entry in sorted(found)]


def _tidy_unlocked(path: Path, keep: int) -> None:
    kept = backups(path)
    for stale in [*_stale(path), *kept[: max(len(kept) - keep, 0)]]:
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def tidy(path: Path, keep: int) -> None:
    """At start: remove what killed writes left behind and the backups beyond ``keep``."""
    if _stale(path) or len(backups(path)) > keep:
        with _locked(path):
            _tidy_unlocked(path, keep)


def _backup_unlocked(path: Path, keep: int) -> Path | None:
    if not path.exists():
        _tidy_unlocked(path, keep)
        return None
    _tidy_unlocked(path, keep - 1)  # and the new one makes `keep`
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


def backup(path: Path, keep: int) -> Path | None:
    """Copy the config to ``.backups/``, keeping the newest ``keep`` copies."""
    with _locked(path):
        return _backup_unlocked(path, keep)


def current(path: Path, live: config_module.LoadedConfig) -> dict[str, Any]:
    """The config as it is now: the file on disk, or (with no file) the one loaded at start."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return live.raw
    except OSError as error:
        raise config_module.ConfigError(str(path), [f"cannot read: {error.strerror}"]) from None
    return config_module.decode_json(data, str(path))


def _removed_auth(
    config: config_module.Config, before: list[dict[str, Any]], env: dict[str, str]
) -> list[str]:
    problems = []
    for field, opens in AUTH_FIELDS.items():
        had = [config_module.interpolate(raw.get(field, ""), env, field, []) for raw in before]
        if any(isinstance(key, str) and key for key in had) and not getattr(config, field):
            problems.append(
                f"{field}: this config removes the key that protects {opens}; "
                "add ?allow_no_auth=true to the request to mean it"
            )
    return problems


def write(
    path: Path,
    body: bytes,
    env: dict[str, str],
    live: config_module.LoadedConfig,
    *,
    started: config_module.LoadedConfig | None = None,
    allow_no_auth: bool = False,
    check: Callable[[config_module.Config], None] = lambda config: None,
) -> tuple[Path | None, dict[str, Any]]:
    """Validate ``body`` as a whole config, back up the current file, then replace it.

    ``live`` is the config serving now; ``started`` (default ``live``) the one this process
    started with, whose ``FILE_ONLY_FIELDS`` a new config must keep.
    Raises :class:`config.ConfigError` (nothing written) when the new config is invalid, keeps
    a mask it cannot restore, or removes a key without ``allow_no_auth``; ``check`` may raise
    it too, for what only the server can check (transformer names).
    """
    new = config_module.decode_json(body, SOURCE)
    with _locked(path):
        try:
            old = current(path, live)
        except config_module.ConfigError:
            old = {}  # a broken file may be replaced, but it has no secret to restore
        problems = [
            f"{field}: is fixed when the server starts; change it in the config file and restart"
            for field in FILE_ONLY_FIELDS
            if new.get(field, "") != (started or live).raw.get(field, "")
        ]
        try:
            new = restore_masked(new, old)
        except config_module.ConfigError as error:
            problems += error.problems
        if problems:
            raise config_module.ConfigError(SOURCE, problems)
        config = config_module.parse(new, SOURCE, env)
        if not allow_no_auth:
            problems = _removed_auth(config, [live.raw, old], env)
            if problems:
                raise config_module.ConfigError(SOURCE, problems)
        check(config)
        backup_path = _backup_unlocked(path, live.config.BACKUPS_KEPT)
        _atomic_write(path, msgspec.json.format(msgspec.json.encode(new), indent=2) + b"\n")
    return backup_path, new
