"""Native histograms on the Redis backend: restarts through lost data, folding dead processes."""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.redis import MultiProcessRedisBackend, RedisStore
from pytheus.collection import collect_registry
from pytheus.metrics import Histogram
from pytheus.native import NativeHistogram
from pytheus.registry import CollectorRegistry
from pytheus.samples import HistogramData
from tests.redis_server import shared_server

MAX_BUCKETS = 8
BEFORE = [1.5**k for k in range(MAX_BUCKETS - 1)] + [-2.0, 0.0, 1.0]  # 8 buckets: full
AFTER = [1000.0, 3.0, -0.25, 0.0]  # 1000.0 is a 9th bucket: the histogram restarts from it
LATER = [7.0, 1000.0]


@pytest.fixture
def loaded() -> Iterator[dict[str, Any]]:
    settings = {"url": shared_server().url, "namespace": uuid.uuid4().hex[:12]}
    load_backend(MultiProcessRedisBackend, settings)
    yield settings
    load_backend(SingleProcessBackend, {})


def store() -> RedisStore:
    current = current_store()
    assert isinstance(current, RedisStore)
    return current


def client(settings: dict[str, Any]) -> Any:
    return redis.Redis.from_url(settings["url"])


def namespace_keys(settings: dict[str, Any]) -> list[bytes]:
    keys: list[bytes] = client(settings).keys(f"pytheus:{settings['namespace']}:*")
    return keys


def restarting(registry: CollectorRegistry) -> Histogram:
    """A histogram that restarts at its first overflow: the clock jumps on every reading."""
    ticks = [0.0]

    def clock() -> float:
        ticks[0] += 10.0
        return ticks[0]

    store().clock = clock
    return Histogram(
        "restarting_seconds", "R.", registry=registry, buckets=[0, 1, 10], native=True,
        native_max_buckets=MAX_BUCKETS, native_reset_seconds=1.0,
    )  # fmt: skip


def scraped(registry: CollectorRegistry) -> HistogramData:
    [family] = collect_registry(registry)
    [(_, data)] = family.series
    assert isinstance(data, HistogramData)
    return data


def shows_exactly(registry: CollectorRegistry, values: list[float], schema: int = 3) -> None:
    data = scraped(registry)
    want = NativeHistogram(schema)
    for value in values:
        want.observe(value)
    assert data.native is not None
    assert (data.native.schema, data.native.count, data.native.zero_count) == (
        want.schema, want.count, want.zero_count,
    )  # fmt: skip
    assert (data.native.positive, data.native.negative) == (want.positive, want.negative)
    assert data.count == want.count
    assert list(data.bucket_counts) == [
        sum(1 for v in values if v <= 0),
        sum(1 for v in values if 0 < v <= 1),
        sum(1 for v in values if 1 < v <= 10),
        sum(1 for v in values if v > 10),
    ]
    assert math.isclose(data.sum, math.fsum(values), rel_tol=1e-12)
    assert math.isclose(data.native.sum, math.fsum(values), rel_tol=1e-12)


def end_recovery(settings: dict[str, Any]) -> None:
    """Scrapes answer 503 for a while after lost data (other processes may not have re-sent):
    this test has no other process, so it ends that window at once."""
    client(settings).delete(f"pytheus:{settings['namespace']}:recovering")


