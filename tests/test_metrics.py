"""``GET /metrics`` over the real server (issue 19): parsed with prometheus-client's own
parser, its counts match the requests made through the SDK, with one worker and with two.

The in-process routers of one test run share the process's metrics, so each test uses
provider names of its own and compares with a scrape taken before its requests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests import openai_wire as wire
from tests.conftest import (
    RouterProcess,
    StartFake,
    StartRouter,
    provider_config,
)
from tests.fakeserver import Reply, Request
from tests.test_client_keys import ADMIN, ADMIN_KEY, USER, make_key, sdk

API_KEY = "client-key-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def answer(request: Request) -> Reply:
    """11 + 7 tokens; model "bad" is refused with OpenAI's 400; "hang" streams then hangs."""
    body = request.json()
    if body["model"] == "bad":
        return wire.error_reply(400, "no such model", "invalid_request_error")
    if body["model"] == "hang":
        frames = wire.sse([wire.chunk({"role": "assistant", "content": "o"})], done=False)
        return wire.stream_reply(frames, then="hang")
    if body.get("stream"):  # a pause before each frame: a chunk each
        frames = wire.text_stream(["o", "k"], prompt=11, completion=7)
        return wire.stream_reply(frames, delay=0.01)
    return Reply.json(wire.completion("ok", prompt=11, completion_tokens=7))


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str, key: str = ADMIN_KEY) -> Samples:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get("/metrics", headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
    return value(after, metric, **labels) - value(before, metric, **labels)


def config(*providers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "LOG": False,
        "APIKEY": API_KEY,
        "ADMIN_KEY": ADMIN_KEY,
        "Providers": list(providers),
        "Router": {"default": f"{providers[0]['name']},m"},
        **extra,
    }


async def test_counts_match_the_requests_made(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(provider_config(fake, name="mx", models=["m", "hang"])))
    before = await scrape(router.url)
    client = sdk(router, API_KEY)
    await client.messages.create(model="m", max_tokens=5, messages=USER)
    async with client.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
        await stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="mx,bad", max_tokens=5, messages=USER)

    # A client that leaves mid-stream: the router counts a 499 and closes the open stream.
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        body = {"model": "mx,hang", "max_tokens": 5, "messages": USER, "stream": True}
        headers = {"x-api-key": API_KEY}
        async with http.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            received = response.aiter_bytes()  # kept: a dropped iterator closes the response
            await received.__anext__()
            with trio.fail_after(10):
                await fake.hanging.wait()
            during = await scrape(router.url)
    with trio.fail_after(10):
        while not delta(
            before,
            await scrape(router.url),
            "trio_router_client_disconnects_total",
            provider="mx",
        ):
            await trio.sleep(0.02)
    # Scraped once more: a scrape reads the counter files in a thread, which may run while the
    # worker writes the 499's counts, so the one that first saw a count can miss the others.
    # The worker writes them all in one call on its event loop, before it serves a next scrape.
    after = await scrape(router.url)

    assert value(during, "trio_router_open_streams") >= 1
    assert value(after, "trio_router_open_streams") == 0
    ok = {"route": "default", "provider": "mx", "model": "m", "status": "200"}
    requests = "trio_router_requests_total"
    assert delta(before, after, requests, **ok, stream="false") == 1
    assert delta(before, after, requests, **ok, stream="true") == 1
    bad = {"route": "explicit", "provider": "mx", "model": "other", "status": "400"}
    assert delta(before, after, requests, **bad, stream="false") == 1
    left = {"route": "explicit", "provider": "mx", "model": "hang", "status": "499"}
    assert delta(before, after, requests, **left, stream="true") == 1
    tokens = "trio_router_tokens_total"
    assert delta(before, after, tokens, provider="mx", model="m", kind="input") == 22
    assert delta(before, after, tokens, provider="mx", model="m", kind="output") == 14
    errors = "trio_router_upstream_errors_total"
    assert delta(before, after, errors, provider="mx", kind="client_error") == 1
    # Both answers had a first byte; the stream's chunks were counted once, at its end.
    ttfb = "trio_router_time_to_first_byte_seconds_count"
    assert delta(before, after, ttfb, provider="mx", model="m") == 2
    ttft = "trio_router_time_to_first_token_seconds_count"
    assert delta(before, after, ttft, provider="mx", model="m") == 1
    assert delta(before, after, ttft, provider="mx", model="hang") == 1
    duration = "trio_router_stream_duration_seconds_count"
    assert delta(before, after, duration, provider="mx", model="m") == 1
    assert delta(before, after, "trio_router_stream_chunks_total", provider="mx", model="m") >= 3


