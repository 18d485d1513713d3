"""The store contract with a user's store (``BaseStore`` and only ``bind`` and ``read``), and
``after_fork``: declared by ``Store``, a no-op in ``BaseStore``, called in a forked child on the
store in force (and on the live stores of the multi-process backends), then every value binds
again when the store has one of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store, rebind_all_values
from pytheus.backends.store import (
    BaseStore,
    BoundSeries,
    CompletedStore,
    StoredFamily,
    Value,
    has_own_after_fork,
    lists_families,
)
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from pytheus.samples import Series
from tests.backends_under_test import DictBackend
from tests.helpers import backend_of, value

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Number:
    """A user's value for counters and gauges."""

    def __init__(self) -> None:
        self.number = 0.0

    def inc(self, value: float) -> None:
        self.number += value

    def dec(self, value: float) -> None:
        self.number -= value

    def set(self, value: float) -> None:
        self.number = value

    def get(self) -> float:
        return self.number


class UserStore(BaseStore):
    """What a user writes: ``bind`` and ``read``, nothing else."""

    def __init__(self) -> None:
        self.binds = 0

    def bind(self, metric: BoundSeries) -> Value:
        self.binds += 1
        return Number()

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return [
            [(labels, value.get()) for labels, value in family.local_values()]  # type: ignore[union-attr]
            for family in families
        ]


class ForkingStore(UserStore):
    """A user's store with something of its own to start over in a forked child."""

    def __init__(self) -> None:
        super().__init__()
        self.started_over_in: list[int] = []

    def after_fork(self) -> None:
        self.started_over_in.append(os.getpid())


class BareForkingStore:
    """A store that does not subclass BaseStore, with an ``after_fork``."""

    def __init__(self) -> None:
        self.inner = ForkingStore()

    def bind(self, metric: BoundSeries) -> Value:
        return self.inner.bind(metric)

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return self.inner.read(families)

    def after_fork(self) -> None:
        self.inner.after_fork()


def in_forked_child(work: Callable[[], object]) -> Any:
    """``work()`` in a forked child; what it returned (JSON), through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            try:
                result = json.dumps({"result": work()})
                code = 0
            except BaseException as error:
                result = json.dumps({"error": repr(error)})
            with os.fdopen(write_end, "w") as out:
                out.write(result)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as incoming:
        text = incoming.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    return json.loads(text)["result"]


@pytest.fixture(autouse=True)
def single_process_afterwards() -> Iterator[None]:
    yield
    load_backend(SingleProcessBackend, {})


def test_a_users_store_with_only_bind_and_read_is_the_backend() -> None:
    store = UserStore()
    load_backend(backend_of(store))
    assert current_store() is store  # a BaseStore: taken as it is
    registry = CollectorRegistry()
    jobs = Counter("jobs_total", "Jobs.", required_labels=["kind"], registry=registry)
    jobs.labels(kind="a").inc(2)
    jobs.labels(kind="b").inc()
    level = Gauge("level", "Level.", registry=registry)
    level.set(4)
    level.dec()
    assert store.binds == 3
    assert value(registry, "jobs_total", kind="a") == 2
    assert value(registry, "jobs_total", kind="b") == 1
    assert value(registry, "level") == 3
    text = generate_metrics(registry)
    assert 'jobs_total{kind="a"} 2.0' in text
    assert "level 3.0" in text
    jobs.remove("a")  # forget: BaseStore's no-op; the series leaves this process's exposition
    assert value(registry, "jobs_total", kind="a") is None
    jobs.clear()  # forget_many: BaseStore's, forget for each
    assert value(registry, "jobs_total", kind="b") is None
    load_backend(SingleProcessBackend, {})  # replaced: close, BaseStore's no-op


def test_a_store_without_the_optional_methods_has_the_no_op_defaults() -> None:
    store = UserStore()
    store.forget(Counter("x_total", "X.", registry=CollectorRegistry()))
    store.forget_many([])
    assert store.living_pids() is None
    store.close()
    store.after_fork()
    assert store.binds == 0
    assert not has_own_after_fork(store)
    assert not lists_families(store)
    with pytest.raises(NotImplementedError):
        store.families()
    assert has_own_after_fork(ForkingStore())

    load_backend(backend_of(object.__new__(BareOnly)))  # not a BaseStore: completed at load
    completed = current_store()
    assert isinstance(completed, CompletedStore)
    completed.after_fork()
    completed.close()
    assert completed.living_pids() is None
    assert not has_own_after_fork(completed)
    load_backend(backend_of(BareForkingStore()))
    assert has_own_after_fork(current_store())


class BareOnly:
    """Only the required methods, and no base class."""

    def bind(self, metric: BoundSeries) -> Value:
        return Number()

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return [[] for _ in families]


@pytest.mark.parametrize("kind", ["subclass", "bare"])
def test_the_store_in_force_starts_over_in_a_forked_child_then_values_bind_again(
    kind: str,
) -> None:
    bare = BareForkingStore()
    store = bare.inner
    load_backend(backend_of(store if kind == "subclass" else bare))
    registry = CollectorRegistry()
    jobs = Counter("jobs_total", "Jobs.", registry=registry)
    jobs.inc(5)
    assert store.binds == 1

    def child() -> dict[str, Any]:
        binds = store.binds
        jobs.inc()  # binds again: a value of the child's own
        return {
            "pid": os.getpid(),
            "started_over_in": store.started_over_in,
            "binds": store.binds - binds,
            "value": value(registry, "jobs_total"),
        }

    seen = in_forked_child(child)
    assert seen["started_over_in"] == [seen["pid"]]  # once, in the child
    assert seen["binds"] == 1
    assert seen["value"] == 1
    assert store.started_over_in == []  # not in the parent
    assert value(registry, "jobs_total") == 5


def test_a_store_in_force_of_a_multi_process_backend_starts_over_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file store is in force and among its backend's stores: it starts over with them,
    not a second time as the store in force."""
    from pytheus.backends.file import FileStore, MultiProcessFileBackend

    calls: list[tuple[int, int]] = []  # (pid, the store started over)
    started_over = FileStore.after_fork

    def counting(self: FileStore) -> None:
        calls.append((os.getpid(), id(self)))
        started_over(self)

    monkeypatch.setattr(FileStore, "after_fork", counting)
    load_backend(MultiProcessFileBackend, {"path": str(tmp_path)})
    registry = CollectorRegistry()
    jobs = Counter("jobs_total", "Jobs.", registry=registry)
    jobs.inc(2)

    def child() -> dict[str, Any]:
        jobs.inc(3)
        # other file stores still alive in this process (earlier tests') start over too: count
        # the one in force
        in_force = (os.getpid(), id(current_store()))
        return {"pid": os.getpid(), "calls": calls.count(in_force)}

    seen = in_forked_child(child)
    assert seen["calls"] == 1
    assert calls == []
    assert value(registry, "jobs_total") == 5  # the child recorded into a file of its own


