"""The store's read side, one SQL for both backends: the usage views, the client keys as read,
and the recent errors.

SQLite and PostgreSQL hold the same tables and answer these queries alike; only the parameter
mark differs (``?`` for sqlite3, ``%s`` for psycopg), so the queries are written with ``?`` and
each backend names its mark in :attr:`SQLViews.PARAM`. What differs between them (their
transactions, limits, timeline buckets) stays in sqlite.py and postgres.py.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import msgspec

from . import (
    ClientKey,
    ErrorEntry,
    KeyName,
    KeyProviderUsage,
    KeyUsage,
    Limits,
    ProviderUsage,
    SessionUsage,
    Store,
    UserUsage,
)

Row = tuple[Any, ...]

KEY_COLUMNS = (
    "id, name, user_name, prefix, secret_hash, limits, routes, models, expires_at, disabled,"
    " created_at"
)


class SQLViews(Store):
    """What both SQL stores read the same way, over their own ``_query``."""

    PARAM: ClassVar[str]  # the driver's parameter mark

    @abc.abstractmethod
    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """One statement, outside any transaction; its rows."""

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return await self._query(sql.replace("?", self.PARAM), params)

    # Usage per session and provider.

    async def session(self, session: str) -> SessionUsage | None:
        rows = await self._read(
            "SELECT provider, input_tokens, output_tokens, cache_read_tokens, requests, cost_usd,"
            " unpriced_requests FROM usage WHERE session = ? ORDER BY provider",
            (session,),
        )
        return session_usage(session, rows) if rows else None

    async def sessions(self) -> list[SessionUsage]:
        rows = await self._read(
            "SELECT session, provider, input_tokens, output_tokens, cache_read_tokens, requests,"
            " cost_usd, unpriced_requests FROM usage ORDER BY session, provider"
        )
        grouped: dict[str, list[Row]] = {}
        for row in rows:
            grouped.setdefault(row[0], []).append(row[1:])
        return [session_usage(name, session_rows) for name, session_rows in grouped.items()]

    async def totals(self) -> dict[str, object]:
        rows = await self._read(
            "SELECT provider, SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),"
            " SUM(requests), SUM(cost_usd), SUM(unpriced_requests) FROM usage"
            " GROUP BY provider ORDER BY provider"
        )
        sessions = await self._read("SELECT COUNT(DISTINCT session) FROM usage")
        total = session_usage("total", rows)
        return {
            "providers": msgspec.to_builtins(total.providers),
            "totalInputTokens": total.total_input_tokens,
            "totalOutputTokens": total.total_output_tokens,
            "totalRequests": total.total_requests,
            "costUsd": total.cost_usd,
            "sessions": sessions[0][0],
        }

    async def delete(self, session: str) -> bool:
        rows = await self._read("DELETE FROM usage WHERE session = ? RETURNING 1", (session,))
        return bool(rows)

    # Usage per key and user.

    async def key_usage(self, key_id: str) -> KeyUsage | None:
        keys = await self._read("SELECT name, user_name FROM client_keys WHERE id = ?", (key_id,))
        if not keys:
            return None
        rows = await self._read(
            "SELECT provider, input_tokens, output_tokens, cache_read_tokens, requests, errors,"
            " rate_limited, cost_usd, unpriced_requests FROM key_usage WHERE key_id = ?"
            " ORDER BY provider",
            (key_id,),
        )
        providers, totals, cost = _key_rows(rows)
        return KeyUsage(key_id, keys[0][0], keys[0][1], providers, *totals, cost_usd=cost)

    async def user_usage(self, user: str) -> UserUsage | None:
        keys = await self._read(
            "SELECT id, name FROM client_keys WHERE user_name = ? ORDER BY created_at", (user,)
        )
        rows = await self._read(
            "SELECT provider, SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),"
            " SUM(requests), SUM(errors), SUM(rate_limited), SUM(cost_usd),"
            " SUM(unpriced_requests) FROM key_usage"
            " WHERE user_name = ? GROUP BY provider ORDER BY provider",
            (user,),
        )
        if not keys and not rows:
            return None
        providers, totals, cost = _key_rows(rows)
        names = [KeyName(k[0], k[1]) for k in keys]
        return UserUsage(user, names, providers, *totals, cost_usd=cost)

    # Client keys, as read.

    async def keys(self) -> list[ClientKey]:
        rows = await self._read(
            f"SELECT {KEY_COLUMNS} FROM client_keys WHERE deleted_at IS NULL"
            " ORDER BY created_at, id"
        )
        return [client_key(row) for row in rows]

    async def key(self, key_id: str) -> ClientKey | None:
        rows = await self._read(
            f"SELECT {KEY_COLUMNS} FROM client_keys WHERE id = ? AND deleted_at IS NULL",
            (key_id,),
        )
        return client_key(rows[0]) if rows else None

    async def key_by_hash(self, secret_hash: str) -> ClientKey | None:
        rows = await self._read(
            f"SELECT {KEY_COLUMNS} FROM client_keys WHERE secret_hash = ? AND deleted_at IS NULL",
            (secret_hash,),
        )
        return client_key(rows[0]) if rows else None

    async def delete_key(self, key_id: str) -> bool:
        rows = await self._read(
            "UPDATE client_keys SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL RETURNING 1",
            (time.time(), key_id),
        )
        return bool(rows)

    async def has_keys(self) -> bool:
        rows = await self._read(
            "SELECT EXISTS (SELECT 1 FROM client_keys WHERE deleted_at IS NULL)"
        )
        return bool(rows[0][0])

    # The dashboard's views.

    async def recent_errors(self, limit: int) -> list[ErrorEntry]:
        rows = await self._read(
            "SELECT at, status, provider, model, key_id, session, message FROM request_errors"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [ErrorEntry(*row) for row in rows]


def cost_sum(costs: Iterable[float | None]) -> float | None:
    """The sum of the priced ones; None when none was priced."""
    priced = [cost for cost in costs if cost is not None]
    return math.fsum(priced) if priced else None


def session_usage(session: str, rows: list[Row]) -> SessionUsage:
    """Rows of (provider, input, output, cache read, requests, cost, unpriced)."""
    providers = {
        row[0]: ProviderUsage(
            int(row[1]), int(row[2]), int(row[3]), int(row[4]), row[5], int(row[6])
        )
        for row in rows
    }
    return SessionUsage(
        session_id=session,
        providers=providers,
        total_input_tokens=sum(p.input_tokens for p in providers.values()),
        total_output_tokens=sum(p.output_tokens for p in providers.values()),
        total_requests=sum(p.requests for p in providers.values()),
        cost_usd=cost_sum(p.cost_usd for p in providers.values()),
    )


def _key_rows(
    rows: list[Row],
) -> tuple[dict[str, KeyProviderUsage], tuple[int, int, int, int, int], float | None]:
    """Per-provider usage (routed requests only), the totals over every row (input, output,
    requests, errors, rate-limited) and the cost. Rows of (provider, input, output, cache read,
    requests, errors, rate-limited, cost, unpriced)."""
    providers = {
        row[0]: KeyProviderUsage(
            int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]), row[7], int(row[8])
        )
        for row in rows
        if row[0] != ""
    }

    def total(i: int) -> int:
        return sum(int(row[i]) for row in rows)

    totals = (total(1), total(2), total(4), total(5), total(6))
    return providers, totals, cost_sum(row[7] for row in rows)


def client_key(row: Row) -> ClientKey:
    """A ``client_keys`` row, read as :data:`KEY_COLUMNS` lists it."""
    return ClientKey(
        id=row[0],
        name=row[1],
        user=row[2],
        prefix=row[3],
        secret_hash=row[4],
        limits=msgspec.json.decode(row[5], type=Limits),
        routes=msgspec.json.decode(row[6], type=list[str]) if row[6] is not None else None,
        models=msgspec.json.decode(row[7], type=list[str]) if row[7] is not None else None,
        expires_at=row[8],
        disabled=bool(row[9]),
        created_at=row[10],
    )
