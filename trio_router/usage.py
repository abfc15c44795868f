"""Token usage per session and provider, shared by every worker process.

Hypercorn may run several workers, and each must see the same totals, so the counts live in one
SQLite database (WAL mode) beside the config. Each finished request is one atomic upsert that adds
its counts, so concurrent requests never drop an increment. SQLite calls run in a worker thread
so the event loop never waits on the disk.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec
import trio

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    session TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, provider)
)
"""

_ADD = """
INSERT INTO usage (session, provider, input_tokens, output_tokens, cache_read_tokens, requests)
VALUES (?, ?, ?, ?, ?, 1)
ON CONFLICT (session, provider) DO UPDATE SET
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    requests = requests + 1
"""


class ProviderUsage(msgspec.Struct, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    requests: int = 0


class SessionUsage(msgspec.Struct, rename="camel"):
    session_id: str
    providers: dict[str, ProviderUsage]
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_requests: int = 0


class UsageStore:
    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._local = threading.local()
        self._limiter = trio.CapacityLimiter(1)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        # In WAL mode NORMAL never corrupts the file and keeps every commit across a crash of
        # the process; only a power cut can lose the last commits. It spares an fsync per request.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    async def _call(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await trio.to_thread.run_sync(self._run, sql, params, limiter=self._limiter)

    async def add(
        self, session: str, provider: str, input_tokens: int, output_tokens: int, cache_read: int
    ) -> None:
        await self._call(_ADD, (session, provider, input_tokens, output_tokens, cache_read))

    async def session(self, session: str) -> SessionUsage | None:
        rows = await self._call(
            "SELECT provider, input_tokens, output_tokens, cache_read_tokens, requests"
            " FROM usage WHERE session = ? ORDER BY provider",
            (session,),
        )
        return _session(session, rows) if rows else None

    async def sessions(self) -> list[SessionUsage]:
        rows = await self._call(
            "SELECT session, provider, input_tokens, output_tokens, cache_read_tokens, requests"
            " FROM usage ORDER BY session, provider"
        )
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            grouped.setdefault(row[0], []).append(row[1:])
        return [_session(name, session_rows) for name, session_rows in grouped.items()]

    async def totals(self) -> dict[str, Any]:
        rows = await self._call(
            "SELECT provider, SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),"
            " SUM(requests), COUNT(*) FROM usage GROUP BY provider ORDER BY provider"
        )
        sessions = await self._call("SELECT COUNT(DISTINCT session) FROM usage")
        total = _session("total", [row[:5] for row in rows])
        return {
            "providers": msgspec.to_builtins(total.providers),
            "totalInputTokens": total.total_input_tokens,
            "totalOutputTokens": total.total_output_tokens,
            "totalRequests": total.total_requests,
            "sessions": sessions[0][0],
        }

    async def delete(self, session: str) -> bool:
        rows = await self._call("DELETE FROM usage WHERE session = ? RETURNING 1", (session,))
        return bool(rows)


def _session(session: str, rows: list[tuple[Any, ...]]) -> SessionUsage:
    providers = {
        row[0]: ProviderUsage(int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in rows
    }
    return SessionUsage(
        session_id=session,
        providers=providers,
        total_input_tokens=sum(p.input_tokens for p in providers.values()),
        total_output_tokens=sum(p.output_tokens for p in providers.values()),
        total_requests=sum(p.requests for p in providers.values()),
    )
