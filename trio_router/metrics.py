"""``GET /metrics``: the gateway's health and traffic in Prometheus' text format.

prometheus-client counts in each worker; with several workers it runs in its multiprocess
mode (https://prometheus.github.io/client_python/multiprocess/): every worker writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape, whichever worker serves it, sums
them all. The variable must be set before a worker creates a metric, so the master prepares
a fresh directory before it spawns any (:func:`prepare_multiprocess_dir`) and tells the library
when one exits (:func:`mark_process_dead`), so that its live gauges (open streams, breaker
states) stop counting. A single process without the variable counts in memory.

Label values are bounded: providers are the config's, a model is one of the config's models
or ``other``, a key is one of at most :data:`MAX_KEY_LABELS` per worker; never a session id.
The hot path records once per request: a stream's chunks are the count ``messages.py``
already keeps, added at its end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from quart import Response

from .config import Config
from .errors import NotFoundError

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .state import State

MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
MAX_KEY_LABELS: Final = 200  # distinct client keys labelled per worker; then "other"
OTHER: Final = "other"
_PREFIX: Final = "trio_router_"

# Seconds: a first byte within ms to minutes (a model that thinks first), a stream up to the
# longest answer (API_TIMEOUT_MS's 10 min default).
_FIRST_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_STREAM_BUCKETS: Final = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Breaker states as a gauge's values (reliability.py's Breaker).
CLOSED, PROBING, OPEN = 0, 1, 2


def prepare_multiprocess_dir() -> tuple[Path, bool]:
    """For the multi-worker master, before it spawns a worker: a directory with no values
    of an earlier run (``$PROMETHEUS_MULTIPROC_DIR``, emptied, else a new temporary one, set
    in the environment the workers inherit). Returns it and whether it was made here (then
    :func:`remove_multiprocess_dir` removes it when the master ends)."""
    given = os.environ.get(MULTIPROC_VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # the library's docs: wipe it between runs
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="trio-router-metrics-"))
    os.environ[MULTIPROC_VARIABLE] = str(path)
    return path, True


def mark_process_dead(pid: int) -> None:
    """For the master, when worker ``pid`` exited: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_VARIABLE):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove_multiprocess_dir(path: Path) -> None:
    """For the master, at its end, for a directory :func:`prepare_multiprocess_dir` made."""
    shutil.rmtree(path, ignore_errors=True)


class Labels:
    """One config's bounded label values."""

    def __init__(self, config: Config) -> None:
        self.models = frozenset(model for p in config.Providers for model in p.models)

    def model(self, model: str) -> str:
        return model if model in self.models else OTHER


class Metrics:
    """The worker's metric objects (made once, after the multiprocess directory is known)."""

    def __init__(self) -> None:
        pm = ("provider", "model")
        self.requests = Counter(
            _PREFIX + "requests",
            "Requests to /v1/messages by route, provider, model, status and stream",
            ("route", "provider", "model", "status", "stream"),
        )
        self.first_byte = Histogram(
            _PREFIX + "time_to_first_byte_seconds",
            "From the request's arrival to the provider's response headers",
            pm,
            buckets=_FIRST_BUCKETS,
        )
        self.first_token = Histogram(
            _PREFIX + "time_to_first_token_seconds",
            "From a stream's arrival to the provider's first chunk",
            pm,
            buckets=_FIRST_BUCKETS,
        )
        self.stream_duration = Histogram(
            _PREFIX + "stream_duration_seconds",
            "From a stream's arrival to its end",
            pm,
            buckets=_STREAM_BUCKETS,
        )
        self.chunks = Counter(_PREFIX + "stream_chunks", "Chunks streamed to clients", pm)
        self.tokens = Counter(
            _PREFIX + "tokens", "Tokens by kind: input, output, cache_read", (*pm, "kind")
        )
        self.upstream_errors = Counter(
            _PREFIX + "upstream_errors",
            "Failed provider attempts by kind",
            ("provider", "kind"),
        )
        self.retries = Counter(_PREFIX + "retries", "Attempts retried", ("provider",))
        self.fallbacks = Counter(
            _PREFIX + "fallbacks", "Requests handed to a fallback", ("provider", "to")
        )
        self.breaker = Gauge(
            _PREFIX + "breaker_state",
            "Circuit breaker: 0 closed, 1 probing, 2 open (the worst worker's)",
            ("provider",),
            multiprocess_mode="livemax",
        )
        self.open_streams = Gauge(
            _PREFIX + "open_streams",
            "Upstream requests open now",
            multiprocess_mode="livesum",
        )
        self.disconnects = Counter(
            _PREFIX + "client_disconnects",
            "Requests whose client left before the end (499)",
            ("provider",),
        )
        self.rate_limited = Counter(
            _PREFIX + "rate_limited",
            "Requests refused by the gateway's own limits, by client key",
            ("key", "name"),
        )
        self._keys: set[str] = set()

    def key_labels(self, key_id: str, name: str) -> tuple[str, str]:
        """The key's labels while fewer than MAX_KEY_LABELS keys have been seen, else other."""
        if key_id in self._keys:
            return key_id, name
        if len(self._keys) < MAX_KEY_LABELS:
            self._keys.add(key_id)
            return key_id, name
        return OTHER, OTHER


_metrics: Metrics | None = None


def get() -> Metrics:
    """The worker's metrics, made at the first use."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def error_kind(status: int) -> str:
    """A failed attempt's kind, from the status upstream.py gives each failure."""
    if status == 504:
        return "timeout"  # upstream.py's connect, first-byte and idle timeouts
    if status == 502:
        return "connection"  # unreachable, cut, a proxy's refusal, an oversized answer
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status in (503, 529):
        return "overloaded"
    return "server_error" if status >= 500 else "client_error"


def exposition() -> bytes:
    """Every worker's values (multiprocess mode), else this process's."""
    if os.environ.get(MULTIPROC_VARIABLE):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def register(app: QuartTrio, state: State) -> None:
    """``GET /metrics``; keys.py's check guards it (the admin key or ``METRICS_KEY``)."""

    @app.get("/metrics")
    async def metrics() -> Response:
        if not state.runtime.config.METRICS:
            raise NotFoundError("metrics are off (METRICS: false in the config)")
        get()  # the families show, at zero, before the first request
        # Multiprocess mode reads a file per worker and metric: off the event loop.
        body = await trio.to_thread.run_sync(exposition)
        return Response(body, content_type=CONTENT_TYPE_LATEST)
