"""Client keys over the real server: made by the admin key, used with the anthropic SDK,
counted per key and user, restricted to routes, revoked in every worker (issue 16)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import trio
from anthropic.types import MessageParam

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import FakeServer, Reply, Request

API_KEY = "client-apikey-0123456789"
ADMIN_KEY = "admin-key-0123456789abc"
ADMIN = {"x-api-key": ADMIN_KEY}
USER: list[MessageParam] = [{"role": "user", "content": "hi"}]


def answer(request: Request) -> Reply:
    if request.json().get("stream"):
        return wire.stream_reply(wire.text_stream(["o", "k"], prompt=11, completion=7))
    return Reply.json(wire.completion("ok", prompt=11, completion_tokens=7))


def config(*fakes: FakeServer, **extra: Any) -> dict[str, Any]:
    providers = [
        provider_config(fake, name=name, models=["m", "n"])
        for fake, name in zip(fakes, ("p", "q"), strict=False)
    ]
    return {
        "LOG": False,
        "APIKEY": API_KEY,
        "ADMIN_KEY": ADMIN_KEY,
        "Providers": providers,
        "Router": {"default": "p,m"} if fakes else {},
        **extra,
    }


async def make_key(router: RunningRouter | str, **spec: Any) -> dict[str, Any]:
    url = router if isinstance(router, str) else router.url
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/api/keys", json=spec, headers=ADMIN)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def sdk(router: RunningRouter | str, key: str) -> anthropic.AsyncAnthropic:
    url = router if isinstance(router, str) else router.url
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


async def test_a_key_is_made_used_with_the_sdk_and_its_usage_shown(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    made = await make_key(router, name="alice laptop", user="alice@example.com")
    secret = made["key"]
    assert secret.startswith("tr-") and len(secret) >= 3 + 43
    assert made["prefix"] == secret[:11] and made["id"].startswith("key_")
    assert made["user"] == "alice@example.com" and made["disabled"] is False

    client = sdk(router, secret)
    message = await client.messages.create(model="m", max_tokens=5, messages=USER)
    assert message.content[0].text == "ok"  # type: ignore[union-attr]
    async with client.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 7
    count = await client.messages.count_tokens(model="m", messages=USER)
    assert count.input_tokens > 0

    async with router.client(headers=ADMIN) as http:
        listed = (await http.get("/api/keys")).json()["keys"]
        one = (await http.get(f"/api/keys/{made['id']}")).json()
        usage = (await http.get(f"/api/usage/keys/{made['id']}")).json()
        user = (await http.get("/api/usage/users/alice@example.com")).json()
        total = (await http.get("/api/usage")).json()
        session = (await http.get("/api/usage/sessions/default")).json()
    # The secret is shown once: never again, nor its hash.
    assert [k["id"] for k in listed] == [made["id"]]
    for shown in (listed[0], one):
        assert "key" not in shown and secret not in json.dumps(shown)
        assert "hash" not in json.dumps(shown)
        assert shown["prefix"] == made["prefix"]
    # count_tokens is no model request: two requests counted.
    assert usage == {
        "keyId": made["id"],
        "name": "alice laptop",
        "user": "alice@example.com",
        "providers": {
            "p": {
                "inputTokens": 22,
                "outputTokens": 14,
                "cacheReadTokens": 0,
                "requests": 2,
                "errors": 0,
                # The test's model has no price: null, never 0 (test_cost.py prices them).
                "costUsd": None,
                "unpricedRequests": 2,
            }
        },
        "totalInputTokens": 22,
        "totalOutputTokens": 14,
        "totalRequests": 2,
        "totalErrors": 0,
        "rateLimited": 0,
        "costUsd": None,
    }
    assert user["user"] == "alice@example.com"
    assert user["keys"] == [{"id": made["id"], "name": "alice laptop"}]
    assert user["totalRequests"] == 2 and user["providers"]["p"]["inputTokens"] == 22
    # The existing views keep their shapes, with the cost added.
    assert set(total) == {
        "providers",
        "totalInputTokens",
        "totalOutputTokens",
        "totalRequests",
        "sessions",
        "costUsd",
    }
    assert total["providers"]["p"] == {
        "inputTokens": 22,
        "outputTokens": 14,
        "cacheReadTokens": 0,
        "requests": 2,
        "costUsd": None,
        "unpricedRequests": 2,
    }
    assert set(session) == {
        "sessionId",
        "providers",
        "totalInputTokens",
        "totalOutputTokens",
        "totalRequests",
        "costUsd",
    }


async def test_apikey_still_works_and_a_wrong_key_is_401(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    await make_key(router, name="bob")
    ok = await sdk(router, API_KEY).messages.create(model="m", max_tokens=5, messages=USER)
    assert ok.content[0].text == "ok"  # type: ignore[union-attr]
    for wrong in ("tr-" + "A" * 43, "not-a-key", ADMIN_KEY):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await sdk(router, wrong).messages.create(model="m", max_tokens=5, messages=USER)
        assert caught.value.status_code == 401
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_a_client_key_gets_403_on_the_management_api(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    secret = (await make_key(router, name="carol"))["key"]
    async with router.client() as http:
        for method, path in (
            ("GET", "/api/config"),
            ("GET", "/api/keys"),
            ("POST", "/api/keys"),
            ("GET", "/api/usage"),
            ("DELETE", "/api/usage/sessions/default"),
        ):
            response = await http.request(method, path, headers={"x-api-key": secret})
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"]["type"] == "permission_error"
            bearer = await http.request(method, path, headers={"authorization": f"Bearer {secret}"})
            assert bearer.status_code == 403
        # A key that does not exist is a 401, as before.
        wrong = await http.get("/api/keys", headers={"x-api-key": "tr-" + "B" * 43})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["type"] == "authentication_error"


async def test_a_key_may_use_only_its_routes_and_models(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake_p, fake_q = await start_fake(answer), await start_fake(answer)
    router = await start_router(config(fake_p, fake_q))
    only_p = (await make_key(router, name="p only", routes=["p"]))["key"]
    only_qn = (await make_key(router, name="q,n only", routes=["q,n"]))["key"]
    model_n = (await make_key(router, name="n anywhere", models=["n"]))["key"]
    allowed = [(only_p, "p,m"), (only_p, "p,n"), (only_p, "m"), (only_qn, "q,n"), (model_n, "p,n")]
    denied = [(only_p, "q,m"), (only_qn, "q,m"), (only_qn, "m"), (model_n, "q,m")]
    for secret, model in allowed:
        message = await sdk(router, secret).messages.create(
            model=model,
            max_tokens=5,
            messages=USER,
        )
        assert message.content[0].text == "ok"  # type: ignore[union-attr]
    before = len(fake_p.requests) + len(fake_q.requests)
    for secret, model in denied:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            await sdk(router, secret).messages.create(model=model, max_tokens=5, messages=USER)
        assert caught.value.body["error"]["type"] == "permission_error", model  # type: ignore[index]
        assert model.split(",")[-1] in str(caught.value)
    assert len(fake_p.requests) + len(fake_q.requests) == before, "nothing denied went upstream"


async def test_disable_expire_and_patch(start_router: StartRouter, start_fake: StartFake) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    made = await make_key(router, name="dave", limits={"rpm": 100})
    client = sdk(router, made["key"])
    await client.messages.create(model="m", max_tokens=5, messages=USER)
    async with router.client(headers=ADMIN) as http:
        patched = await http.patch(f"/api/keys/{made['id']}", json={"disabled": True})
        assert patched.status_code == 200, patched.text
        assert patched.json()["disabled"] is True and patched.json()["limits"] == {"rpm": 100}
    with pytest.raises(anthropic.AuthenticationError, match="disabled"):
        await client.messages.create(model="m", max_tokens=5, messages=USER)
    async with router.client(headers=ADMIN) as http:
        patched = await http.patch(
            f"/api/keys/{made['id']}",
            json={"disabled": False, "expires_at": "2020-01-01T00:00:00Z", "limits": {}},
        )
        assert patched.json()["expires_at"] == "2020-01-01T00:00:00Z"
        assert patched.json()["limits"] == {}
    with pytest.raises(anthropic.AuthenticationError, match="expired"):
        await client.messages.create(model="m", max_tokens=5, messages=USER)
    async with router.client(headers=ADMIN) as http:
        await http.patch(
            f"/api/keys/{made['id']}", json={"expires_at": "2999-01-01T00:00:00+00:00"}
        )
    await client.messages.create(model="m", max_tokens=5, messages=USER)
    # Counted: two answered, two refused.
    async with router.client(headers=ADMIN) as http:
        usage = (await http.get(f"/api/usage/keys/{made['id']}")).json()
    assert usage["providers"]["p"]["requests"] == 2


BAD_BODIES: list[tuple[Any, str]] = [
    ({"name": "x", "colour": "red"}, "colour"),
    ({}, "name"),
    ({"name": ""}, "$.name"),
    ({"name": "x", "limits": {"rpm": 0}}, "$.limits.rpm"),
    ({"name": "x", "limits": {"rpm": "2"}}, "$.limits.rpm"),
    ({"name": "x", "limits": {"burst": 2}}, "burst"),
    ({"name": "x", "limits": {"budget_period": "week"}}, "budget_period"),
    ({"name": "x", "routes": "p"}, "$.routes"),
    ({"name": "x", "expires_at": "tomorrow"}, "$.expires_at"),
    ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "$.expires_at"),  # no time zone
    (b"{not json", "JSON"),
    ([1], "object"),
]


async def test_bad_key_bodies_are_400_naming_the_field(start_router: StartRouter) -> None:
    router = await start_router(config())
    async with router.client(headers=ADMIN) as http:
        for body, named in BAD_BODIES:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = await http.post("/api/keys", content=content)
            assert response.status_code == 400, (body, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert named in error["message"], (body, error)
        assert (await http.get("/api/keys")).json() == {"keys": []}
        made = (await http.post("/api/keys", json={"name": "y"})).json()
        for patch, named in [({"user": "z"}, "user"), ({"limits": {"tpm": -1}}, "$.limits.tpm")]:
            response = await http.patch(f"/api/keys/{made['id']}", json=patch)
            assert response.status_code == 400, response.text
            assert named in response.json()["error"]["message"]


async def test_unknown_key_ids_are_404(start_router: StartRouter) -> None:
    router = await start_router(config())
    async with router.client(headers=ADMIN) as http:
        for method, path in (
            ("GET", "/api/keys/key_nope"),
            ("PATCH", "/api/keys/key_nope"),
            ("DELETE", "/api/keys/key_nope"),
            ("GET", "/api/usage/keys/key_nope"),
            ("GET", "/api/usage/users/nobody@example.com"),
        ):
            response = await http.request(method, path, json={})
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["type"] == "not_found_error"
        made = (await http.post("/api/keys", json={"name": "gone"})).json()
        assert (await http.delete(f"/api/keys/{made['id']}")).json() == {
            "success": True,
            "id": made["id"],
        }
        assert (await http.get(f"/api/keys/{made['id']}")).status_code == 404
        assert (await http.delete(f"/api/keys/{made['id']}")).status_code == 404
        # Its usage still shows, with its name.
        assert (await http.get(f"/api/usage/keys/{made['id']}")).json()["name"] == "gone"


async def test_once_a_key_exists_v1_needs_one_even_without_apikey(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router({**config(fake), "APIKEY": ""})
    open_client = sdk(router, "anything")
    assert (await open_client.messages.create(model="m", max_tokens=5, messages=USER)).id
    secret = (await make_key(router, name="erin"))["key"]
    with pytest.raises(anthropic.AuthenticationError):
        await open_client.messages.create(model="m", max_tokens=5, messages=USER)
    async with router.client() as http:
        missing = await http.post("/v1/messages/count_tokens", json={"messages": USER})
        assert missing.status_code == 401
        assert "missing API key" in missing.json()["error"]["message"]
    ok = await sdk(router, secret).messages.create(model="m", max_tokens=5, messages=USER)
    assert ok.content[0].text == "ok"  # type: ignore[union-attr]


def _pids(text: str) -> set[str]:
    return {part.split("]")[0] for part in text.split("[pid ")[1:]}


async def test_a_revoked_key_is_refused_by_every_worker_within_a_second(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    fake = await start_fake(answer)
    (tmp_path / "config.json").write_text(json.dumps({**config(fake), "LOG": True}))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))
    made = await make_key(router.url, name="frank")
    secret = made["key"]
    body = {"model": "m", "max_tokens": 5, "messages": USER}

    async def status_codes(n: int) -> list[int]:
        codes: list[int] = []

        async def one() -> None:
            # A new connection each time, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as fresh:
                response = await fresh.post(
                    "/v1/messages", json=body, headers={"x-api-key": secret}
                )
            codes.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
        return codes

    assert await status_codes(40) == [200] * 40
    log_file = tmp_path / "logs" / "trio-router.log"
    with trio.fail_after(5):
        while log_file.read_text().count("POST /v1/messages 200") < 40:
            await trio.sleep(0.02)
    assert len(_pids(log_file.read_text())) == 2, "both workers should have served the key"

    async with httpx.AsyncClient(base_url=router.url, timeout=30, headers=ADMIN) as http:
        assert (await http.delete(f"/api/keys/{made['id']}")).status_code == 200
    await trio.sleep(1.0)
    assert await status_codes(40) == [401] * 40
    with trio.fail_after(5):
        while log_file.read_text().count("POST /v1/messages 401") < 40:
            await trio.sleep(0.02)
    refusals = [line for line in log_file.read_text().splitlines() if "/v1/messages 401" in line]
    assert len(_pids("\n".join(refusals))) == 2, "both workers should have refused it"
    os.kill(router.process.pid, signal.SIGTERM)
    await trio.to_thread.run_sync(lambda: router.process.wait(timeout=20))