def test_a_restart_is_replayed_exactly_after_redis_lost_recent_batches(
    loaded: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    histogram = restarting(registry)
    for value in BEFORE:
        histogram.observe(value)
    flusher = store().flusher
    assert flusher.flush()
    redis_client = client(loaded)
    saved = {
        key: (redis_client.dump(key), redis_client.pttl(key)) for key in namespace_keys(loaded)
    }
    for value in AFTER:  # the batch restarting the histogram...
        histogram.observe(value)
    assert flusher.flush()
    for value in LATER:
        histogram.observe(value)
    assert flusher.flush()
    redis_client.delete(*namespace_keys(loaded))  # ...and the next are lost (a failover)
    for key, (dumped, ttl) in saved.items():
        redis_client.restore(key, max(ttl, 0), dumped, replace=True)
    with caplog.at_level(logging.WARNING, logger="pytheus.backends.redis"):
        assert flusher.flush()  # finds the gap, sends the lost batches again from its history
    assert "lost 2 recent batch(es)" in caplog.text
    end_recovery(loaded)
    shows_exactly(registry, AFTER + LATER)


@pytest.mark.parametrize("flushed", [True, False])
def test_a_restart_survives_redis_losing_everything(loaded: dict[str, Any], flushed: bool) -> None:
    """Redis restarts empty: the process re-sends its whole contribution, which is only what
    it counted since its restart (whether or not the restart had reached Redis)."""
    registry = CollectorRegistry()
    histogram = restarting(registry)
    for value in BEFORE:
        histogram.observe(value)
    flusher = store().flusher
    assert flusher.flush()
    for value in AFTER:
        histogram.observe(value)
    if flushed:
        assert flusher.flush()
    client(loaded).delete(*namespace_keys(loaded))
    assert flusher.flush()  # finds Redis empty, re-sends its totals
    end_recovery(loaded)
    shows_exactly(registry, AFTER)
    for value in LATER:
        histogram.observe(value)
    shows_exactly(registry, AFTER + LATER)


def test_a_restart_racing_a_resync_takes_nothing_back(loaded: dict[str, Any]) -> None:
    """A restart after the flusher took its batch, before it found Redis empty: the resync
    sends the contribution since the restart, and nothing is taken back later."""
    registry = CollectorRegistry()
    histogram = restarting(registry)
    for value in BEFORE:
        histogram.observe(value)
    flusher = store().flusher
    assert flusher.flush()
    client(loaded).delete(*namespace_keys(loaded))
    with flusher._flush_lock:  # as flush() does once a reply reports the gap
        for value in AFTER:
            histogram.observe(value)
        flusher._recover(-1)
    assert flusher.flush()
    end_recovery(loaded)
    shows_exactly(registry, AFTER)


# --- dead processes' native fields fold into one -----------------------------------------------


def native_fields(settings: dict[str, Any]) -> set[str]:
    """The fields of the one native series of the namespace."""
    redis_client = client(settings)
    [key] = redis_client.keys(f"pytheus:{settings['namespace']}:n:*")
    return {field.decode() for field in redis_client.hkeys(key)}


def kept_for_comebacks(settings: dict[str, Any]) -> list[str]:
    """The processes whose folded native histograms are kept for when they flush again."""
    prefix = f"pytheus:{settings['namespace']}:nb:"
    return [key.decode()[len(prefix) :] for key in client(settings).keys(prefix + "*")]


def lowered(values: list[float], max_buckets: int) -> int:
    """The schema a process that observed ``values`` ends at."""
    histogram = NativeHistogram(3)
    for value in values:
        histogram.observe(value)
        if histogram.bucket_count > max_buckets:
            histogram.limit_buckets(max_buckets)
    return histogram.schema


def values_of(process: int) -> list[float]:
    rng = random.Random(process)
    spread = 8.0 if process % 5 == 0 else 0.5  # some processes lower their schema, some do not
    values = [rng.choice((-1.0, 1.0)) * rng.lognormvariate(process % 3, spread) for _ in range(60)]
    return values + [0.0] * (process % 3)


def observe_and_exit(histogram: Histogram, values: list[float]) -> None:
    """In a child: it flushes, and says goodbye, as it exits."""
    for value in values:
        histogram.observe(value)


def run_forked(target: Any, *args: Any) -> None:
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0


def test_dead_processes_fold_into_one_native_field(loaded: dict[str, Any]) -> None:
    """20 short-lived processes: each scrape is exact, and the series keeps two fields (this
    living process's, and the dead processes' folded together)."""
    registry = CollectorRegistry()
    histogram = Histogram(
        "churn_seconds", "Churn.", registry=registry, buckets=[0, 1, 10], native=True,
        native_max_buckets=MAX_BUCKETS,
    )  # fmt: skip
    everything = values_of(100)
    for value in everything:
        histogram.observe(value)
    schemas = {lowered(everything, MAX_BUCKETS)}
    for process in range(20):
        run_forked(observe_and_exit, histogram, values_of(process))
        everything += values_of(process)
        schemas.add(lowered(values_of(process), MAX_BUCKETS))
        if process % 4 == 3:
            shows_exactly(registry, everything, min(schemas))
            assert native_fields(loaded) == {store().flusher.process, "_a"}
    assert len(schemas) > 1  # the folded processes were at different schemas
    assert kept_for_comebacks(loaded) == []  # they said goodbye: none will flush again


@pytest.mark.parametrize("restart", [False, True])
def test_a_process_taken_for_dead_is_counted_once(loaded: dict[str, Any], restart: bool) -> None:
    """A process that stopped flushing for longer than its heartbeat is folded; its next flush
    takes its part back out of the folded field (and it may have restarted meanwhile)."""
    registry = CollectorRegistry()
    if restart:
        histogram = restarting(registry)
    else:
        histogram = Histogram(
            "restarting_seconds", "R.", registry=registry, buckets=[0, 1, 10], native=True,
            native_max_buckets=MAX_BUCKETS,
        )  # fmt: skip
    for value in BEFORE:
        histogram.observe(value)
    current = store()
    assert current.flusher.flush()
    other = [0.5, 2.0, -3.0, 0.0, 2.0, 40.0]  # fits: the child never restarts
    run_forked(observe_and_exit, histogram, other)
    namespace = loaded["namespace"]
    with current.flusher._flush_lock:  # this process stops flushing: its heartbeat lapses
        client(loaded).delete(f"pytheus:{namespace}:proc:{current.flusher.process}")
        current._scrape(
            args=[current.options.base, current.options.expire_key_time, 30, current._server]
        )
        assert native_fields(loaded) == {"_a"}  # both folded: the child and this process
        [key] = client(loaded).keys(f"pytheus:{namespace}:n:*")
        assert client(loaded).ttl(key) > 0  # the hash still expires with the series
        assert kept_for_comebacks(loaded) == [current.flusher.process]
    for value in AFTER:  # 1000.0 overflows: a restart, or a lower schema
        histogram.observe(value)
    if restart:
        shows_exactly(registry, other + AFTER)
    else:
        shows_exactly(registry, other + BEFORE + AFTER, lowered(BEFORE + AFTER, MAX_BUCKETS))
    assert native_fields(loaded) == {current.flusher.process, "_a"}
    assert kept_for_comebacks(loaded) == []
