"""What a newcomer meets in the first hour (issue 21): ``.env`` files, a taken port, every config
problem at once, failures on the console, a readable ``--help``, and a lock that Windows has."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, RouterProcess, free_port, run_cli
from trio_router import cli, config_store, logs
from trio_router.config import ConfigError, load

PREFIX = "TRIO_ROUTER_FH_"


@pytest.fixture(autouse=True)
def _reset_logger() -> Iterator[None]:
    yield
    for handler in list(logs.logger.handlers):
        logs.logger.removeHandler(handler)
        handler.close()
    logs.logger.setLevel(logging.NOTSET)


# --- 1. .env parsed as python-dotenv parses it -------------------------------------------------

DOTENV_CASES = [
    ("A=plain", "plain"),
    ('A="double quoted"', "double quoted"),
    ("A='single quoted'", "single quoted"),
    ('A="quoted" # a comment', "quoted"),
    ("A=bare # a comment", "bare"),
    ("export A=exported", "exported"),
    ('A="line one\\nline two"', "line one\nline two"),
    ("A='kept\\n'", "kept\\n"),
    (f"B=base\nA=${{{PREFIX}B}}/v1", "base/v1"),
    ('A="first\nsecond"', "first\nsecond"),
    ('A="with \\"escaped\\" quotes"', 'with "escaped" quotes'),
    ("A=  spaced  ", "spaced"),
    ("A=a#b", "a#b"),
    ('A="unterminated', None),  # python-dotenv skips the line (and warns): A stays unset
]


def _write_config(directory: Path, api_key: str) -> Path:
    path = directory / "config.json"
    provider = {"name": "p", "api_base_url": "http://127.0.0.1:9/v1", "models": ["m"]}
    config = {"Providers": [{**provider, "api_key": api_key}], "Router": {"default": "p,m"}}
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No test variable set, and a working directory without a ``.env``; undone afterwards."""
    for name in ("A", "B", "C"):
        monkeypatch.setenv(PREFIX + name, "placeholder")
        monkeypatch.delenv(PREFIX + name)
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return monkeypatch


@pytest.mark.parametrize(("line", "expected"), DOTENV_CASES)
def test_dotenv_values_are_read_as_python_dotenv_reads_them(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, line: str, expected: str | None
) -> None:
    # Each case's variable names carry the prefix, so nothing outside the test is touched.
    text = line.replace("A=", f"{PREFIX}A=").replace("B=", f"{PREFIX}B=", 1)
    (tmp_path / ".env").write_text(text + "\n")
    path = _write_config(tmp_path, f"${PREFIX}A")
    if expected is None:
        with pytest.raises(ConfigError, match=f"\\${PREFIX}A is not set"):
            load(path)
        return
    assert load(path).config.Providers[0].api_key == expected


