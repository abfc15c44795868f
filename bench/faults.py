"""The fault phase: a provider failing 20 % of requests with 503, behind each gateway's retries.

A second fake upstream answers a random fifth of its POSTs with a 503 (``--fail-rate 0.2``).
Non-streamed requests (the fake answers them at once, so the figures are the gateways' and
their retries' own) are sent by ``THREADS`` threads, each on its own keep-alive connection and
pausing ``THINK_SECONDS`` between requests, so that no gateway is driven to its limit: a
saturated gateway's latency is its queue, which retries that sleep would shorten, and the
difference would not be their cost.

- ``router-noretry``: trio-router with ``retries: 0`` and no breaker: the error rate the client
  sees with no retries, which should be the fake's 20 %;
- ``router``: trio-router with its defaults (2 retries, full-jitter backoff, the breaker on);
- ``litellm``: LiteLLM's proxy with ``num_retries: 2`` (cool-downs stay off, as in the other
  phases: its single deployment would otherwise be taken out, a different feature).

Each retrying gateway also runs against the healthy fake, so that the *added* latency (p50 and
p99 under faults minus the same without) is its retries' cost alone.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import gateways, procstat

FAIL_RATE = 0.2
THREADS = 4
THINK_SECONDS = 0.1  # at most 40 requests/s: under a third of what LiteLLM's one worker serves
BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()
# name -> (the gateway spec it runs, what its config changes, the fakes it is run against)
RUNS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "router-noretry": ("router", {"retries": 0, "BREAKER_FAILURES": 0}, ("faulty",)),
    "router": ("router", {}, ("healthy", "faulty")),
    "litellm": ("litellm", {"num_retries": 2}, ("healthy", "faulty")),
}


def start_faulty_fake(port: int, workdir: Path, cpus: set[int] | None) -> subprocess.Popen[bytes]:
    log = (workdir / "fake-faulty.log").open("wb")
    argv = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
    argv += ["--fail-rate", str(FAIL_RATE), "--max-seconds", "3600"]
    proc = subprocess.Popen(
        argv,
        cwd=gateways.REPO,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=procstat.pinned_exec(cpus),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, _ = gateways.probe(port, "openai", "/v1/chat/completions", b'{"model":"m"}', 2)
        if status in (200, 503):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the faulty fake upstream did not start")


def _configure(launch: gateways.Launch, spec: str, changes: dict[str, Any]) -> None:
    """Apply ``changes`` to the config file ``gateways.prepare`` wrote."""
    path = Path(launch.argv[launch.argv.index("--config") + 1])
    if spec == "router":
        config = json.loads(path.read_text())
        for key, value in changes.items():
            if key.isupper():
                config[key] = value
            else:
                config["Providers"][0][key] = value
        path.write_text(json.dumps(config, indent=2))
    elif "num_retries" in changes:
        text = path.read_text().replace("num_retries: 0", f"num_retries: {changes['num_retries']}")
        path.write_text(text)


def drive(port: int, requests: int) -> dict[str, Any]:
    """``requests`` requests over THREADS connections: error rate and latency of all of them."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    share = requests // THREADS

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"content-type": "application/json", "x-api-key": "bench"}
        headers["anthropic-version"] = "2023-06-01"
        for _ in range(share):
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/messages", body=BODY, headers=headers)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
            time.sleep(THINK_SECONDS)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    total = len(latencies)
    ok = statuses.get("200", 0)
    cuts = statistics.quantiles(latencies, n=100) if total >= 2 else [0.0] * 99
    return {
        "requests": total,
        "ok": ok,
        "error_rate_pct": round(100 * (total - ok) / total, 2) if total else None,
        "statuses": statuses,
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2) if total else None,
        "latency_p99_ms": round(cuts[98] * 1000, 2),
        "wall_s": round(wall, 2),
    }


def run(
    healthy_port: int, workdir: Path, install: bool, cpus: set[int] | None, quick: bool
) -> dict[str, Any]:
    """Every run of :data:`RUNS`; the faulty fake is started here and stopped at the end."""
    requests = 40 if quick else 800
    faulty_port = gateways.free_port()
    results: dict[str, Any] = {
        "fail_rate_pct": round(FAIL_RATE * 100),
        "requests": requests,
        "threads": THREADS,
        "think_ms": round(THINK_SECONDS * 1000),
        "gateways": {},
    }
    fake = start_faulty_fake(faulty_port, workdir, None)
    try:
        for name, (spec, changes, fakes) in RUNS.items():
            result: dict[str, Any] = {"status": "ok", "config": changes}
            for which in fakes:
                print(f"  fault phase: {name}, {which} upstream", flush=True)
                port = gateways.free_port()
                fake_port = faulty_port if which == "faulty" else healthy_port
                home = workdir / f"faults-{name}-{which}"
                try:
                    launch = gateways.prepare(
                        spec, port, fake_port, home, install, "claude-sonnet-4-5"
                    )
                except gateways.Unavailable as exc:
                    result = {"status": "error", "error": str(exc)}
                    break
                _configure(launch, spec, changes)
                running = gateways.Running(name, launch, port, home / "gateway.log", cpus)
                try:
                    gateways.wait_ready(running, launch.ready_timeout)
                    drive(port, THREADS * 2)  # warm-up, not recorded
                    result[which] = drive(port, requests)
                    result["version"] = launch.version
                except gateways.Unavailable as exc:
                    result = {"status": "error", "error": str(exc), "log_tail": running.log_tail()}
                    break
                finally:
                    running.stop()
            if result.get("healthy") and result.get("faulty"):
                for q in ("p50", "p99"):
                    key = f"latency_{q}_ms"
                    added = result["faulty"][key] - result["healthy"][key]
                    result[f"added_{q}_ms"] = round(added, 2)
            results["gateways"][name] = result
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    return results
