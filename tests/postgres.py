"""A real PostgreSQL for the tests and the bench, started from Debian's binaries in a temp dir.

Use it from a test module with ``pytest_plugins = ["tests.postgres"]``, then ask for

- ``postgres_server`` (session scope): one server per test run, a :class:`PostgresServer`;
- ``postgres_url`` (function scope): a fresh, empty database on it, as a ``postgresql://`` URL
  with a password (what ``STORE_URL`` takes).

Outside pytest (the bench, a script)::

    with running_postgres() as server:
        url = server.create_database()

The binaries are Debian's ``postgresql-15`` package (``apt-get install postgresql``), found in
``$PG_BIN`` or ``/usr/lib/postgresql/15/bin``. Without them the tests skip locally and FAIL when
``CI`` is set. PostgreSQL refuses to run as root ("root" execution of the PostgreSQL server is
not permitted, src/backend/main/main.c), and CI runs as root: then every server process runs as
``nobody`` through util-linux's ``setpriv`` (in Debian's essential set, no user to create), in
a temp dir under ``/tmp`` owned by ``nobody``. It listens on 127.0.0.1 on a free port only (no
Unix socket), with password (SCRAM) authentication for its one superuser.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
NOBODY = 65534  # Debian's ``nobody`` user and ``nogroup`` group (base-passwd)
USER = "trio"


@dataclass
class PostgresServer:
    port: int
    password: str
    directory: Path
    process: subprocess.Popen[bytes]
    made: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url(name)

    @property
    def log(self) -> str:
        """The server's log, for a failure's message."""
        return (self.directory / "postgres.log").read_text(errors="replace")


def available() -> bool:
    return all((PG_BIN / name).exists() for name in ("initdb", "postgres"))


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` as an unprivileged user when this process is root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@contextmanager
def running_postgres(
    *, fsync: bool = False, max_connections: int = 300
) -> Iterator[PostgresServer]:
    """A PostgreSQL server for as long as the block runs; removed with its files after.

    ``fsync=False`` (the tests) skips the disk flushes nothing here needs; the bench passes
    ``fsync=True`` to measure what a real deployment pays for each commit.
    """
    if not available():
        message = f"PostgreSQL is not installed ({PG_BIN}/initdb): apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Not pytest's tmp_path: its parents are root's 0700 directories nobody cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="trio-router-pg-", dir="/tmp"))
    data = directory / "data"
    password = secrets.token_urlsafe(16)
    (directory / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(directory, NOBODY, NOBODY)
        os.chown(directory / "pwfile", NOBODY, NOBODY)
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    "--pwfile",
                    str(directory / "pwfile"),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        port = free_port()
        log = open(directory / "postgres.log", "wb")  # noqa: SIM115 -- the server writes it
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": "",
            "max_connections": str(max_connections),
            "fsync": "on" if fsync else "off",
            "synchronous_commit": "on" if fsync else "off",
            "full_page_writes": "on" if fsync else "off",
        }
        options = [f"--{name}={value}" for name, value in settings.items()]
        process = subprocess.Popen(
            _as_server_user([str(PG_BIN / "postgres"), "-D", str(data), *options]),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        server = PostgresServer(port, password, directory, process)
        _wait_ready(server)
        yield server
    finally:
        if process is not None and process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions (SIGTERM would wait
            # for them; https://www.postgresql.org/docs/15/server-shutdown.html).
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_ready(server: PostgresServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {server.process.returncode}: {server.log}")
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {server.log}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()
