"""Runs the anthropic SDK's ``tests/api_resources/test_messages.py`` once per server URL, in one
process: the SDK, its pytest plugins and their imports load once (most of a run's time), and
only the SDK's ``tests`` package is imported afresh for each URL, since it reads
``TEST_API_BASE_URL`` when imported.

Run from the unpacked sdist: ``python tests/sdk_suite.py URL...`` (used by
tests/test_sdk_conformance.py). Prints one JSON line: per URL, pytest's exit code and the
outcome of each test.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

TESTS = "tests/api_resources/test_messages.py"


class Outcomes:
    """A pytest plugin that keeps each test's outcome, with the report of a failure."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome
            if report.outcome != "passed":
                self.failures[report.nodeid] = str(report.longrepr)[-3000:]


def run(url: str) -> dict[str, Any]:
    os.environ["TEST_API_BASE_URL"] = url
    for name in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[name]
    outcomes = Outcomes()
    # The SDK's own config, with its addopts but -n (pytest-xdist) and its httpx2 alias.
    args = ["-c", "pyproject.toml", "--rootdir", ".", "-o", "addopts=", "-p", "tests._alias_httpx"]
    args += ["-p", "no:trio", "-p", "no:cacheprovider", "-q", TESTS]
    code = pytest.main(args, plugins=[outcomes])
    return {"exit": int(code), "outcomes": outcomes.outcomes, "failures": outcomes.failures}


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    results = {url: run(url) for url in sys.argv[1:]}
    print(json.dumps(results))
