"""Concurrency in one process: exact totals and consistent histogram scrapes, every backend."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Histogram
from pytheus.registry import CollectorRegistry
from tests.helpers import value

THREADS = 8


def run_threads(target: object, count: int = THREADS) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_eight_threads_inc_exactly(registry: CollectorRegistry) -> None:
    counter = Counter("hits_total", "Hits.", required_labels=["kind"], registry=registry)
    plain = Counter("plain_total", "Plain.", registry=registry)

    def work() -> None:
        shared = counter.labels(kind="shared")
        for _ in range(20_000):
            plain.inc()
            shared.inc()
            counter.labels(kind=threading.current_thread().name).inc()

    run_threads(work)
    assert value(registry, "plain_total") == 160_000
    assert value(registry, "hits_total", kind="shared") == 160_000


def test_scrape_during_observe_sees_consistent_histograms(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=[1, 2, 3], registry=registry)
    stop = threading.Event()
    problems: list[str] = []

    def observe() -> None:
        for i in range(20_000):
            histogram.observe(i % 5)

    def scrape() -> None:
        while not stop.is_set():
            for family in text_string_to_metric_families(generate_metrics(registry)):
                got = {s.name + s.labels.get("le", ""): s.value for s in family.samples}
                if got["h_count"] != got["h_bucket+Inf"]:
                    problems.append(f"count {got['h_count']} != +Inf {got['h_bucket+Inf']}")

    scraper = threading.Thread(target=scrape)
    scraper.start()
    run_threads(observe, 4)
    stop.set()
    scraper.join()
    assert problems == []
    assert value(registry, "h_count") == 80_000
