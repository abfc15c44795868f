"""The Dockerfile built and run for real, and compose.yaml checked against the repository.

No image registry is reachable from CI, so the base image is made here: Debian bookworm by
``debootstrap`` (python3 3.11 and its venv module), imported with ``docker import``. The
Dockerfile's own ``pip install`` runs unchanged; only its index is a wheelhouse this test
downloads with the host's pip and serves on loopback (pip reads ``PIP_NO_INDEX`` and
``PIP_FIND_LINKS`` from the build arguments). Without a reachable Docker daemon the test starts
one of its own (root only), its images kept under ~/.cache so later runs reuse them. Missing
tools skip these tests locally and fail them when ``CI`` is set.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from tests import openai_wire as wire
from tests.conftest import ROOT
from tests.fakeserver import FakeServer, Reply, Request
from trio_router.config import Config

IMAGE = "trio-router:test"
# Any image with python3 >= 3.11 and its venv module; made by debootstrap when absent.
BASE_IMAGE = os.environ.get("TRIO_ROUTER_TEST_BASE_IMAGE", "trio-router-base:bookworm")
ROUTER_KEY = "sk-router-docker-test-0123456789"
PROVIDER_KEY = "sk-fake-provider-key-0123456789"
# The image's user (Dockerfile: useradd --uid 10001).
ROUTER_UID = 10001


def _missing(what: str) -> None:
    message = f"{what}: the Docker tests cannot run"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run(
    env: dict[str, str], *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def _daemon_answers(env: dict[str, str]) -> bool:
    return _run(env, "docker", "info", timeout=30, check=False).returncode == 0


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """An environment whose ``docker`` reaches a daemon: the host's, else one started here."""
    env = dict(os.environ)
    if not shutil.which("docker"):
        _missing("no docker client (Debian's docker.io)")
    if _daemon_answers(env):
        yield env
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists() or os.geteuid() != 0:
        _missing("no Docker daemon answers, and only root can start dockerd")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    data_root = cache / "trio-router-tests" / "docker"
    run_dir = Path(tempfile.mkdtemp(prefix="trio-router-dockerd-"))  # a socket path < 108 bytes
    env["DOCKER_HOST"] = f"unix://{run_dir / 'docker.sock'}"
    with (run_dir / "dockerd.log").open("w") as log:
        daemon = subprocess.Popen(
            [
                dockerd,
                f"--data-root={data_root}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={run_dir / 'dockerd.pid'}",
                f"--host={env['DOCKER_HOST']}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _daemon_answers(env):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"dockerd did not start:\n{(run_dir / 'dockerd.log').read_text()}"
                )
            time.sleep(0.5)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)


