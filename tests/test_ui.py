"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against the router
started as a process, with a fake provider: log in, see a request made through the anthropic
SDK appear with its cost, create a key, use it, revoke it; screenshots into the test's output."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anthropic
import pytest
import trio
from playwright.sync_api import Page, expect

from tests import openai_wire as wire
from tests.browser import chromium, page, screenshot
from tests.conftest import StartFake, provider_config
from tests.fakeserver import Reply, Request

ADMIN = "admin-ui-browser-key-0123456789"
CLIENT = "client-ui-browser-key-0123"
PROMPT, COMPLETION = 100_000, 20_000
# USD per million tokens, from the config's `prices`: 0.1 M x $3 + 0.02 M x $15 = $0.60.
PRICE = {"input": 3.0, "output": 15.0}
COST = "$0.60"
REFUSED = "please refuse this"


def _sdk(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def _ask(url: str, key: str, stream: bool, prompt: str = "Say hello") -> None:
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": prompt}],
    }
    sdk = _sdk(url, key)
    if stream:
        with sdk.messages.stream(**params) as events:
            assert events.get_final_message().content[0].type == "text"
    else:
        assert sdk.messages.create(**params).content[0].type == "text"


def _log_in(tab: Page, url: str, shots: Path) -> None:
    tab.goto(url + "/ui")
    expect(tab).to_have_url(url + "/ui/login")  # no session: sent to the login page
    tab.get_by_label("Admin key").fill("not-the-admin-key")
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_role("alert")).to_have_text("invalid admin key")
    screenshot(tab, shots, "login-refused")
    tab.get_by_label("Admin key").fill(ADMIN)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(url + "/ui")
    expect(tab.locator("#session")).to_contain_text("session until")


def _scenario(url: str, executable: str, shots: Path) -> None:
    with page(executable) as tab:
        failures: list[str] = []
        tab.on("pageerror", lambda error: failures.append(str(error)))
        tab.on("dialog", lambda dialog: dialog.accept())  # the revoke confirmation
        _log_in(tab, url, shots)
        # Nothing kept in the page's storage: the session is the HttpOnly cookie alone.
        assert tab.evaluate("localStorage.length + sessionStorage.length") == 0
        assert tab.evaluate("document.cookie") == ""
        expect(tab.locator("#total-requests")).to_have_text("0")
        expect(tab.locator("#errors tbody")).to_have_text("none yet")

        _ask(url, CLIENT, stream=True)
        tab.get_by_role("button", name="Refresh").click()
        expect(tab.locator("#total-requests")).to_have_text("1")
        expect(tab.locator("#total-input")).to_have_text(f"{PROMPT:,}")
        expect(tab.locator("#total-cost")).to_have_text(COST)
        row = tab.locator("#providers tbody tr", has_text="fake")
        expect(row).to_contain_text(COST)
        expect(tab.locator("#open-streams")).to_have_text("0 / 200")
        # The chart: one bar for the hour, its legend naming the provider with the cost.
        expect(tab.locator("#legend")).to_contain_text(f"fake: {COST}")
        expect(tab.locator("#chart rect")).to_have_count(1)
        tab.get_by_label("Metric", exact=True).select_option("requests")
        expect(tab.locator("#legend")).to_contain_text("fake: 1")
        # The config, masked, and a backup of it.
        expect(tab.locator("#config")).to_contain_text('"ADMIN_KEY": "admi****6789"')
        assert ADMIN not in tab.content()
        tab.get_by_role("button", name="Back up now").click()
        expect(tab.locator("#config-source option")).to_have_count(2)

        tab.get_by_label("Name", exact=True).fill("alice laptop")
        tab.get_by_label("User", exact=True).fill("alice@example.com")
        tab.get_by_role("button", name="Create key").click()
        secret = tab.locator("#secret-value")
        expect(secret).to_have_text(re.compile(r"^tr-[A-Za-z0-9_-]{40,}$"))
        key = secret.inner_text()
        keys_table = tab.locator("#keys tbody tr", has_text="alice laptop")
        expect(keys_table).to_contain_text("active")
        expect(keys_table).to_contain_text(key[:11])
        screenshot(tab, shots, "key-created")
        tab.get_by_role("button", name="Done").click()
        expect(secret).to_be_hidden()

        _ask(url, key, stream=False)  # the new key works, and its use shows per key and user
        tab.get_by_role("button", name="Refresh").click()
        expect(keys_table).to_contain_text(COST)
        tab.get_by_label("Metric", exact=True).select_option("costUsd")
        tab.get_by_label("Group by", exact=True).select_option("user")
        expect(tab.locator("#legend")).to_contain_text(f"alice@example.com: {COST}")
        tab.get_by_label("Group by", exact=True).select_option("key")
        expect(tab.locator("#legend")).to_contain_text("alice laptop")
        # A request the provider refuses is a recent error, with the provider's words.
        with pytest.raises(anthropic.BadRequestError):
            _ask(url, CLIENT, stream=False, prompt=REFUSED)
        tab.get_by_role("button", name="Refresh").click()
        error_row = tab.locator("#errors tbody tr").first
        expect(error_row).to_contain_text("400")
        expect(error_row).to_contain_text("fake,fake-model")
        expect(error_row).to_contain_text("this prompt is refused")
        screenshot(tab, shots, "dashboard", readme=True)

        tab.get_by_role("button", name="Disable key alice laptop").click()
        expect(keys_table).to_contain_text("disabled")
        with pytest.raises(anthropic.AuthenticationError):
            _ask(url, key, stream=False)
        tab.get_by_role("button", name="Revoke key alice laptop").click()
        expect(keys_table).to_have_count(0)
        with pytest.raises(anthropic.AuthenticationError):
            _ask(url, key, stream=False)
        screenshot(tab, shots, "after-revoke")

        tab.get_by_role("button", name="Log out").click()
        expect(tab).to_have_url(url + "/ui/login")
        tab.goto(url + "/ui")
        expect(tab).to_have_url(url + "/ui/login")
        assert failures == [], failures


async def test_dashboard_in_chromium(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    executable = chromium()

    def handler(request: Request) -> Reply:
        if REFUSED in json.dumps(request.json()["messages"]):
            return wire.error_reply(400, "this prompt is refused", "invalid_request_error")
        if request.json().get("stream"):
            return wire.stream_reply(
                wire.text_stream(["Hello"], prompt=PROMPT, completion=COMPLETION)
            )
        return Reply.json(wire.completion("Hello", prompt=PROMPT, completion_tokens=COMPLETION))

    fake = await start_fake(handler)
    config = {
        "APIKEY": CLIENT,
        "ADMIN_KEY": ADMIN,
        "HOST": "127.0.0.1",
        "Providers": [provider_config(fake)],
        "Router": {"default": "fake,fake-model"},
        "prices": {"fake-model": PRICE},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    router = await trio.to_thread.run_sync(router_process)
    shots = tmp_path / "screenshots"
    await trio.to_thread.run_sync(_scenario, router.url, executable, shots)
    assert {p.name for p in shots.iterdir()} >= {"login-refused.png", "dashboard.png"}
