"""How to start, probe and stop each gateway under test, all pointed at the fake upstream.

A gateway runs in its own session (process group), so that stopping it ends its workers too and
nothing else; it is pinned to its cores from before ``exec`` so every thread and worker it
starts inherits the pinning.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from . import peers
from .procstat import pinned_exec, tree

REPO = Path(__file__).resolve().parent.parent


class Spec(NamedTuple):
    family: str  # plain | router | ccr | litellm
    workers: int
    upstream: (
        str  # the fake's wire format the gateway is configured for: openai | deepseek | gemini
    )
    # The router's bare config (no keys, no cap, no metrics key): only for comparison.
    bare: bool = False


SPECS: dict[str, Spec] = {
    "plain": Spec("plain", 1, "openai"),
    "plain2": Spec("plain", 2, "openai"),
    "router": Spec("router", 1, "openai"),
    "router2": Spec("router", 2, "openai"),
    "router-deepseek": Spec("router", 1, "deepseek"),
    "router-gemini": Spec("router", 1, "gemini"),
    "router-bare": Spec("router", 1, "openai", bare=True),
    "ccr": Spec("ccr", 1, "openai"),
    "ccr-deepseek": Spec("ccr", 1, "deepseek"),
    "ccr-gemini": Spec("ccr", 1, "gemini"),
    "litellm": Spec("litellm", 1, "openai"),
}

# Model names the fake is asked for, per upstream format.
UPSTREAM_MODEL = {"openai": "m", "deepseek": "deepseek-reasoner", "gemini": "gemini-bench"}


class Unavailable(Exception):
    """The gateway cannot run here; the message goes into the results."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_fake(
    port: int, chunks: int, interval_ms: int, max_seconds: int | None = None
) -> subprocess.Popen[bytes]:
    """``bench.fake_upstream`` on ``port`` streaming ``chunks`` every ``interval_ms``, in a
    session of its own (the caller terminates it)."""
    argv = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
    argv += ["--chunks", str(chunks), "--interval-ms", str(interval_ms)]
    if max_seconds is not None:
        argv += ["--max-seconds", str(max_seconds)]
    return subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def upstream_url(fake_port: int, upstream: str) -> str:
    base = f"http://127.0.0.1:{fake_port}"
    if upstream == "gemini":
        return f"{base}/v1beta/models/"
    if upstream == "deepseek":
        return f"{base}/deepseek/v1/chat/completions"
    return f"{base}/v1/chat/completions"


def ccr_style_config(
    port: int, fake_port: int, upstream: str, rules: dict[str, object] | None = None
) -> dict[str, object]:
    """The config file format the router shares with claude-code-router; ``rules`` are added
    to ``Router`` beside ``default``."""
    model = UPSTREAM_MODEL[upstream]
    transformer = {"openai": "openrouter", "deepseek": "deepseek", "gemini": "gemini"}[upstream]
    return {
        "APIKEY": "",
        "LOG": False,
        "HOST": "127.0.0.1",
        "PORT": port,
        "API_TIMEOUT_MS": 600000,
        # The bench measures what one worker carries up to 1000 streams; the default cap (200,
        # the level it carries within 25 ms of added p99) would answer the rest with 529s.
        "MAX_OPEN_STREAMS": 0,
        "Providers": [
            {
                "name": "fake",
                "api_base_url": upstream_url(fake_port, upstream),
                "api_key": "k",
                "models": [model],
                "transformer": {"use": [transformer]},
            }
        ],
        "Router": {"default": f"fake,{model}", **(rules or {})},
    }


# The router runs as operators run it: clients present a client key (created at start, with
# every kind of limit set, high enough never to refuse the bench), the shared APIKEY is for the
# harness's own probes, /api/* takes ADMIN_KEY, metrics are recorded (their default) and
# /metrics takes METRICS_KEY, retries and the breaker are at their defaults, and the open-stream
# cap is set for the largest tested level. Logging stays off, as for CCR.
APIKEY = "bench"
ADMIN_KEY = "bench-admin"
METRICS_KEY = "bench-metrics"
MAX_OPEN_STREAMS = 1100
CLIENT_LIMITS = {
    "rpm": 10_000_000,
    "tpm": 10_000_000_000,
    "concurrent": 100_000,
    "budget_tokens": 10_000_000_000_000,
}


def router_config(
    port: int,
    fake_port: int,
    upstream: str,
    rules: dict[str, object] | None = None,
    bare: bool = False,
) -> dict[str, object]:
    """The router's config: production-like (see :data:`CLIENT_LIMITS`) unless ``bare``."""
    config = ccr_style_config(port, fake_port, upstream, rules)
    if bare:
        # Nothing recorded for Prometheus either (metrics.py's switch; on by default).
        config["METRICS"] = False
        return config
    providers = config["Providers"]
    assert isinstance(providers, list)
    for provider in providers:
        provider.update(retries=2, retry_budget_ms=30_000)
    config.update(
        APIKEY=APIKEY,
        ADMIN_KEY=ADMIN_KEY,
        METRICS_KEY=METRICS_KEY,
        MAX_OPEN_STREAMS=MAX_OPEN_STREAMS,
        BREAKER_FAILURES=5,
        BREAKER_COOLDOWN_MS=30_000,
    )
    return config


def client_key(port: int, timeout: float = 10.0) -> str:
    """A new client key with :data:`CLIENT_LIMITS`, created through ``POST /api/keys``."""
    body = json.dumps({"name": "bench", "user": "bench", "limits": CLIENT_LIMITS})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/api/keys",
            body=body,
            headers={"content-type": "application/json", "x-api-key": ADMIN_KEY},
        )
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"cannot create a client key: {exc}") from exc
    finally:
        conn.close()
    if response.status != 201:
        raise Unavailable(f"POST /api/keys answered {response.status}: {answer[:300]!r}")
    secret: str = json.loads(answer)["key"]
    return secret


