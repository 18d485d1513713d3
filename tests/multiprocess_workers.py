"""Functions run in child processes (importable, so ``spawn`` can run them too)."""

from __future__ import annotations

import os
import time
from typing import Any

from pytheus.backends import load_backend
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry


class Metrics:
    """The metrics every worker defines: the same definitions in every process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "requests_total", "Requests.", required_labels=["route", "worker"],
            default_labels={"worker": "any"}, registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "latency_seconds", "Latency.", required_labels=["route"], buckets=[0.1, 1, 10],
            registry=self.registry,
        )  # fmt: skip
        self.sizes = Summary("sizes_bytes", "Sizes.", registry=self.registry)
        self.in_progress = Gauge("in_progress", "In progress.", registry=self.registry)


def load(backend: tuple[type[Any], dict[str, Any]] | None) -> None:
    if backend is not None:
        load_backend(*backend)


def do_work(metrics: Metrics, operations: int) -> None:
    per_process = metrics.requests.labels(route="/own", worker=str(os.getpid()))
    shared = metrics.requests.labels(route="/shared")
    for i in range(operations):
        shared.inc()
        per_process.inc()
        metrics.latency.labels(route="/shared").observe((i % 20) * 0.6)  # 0 .. 11.4
        metrics.sizes.observe(2)
        with metrics.in_progress.track_inprogress():
            pass


def work_in_fresh_process(backend: tuple[type[Any], dict[str, Any]], operations: int) -> None:
    """For spawn: a new interpreter loads the backend and defines the metrics itself."""
    load(backend)
    do_work(Metrics(), operations)


def set_gauges_and_wait(
    backend: tuple[type[Any], dict[str, Any]], modes: list[str], value: float, ready: Any, stop: Any
) -> None:
    load(backend)
    registry = CollectorRegistry()
    for mode in modes:
        Gauge(f"gauge_{mode}", "G.", multiprocess_mode=mode, registry=registry).set(value)
    Gauge("gauge_default_set", "G.", registry=registry).set(value)
    Gauge("gauge_default_inc", "G.", registry=registry).inc(value)
    ready.set()
    stop.wait(60)


def write_until_killed(backend: tuple[type[Any], dict[str, Any]], progress: Any) -> None:
    load(backend)
    registry = CollectorRegistry()
    counter = Counter("crash_total", "Crash.", required_labels=["n"], registry=registry)
    histogram = Histogram("crash_seconds", "Crash.", registry=registry)
    i = 0
    while True:
        counter.labels(n=str(i % 50)).inc()  # new series keep being appended early on
        histogram.observe(0.2)
        i += 1
        progress.value = i
        if i > 5_000_000:
            time.sleep(1)


def threads_in_process(backend: tuple[type[Any], dict[str, Any]], threads: int, ops: int) -> None:
    """``threads`` threads, each doing ``ops`` operations on shared and per-thread series."""
    import threading

    load(backend)
    registry = CollectorRegistry()
    counter = Counter("ops_total", "Ops.", required_labels=["series"], registry=registry)
    histogram = Histogram("ops_seconds", "Ops.", required_labels=["series"], buckets=[0.5],
                          registry=registry)  # fmt: skip

    def work(number: int) -> None:
        own = f"{os.getpid()}-{number}"
        for i in range(ops):
            counter.labels(series="shared").inc()
            counter.labels(series=own).inc()
            histogram.labels(series="shared").observe(i % 2)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if backend[0].__name__ == "MultiProcessRedisBackend":
        from pytheus.backends.redis import wait_for_flush

        assert wait_for_flush(30)
