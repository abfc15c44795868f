"""Debian's nginx on loopback, configured with deploy/nginx.conf, in front of routers.

The site file is the one operators copy, with only its ``server`` (upstream) lines and its
``listen`` port changed; this module writes the main config around it, as Debian's
/etc/nginx/nginx.conf includes conf.d/*.conf inside its ``http`` block, with every path (pid,
error log, temp files) in a directory of the test's own.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port

NGINX = Path("/usr/sbin/nginx")  # Debian's package `nginx` (bookworm: 1.22)
SITE = ROOT / "deploy" / "nginx.conf"
_UPSTREAM = re.compile(r"^(\s*server\s+)127\.0\.0\.1:\d+", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*listen\s+)80;", re.MULTILINE)


def require_nginx() -> None:
    """No nginx is a failure in CI (which installs it), a skip on a machine without it."""
    if NGINX.exists():
        return
    message = f"{NGINX} is missing: apt-get install nginx"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def site_config(upstreams: Sequence[int], port: int) -> str:
    """deploy/nginx.conf with its upstream servers on ``upstreams`` and listening on ``port``."""
    text = SITE.read_text()
    found = len(_UPSTREAM.findall(text))
    assert found == len(upstreams), f"{SITE} lists {found} upstream servers"
    ports = iter(upstreams)
    text = _UPSTREAM.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", text)
    text, listens = _LISTEN.subn(rf"\g<1>127.0.0.1:{port};", text)
    assert listens == 1, f"{SITE} should `listen 80;` once"
    return text


def main_config(prefix: Path, site: Path) -> str:
    """The main config: what Debian's nginx.conf sets, with every path under ``prefix``."""
    # As root, nginx's workers run as `user` (nobody by default) and the master creates the
    # temp directories for them (https://nginx.org/en/docs/ngx_core_module.html#user); a plain
    # user's nginx runs as that user and ignores the directive, so it is left out.
    user = ""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    return f"""{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{
    worker_connections 2048;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    prefix: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        """A client of nginx for hundreds of streams at once, deaf to proxy variables."""
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
        return httpx.AsyncClient(base_url=self.url, timeout=60, trust_env=False, limits=limits)

    def reload(self) -> None:
        """``nginx -s reload`` as an operator types it: new workers, the old ones finish."""
        subprocess.run(_command(self.prefix, "-s", "reload"), check=True, timeout=10)

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """nginx's worker processes now (children of the master), by /proc."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    # proc(5): "pid (comm) state ppid ...", comm may hold spaces and ")".
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    found.add(int(entry.name))
        return found


StartNginx = Callable[[Sequence[int]], Nginx]


def _command(prefix: Path, *args: str) -> list[str]:
    """nginx with everything in ``prefix``: its config, and the error log of its first lines
    too (``-e``; Debian's build logs to stderr until the config is read)."""
    config = prefix / "nginx.conf"
    return [
        str(NGINX),
        "-p",
        str(prefix),
        "-c",
        str(config),
        "-e",
        str(prefix / "error.log"),
        *args,
    ]


def _wait_listening(nginx: Nginx, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nginx.process.poll() is not None:
            raise AssertionError(
                f"nginx exited with {nginx.process.returncode}:\n{nginx.error_log()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", nginx.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen within {timeout}s:\n{nginx.error_log()}")


@pytest.fixture
def start_nginx() -> Iterator[StartNginx]:
    """Start nginx in front of the routers on the given ports; stopped at the test's end."""
    require_nginx()
    # Not pytest's tmp_path: its parents are private to the user, and nginx's unprivileged
    # workers must reach the temp directories.
    prefix = Path(tempfile.mkdtemp(prefix="trio-router-nginx-"))
    prefix.chmod(0o755)
    started: list[Nginx] = []

    def start(upstreams: Sequence[int]) -> Nginx:
        where = prefix / str(len(started))
        where.mkdir(mode=0o755)
        port = free_port()
        (where / "trio-router.conf").write_text(site_config(upstreams, port))
        (where / "nginx.conf").write_text(main_config(where, where / "trio-router.conf"))
        process = subprocess.Popen(_command(where))
        nginx = Nginx(process, where, port)
        started.append(nginx)
        _wait_listening(nginx)
        return nginx

    yield start
    for nginx in started:
        if nginx.process.poll() is None:
            nginx.process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                nginx.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.process.kill()
                nginx.process.wait()
    shutil.rmtree(prefix, ignore_errors=True)


def router_config(directory: Path, provider_url: str, **settings: Any) -> Path:
    """A router's config.json in ``directory`` (its data directory too: logs, usage), with one
    OpenAI-compatible provider ``fake`` at ``provider_url`` serving model ``m``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "Providers": [
            {
                "name": "fake",
                "api_base_url": provider_url + "/v1/chat/completions",
                "api_key": "sk-fake-provider-key-0123456789",
                "models": ["m"],
            }
        ],
        "Router": {"default": "fake,m"},
        **settings,
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path
