"""Debian's Chromium driven by Playwright for Python, for the dashboard's tests.

Playwright's own browser download is never used (nothing outside the box is reachable): it
launches ``/usr/bin/chromium``, headless, with the switches that keep Chromium from calling
home. Playwright's sync API runs its own event loop, so a trio test runs its browser scenario
in a worker thread (``trio.to_thread.run_sync``), one whole scenario per thread.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# https://peter.sh/experiments/chromium-command-line-switches/: no sandbox (containers), no GPU,
# and none of the background traffic (updates, sync, field trials) a first run would start.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]
ROOT = Path(__file__).resolve().parent.parent


def chromium() -> str:
    """Chromium's path, else the test skips; under CI a missing Chromium fails it (CI installs
    it)."""
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@contextmanager
def page(executable: str, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A fresh browser profile and one page; everything is closed on the way out."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            tab = context.new_page()
            tab.set_default_timeout(15_000)
            yield tab
        finally:
            browser.close()


def screenshot(tab: Page, directory: Path, name: str, *, readme: bool = False) -> Path:
    """The whole page as ``directory/name.png``; with ``readme`` and ``UPDATE_SCREENSHOT=1``
    also as the README's ``docs/<name>.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.png"
    tab.screenshot(path=str(target), full_page=True)
    if readme and os.environ.get("UPDATE_SCREENSHOT") == "1":
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(target, docs / f"{name}.png")
    return target
