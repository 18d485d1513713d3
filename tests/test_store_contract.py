"""The store contract (``pytheus.backends.store``): a backend class whose ``_make_store`` returns
a store of its own. ``bind`` and ``read`` are required; ``forget``, ``forget_many``,
``living_pids`` and ``close`` are optional, with :class:`BaseStore`'s defaults for a store that
subclasses it, and the same defaults for one that does not (a store written for an earlier
pytheus): pytheus calls each directly, never finding out at the call whether it exists."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.memory import MemoryStore
from pytheus.backends.store import BaseStore, BoundSeries, StoredFamily, Value
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge
from pytheus.registry import CollectorRegistry
from pytheus.runtime import ProcessCollector
from pytheus.samples import Series
from tests.helpers import backend_of, value


class BareStore:
    """Only what is required, and no base class: values in memory."""

    def __init__(self) -> None:
        self.memory = MemoryStore()

    def bind(self, metric: BoundSeries) -> Value:
        return self.memory.bind(metric)

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return self.memory.read(families)


class FullStore(BareStore):
    """Every optional method, recording its calls; still no base class."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def forget(self, metric: BoundSeries) -> None:
        self.calls.append(("forget", metric._series.values if metric._series else None))

    def forget_many(self, metrics: Sequence[BoundSeries]) -> None:
        self.calls.append(("forget_many", sorted(m._series.values for m in metrics if m._series)))

    def living_pids(self) -> list[int]:
        return [os.getpid(), 1]

    def close(self) -> None:
        self.calls.append(("close", None))


class SubclassStore(BareStore, BaseStore):
    """The way to write one now: BaseStore, and the two required methods (BareStore's)."""


@pytest.fixture(autouse=True)
def single_process_afterwards() -> Iterator[None]:
    yield
    load_backend(SingleProcessBackend, {})


@pytest.mark.parametrize("store_class", [BareStore, FullStore, SubclassStore])
def test_a_store_of_its_own_records_removes_and_is_replaced(store_class: type[Any]) -> None:
    store = store_class()
    load_backend(backend_of(store))
    registry = CollectorRegistry()
    counter = Counter("jobs_total", "Jobs.", required_labels=["kind"], registry=registry)
    for kind in ("a", "b", "c"):
        counter.labels(kind=kind).inc(2)
    gauge = Gauge("level", "Level.", registry=registry)
    gauge.set(4)
    assert value(registry, "jobs_total", kind="b") == 2
    assert value(registry, "level") == 4
    counter.remove("a")
    assert value(registry, "jobs_total", kind="a") is None
    counter.clear()
    assert value(registry, "jobs_total", kind="b") is None
    assert "level 4.0" in generate_metrics(registry)
    load_backend(SingleProcessBackend, {})  # replaced: closed
    if isinstance(store, FullStore):
        assert store.calls == [
            ("forget", ("a",)),
            ("forget_many", [("b",), ("c",)]),
            ("close", None),
        ]


def test_the_process_collector_asks_the_store_for_its_processes() -> None:
    collector = ProcessCollector()

    def pids() -> set[str]:
        families = [f for f in collector.collect() if f.name == "process_start_time_seconds"]
        return {ls.as_dict().get("pid", "self") for f in families for ls, _ in f.series}

    load_backend(backend_of(BareStore()))
    assert pids() == {"self"}  # a store that does not know them: this process
    load_backend(backend_of(FullStore()))
    assert pids() == {str(os.getpid()), "1"}
    assert current_store().living_pids() == [os.getpid(), 1]


def test_base_store_requires_bind_and_read() -> None:
    store = BaseStore()
    with pytest.raises(NotImplementedError):
        store.read([])
    assert store.living_pids() is None
    store.forget_many([])
    store.close()
