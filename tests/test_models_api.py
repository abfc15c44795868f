"""``GET /v1/models`` over the real server, read by the anthropic SDK (issue 22)."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from tests.test_client_keys import ADMIN, ADMIN_KEY, API_KEY, make_key


def answer(request: Request) -> Reply:
    return Reply.json(wire.completion(f"from {request.json()['model']}"))


async def models_router(
    start_router: StartRouter,
    start_fake: StartFake,
    p_models: list[str],
    rules: dict[str, str],
) -> RunningRouter:
    """A router with providers ``p`` (``p_models``) and ``q`` (``m3``) on one fake."""
    fake = await start_fake(answer)
    return await start_router(
        {
            "LOG": False,
            "APIKEY": API_KEY,
            "ADMIN_KEY": ADMIN_KEY,
            "Providers": [
                provider_config(fake, name="p", models=p_models),
                provider_config(fake, name="q", models=["m3"]),
            ],
            "Router": rules,
        }
    )


async def test_the_sdk_lists_every_configured_model_and_uses_one_it_listed(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    rules = {"default": "p,m1", "background": "q,m3", "think": "p,m1"}
    router = await models_router(start_router, start_fake, ["m1", "vendor/m2"], rules)
    sdk = anthropic.AsyncAnthropic(base_url=router.url, api_key=API_KEY, max_retries=0)
    listed = [model async for model in sdk.models.list()]
    assert [m.id for m in listed] == ["p,m1", "p,vendor/m2", "q,m3"]
    assert listed[0].display_name == "m1 (p): default, think"
    assert listed[1].display_name == "vendor/m2 (p)"
    assert listed[0].type == "model" and listed[0].created_at.year >= 2026

    # Pages as Anthropic's API pages them; the SDK walks them all.
    first = await sdk.models.list(limit=2)
    assert [m.id for m in first.data] == ["p,m1", "p,vendor/m2"] and first.has_more
    assert first.last_id == "p,vendor/m2"
    walked = [model.id async for model in await sdk.models.list(limit=1)]
    assert walked == ["p,m1", "p,vendor/m2", "q,m3"]
    before = await sdk.models.list(before_id="q,m3", limit=1)
    assert [m.id for m in before.data] == ["p,vendor/m2"] and before.has_more

    # An id from the list is a model the gateway routes to, as Claude Code's /model sends it.
    one = await sdk.models.retrieve("p,vendor/m2")
    assert one.id == "p,vendor/m2"
    message = await sdk.messages.create(
        model=one.id, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "from vendor/m2"  # type: ignore[union-attr]
    with pytest.raises(anthropic.NotFoundError):
        await sdk.models.retrieve("p,nope")


async def test_bad_pages_are_400s_and_a_client_key_sees_only_what_it_may_use(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router = await models_router(start_router, start_fake, ["m1", "m2"], {"default": "p,m1"})
    made = await make_key(router, name="narrow", routes=["p,m2", "q"])
    narrow = anthropic.AsyncAnthropic(base_url=router.url, api_key=made["key"], max_retries=0)
    assert [m.id async for m in narrow.models.list()] == ["p,m2", "q,m3"]
    with pytest.raises(anthropic.NotFoundError):
        await narrow.models.retrieve("p,m1")

    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        headers = {"x-api-key": API_KEY}
        for query in (
            "limit=0",
            "limit=1001",
            "limit=x",
            "after_id=zz",
            "after_id=p,m1&before_id=q,m3",
        ):
            response = await client.get(f"/v1/models?{query}", headers=headers)
            assert response.status_code == 400, query
            assert response.json()["error"]["type"] == "invalid_request_error"
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/v1/models", headers=ADMIN)).status_code == 401