def litellm_config(fake_port: int, model_name: str) -> str:
    # https://docs.litellm.ai/docs/proxy/configs; retries and cooldowns off so an error shows.
    return (
        "model_list:\n"
        f"  - model_name: {model_name}\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        f"      api_base: http://127.0.0.1:{fake_port}/v1\n"
        "      api_key: k\n"
        "litellm_settings:\n"
        "  use_chat_completions_url_for_anthropic_messages: true\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "  num_retries: 0\n"
        "router_settings:\n"
        "  disable_cooldowns: true\n"
        "  num_retries: 0\n"
    )


# Offline flags: without them LiteLLM fetches its cost map and other lists from the network.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOG": "ERROR",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    "DISABLE_SCHEMA_UPDATE": "true",
}


class Launch(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    version: str
    ready_timeout: float


def prepare(
    name: str,
    port: int,
    fake_port: int,
    workdir: Path,
    allow_install: bool,
    model: str,
    rules: dict[str, object] | None = None,
) -> Launch:
    """Write the gateway's config under ``workdir`` (``rules`` added to its ``Router``) and say
    how to start it."""
    spec = SPECS[name]
    home = workdir / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "CONFIG_PATH"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    if spec.family == "plain":
        env["PLAIN_UPSTREAM_URL"] = upstream_url(fake_port, spec.upstream)
        argv = [
            sys.executable,
            "-m",
            "hypercorn",
            "-k",
            "trio",
            "-w",
            str(spec.workers),
            "--backlog",
            "4096",
            "--bind",
            f"127.0.0.1:{port}",
            "bench.plain_stack:app",
        ]
        return Launch(argv, env, _dist_version("hypercorn", "quart-trio", "httpx"), 60)
    if spec.family == "router":
        probe = subprocess.run(
            [sys.executable, "-m", "trio_router", "start", "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=60,
            check=False,
        )
        if probe.returncode != 0:
            raise Unavailable(
                f"trio_router CLI not runnable: {(probe.stdout + probe.stderr)[-800:]}"
            )
        config = home / "config.json"
        config.write_text(
            json.dumps(router_config(port, fake_port, spec.upstream, rules, spec.bare), indent=2)
        )
        argv = [
            sys.executable,
            "-m",
            "trio_router",
            "start",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(spec.workers),
        ]
        return Launch(argv, env, _dist_version("trio-router"), 60)
    if spec.family == "ccr":
        installed = peers.install_ccr(allow_install)
        if not installed.ok:
            raise Unavailable(installed.detail)
        folder = home / ".claude-code-router"
        folder.mkdir(exist_ok=True)
        ccr_config = ccr_style_config(port, fake_port, spec.upstream, rules)
        (folder / "config.json").write_text(json.dumps(ccr_config, indent=2))
        return Launch(["node", str(peers.ccr_cli()), "start"], env, installed.version, 60)
    if spec.family == "litellm":
        installed = peers.install_litellm(allow_install)
        if not installed.ok:
            raise Unavailable(installed.detail)
        config_path = home / "config.yaml"
        config_path.write_text(litellm_config(fake_port, model))
        env.update(LITELLM_ENV)
        argv = [
            str(peers.litellm_bin()),
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(spec.workers),
        ]
        return Launch(argv, env, installed.version, 180)
    raise Unavailable(f"unknown gateway {name}")


def _dist_version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (source tree)")
    return ", ".join(parts)


class Running:
    """A started gateway: its process group, log file and port."""

    def __init__(
        self, name: str, launch: Launch, port: int, log: Path, cpus: set[int] | None
    ) -> None:
        self.name = name
        self.port = port
        self.log = log
        self._log_file = log.open("wb")

        self.proc = subprocess.Popen(
            launch.argv,
            cwd=REPO,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pinned_exec(cpus),
        )

    def pids(self) -> list[int]:
        return tree([self.proc.pid])

    def log_tail(self, size: int = 1500) -> str:
        try:
            data = self.log.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 10 s: this gateway's processes only."""
        pids = self.pids()
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.proc.poll() is None:
                time.sleep(0.05)
            if self.proc.poll() is not None and not any(
                os.path.exists(f"/proc/{p}") for p in pids[1:]
            ):
                break
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log_file.close()


def probe(
    port: int, protocol: str, path: str, body: bytes, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One blocking request: (status, body); status 0 when the connection failed."""
    headers = {
        "content-type": "application/json",
        "x-api-key": "bench",
        "anthropic-version": "2023-06-01",
    }
    if protocol == "openai":
        headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc).encode()
    finally:
        conn.close()


ANTHROPIC_PROBE = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "ping"}],
    }
).encode()


def wait_ready(running: Running, timeout: float) -> None:
    """Until a non-streaming /v1/messages answers 200 with the fake's text; Unavailable if not."""
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise Unavailable(f"exited with {running.proc.returncode}: {running.log_tail()}")
        status, body = probe(running.port, "anthropic", "/v1/messages", ANTHROPIC_PROBE, timeout=10)
        if status == 200 and b"~T" in body:
            return
        last = b"%d %b" % (status, body[:500])
        time.sleep(0.5)
    raise Unavailable(
        f"not ready after {timeout:.0f} s (last probe: {last.decode('utf-8', 'replace')}); "
        f"log: {running.log_tail()}"
    )
