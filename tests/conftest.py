"""Fixtures: the real router served by hypercorn on an ephemeral loopback port, and fakes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from tests.fakeserver import FakeServer, Handler
from trio_router.app import RouterApp, create_app
from trio_router.config import load


@dataclass
class RunningRouter:
    url: str
    config_path: Path
    app: RouterApp

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)

    @property
    def log_file(self) -> Path:
        return self.config_path.parent / "logs" / "trio-router.log"


StartRouter = Callable[..., Awaitable[RunningRouter]]


@pytest.fixture
async def start_router(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StartRouter:
    """Write ``config`` to a file, load it as ``trio-router start`` would, and serve it."""
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    monkeypatch.delenv("TRIO_ROUTER_DATA_DIR", raising=False)  # logs beside the config
    # The router honours a developer's proxy settings: the fakes on 127.0.0.1 are reached direct.
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    count = 0

    async def start(config: dict[str, Any], directory: Path | None = None) -> RunningRouter:
        nonlocal count
        count += 1
        where = directory or tmp_path / f"router{count}"
        where.mkdir(parents=True, exist_ok=True)
        path = where / "config.json"
        path.write_text(json.dumps(config, indent=2))
        app = create_app(load(path))
        hc = HypercornConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        hc.graceful_timeout = 0.1
        # hypercorn types apps with its own TypedDict events; ours takes plain mappings.
        binds = await nursery.start(partial(serve, app, hc))  # type: ignore[arg-type]
        return RunningRouter(url=binds[0], config_path=path, app=app)

    return start


StartFake = Callable[[Handler], Awaitable[FakeServer]]


@pytest.fixture
async def start_fake(nursery: trio.Nursery) -> StartFake:
    async def start(handler: Handler) -> FakeServer:
        return await FakeServer(handler).start(nursery)

    return start


def provider_config(
    fake: FakeServer,
    *,
    name: str = "fake",
    path: str = "/v1/chat/completions",
    models: list[str] | None = None,
    transformer: dict[str, Any] | None = None,
    api_key: str = "sk-fake-provider-key-0123456789",
    **extra: Any,
) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": name,
        "api_base_url": fake.url + path,
        "api_key": api_key,
        "models": models or ["fake-model"],
        **extra,
    }
    if transformer is not None:
        provider["transformer"] = transformer
    return provider


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``trio-router ARGS`` as a user runs it, to its end, with this checkout's code and no
    ``CONFIG_PATH``, ``HOST`` or ``PORT`` from the test's own environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_PATH", "HOST", "PORT")}
    return subprocess.run(
        [sys.executable, "-m", "trio_router", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class RouterProcess:
    """``trio-router start`` as a user runs it, in a subprocess."""

    process: subprocess.Popen[str]
    port: int
    cwd: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr_text(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=10)
        return err


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"router exited with {process.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"router did not listen on port {port} within {timeout}s")


@pytest.fixture
def router_process(tmp_path: Path) -> Iterator[Callable[..., RouterProcess]]:
    started: list[subprocess.Popen[str]] = []

    def start(
        *args: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> RouterProcess:
        port = port or free_port()
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONFIG_PATH", "HOST", "TRIO_ROUTER_DATA_DIR")
        }
        # Without a config file the router keeps its data in the per-user data directory:
        # this test's one, never the real home's.
        full_env.update(
            {"PORT": str(port), "XDG_DATA_HOME": str(tmp_path / "xdg-data"), **(env or {})}
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "trio_router", "start", *args],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        wait_for_port(port, process)
        return RouterProcess(process, port, tmp_path)

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])
