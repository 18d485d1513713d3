"""Summary quantiles across processes (issue 19), with real processes on the multi-process
backends.

Each of four processes observes a different distribution; the parent's scrape merges the
windows of all and must report every quantile within 1 % of the exact quantile of the union
(the bound of :mod:`pytheus.quantiles`: rank ``floor(q * (n - 1))`` of the sorted values).
"""

from __future__ import annotations

import math
import multiprocessing
import random
import time
from typing import Any

import pytest
import redis

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.collection import collect_registry
from pytheus.exceptions import BackendUnavailableException
from pytheus.metrics import Summary
from pytheus.quantiles import QuantileSketch
from pytheus.registry import CollectorRegistry
from pytheus.samples import SummaryData
from tests.helpers import eventually, run_to_the_end, samples
from tests.redis_server import RedisServer
from tests.test_native_multiprocess import multiprocess_backend

__all__ = ["multiprocess_backend"]  # the fixture (file and Redis), for pytest

PROCESSES = 4
TARGETS = (0.01, 0.25, 0.5, 0.9, 0.99)
MAX_AGE = 600.0


def values_of(process: int) -> list[float]:
    """Uniform, log-normal, a spike (one value, a few outliers), a range of twelve decades."""
    rng = random.Random(process)
    if process == 0:
        return [rng.uniform(0.0, 10.0) for _ in range(2000)]
    if process == 1:
        return [rng.lognormvariate(0.0, 1.5) for _ in range(2000)]
    if process == 2:
        return [3.0] * 1900 + [rng.uniform(100.0, 200.0) for _ in range(100)]
    return [10 ** rng.uniform(-6.0, 6.0) for _ in range(2000)]


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def define(registry: CollectorRegistry | None) -> Summary:
    return Summary(
        "work_seconds", "Work.", registry=registry, quantiles=TARGETS, max_age_seconds=MAX_AGE,
        required_labels=["queue"],
    )  # fmt: skip


def observe(summary: Summary, process: int) -> None:
    child = summary.labels({"queue": "default"})
    for value in values_of(process):
        child.observe(value)


def work_in_fresh_process(backend: tuple[type[Any], dict[str, Any]], process: int) -> None:
    """For spawn and forkserver: load the backend and define the summary in a new interpreter."""
    load_backend(*backend)
    observe(define(CollectorRegistry()), process)


def run_children(
    backend: tuple[type[Any], dict[str, Any]], summary: Summary, start_method: str
) -> None:
    context: Any = multiprocessing.get_context(start_method)
    if start_method == "fork":
        children = [context.Process(target=observe, args=(summary, p)) for p in range(PROCESSES)]
    else:
        children = [
            context.Process(target=work_in_fresh_process, args=(backend, p))
            for p in range(PROCESSES)
        ]
    run_to_the_end(children)


def scraped(registry: CollectorRegistry) -> dict[tuple[str, ...], SummaryData]:
    [family] = collect_registry(registry)
    found = {labels.values: data for labels, data in family.series}
    assert all(isinstance(data, SummaryData) for data in found.values())
    return found  # type: ignore[return-value]


def assert_within_bound(data: SummaryData, values: list[float]) -> None:
    assert data.count == len(values)
    assert math.isclose(data.sum, math.fsum(values), rel_tol=1e-9)
    got = dict(data.quantiles)
    assert set(got) == set(TARGETS)
    for q in TARGETS:
        want = exact(values, q)
        assert abs(got[q] - want) <= 0.01 * want * (1 + 1e-9), (q, got[q], want)


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_a_scrape_merges_the_windows_of_every_process(
    multiprocess_backend: tuple[type[Any], dict[str, Any]], start_method: str
) -> None:
    registry = CollectorRegistry()
    summary = define(registry)
    run_children(multiprocess_backend, summary, start_method)
    everything = [v for p in range(PROCESSES) for v in values_of(p)]
    for _ in range(2):  # the second scrape reads what the first compacted into the archive
        assert_within_bound(scraped(registry)[("default",)], everything)
    text = samples(registry)
    assert text[("work_seconds_count", frozenset({("queue", "default")}))] == len(everything)
    for q in TARGETS:
        value = text[("work_seconds", frozenset({("queue", "default"), ("quantile", repr(q))}))]
        assert abs(value - exact(everything, q)) <= 0.01 * exact(everything, q) * (1 + 1e-9)


