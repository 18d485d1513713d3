"""Threads and processes together: exact totals in every multi-process backend, and scrapes
running during the writes never see a histogram whose count disagrees with its buckets."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Histogram
from pytheus.registry import CollectorRegistry
from tests import multiprocess_workers as workers
from tests.backends_under_test import file_backend, redis_backend
from tests.helpers import samples

PROCESSES, THREADS, OPERATIONS = 4, 8, 10_000


@pytest.mark.parametrize("make_backend", [file_backend, redis_backend], ids=["file", "redis"])
def test_processes_times_threads_exact(make_backend: Any, tmp_path: Path) -> None:
    backend = make_backend(tmp_path)
    load_backend(*backend)
    try:
        registry = CollectorRegistry()
        Counter("ops_total", "Ops.", required_labels=["series"], registry=registry)
        Histogram("ops_seconds", "Ops.", required_labels=["series"], buckets=[0.5],
                  registry=registry)  # fmt: skip
        stop = threading.Event()
        torn: list[str] = []
        overlapped: list[float] = []  # counts of scrapes made while the writers wrote

        def scrape_while_writing() -> None:
            # the writers observe 0 and 1 alternately with one bucket at 0.5, so the sum of one
            # moment is the number of 1s: the +Inf bucket less the first one
            while not stop.is_set():
                for family in text_string_to_metric_families(generate_metrics(registry)):
                    values = {(s.name, s.labels.get("le")): s.value for s in family.samples}
                    count = values.get(("ops_seconds_count", None))
                    if count is None:
                        continue
                    ones = (
                        values[("ops_seconds_bucket", "+Inf")]
                        - values[("ops_seconds_bucket", "0.5")]
                    )
                    if (
                        count != values[("ops_seconds_bucket", "+Inf")]
                        or values[("ops_seconds_sum", None)] != ones
                    ):
                        torn.append(f"{values}")
                    elif 0 < count < PROCESSES * THREADS * OPERATIONS:
                        overlapped.append(count)

        scraper = threading.Thread(target=scrape_while_writing)
        scraper.start()
        context: Any = multiprocessing.get_context("spawn")
        children = [
            context.Process(target=workers.threads_in_process, args=(backend, THREADS, OPERATIONS))
            for _ in range(PROCESSES)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=300)
            assert child.exitcode == 0
        stop.set()
        scraper.join()
        got = samples(registry)
        total = PROCESSES * THREADS * OPERATIONS
        assert got[("ops_total", frozenset({("series", "shared")}))] == total
        own = [v for (name, labels), v in got.items() if name == "ops_total"
               and dict(labels)["series"] != "shared"]  # fmt: skip
        assert own == [OPERATIONS] * (PROCESSES * THREADS)
        shared = frozenset({("series", "shared")})
        assert got[("ops_seconds_count", shared)] == total
        assert got[("ops_seconds_bucket", shared | {("le", "0.5")})] == total / 2
        assert got[("ops_seconds_sum", shared)] == total / 2
        assert torn == [], f"{len(torn)} of {len(torn) + len(overlapped)} scrapes torn: {torn[:3]}"
        assert overlapped, "no scrape overlapped the writes"
    finally:
        load_backend(SingleProcessBackend, {})
