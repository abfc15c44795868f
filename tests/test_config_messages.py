"""Every config problem gets a message that names its place, as ``trio-router start`` and
``check-config`` print them; and the config store's two rare file paths: the temporary file of
a write that failed is removed, and two backups in the same millisecond get distinct names."""

from __future__ import annotations

import datetime
import json
import os
import types
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from trio_router import config_store
from trio_router.config import ConfigError, load

PROVIDER = {
    "name": "p",
    "api_base_url": "https://example.invalid/v1/chat/completions",
    "api_key": "k",
    "models": ["m"],
}


def problems(tmp_path: Path, config: Any, raw: bytes | None = None) -> list[str]:
    path = tmp_path / "config.json"
    path.write_bytes(raw if raw is not None else json.dumps(config).encode())
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


CASES: dict[str, tuple[Any, str]] = {
    "host": ({"HOST": "not a host!"}, "HOST: must be an IP address or a host name"),
    "admin key": (
        {"APIKEY": "same", "ADMIN_KEY": "same"},
        "ADMIN_KEY: must differ from APIKEY, or clients could manage the router",
    ),
    "backups": ({"BACKUPS_KEPT": 0}, "BACKUPS_KEPT: must be at least 1, got 0"),
    "transformers dir": (
        {"TRANSFORMERS_DIR": "a\u0000b"},
        "TRANSFORMERS_DIR: must not contain a NUL character",
    ),
    "transformer path": (
        {"transformers": [{"path": "x\u0000.py"}]},
        "transformers[0].path: must not contain a NUL character",
    ),
    "duplicate provider": (
        {"Providers": [PROVIDER, PROVIDER], "Router": {"default": "p,m"}},
        "Providers[1].name: duplicate provider name 'p'",
    ),
    "comma in a name": (
        {"Providers": [{**PROVIDER, "name": "a,b"}], "Router": {"default": "a,b,m"}},
        "Providers[0].name: must not contain a comma",
    ),
    "url scheme": (
        {"Providers": [{**PROVIDER, "api_base_url": "ftp://x"}], "Router": {"default": "p,m"}},
        "Providers[0].api_base_url: must be an http(s) URL, got 'ftp://x'",
    ),
    "no models": (
        {"Providers": [{**PROVIDER, "models": []}], "Router": {"default": "p,m"}},
        "Providers[0].models: must list at least one model",
    ),
    "rule shape": (
        {"Providers": [PROVIDER], "Router": {"default": "p,m", "think": "p"}},
        "Router.think: must be \"provider,model\", got 'p'",
    ),
    "unknown provider in a rule": (
        {"Providers": [PROVIDER], "Router": {"default": "q,m"}},
        "Router.default: provider 'q' is not configured",
    ),
    "unknown model in a rule": (
        {"Providers": [PROVIDER], "Router": {"default": "p,x"}},
        "Router.default: model 'x' is not in the models of provider 'p'",
    ),
    "default rule": (
        {"Providers": [PROVIDER], "Router": {}},
        "Router.default: required when providers are configured",
    ),
    "log level": ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: must be one of"),
    "port": ({"PORT": 70000}, "PORT: must be between 1 and 65535, got 70000"),
    "timeout": ({"API_TIMEOUT_MS": 0}, "API_TIMEOUT_MS: must be positive"),
    "threshold": (
        {"Router": {"longContextThreshold": -1}},
        "Router.longContextThreshold: must be positive",
    ),
    "unknown field": ({"Providrs": []}, "Object contains unknown field `Providrs`"),
    "missing field": (
        {"Providers": [{"name": "p", "models": ["m"]}], "Router": {"default": "p,m"}},
        "Providers[0]: Object missing required field `api_base_url`",
    ),
    "wrong type": ({"Providers": {"a": 1}}, "Providers: Expected `array`, got `object`"),
    "unset variable": (
        {"APIKEY": "$TRIO_ROUTER_TEST_UNSET_VARIABLE"},
        "APIKEY: environment variable $TRIO_ROUTER_TEST_UNSET_VARIABLE is not set",
    ),
    "top level": ([1, 2], "the top level must be a JSON object"),
    "nesting": ({"Router": {"a": nested(70)}}, "nested more than 64 levels deep"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_problem_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.delenv("TRIO_ROUTER_TEST_UNSET_VARIABLE", raising=False)
    config, words = CASES[case]
    found = problems(tmp_path, config)
    assert any(words in problem for problem in found), found


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"PORT": 1,}', "invalid JSON at line 1, column"),
        (b'{"APIKEY": "\xff"}', "not valid UTF-8 (byte 12)"),
    ],
)
def test_unreadable_files(tmp_path: Path, raw: bytes, words: str) -> None:
    found = problems(tmp_path, None, raw=raw)
    assert any(words in problem for problem in found), found


def test_a_bad_port_or_host_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT: not a number: 'eighty'"):
        load(path)
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("HOST", "bad host")
    with pytest.raises(ConfigError, match="HOST: must be an IP address or a host name"):
        load(path)


def test_check_config_prints_every_problem_at_once(tmp_path: Path) -> None:
    config = {
        "PORT": 0,
        "LOG_LEVEL": "loud",
        "Providers": [{**PROVIDER, "models": []}],
        "Router": {"default": "p,m", "background": "nowhere"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for words in (
        "PORT: must be between 1 and 65535, got 0",
        "LOG_LEVEL: must be one of",
        "Providers[0].models: must list at least one model",
        'Router.background: must be "provider,model"',
    ):
        assert words in output, output


# --- config_store's file paths ------------------------------------------------------------------


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.mkdir()  # os.replace cannot put a file over a directory
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        config_store._atomic_write(target, b"{}")
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_backups_in_the_same_millisecond_get_distinct_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instant = datetime.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(instant.timestamp(), tz)

    clock = types.SimpleNamespace(datetime=Frozen, UTC=datetime.UTC)
    monkeypatch.setattr(config_store, "datetime", clock)
    path = tmp_path / "config.json"
    names = []
    for version in range(3):
        path.write_text(json.dumps({"PORT": 3000 + version}))
        backup = config_store.backup(path, keep=10)
        assert backup is not None
        names.append(backup.name)
        assert json.loads(backup.read_text()) == {"PORT": 3000 + version}
    stamp = "2026-12-01T12-00-00-123Z"
    assert names == [f"config.{stamp}.json", f"config.{stamp}-1.json", f"config.{stamp}-2.json"]
