"""Cost in USD in every usage view (issue 19), over the real server and the SDK: the figure is
genai-prices' own for the same tokens, an unknown model's is null, the config's ``prices``
win, and a key's ``budget_usd`` refuses once spent. Then the SQLite store's side: a file of
the previous schema keeps its rows, the timeline and the recent errors."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from genai_prices import Usage, calc_price

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from tests.test_client_keys import ADMIN, ADMIN_KEY, USER, make_key, sdk
from trio_router.store import RequestRecord
from trio_router.store.sqlite import ERRORS_KEPT, SQLiteStore, migrations

API_KEY = "client-key-0123456789abcdef"
PROMPT, CACHED, COMPLETION = 1000, 400, 50  # OpenAI's prompt_tokens include the cached ones


def answer(request: Request) -> Reply:
    """An OpenAI answer with cached prompt tokens (``prompt_tokens_details.cached_tokens``,
    https://platform.openai.com/docs/guides/prompt-caching)."""
    body = wire.completion("ok", prompt=PROMPT, completion_tokens=COMPLETION)
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": CACHED}
    return Reply.json(body)


def config(fake: Any, **extra: Any) -> dict[str, Any]:
    models = ["gpt-4o", "mystery-model-x", "house-model"]
    return {
        "LOG": False,
        "APIKEY": API_KEY,
        "ADMIN_KEY": ADMIN_KEY,
        "Providers": [provider_config(fake, name="c", models=models)],
        "Router": {"default": "c,gpt-4o"},
        **extra,
    }


def library_cost(model: str) -> float:
    """genai-prices' own figure for the fake's tokens."""
    usage = Usage(input_tokens=PROMPT, cache_read_tokens=CACHED, output_tokens=COMPLETION)
    return float(calc_price(usage, model).total_price)


async def get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=ADMIN) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def ask(url: str, key: str, model: str, session: str) -> None:
    client = sdk(url, key)
    message = await client.messages.create(
        model=model, max_tokens=5, messages=USER, extra_headers={"x-session-id": session}
    )
    assert message.usage.cache_read_input_tokens == CACHED
    assert message.usage.input_tokens == PROMPT - CACHED  # Anthropic's: without the cache