def _base_image(env: dict[str, str]) -> None:
    """``BASE_IMAGE``, made from Debian's mirror by debootstrap when the daemon lacks it."""
    if _run(env, "docker", "image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return
    if not shutil.which("debootstrap") or os.geteuid() != 0:
        _missing(f"no {BASE_IMAGE} image, and debootstrap (as root) is needed to make it")
    with tempfile.TemporaryDirectory(prefix="trio-router-rootfs-") as rootfs:
        _run(
            env,
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            rootfs,
            "http://deb.debian.org/debian",
            timeout=900,
        )
        skip = ["var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*"]
        skip += ["usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"]
        tar = subprocess.Popen(
            [
                "tar",
                "--numeric-owner",
                "-C",
                rootfs,
                *(f"--exclude=./{s}" for s in skip),
                "-c",
                ".",
            ],
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["python3"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert tar.wait() == 0 and imported.returncode == 0, imported.stderr


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The repository's Dockerfile built on ``BASE_IMAGE``."""
    _base_image(docker_env)
    wheels = tmp_path_factory.mktemp("wheels")
    # What the Dockerfile installs, and setuptools for its wheel build (pyproject.toml).
    pip = [sys.executable, "-m", "pip", "download", "--quiet", f"--dest={wheels}"]
    pip += [f"{ROOT}[postgres]", "setuptools>=68", f"--constraint={ROOT / 'constraints.txt'}"]
    _run(docker_env, *pip, timeout=600)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _run(
            docker_env,
            "docker",
            "build",
            "--network=host",  # the build reaches the wheelhouse on this host's loopback
            f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
            "--build-arg=PIP_NO_INDEX=1",
            f"--build-arg=PIP_FIND_LINKS=http://127.0.0.1:{server.server_address[1]}/",
            f"--tag={IMAGE}",
            str(ROOT),
            timeout=900,
        )
    finally:
        server.shutdown()
        server.server_close()
    return IMAGE


# The default route's gateway from /proc/net/route (hex, little-endian): this host, as the
# containers on Docker's default bridge network reach it.
GATEWAY = (
    "import socket, struct\n"
    "for line in list(open('/proc/net/route'))[1:]:\n"
    "    fields = line.split()\n"
    "    if fields[1] == '00000000':\n"
    "        print(socket.inet_ntoa(struct.pack('<L', int(fields[2], 16))))\n"
)


def _write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    path.chmod(0o644)  # the image's user is not this file's owner
    return path


class Container:
    """One ``docker run -d`` of the image, removed (with its volumes) when done."""

    def __init__(self, env: dict[str, str], *run_args: str) -> None:
        self.env = env
        self.id = _run(env, "docker", "run", "--detach", *run_args).stdout.strip()

    def inspect(self, template: str) -> str:
        return _run(self.env, "docker", "inspect", f"--format={template}", self.id).stdout.strip()

    def exec(self, *argv: str) -> str:
        return _run(self.env, "docker", "exec", self.id, *argv).stdout

    def logs(self) -> str:
        done = _run(self.env, "docker", "logs", self.id)
        return done.stdout + done.stderr

    def published_port(self) -> int:
        return int(_run(self.env, "docker", "port", self.id, "3456/tcp").stdout.split(":")[-1])

    def remove(self) -> None:
        _run(self.env, "docker", "rm", "--force", "--volumes", self.id, check=False)


def _exit_code(container: Container, timeout: float) -> int | None:
    """The container's exit code once it has stopped, or None if it runs on past ``timeout``."""
    try:
        waited = _run(container.env, "docker", "wait", container.id, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return int(waited.stdout)


async def test_the_image_serves_messages_as_a_non_root_user(
    docker_env: dict[str, str], image: str, tmp_path: Path
) -> None:
    """Health from outside on the published port, a /v1/messages through a provider on this
    host, the HEALTHCHECK healthy, the server not root, and `docker stop` ending it cleanly."""
    gateway = _run(
        docker_env, "docker", "run", "--rm", "--entrypoint=python3", image, "-c", GATEWAY
    )
    host = gateway.stdout.split()[0]

    def provider(request: Request) -> Reply:
        return Reply.json(wire.completion("hello from the host", prompt=9, completion_tokens=4))

    fake = FakeServer(provider)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, fake._connection, 0, host=host)
        )
        port = listeners[0].socket.getsockname()[1]
        config = _write_config(
            tmp_path,
            {
                "APIKEY": ROUTER_KEY,
                "Providers": [
                    {
                        "name": "fake",
                        "api_base_url": f"http://{host}:{port}/v1/chat/completions",
                        "api_key": PROVIDER_KEY,
                        "models": ["fake-model"],
                    }
                ],
                "Router": {"default": "fake,fake-model"},
            },
        )
        container = Container(
            docker_env,
            "--publish=127.0.0.1::3456",
            f"--volume={config}:/app/config.json:ro",
            # The image's HEALTHCHECK command, checked every second instead of every 10 s.
            "--health-interval=1s",
            image,
        )
        try:
            await trio.to_thread.run_sync(
                functools.partial(_serve_and_check, container, fake), abandon_on_cancel=True
            )
        finally:
            await trio.to_thread.run_sync(container.remove)
            nursery.cancel_scope.cancel()


def _serve_and_check(container: Container, fake: FakeServer) -> None:
    url = f"http://127.0.0.1:{container.published_port()}"
    deadline = time.monotonic() + 60
    while True:
        try:
            health = httpx.get(url + "/", timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or container.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"no answer on {url}:\n{container.logs()}") from None
            time.sleep(0.25)
    assert health.json()["status"] == "ok", health.text

    body = {
        "model": "fake-model",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    refused = httpx.post(url + "/v1/messages", json=body, timeout=30)
    assert refused.status_code == 401, refused.text
    reply = httpx.post(
        url + "/v1/messages", json=body, headers={"x-api-key": ROUTER_KEY}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["content"] == [{"type": "text", "text": "hello from the host"}]
    assert len(fake.requests) == 1
    assert fake.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"

    deadline = time.monotonic() + 60
    while (status := container.inspect("{{.State.Health.Status}}")) != "healthy":
        assert status == "starting" and time.monotonic() < deadline, container.logs()
        time.sleep(0.5)
    # The server is PID 1: its real, effective, saved and file-system uids.
    uids = next(
        line
        for line in container.exec("cat", "/proc/1/status").splitlines()
        if line.startswith("Uid:")
    )
    assert uids.split()[1:] == [str(ROUTER_UID)] * 4, uids
    assert "logs" in container.exec("ls", "/data").split()  # TRIO_ROUTER_DATA_DIR, a volume

    # PID 1 gets no default signal handling from the kernel: SIGTERM must be handled to end it.
    began = time.monotonic()
    _run(container.env, "docker", "stop", "--time=40", container.id, timeout=60)
    assert time.monotonic() - began < 20, "SIGTERM did not end the router"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()


def test_the_image_refuses_to_listen_without_an_apikey(
    docker_env: dict[str, str], image: str, tmp_path: Path
) -> None:
    """HOST=0.0.0.0 with no APIKEY: an error and exit 1, not a server on the container's own
    127.0.0.1 that nothing outside can reach (and whose HEALTHCHECK would pass)."""
    config = _write_config(tmp_path, {"Providers": []})
    container = Container(docker_env, f"--volume={config}:/app/config.json:ro", image)
    try:
        code = _exit_code(container, timeout=30)
        logs = container.logs()
        assert code == 1, f"exit code {code} (None: still running):\n{logs}"
        assert "APIKEY" in logs, logs
    finally:
        container.remove()


def test_the_image_needs_its_config_mounted(docker_env: dict[str, str], image: str) -> None:
    """CONFIG_PATH=/app/config.json is asked for explicitly: a missing mount is an error."""
    done = _run(docker_env, "docker", "run", "--rm", image, check=False, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "/app/config.json" in done.stderr and "file not found" in done.stderr, done.stderr


def test_the_image_is_described_by_its_dockerfile(docker_env: dict[str, str], image: str) -> None:
    """What `docker run` and orchestrators read from the image: user, port, signal, health."""
    found = json.loads(_run(docker_env, "docker", "image", "inspect", image).stdout)[0]["Config"]
    assert found["User"] == "router:router"
    assert list(found["ExposedPorts"]) == ["3456/tcp"]
    assert found["StopSignal"] == "SIGTERM"
    assert list(found["Volumes"]) == ["/data"]
    assert found["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    assert found["Entrypoint"] == ["trio-router"] and found["Cmd"] == ["start"]
    env = dict(item.split("=", 1) for item in found["Env"])
    assert env["CONFIG_PATH"] == "/app/config.json"
    assert env["TRIO_ROUTER_DATA_DIR"] == "/data"
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "3456"
    # Installed, not just copied: no pip, no setuptools, no sources beside the venv.
    listing = _run(
        docker_env,
        "docker",
        "run",
        "--rm",
        "--entrypoint=ls",
        image,
        "/opt/trio-router/lib/python3.11/site-packages",
    ).stdout.split()
    assert "trio_router" in listing and "psycopg" in listing
    assert not {"pip", "setuptools"} & set(listing)


def test_compose_runs_two_routers_on_postgres_behind_nginx() -> None:
    """compose.yaml against the repository: every service and mounted file, each service's
    health and start order, STORE_URL at the postgres service, and the nginx conf it derives."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "router1", "router2", "nginx"}
    for name in ("router1", "router2"):
        router = services[name]
        assert router["build"] == "."  # the Dockerfile's HEALTHCHECK is the router's
        assert router["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert router["environment"]["STORE_URL"].startswith("postgresql://router:")
        assert router["environment"]["STORE_URL"].endswith("@postgres:5432/router")
        grace = router["stop_grace_period"]
        assert grace.endswith("s") and int(grace[:-1]) > Config().DRAIN_TIMEOUT_MS / 1000
        mounts = {
            m.rsplit(":", 1)[1]: m.rsplit(":", 1)[0]
            for m in (v.removesuffix(":ro") for v in router["volumes"])
        }
        assert mounts["/app/config.json"] == "${TRIO_ROUTER_CONFIG:-./config.json}"
        assert mounts["/data"] == f"{name}-data" and f"{name}-data" in compose["volumes"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    nginx = services["nginx"]
    assert nginx["depends_on"] == {
        "router1": {"condition": "service_healthy"},
        "router2": {"condition": "service_healthy"},
    }
    assert nginx["healthcheck"]["test"][:2] == ["CMD", "curl"]
    assert nginx["volumes"] == ["./deploy/nginx.conf:/etc/nginx/trio-router.conf:ro"]
    assert nginx["ports"] == ["${PORT:-3456}:80"]
    # The conf compose makes from deploy/nginx.conf: the same sed, run on the repository's file.
    command = nginx["command"][2]
    sed = shlex.split(command.split(" > ")[0].replace("/etc/nginx/trio-router.conf", ""))
    made = subprocess.run(
        [*sed, str(ROOT / "deploy" / "nginx.conf")], capture_output=True, text=True, check=True
    ).stdout
    lines = [line.split() for line in made.splitlines()]
    servers = [words[1] for words in lines if words[:1] == ["server"] and words[1] != "{"]
    assert servers == ["router1:3456", "router2:3456"], made
    assert "listen 80;" in made
    # What the recipe in compose.yaml's header copies to config.json.
    assert (ROOT / "config.example.json").exists()