async def test_retries_fallbacks_breaker_and_rate_limits(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    down = await start_fake(lambda request: wire.error_reply(503, "overloaded", "server_error"))
    up = await start_fake(answer)
    router = await start_router(
        config(
            provider_config(down, name="mdown", models=["m"], retries=1),
            provider_config(up, name="mup", models=["m"]),
            fallback={"default": ["mup,m"]},
            BREAKER_FAILURES=1,
        )
    )
    before = await scrape(router.url)
    await sdk(router, API_KEY).messages.create(model="m", max_tokens=5, messages=USER)
    made = await make_key(router, name="one a minute", limits={"rpm": 1})
    await sdk(router, made["key"]).messages.create(model="m", max_tokens=5, messages=USER)
    with pytest.raises(anthropic.RateLimitError):
        await sdk(router, made["key"]).messages.create(model="m", max_tokens=5, messages=USER)
    after = await scrape(router.url)

    assert delta(before, after, "trio_router_retries_total", provider="mdown") == 1
    assert delta(before, after, "trio_router_fallbacks_total", provider="mdown", to="mup") == 2
    errors = "trio_router_upstream_errors_total"
    # The first request: two attempts; the second: none, the breaker was open.
    assert delta(before, after, errors, provider="mdown", kind="overloaded") == 2
    assert value(after, "trio_router_breaker_state", provider="mdown") == 2
    limited = {"key": made["id"], "name": "one a minute"}
    assert delta(before, after, "trio_router_rate_limited_total", **limited) == 1
    refused = {"route": "", "provider": "", "model": "", "status": "429", "stream": "false"}
    assert delta(before, after, "trio_router_requests_total", **refused) >= 1


async def test_metrics_need_the_admin_or_metrics_key_and_can_be_off(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(
        config(provider_config(fake, name="mk", models=["m"]), METRICS_KEY="scraper-key-0123")
    )
    await scrape(router.url, "scraper-key-0123")
    async with router.client() as http:
        for headers in ({}, {"x-api-key": API_KEY}, {"x-api-key": "wrong"}):
            response = await http.get("/metrics", headers=headers)
            assert response.status_code in (401, 403), headers
            assert "trio_router" not in response.text
    off = await start_router(config(provider_config(fake, name="mo", models=["m"]), METRICS=False))
    async with off.client(headers=ADMIN) as http:
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert response.json()["type"] == "error"


def _pids(multiproc: Path) -> set[str]:
    """The workers that counted a request: prometheus-client's files are named by pid."""
    return {f.stem.rsplit("_", 1)[1] for f in multiproc.glob("counter_*.db")}


async def _spread(url: str, multiproc: Path) -> int:
    """Requests, each on a new connection so that the kernel spreads them over the workers
    (SO_REUSEPORT), until both have served some (the second may start listening later)."""
    made = 0
    with trio.fail_after(30):
        while made < 6 or len(_pids(multiproc)) < 2:
            client = anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0)
            async with client:
                await client.messages.create(model="m", max_tokens=5, messages=USER)
            made += 1
    return made


async def test_two_workers_are_counted_together(
    start_fake: StartFake,
    router_process: Any,
    tmp_path: Path,
) -> None:
    fake = await start_fake(answer)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(provider_config(fake, name="mw", models=["m"]))))
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {"CONFIG_PATH": str(path), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    started: RouterProcess = router_process("--workers", "2", env=env)
    made = await _spread(started.url, multiproc)
    ok = {"route": "default", "provider": "mw", "model": "m", "status": "200", "stream": "false"}
    for _ in range(4):  # whichever worker answers the scrape, it counts both
        samples = await scrape(started.url)
        assert value(samples, "trio_router_requests_total", **ok) == made
        tokens = value(samples, "trio_router_tokens_total", provider="mw", model="m", kind="input")
        assert tokens == 11 * made


def test_prepare_multiprocess_dir_is_fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from trio_router import metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_7.db").write_bytes(b"old")
    assert metrics.prepare_multiprocess_dir() == (tmp_path, False)
    assert not list(tmp_path.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made, created = metrics.prepare_multiprocess_dir()
    try:
        assert created and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(made)
        (made / "gauge_livesum_42.db").write_bytes(b"")
        metrics.mark_process_dead(42)
        assert not list(made.iterdir())
    finally:
        metrics.remove_multiprocess_dir(made)
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert not made.exists()
