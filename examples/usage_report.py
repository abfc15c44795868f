"""Print a running trio-router's token usage, one line per session and provider.

    ADMIN_KEY=your-admin-key .venv/bin/python examples/usage_report.py
    .venv/bin/python examples/usage_report.py --json        # the raw answer instead

ROUTER_URL defaults to http://127.0.0.1:3456; the key is ADMIN_KEY, else ROUTER_API_KEY (while
the server has no ADMIN_KEY, its APIKEY opens /api/*). Standard library only, so it runs
anywhere Python does, for example from cron.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from typing import Any

URL = os.environ.get("ROUTER_URL", "http://127.0.0.1:3456")
KEY = os.environ.get("ADMIN_KEY") or os.environ.get("ROUTER_API_KEY", "")


def get(path: str) -> Any:
    request = urllib.request.Request(URL + path, headers={"x-api-key": KEY} if KEY else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> None:
    sessions = get("/api/usage/sessions")["sessions"]
    if "--json" in sys.argv[1:]:
        print(json.dumps(sessions, indent=2))
        return
    print(f"{'session':<40} {'provider':<16} {'requests':>8} {'input':>10} {'output':>10}")
    for session in sessions:
        for provider, usage in session["providers"].items():
            print(
                f"{session['sessionId']:<40} {provider:<16} {usage['requests']:>8}"
                f" {usage['inputTokens']:>10} {usage['outputTokens']:>10}"
            )
    totals = get("/api/usage")
    print(
        f"{'total':<40} {'':<16} {totals['totalRequests']:>8}"
        f" {totals['totalInputTokens']:>10} {totals['totalOutputTokens']:>10}"
    )


if __name__ == "__main__":
    main()
