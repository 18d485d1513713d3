"""``Store.families()``: everything a multi-process store holds, as the application would serve
it, read once, without the metric objects (what ``pytheus serve`` serves: tests/test_cli.py
checks it against an application's own scrape over real processes). Here: one reading of a
shared directory per scrape, one scrape script per scrape of a Redis namespace, and a store
that cannot list what it holds says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.file import FileStore, MultiProcessFileBackend
from pytheus.backends.memory import MemoryStore
from pytheus.cli import ExporterRegistry
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Enum, Histogram, Info
from pytheus.registry import CollectorRegistry
from tests.redis_server import shared_server


@pytest.fixture(autouse=True)
def single_process_afterwards() -> Iterator[None]:
    yield
    load_backend(SingleProcessBackend, {})


def record(registry: CollectorRegistry) -> None:
    Counter("jobs_total", "Jobs done.", required_labels=["kind"], registry=registry).labels(
        "a"
    ).inc(3)
    Histogram("latency_seconds", "Latency.", buckets=[0.1, 1], registry=registry).observe(0.5)
    Info("build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("phase", "Phase.", states=["idle", "busy"], registry=registry).state("busy")


def served(registry: Any) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    def samples(family: Any) -> list[Any]:
        return sorted((s.name, sorted(s.labels.items()), s.value) for s in family.samples)

    return {
        f.name: (f.type, f.documentation, samples(f))
        for f in text_string_to_metric_families(generate_metrics(registry))
    }


def test_a_shared_directory_is_read_once_a_scrape(tmp_path: Path) -> None:
    load_backend(MultiProcessFileBackend, {"path": str(tmp_path)})
    application = CollectorRegistry()
    record(application)
    store = current_store()
    assert isinstance(store, FileStore)
    readings = []
    read_all = store.directory.read_all

    def counted() -> Any:
        readings.append(1)
        return read_all()

    store.directory.read_all = counted  # type: ignore[method-assign]
    exporter = ExporterRegistry(store)
    assert served(exporter) == served(application)
    readings.clear()
    generate_metrics(exporter)
    assert len(readings) == 1


def test_a_redis_namespace_is_scraped_once_a_scrape() -> None:
    from pytheus.backends.redis import MultiProcessRedisBackend

    server = shared_server()
    config = {"url": server.url, "namespace": "families-once"}
    load_backend(MultiProcessRedisBackend, config)
    application = CollectorRegistry()
    record(application)
    generate_metrics(application)  # flushed, described
    load_backend(MultiProcessRedisBackend, config)  # as an exporter: no metric objects
    exporter = ExporterRegistry(current_store())
    import redis

    with redis.Redis.from_url(server.url) as client:

        def scripts() -> int:
            return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

        assert served(exporter) == served(application)
        before = scripts()
        generate_metrics(exporter)
        assert scripts() - before <= 2  # the flush (when anything is pending) and the scrape


def test_a_store_that_cannot_list_says_so() -> None:
    with pytest.raises(NotImplementedError, match="MemoryStore cannot list"):
        MemoryStore().families()