def test_the_parent_living_and_dead_children_add_up(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """The parent's own window (published by its scrape) merges with its ended children's."""
    registry = CollectorRegistry()
    summary = define(registry)
    observe(summary, 3)
    run_children(multiprocess_backend, summary, "fork")
    everything = [v for p in range(PROCESSES) for v in values_of(p)] + values_of(3)
    assert_within_bound(scraped(registry)[("default",)], everything)
    observe(summary, 2)  # after the scrape: the next one publishes it first
    assert_within_bound(scraped(registry)[("default",)], everything + values_of(2))


def test_observations_leave_the_window_as_time_moves(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    registry = CollectorRegistry()
    summary = define(registry)
    run_children(multiprocess_backend, summary, "fork")
    store = current_store()
    store.wall_clock = lambda: time.time() + MAX_AGE + 1  # type: ignore[attr-defined]
    late = summary.labels({"queue": "late"})  # bound after the clock moved: observes then
    for value in values_of(0):
        late.observe(value)
    found = scraped(registry)
    everything = [v for p in range(PROCESSES) for v in values_of(p)]
    old = found[("default",)]
    assert old.count == len(everything)  # _count and _sum count every observation ever
    assert all(math.isnan(v) for _, v in old.quantiles)  # but the window holds none of them
    assert_within_bound(found[("late",)], values_of(0))


def test_a_removed_series_starts_a_new_window(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    registry = CollectorRegistry()
    summary = define(registry)
    run_children(multiprocess_backend, summary, "fork")
    summary.remove({"queue": "default"})
    found = scraped(registry)
    assert ("default",) not in found
    observe(summary, 1)
    assert_within_bound(scraped(registry)[("default",)], values_of(1))


def remove_default(summary: Summary) -> None:
    summary.remove({"queue": "default"})


def test_a_series_removed_by_another_process_forgets_what_it_had(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """The parent holds the series; a child removes it: the parent's window drops what it had
    then, and goes on with what it observes after (count, sum and quantiles agree)."""
    registry = CollectorRegistry()
    summary = define(registry)
    observe(summary, 0)
    assert_within_bound(scraped(registry)[("default",)], values_of(0))  # written for all to see
    child = multiprocessing.get_context("fork").Process(target=remove_default, args=(summary,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    observe(summary, 1)
    assert_within_bound(scraped(registry)[("default",)], values_of(1))


def observe_and_stay(summary: Summary, process: int, observed: Any, leave: Any) -> None:
    observe(summary, process)
    from pytheus.backends.redis import wait_for_flush

    assert wait_for_flush(30)
    observed.set()
    leave.wait(60)


def test_a_redis_that_lost_its_data_gets_every_window_again(module_redis: RedisServer) -> None:
    """Redis restarts empty: the parent and a living child re-send their totals and windows;
    scrapes answer 503 meanwhile, then every count and quantile is back, nothing twice."""
    settings = {"url": module_redis.url, "namespace": "lost", "flush_interval": 0.2}
    load_backend(MultiProcessRedisBackend, settings)
    context: Any = multiprocessing.get_context("fork")
    observed, leave = context.Event(), context.Event()
    try:
        registry = CollectorRegistry()
        summary = define(registry)
        observe(summary, 0)
        child = context.Process(target=observe_and_stay, args=(summary, 1, observed, leave))
        child.start()
        assert observed.wait(60)
        assert_within_bound(scraped(registry)[("default",)], values_of(0) + values_of(1))
        module_redis.restart()  # empty: no persistence
        observe(summary, 2)

        def recovered() -> SummaryData:
            try:
                return scraped(registry)[("default",)]
            except BackendUnavailableException as error:
                raise AssertionError(error) from None

        data = eventually(recovered)
        assert_within_bound(data, values_of(0) + values_of(1) + values_of(2))
        leave.set()
        child.join(timeout=60)
        assert child.exitcode == 0
    finally:
        leave.set()
        load_backend(SingleProcessBackend, {})


def observe_briefly(backend: tuple[type[Any], dict[str, Any]]) -> None:
    load_backend(*backend)
    summary = Summary("brief_seconds", "B.", quantiles=(0.5,), max_age_seconds=1, age_buckets=1)
    summary.observe(0.5)


def test_redis_deletes_the_slots_that_left_the_window(module_redis: RedisServer) -> None:
    """Redis keeps one window per series, summed over the processes (ended ones too), and
    deletes its slots once they left the window: bounded memory however long the series lives;
    _count and _sum stay."""

    settings = {"url": module_redis.url, "namespace": "brief"}
    backend: tuple[type[Any], dict[str, Any]] = (MultiProcessRedisBackend, settings)
    for _ in range(3):
        child = multiprocessing.get_context("spawn").Process(
            target=observe_briefly, args=(backend,)
        )
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
    client = redis.Redis.from_url(module_redis.url)
    [key] = client.keys("pytheus:brief:q:*")
    assert 1 <= client.hlen(key) <= 3  # a field per slot the processes observed in, not per process
    load_backend(*backend)
    try:
        registry = CollectorRegistry()
        Summary("brief_seconds", "B.", quantiles=(0.5,), max_age_seconds=1, registry=registry,
                age_buckets=1)  # fmt: skip

        def emptied() -> SummaryData:
            [family] = collect_registry(registry)
            [(_, data)] = family.series
            assert isinstance(data, SummaryData)
            assert client.exists(key) == 0
            return data

        data = eventually(emptied)
        assert (data.count, data.sum) == (3, 1.5)
        assert all(math.isnan(v) for _, v in data.quantiles)
        assert client.scard("pytheus:brief:quantiles") == 0
    finally:
        load_backend(SingleProcessBackend, {})


def observe_huge_range(backend: tuple[type[Any], dict[str, Any]], seed: int) -> None:
    load_backend(*backend)
    summary = Summary("huge_range", "H.", quantiles=(0.9, 0.99), registry=CollectorRegistry())
    for value in huge_range(seed):
        summary.observe(value)


def huge_range(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [10 ** rng.uniform(-300.0, 300.0) for _ in range(3000)]


def test_redis_keeps_at_most_max_buckets_per_slot(module_redis: RedisServer) -> None:
    """Values over 600 decades from 2 processes: some 6,000 buckets, more than the 2,048 a
    sketch keeps. Redis keeps 2,048, the lowest magnitudes counted at the lowest kept (as a
    sketch does), so the high quantiles keep their 1 % bound."""
    backend: tuple[type[Any], dict[str, Any]] = (
        MultiProcessRedisBackend, {"url": module_redis.url, "namespace": "huge"},
    )  # fmt: skip
    context: Any = multiprocessing.get_context("fork")
    children = [context.Process(target=observe_huge_range, args=(backend, s)) for s in (1, 2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    client = redis.Redis.from_url(module_redis.url)
    [key] = client.keys("pytheus:huge:q:*")
    unbounded = QuantileSketch(max_buckets=10**6)
    unbounded.add_many(huge_range(1) + huge_range(2))
    assert unbounded.bucket_count > 2 * 2048  # more than a slot may keep
    for raw in client.hvals(key):
        ids = raw.split()[5::2]
        assert len(ids) <= 2048, len(ids)
    load_backend(*backend)
    try:
        registry = CollectorRegistry()
        Summary("huge_range", "H.", quantiles=(0.9, 0.99), registry=registry)
        [family] = collect_registry(registry)
        [(_, data)] = family.series
        assert isinstance(data, SummaryData)
        everything = huge_range(1) + huge_range(2)
        assert data.count == len(everything)
        for q, got in data.quantiles:
            want = exact(everything, q)
            assert abs(got - want) <= 0.01 * want * (1 + 1e-9), (q, got, want)
    finally:
        load_backend(SingleProcessBackend, {})