def test_dotenv_order_and_the_environment_wins(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Beside the config first, then the working directory; a set variable is never replaced,
    also where another value expands it."""
    clean_env.setenv(PREFIX + "C", "from-environment")
    (tmp_path / ".env").write_text(
        f"{PREFIX}A=beside-config\n{PREFIX}C=from-file\n{PREFIX}B=${{{PREFIX}C}}/x\n"
    )
    Path(".env").write_text(f"{PREFIX}A=from-cwd\n")
    path = _write_config(tmp_path, f"${PREFIX}A ${PREFIX}B ${PREFIX}C")
    assert load(path).config.Providers[0].api_key == (
        "beside-config from-environment/x from-environment"
    )


# --- 2. A port already in use ------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_named_and_exits_1(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("start", "--port", str(port), "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


# --- 3. check-config reports every problem -----------------------------------------------------


def _problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def test_two_providers_without_url_are_two_problems(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = {
        "Providers": [{"name": "a", "models": ["m"]}, {"name": "b", "models": ["m"]}],
        "Router": {"default": "a,m"},
    }
    assert _problems(tmp_path, config) == [
        "Providers[0]: Object missing required field `api_base_url`",
        "Providers[1]: Object missing required field `api_base_url`",
    ]


def test_every_kind_of_problem_is_listed_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = {
        "PORT": "not a number",
        "LOG_LEVEL": 3,
        "Bogus": True,
        "APIKEY": f"${PREFIX}A",
        "Providers": [
            {"name": "a", "api_base_url": "ftp://x", "models": ["m"]},
            {"name": "b", "api_base_url": "http://x", "models": "m"},
            {"name": "c", "api_base_url": "http://x", "models": ["m"], "headers": {"X": 1}},
        ],
        "Router": {"default": "b,m", "think": "zz,m", "background": "c,q", "webSearch": 5},
    }
    assert _problems(tmp_path, config) == [
        f"APIKEY: environment variable ${PREFIX}A is not set",
        "Object contains unknown field `Bogus`",
        "PORT: Expected `int`, got `str`",
        "LOG_LEVEL: Expected `str`, got `int`",
        "Providers[1].models: Expected `array`, got `str`",
        "Providers[2].headers.X: Expected `str`, got `int`",
        "Router.webSearch: Expected `str | array | null`, got `int`",
        # The cross-field checks of what is left; none about a value already reported
        # (Router.default's provider "b" has unusable models, so its model is not judged).
        "Providers[0].api_base_url: must be an http(s) URL, got 'ftp://x'",
        "Router.background: model 'q' is not in the models of provider 'c'",
        "Router.think: provider 'zz' is not configured",
    ]


def test_check_config_prints_all_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"Providers": [{"name": "a"}, {"name": "b"}], "PORT": "x"}))
    assert cli.main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("missing required field `api_base_url`") == 2
    assert "PORT: Expected `int`" in err
    assert "Traceback" not in err


# --- 4. Failures on the console ----------------------------------------------------------------


def _serve_and_fail(
    router_process: Callable[..., RouterProcess], tmp_path: Path, level: str
) -> str:
    """The router's stderr after a request its (unreachable) provider fails, and one with a
    wrong key."""
    dead = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    config = {
        "APIKEY": "router-key-0123456789",
        "LOG_LEVEL": level,
        "Providers": [{"name": "p", "api_base_url": dead, "api_key": "k", "models": ["m"]}],
        "Router": {"default": "p,m"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    router = router_process("--config", str(tmp_path / "config.json"))
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=router.url, timeout=30) as client:
        failed = client.post(
            "/v1/messages", json=body, headers={"x-api-key": "router-key-0123456789"}
        )
        refused = client.post("/v1/messages", json=body, headers={"x-api-key": "wrong"})
    assert (failed.status_code, refused.status_code) == (502, 401)
    return router.stderr_text()


def test_a_failing_upstream_request_shows_on_stderr(
    router_process: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    stderr = _serve_and_fail(router_process, tmp_path, "info")
    lines = [line for line in stderr.splitlines() if "POST /v1/messages" in line]
    assert len(lines) == 1, stderr  # the client's wrong key is not the operator's problem
    assert " WARNING " in lines[0] and "POST /v1/messages 502 route=default provider=p" in lines[0]
    assert "error=" in lines[0]
    assert "router-key-0123456789" not in stderr


def test_stderr_follows_the_configured_level(
    router_process: Callable[..., RouterProcess], tmp_path: Path
) -> None:
    assert "POST /v1/messages" not in _serve_and_fail(router_process, tmp_path, "error")


def test_an_exception_is_one_line_on_stderr_and_a_traceback_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sk-console-secret-0123456789"
    path = logs.setup(enabled=True, level="info", directory=tmp_path, secrets=[secret])
    assert path is not None
    try:
        raise ValueError(f"boom with {secret}\nand a second line")
    except ValueError:
        logs.logger.exception("transformer x failed")
    logs.logger.info("an info line")
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "ERROR" in err and "transformer x failed [ValueError: boom with " in err
    assert "\\nand a second line; traceback in the log file]" in err
    assert secret not in err and "an info line" not in err
    text = path.read_text()
    assert "Traceback" in text and "an info line" in text


# --- 7. Help a person reads first --------------------------------------------------------------


def test_help_explains_and_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out
    assert "Anthropic Messages API gateway" in out
    assert "trio-router start --config" in out and "trio-router check-config" in out
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:3456" in out


@pytest.mark.parametrize(
    ("providers", "expected"),
    [(1, ": 1 provider, default route p0,m"), (2, ": 2 providers, default route p0,m")],
)
def test_check_config_ok_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], providers: int, expected: str
) -> None:
    config = {
        "Providers": [
            {"name": f"p{i}", "api_base_url": "http://x", "models": ["m"]} for i in range(providers)
        ],
        "Router": {"default": "p0,m"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == f"OK: {path.resolve()}{expected}\n"


# --- 11. Portable config locking ---------------------------------------------------------------


def test_the_config_store_works_without_fcntl(tmp_path: Path) -> None:
    """As on Windows, where there is no ``fcntl``: the package imports and backs up a config."""
    (tmp_path / "config.json").write_text("{}")
    script = (
        "import sys, pathlib; sys.modules['fcntl'] = None\n"
        "from trio_router import config_store\n"
        f"print(config_store.backup(pathlib.Path({str(tmp_path / 'config.json')!r}), 5).name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config.") and result.stdout.strip().endswith(".json")


def test_the_config_lock_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    script = (
        "import pathlib\n"
        "from trio_router import config_store\n"
        "print('ready', flush=True)\n"
        f"with config_store._locked(pathlib.Path({str(path)!r})):\n"
        "    print('done', flush=True)\n"
    )
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with config_store._locked(path):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        process = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)  # blocked on the lock this process holds
    finally:
        release.set()
        holder.join()
    out, _ = process.communicate(timeout=30)
    assert out == "done\n"
