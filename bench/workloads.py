"""The workloads compared by ``bench/run.py``: add new ones to ``WORKLOADS``.

Each library gets its own fresh registry, so the two never share state, and pytheus runs on its
default in-memory backend. Histograms use pytheus's default buckets in both libraries
(prometheus_client's defaults add 0.075, 0.75 and 7.5), so both do the same work.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from itertools import repeat

import prometheus_client

from bench.harness import Runner, Workload
from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.desc import DEFAULT_BUCKETS
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Histogram
from pytheus.registry import CollectorRegistry

HOT_PATH_OPS = 200_000
QUICK_OPS = 2_000


def _pytheus_registry() -> CollectorRegistry:
    """A fresh registry, with pytheus on its in-memory backend (whatever the environment says)."""
    load_backend(SingleProcessBackend, {})
    return CollectorRegistry()


def _client_registry() -> prometheus_client.CollectorRegistry:
    """A fresh registry; ``*_created`` series off, so both scrapes expose the same series."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    return prometheus_client.CollectorRegistry()


# --- Counter.inc() --------------------------------------------------------------------------------


@contextmanager
def pytheus_inc(ops: int) -> Iterator[Runner]:
    counter = Counter("bench_events_total", "Events.", registry=_pytheus_registry())

    def run() -> None:
        for _ in repeat(None, ops):
            counter.inc()

    yield run


@contextmanager
def client_inc(ops: int) -> Iterator[Runner]:
    counter = prometheus_client.Counter(
        "bench_events_total", "Events.", registry=_client_registry()
    )

    def run() -> None:
        for _ in repeat(None, ops):
            counter.inc()

    yield run


# --- labels(...).inc() on an existing child -------------------------------------------------------


@contextmanager
def pytheus_labels_inc(ops: int) -> Iterator[Runner]:
    registry = _pytheus_registry()
    counter = Counter("bench_requests_total", "Requests.", ["a", "b"], registry=registry)
    counter.labels(a="x", b="y").inc()  # the child exists before timing

    def run() -> None:
        for _ in repeat(None, ops):
            counter.labels(a="x", b="y").inc()

    yield run


@contextmanager
def client_labels_inc(ops: int) -> Iterator[Runner]:
    counter = prometheus_client.Counter(
        "bench_requests_total", "Requests.", ["a", "b"], registry=_client_registry()
    )
    counter.labels("x", "y").inc()

    def run() -> None:
        for _ in repeat(None, ops):
            counter.labels("x", "y").inc()

    yield run


# --- labels(...).inc() creating a new series each time ------------------------------------------

NEW_SERIES_OPS = 20_000


@cache
def label_pairs(count: int) -> list[tuple[str, str]]:
    """``count`` distinct label value pairs, made once (the strings are not timed)."""
    return [(f"tenant-{n}", f"route-{n % 97}") for n in range(count)]


@contextmanager
def pytheus_new_series(ops: int) -> Iterator[Runner]:
    pairs = label_pairs(ops)

    def run() -> None:  # a fresh metric each round, so every labels() call creates a series
        counter = Counter(
            "bench_tenants_total", "Tenants.", ["a", "b"], registry=CollectorRegistry()
        )
        for a, b in pairs:
            counter.labels(a, b).inc()

    _pytheus_registry()  # the in-memory backend
    yield run


@contextmanager
def client_new_series(ops: int) -> Iterator[Runner]:
    pairs = label_pairs(ops)

    def run() -> None:
        counter = prometheus_client.Counter(
            "bench_tenants_total", "Tenants.", ["a", "b"], registry=_client_registry()
        )
        for a, b in pairs:
            counter.labels(a, b).inc()

    yield run


# --- Histogram.observe() --------------------------------------------------------------------------


@cache
def observations(count: int) -> list[float]:
    """``count`` values spread over every bucket (log-normal around 0.14 s), the same each time."""
    rng = random.Random(20240601)
    return [rng.lognormvariate(-2.0, 2.0) for _ in range(count)]


