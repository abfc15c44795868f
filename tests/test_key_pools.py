"""Key pools (issue 17): ``api_keys`` round robin, a revoked key taken out, a rate-limited key
resting, and every key of a pool masked like ``api_key``."""

from __future__ import annotations

from typing import Any

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router.config import ConfigError, parse

USER = [{"role": "user", "content": "hi"}]
GOOD = "sk-pool-good-key-0000000001"
REVOKED = "sk-pool-revoked-key-000000002"
LIMITED = "sk-pool-limited-key-000000003"


def key_of(request: Request) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def by_key(request: Request) -> Reply:
    key = key_of(request)
    if key == REVOKED:
        return wire.error_reply(401, f"Incorrect API key provided: {key}", "invalid_request_error")
    if key == LIMITED:
        return wire.error_reply(429, "rate limited", "requests", [("retry-after", "30")])
    return Reply.json(wire.completion("ok"))


def pool_config(fake: Any, keys: list[str]) -> dict[str, Any]:
    provider = provider_config(fake, name="p", models=["m"], api_key="", api_keys=keys)
    return {"Providers": [provider], "Router": {"default": "p,m"}}


async def post(router: Any) -> Any:
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER}
    async with router.client() as client:
        return await client.post("/v1/messages", json=body)


async def test_a_revoked_key_is_taken_out_and_the_other_serves(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(by_key)
    router = await start_router(pool_config(fake, [REVOKED, GOOD]))
    for _ in range(4):
        response = await post(router)
        assert response.status_code == 200, response.text
    used = [key_of(r) for r in fake.requests]
    assert used.count(REVOKED) == 1  # refused once, never tried again
    assert used.count(GOOD) == 4
    log = router.log_file.read_text()
    assert "refused key sk-p****0002 (401): taken out of its pool, 1 left" in log
    assert REVOKED not in log


async def test_keys_take_turns_and_a_rate_limited_key_rests(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(by_key)
    router = await start_router(pool_config(fake, [LIMITED, GOOD]))
    for _ in range(3):
        response = await post(router)
        assert response.status_code == 200, response.text
    used = [key_of(r) for r in fake.requests]
    # The limited key's 429 says 30 s: the request goes on with the other key at once, and
    # the limited key is not tried again while it rests.
    assert used == [LIMITED, GOOD, GOOD, GOOD]


async def test_every_key_refused_is_an_error_naming_no_key(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(by_key)
    router = await start_router(pool_config(fake, [REVOKED]))
    response = await post(router)
    assert response.status_code == 401
    assert REVOKED not in response.text
    response = await post(router)
    assert response.status_code == 401
    assert "refused every key of its api_keys" in response.json()["error"]["message"]
    assert len(fake.requests) == 1


async def test_the_pool_is_masked_and_restored_key_by_key(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(by_key)
    router = await start_router(pool_config(fake, [GOOD, LIMITED]))
    async with router.client() as client:
        shown = (await client.get("/api/config")).json()
        keys = shown["Providers"][0]["api_keys"]
        assert keys == ["sk-p****0001", "sk-p****0003"]
        # Saved back reordered, one key dropped, one added: each mask finds its key.
        shown["Providers"][0]["api_keys"] = [keys[1], "sk-pool-new-key-00000000004"]
        saved = await client.post("/api/config", json=shown)
        assert saved.status_code == 200, saved.text
        keys = (await client.get("/api/config")).json()["Providers"][0]["api_keys"]
        assert keys == ["sk-p****0003", "sk-p****0004"]
        shown["Providers"][0]["api_keys"] = ["sk-p****9999"]
        refused = await client.post("/api/config", json=shown)
        assert refused.status_code == 400
        assert "Providers[0].api_keys[0]" in refused.json()["error"]["message"]
    written = router.config_path.read_text()
    assert LIMITED in written and "sk-pool-new-key-00000000004" in written


def test_pool_config_is_checked() -> None:
    raw = {
        "Providers": [
            {
                "name": "p",
                "api_base_url": "http://x",
                "models": ["m"],
                "api_key": "k",
                "api_keys": ["a", " "],
            }
        ],
        "Router": {"default": "p,m"},
    }
    try:
        parse(raw, "config.json", {})
    except ConfigError as error:
        assert error.problems == [
            "Providers[0].api_keys: set api_key or api_keys, not both",
            "Providers[0].api_keys[1]: must be a non-empty key",
        ]
    else:
        raise AssertionError("accepted")