NO_AFTER_FORK = textwrap.dedent(
    """
    import json, os, sys
    from pytheus.backends import load_backend
    from pytheus.backends.store import BaseStore
    from pytheus.metrics import Counter
    from pytheus.registry import CollectorRegistry

    class Number:
        def __init__(self): self.number = 0.0
        def inc(self, value): self.number += value
        def get(self): return self.number

    class Store(BaseStore):
        binds = 0
        def bind(self, metric):
            Store.binds += 1
            return Number()
        def read(self, families):
            return [[(l, v.get()) for l, v in f.local_values()] for f in families]

    class Backend:
        @classmethod
        def _make_store(cls, config): return Store()

    load_backend(Backend)
    jobs = Counter("jobs_total", "Jobs.", registry=CollectorRegistry())
    jobs.inc(5)
    pid = os.fork()
    if pid == 0:
        jobs.inc()
        print(json.dumps([Store.binds, jobs._value.get()]), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    assert "pytheus.backends.file" not in sys.modules
    """
)


def test_a_store_without_after_fork_keeps_its_values_in_a_forked_child() -> None:
    """As before ``after_fork`` was part of the contract: with no multi-process backend
    imported, a child goes on from the values it was forked with (the default binds nothing
    again)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_AFTER_FORK],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 6]


def test_a_per_value_series_removed_while_unbound_is_zeroed_whole() -> None:
    """``remove()`` with a per-value backend sets every part of the series to 0 through the
    protocol, also when this process has not bound it since the values bound again (a fork, a
    ``load_backend``): its next observation starts from zero, not from what it had."""
    load_backend(DictBackend, {})
    registry = CollectorRegistry()
    latency = Histogram(
        "latency_seconds", "L.", required_labels=["k"], buckets=[1, 2], registry=registry
    )
    sizes = Summary("size_bytes", "S.", required_labels=["k"], registry=registry)
    jobs = Counter("jobs_total", "J.", required_labels=["k"], registry=registry)
    latency.labels("a").observe(0.5)
    sizes.labels("a").observe(10)
    jobs.labels("a").inc(3)
    rebind_all_values()
    for metric in (latency, sizes, jobs):
        metric.remove("a")
    latency.labels("a").observe(0.5)
    sizes.labels("a").observe(10)
    jobs.labels("a").inc()
    assert value(registry, "latency_seconds_count", k="a") == 1
    assert value(registry, "latency_seconds_bucket", k="a", le="1.0") == 1
    assert value(registry, "latency_seconds_sum", k="a") == 0.5
    assert value(registry, "size_bytes_count", k="a") == 1
    assert value(registry, "size_bytes_sum", k="a") == 10
    assert value(registry, "jobs_total", k="a") == 1