@contextmanager
def pytheus_observe(ops: int) -> Iterator[Runner]:
    histogram = Histogram("bench_latency_seconds", "Latency.", registry=_pytheus_registry())
    values = observations(ops)

    def run() -> None:
        for value in values:
            histogram.observe(value)

    yield run


@contextmanager
def client_observe(ops: int) -> Iterator[Runner]:
    histogram = prometheus_client.Histogram(
        "bench_latency_seconds", "Latency.", registry=_client_registry(), buckets=DEFAULT_BUCKETS
    )
    values = observations(ops)

    def run() -> None:
        for value in values:
            histogram.observe(value)

    yield run


# --- a scrape of 10,000 counter series and 1,000 histogram series ---------------------------------

COUNTER_SERIES = 10_000
HISTOGRAM_SERIES = 1_000
SCRAPES = 3
# one line per counter series; per histogram series a line per bucket (+Inf included), sum, count
SAMPLE_LINES = COUNTER_SERIES + HISTOGRAM_SERIES * (len(DEFAULT_BUCKETS) + 3)


def _counter_labels(index: int) -> tuple[str, str]:
    return f"/api/v1/resource/{index // 100}", f"{200 + index % 100}"


def _check_exposition(text: str) -> None:
    lines = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    if lines != SAMPLE_LINES:
        raise AssertionError(f"expected {SAMPLE_LINES} sample lines in a scrape, got {lines}")


@contextmanager
def pytheus_scrape(scrapes: int) -> Iterator[Runner]:
    registry = _pytheus_registry()
    counter = Counter(
        "bench_http_requests_total",
        "Requests.",
        required_labels=["path", "code"],
        registry=registry,
    )
    histogram = Histogram(
        "bench_http_request_duration_seconds",
        "Request latency.",
        required_labels=["route"],
        registry=registry,
    )
    for index in range(COUNTER_SERIES):
        path, code = _counter_labels(index)
        counter.labels(path=path, code=code).inc(index)
    for index, value in zip(range(HISTOGRAM_SERIES), observations(HISTOGRAM_SERIES)):
        histogram.labels(route=f"route_{index}").observe(value)
    _check_exposition(generate_metrics(registry))

    def run() -> None:
        for _ in repeat(None, scrapes):
            generate_metrics(registry)

    yield run


@contextmanager
def client_scrape(scrapes: int) -> Iterator[Runner]:
    registry = _client_registry()
    counter = prometheus_client.Counter(
        "bench_http_requests_total", "Requests.", ["path", "code"], registry=registry
    )
    histogram = prometheus_client.Histogram(
        "bench_http_request_duration_seconds",
        "Request latency.",
        ["route"],
        registry=registry,
        buckets=DEFAULT_BUCKETS,
    )
    for index in range(COUNTER_SERIES):
        counter.labels(*_counter_labels(index)).inc(index)
    for index, value in zip(range(HISTOGRAM_SERIES), observations(HISTOGRAM_SERIES)):
        histogram.labels(f"route_{index}").observe(value)
    _check_exposition(prometheus_client.generate_latest(registry).decode())

    def run() -> None:
        for _ in repeat(None, scrapes):
            prometheus_client.generate_latest(registry)

    yield run


WORKLOADS: list[Workload] = [
    Workload(
        name="Counter.inc()",
        target=1.0,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=pytheus_inc,
        client=client_inc,
    ),
    Workload(
        name="labels(a, b).inc()",
        target=1.0,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=pytheus_labels_inc,
        client=client_labels_inc,
    ),
    Workload(
        name="labels(new a, b).inc()",
        target=1.0,
        ops=NEW_SERIES_OPS,
        quick_ops=QUICK_OPS,
        pytheus=pytheus_new_series,
        client=client_new_series,
    ),
    Workload(
        name="Histogram.observe()",
        target=0.8,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=pytheus_observe,
        client=client_observe,
    ),
    Workload(
        name="scrape 10k counters + 1k histograms",
        target=0.2,
        ops=SCRAPES,
        quick_ops=1,
        pytheus=pytheus_scrape,
        client=client_scrape,
        unit="scrape",
    ),
]