async def test_every_usage_view_has_genai_prices_cost(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    made = await make_key(router, name="laptop", user="ana@example.com")
    await ask(router.url, made["key"], "gpt-4o", "s1")
    await ask(router.url, made["key"], "gpt-4o", "s1")
    expected = 2 * library_cost("gpt-4o")
    assert expected > 0

    session = await get(router.url, "/api/usage/sessions/s1")
    assert session["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert session["providers"]["c"]["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert session["providers"]["c"]["unpricedRequests"] == 0
    total = await get(router.url, "/api/usage")
    assert total["costUsd"] == pytest.approx(expected, rel=1e-9)
    key = await get(router.url, f"/api/usage/keys/{made['id']}")
    assert key["costUsd"] == pytest.approx(expected, rel=1e-9)
    user = await get(router.url, "/api/usage/users/ana@example.com")
    assert user["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert user["providers"]["c"]["costUsd"] == pytest.approx(expected, rel=1e-9)
    sessions = await get(router.url, "/api/usage/sessions")
    assert [s["costUsd"] for s in sessions["sessions"]] == [pytest.approx(expected, rel=1e-9)]

    # A model no price list knows: null, never 0, and counted as unpriced.
    await ask(router.url, API_KEY, "c,mystery-model-x", "s2")
    unknown = await get(router.url, "/api/usage/sessions/s2")
    assert unknown["costUsd"] is None
    assert unknown["providers"]["c"] == {
        "inputTokens": PROMPT - CACHED,
        "outputTokens": COMPLETION,
        "cacheReadTokens": CACHED,
        "requests": 1,
        "costUsd": None,
        "unpricedRequests": 1,
    }
    total = await get(router.url, "/api/usage")
    assert total["costUsd"] == pytest.approx(expected, rel=1e-9)  # the known part only
    assert total["providers"]["c"]["unpricedRequests"] == 1


async def test_the_configs_prices_override_and_add(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    prices = {
        "house-model": {"input": 2.0, "output": 8.0},  # cache reads at the input price
        "c,gpt-4o": {"input": 1.0, "output": 3.0, "cache_read": 0.5},
    }
    router = await start_router(config(fake, prices=prices))
    await ask(router.url, API_KEY, "c,house-model", "house")
    await ask(router.url, API_KEY, "gpt-4o", "override")
    house = await get(router.url, "/api/usage/sessions/house")
    fresh = PROMPT - CACHED
    assert house["costUsd"] == pytest.approx((fresh * 2 + CACHED * 2 + COMPLETION * 8) / 1e6)
    override = await get(router.url, "/api/usage/sessions/override")
    assert override["costUsd"] == pytest.approx((fresh * 1 + CACHED * 0.5 + COMPLETION * 3) / 1e6)
    assert override["costUsd"] != pytest.approx(library_cost("gpt-4o"))


async def test_budget_usd_refuses_once_spent(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    cost = library_cost("gpt-4o")
    made = await make_key(router, name="capped", limits={"budget_usd": cost * 1.5})
    await ask(router.url, made["key"], "gpt-4o", "b")  # spent: 1 x cost < budget
    await ask(router.url, made["key"], "gpt-4o", "b")  # spent: 2 x cost >= budget
    with pytest.raises(anthropic.RateLimitError, match="USD budget") as caught:
        await ask(router.url, made["key"], "gpt-4o", "b")
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 86400
    assert len(fake.requests) == 2
    # An unknown model costs nothing known, so it never spends a USD budget.
    unpriced = await make_key(router, name="unpriced", limits={"budget_usd": 1e-9})
    for _ in range(2):
        await ask(router.url, unpriced["key"], "c,mystery-model-x", "u")


async def test_a_file_of_the_previous_schema_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, script in migrations():
        if version <= 2:
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    conn.execute("INSERT INTO usage VALUES ('old', 'p', 10, 5, 1, 3)")
    conn.close()
    store = SQLiteStore(path)
    session = await store.session("old")
    assert session is not None
    usage = session.providers["p"]
    assert (usage.input_tokens, usage.output_tokens, usage.requests) == (10, 5, 3)
    assert usage.cost_usd is None and usage.unpriced_requests == 3
    await store.record(RequestRecord("old", "p", 1, 1, model="m", cost_usd=0.25))
    session = await store.session("old")
    assert session is not None and session.cost_usd == 0.25
    assert session.providers["p"].unpriced_requests == 3


async def test_timeline_and_recent_errors(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "usage.sqlite3")
    hour = 1_764_000_000 // 3600 * 3600
    records = [
        RequestRecord("s", "p", 10, 2, model="a", cost_usd=0.5, ended_at=hour + 5),
        RequestRecord("s", "p", 20, 4, model="b", cost_usd=None, ended_at=hour + 60),
        RequestRecord("s", "p", 1, 0, model="a", cost_usd=0.25, ended_at=hour + 3600),
        RequestRecord(
            "s", "q", model="a", error=True, status=502, error_message="down", ended_at=hour + 7
        ),
    ]
    for record in records:
        await store.record(record)
    rows = await store.timeline(hour, hour + 7200, "hour", "model")
    shown = [(r.start, r.group, r.requests, r.errors, r.input_tokens, r.cost_usd) for r in rows]
    assert shown == [
        (hour, "a", 2, 1, 10, 0.5),
        (hour, "b", 1, 0, 20, None),
        (hour + 3600, "a", 1, 0, 1, 0.25),
    ]
    days = await store.timeline(hour - 86400, hour + 86400, "day", "provider")
    assert {(r.group, r.requests) for r in days} == {("p", 3), ("q", 1)}
    assert all(r.start % 86400 == 0 for r in days)
    errors = await store.recent_errors(10)
    assert [(e.status, e.provider, e.message) for e in errors] == [(502, "q", "down")]

    for n in range(ERRORS_KEPT + 5):
        await store.record(
            RequestRecord(
                "s", "p", error=True, status=500, error_message=f"e{n}", ended_at=time.time()
            )
        )
    newest = await store.recent_errors(5000)
    assert len(newest) == ERRORS_KEPT
    assert newest[0].message == f"e{ERRORS_KEPT + 4}"
