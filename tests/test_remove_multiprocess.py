"""``remove()`` while other processes keep recording the series (shared files, Redis).

The processes are real (forked) and stay alive between steps: a parent sends each one commands
through a pipe and waits until it has recorded (and, on Redis, flushed) them.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.collection import collect_registry
from pytheus.metrics import Counter, Gauge, Histogram
from pytheus.native import NativeHistogram
from pytheus.registry import CollectorRegistry
from pytheus.samples import HistogramData
from tests import helpers
from tests.helpers import samples
from tests.test_native_multiprocess import flush, multiprocess_backend, redis_config, run_forked

if TYPE_CHECKING:
    from pytheus.backends.redis import RedisStore

__all__ = ["multiprocess_backend"]  # the fixture, for pytest

MAX_BUCKETS = 8
SHIFT = [0.0]
"""Seconds added to the clock of native histograms; a forked child moves its own copy."""


def shifted_clock() -> float:
    return time.monotonic() + SHIFT[0]


def define(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "removed_seconds", "Removed.", required_labels=["route"], registry=registry,
        buckets=[0, 1, 10], native=True, native_max_buckets=MAX_BUCKETS,
        native_reset_seconds=0.05,
    )  # fmt: skip


def serve(connection: Any, metrics: tuple[Any, ...]) -> None:
    """In a child: run what the parent sends on ``metrics``, flush, answer; until None."""
    while True:
        command = connection.recv()
        if command is None:
            break
        function, args = command
        function(*metrics, *args)
        flush()
        connection.send("done")


class Worker:
    """A forked child that records into ``metrics`` on command and stays alive in between."""

    def __init__(self, *metrics: Any) -> None:
        context: Any = multiprocessing.get_context("fork")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs, metrics))
        self.process.start()

    def run(self, function: Callable[..., None], *args: Any) -> None:
        self.connection.send((function, args))
        assert self.connection.recv() == "done"

    def exit(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=60)
        assert self.process.exitcode == 0


def observe(histogram: Histogram, values: list[float], advance: float = 0.0) -> None:
    """Observe ``values`` after moving this process's clock by ``advance`` seconds."""
    SHIFT[0] += advance
    for value in values:
        histogram.labels(route="/a").observe(value)


def histogram_of(values: list[float]) -> NativeHistogram:
    histogram = NativeHistogram(3)
    for value in values:
        histogram.observe(value)
    return histogram


def shows_exactly(registry: CollectorRegistry, values: list[float]) -> None:
    """The one series of ``registry`` holds ``values``: classic buckets, count, sum, native."""
    want = histogram_of(values)
    [family] = collect_registry(registry)
    [(_, data)] = family.series
    assert isinstance(data, HistogramData) and data.native is not None
    got = data.native
    assert (got.schema, got.count, got.zero_count) == (want.schema, want.count, want.zero_count)
    assert (got.positive, got.negative) == (want.positive, want.negative)
    assert math.isclose(got.sum, math.fsum(values), rel_tol=1e-12, abs_tol=1e-12)
    assert list(data.bucket_counts) == [
        sum(1 for v in values if v <= 0),
        sum(1 for v in values if 0 < v <= 1),
        sum(1 for v in values if 1 < v <= 10),
        sum(1 for v in values if v > 10),
    ]
    assert math.isclose(data.sum, math.fsum(values), rel_tol=1e-12, abs_tol=1e-12)
    exposed = samples(registry)
    route = ("route", "/a")
    assert exposed[("removed_seconds_count", frozenset({route}))] == len(values)
    assert exposed[("removed_seconds_bucket", frozenset({route, ("le", "+Inf")}))] == len(values)


FILL = [1.5**k for k in range(MAX_BUCKETS - 1)] + [-2.0, 0.0, 1.0]  # 8 buckets: full
MORE = FILL[::-1]  # the same buckets: no overflow
OVERFLOW = [1000.0, 3.0, -0.25, 0.0]  # 1000.0 is a 9th bucket: it restarts from it
OTHER_BEFORE = [0.5, 2.0, -3.0]
OTHER_AFTER = [0.5, 20.0, 0.0]
OWN_BEFORE = [4.0, 4.0]
OWN_AFTER = [-3.0, 0.5]


@pytest.mark.parametrize("restart", ["after_more", "with_more", "first"])
def test_a_restart_after_a_removal_takes_back_only_what_is_left(
    multiprocess_backend: tuple[type[Any], dict[str, Any]], restart: str
) -> None:
    """The series is removed while two children keep recording it; later one restarts.

    From first principles, a removal empties the series for everyone, and a restart empties
    the restarting process's own part. So, after both, the series holds:

    - the restarting child: what it observed since its restart (``OVERFLOW``: the restart
      starts again from the observation that overflowed); ``FILL`` went with the removal,
      ``MORE`` (after the removal, before the restart) with the restart;
    - the other child: what it observed since the removal (``OTHER_AFTER``);
    - this process, which removed it: what it observed since (``OWN_AFTER``).

    The restarting child observes ``MORE`` and flushes it before the restart, or observes it
    in the batch of the restart, or observes none and restarts at its first observation after
    the removal. ``MORE`` falls in ``FILL``'s buckets, so the child overflows at 1000.0
    whether its histogram holds ``FILL`` too (shared files: the removal is subtracted at
    scrapes) or counts from the removal (Redis). Every process has flushed before the next
    step, so "since the removal" is exact on Redis too. The other processes' histograms stay
    within ``MAX_BUCKETS`` at schema 3, and the restart starts again at schema 3.
    """
    current_store().clock = shifted_clock  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    histogram = define(registry)
    restarting, other = Worker(histogram), Worker(histogram)
    try:
        restarting.run(observe, FILL)
        other.run(observe, OTHER_BEFORE)
        observe(histogram, OWN_BEFORE)
        flush()
        shows_exactly(registry, FILL + OTHER_BEFORE + OWN_BEFORE)
        histogram.remove(route="/a")
        flush()
        assert collect_registry(registry)[0].series == []
        other.run(observe, OTHER_AFTER)
        observe(histogram, OWN_AFTER)
        flush()
        shows_exactly(registry, OTHER_AFTER + OWN_AFTER)
        if restart == "after_more":
            restarting.run(observe, MORE)
            shows_exactly(registry, MORE + OTHER_AFTER + OWN_AFTER)
            restarting.run(observe, OVERFLOW, 1.0)
        elif restart == "with_more":
            restarting.run(observe, MORE + OVERFLOW, 1.0)
        else:
            restarting.run(observe, OVERFLOW, 1.0)
        shows_exactly(registry, OVERFLOW + OTHER_AFTER + OWN_AFTER)
    finally:
        restarting.exit()
        other.exit()
    for _ in range(2):  # the children are archived (file) or folded (Redis) now
        shows_exactly(registry, OVERFLOW + OTHER_AFTER + OWN_AFTER)


def test_removed_again_after_a_restart(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """Removed, one child restarts, removed again: the second removal starts from what each
    process holds then (the restarted child's part since its restart, the other's part)."""
    current_store().clock = shifted_clock  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    histogram = define(registry)
    restarting, other = Worker(histogram), Worker(histogram)
    again = [3.0, 1000.0]  # buckets the restarted child has: no overflow
    try:
        restarting.run(observe, FILL)
        other.run(observe, OTHER_BEFORE)
        histogram.remove(route="/a")
        flush()
        restarting.run(observe, OVERFLOW, 1.0)
        shows_exactly(registry, OVERFLOW)
        histogram.remove(route="/a")
        flush()
        assert collect_registry(registry)[0].series == []
        restarting.run(observe, again)
        other.run(observe, OTHER_AFTER)
        shows_exactly(registry, again + OTHER_AFTER)
    finally:
        restarting.exit()
        other.exit()
    for _ in range(2):
        shows_exactly(registry, again + OTHER_AFTER)


def record(counter: Counter, classic: Histogram, times: int) -> None:
    for _ in range(times):
        counter.labels(route="/a").inc()
        classic.labels(route="/a").observe(0.5)


def shows_recorded(registry: CollectorRegistry, times: int) -> None:
    assert helpers.value(registry, "removed_total", route="/a") == times
    assert helpers.value(registry, "removed_classic_seconds_count", route="/a") == times
    assert helpers.value(registry, "removed_classic_seconds_bucket", route="/a", le="1.0") == times
    assert helpers.value(registry, "removed_classic_seconds_bucket", route="/a", le="+Inf") == times
    assert helpers.value(registry, "removed_classic_seconds_sum", route="/a") == 0.5 * times


def test_without_native_histograms_others_count_on_from_zero(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """A counter and a classic histogram removed while two children keep recording them: the
    series show what the processes recorded since the removal (2 + 3 + 1). Removed again by
    this process, which has not recorded since, they show what the children recorded since
    (4 + 2), while they live and once they exited (archived, on the shared-file backend)."""
    registry = CollectorRegistry()
    counter = Counter("removed_total", "R.", required_labels=["route"], registry=registry)
    classic = Histogram(
        "removed_classic_seconds", "R.", required_labels=["route"], buckets=[1], registry=registry
    )
    workers = [Worker(counter, classic), Worker(counter, classic)]
    try:
        workers[0].run(record, 5)
        workers[1].run(record, 4)
        record(counter, classic, 1)
        flush()
        shows_recorded(registry, 10)
        counter.remove(route="/a")
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        assert helpers.value(registry, "removed_classic_seconds_count", route="/a") is None
        workers[0].run(record, 2)
        workers[1].run(record, 3)
        record(counter, classic, 1)
        flush()
        shows_recorded(registry, 6)
        counter.remove(route="/a")
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        workers[0].run(record, 4)
        workers[1].run(record, 2)
        shows_recorded(registry, 6)
        counter.remove(route="/a")  # this process has not recorded since its last removal
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        workers[0].run(record, 1)
        workers[1].run(record, 2)
        shows_recorded(registry, 3)
    finally:
        for worker in workers:
            worker.exit()
    for _ in range(2):
        shows_recorded(registry, 3)


# --- shared files: tombstones per process --------------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    from pytheus.backends.file import MultiProcessFileBackend

    load_backend(MultiProcessFileBackend, {"path": str(tmp_path)})
    yield tmp_path
    load_backend(SingleProcessBackend, {})


def set_gauge(gauge: Gauge, value: float) -> None:
    gauge.labels(route="/a").set(value)


def test_a_gauge_value_set_before_the_removal_no_longer_counts(directory: Path) -> None:
    """A ``sum`` gauge: the value one living process set before the removal is left out, also
    when another process sets it after."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "removed_gauge", "G.", required_labels=["route"], multiprocess_mode="sum",
        registry=registry,
    )  # fmt: skip
    before, after = Worker(gauge), Worker(gauge)
    try:
        before.run(set_gauge, 5.0)
        assert helpers.value(registry, "removed_gauge", route="/a") == 5
        gauge.remove(route="/a")
        assert helpers.value(registry, "removed_gauge", route="/a") is None
        after.run(set_gauge, 3.0)
        assert helpers.value(registry, "removed_gauge", route="/a") == 3
    finally:
        before.exit()
        after.exit()
    assert helpers.value(registry, "removed_gauge", route="/a") == 3


def count(counter: Counter, times: int) -> None:
    counter.labels(route="/a").inc(times)


def test_a_tombstone_file_of_an_earlier_version_still_applies(directory: Path) -> None:
    """Earlier versions kept the merged totals of a removed series: they apply to the archive,
    which holds every process of that run once they have exited."""
    registry = CollectorRegistry()
    counter = Counter("removed_total", "R.", required_labels=["route"], registry=registry)
    run_forked(count, counter, 5)
    assert helpers.value(registry, "removed_total", route="/a") == 5
    key = ["removed_total", "counter", "", ["route"], ["/a"], []]
    (directory / "removed.json").write_text(json.dumps([[key, [5.0], time.time()]]))
    assert helpers.value(registry, "removed_total", route="/a") is None
    run_forked(count, counter, 2)
    assert helpers.value(registry, "removed_total", route="/a") == 2


# --- Redis: how a process learns that a series it holds was removed ----------------------------


@pytest.fixture
def redis_backend() -> Iterator[RedisStore]:
    from pytheus.backends.redis import MultiProcessRedisBackend, RedisStore

    load_backend(MultiProcessRedisBackend, redis_config())
    store = current_store()
    assert isinstance(store, RedisStore)
    yield store
    load_backend(SingleProcessBackend, {})


def refresh_everything(histogram: Histogram) -> None:
    """In a child: its next flush refreshes every series it holds (as every 20 minutes)."""
    flusher = current_store().flusher  # type: ignore[attr-defined]
    flusher._last_refresh = -math.inf


def test_a_refresh_does_not_bring_back_a_removed_native_part(redis_backend: RedisStore) -> None:
    """A child that holds the series without observing: its refresh, which writes its native
    part again, finds the series removed and writes nothing, so later scrapes show only what
    was observed after the removal."""
    registry = CollectorRegistry()
    histogram = define(registry)
    holder = Worker(histogram)
    try:
        holder.run(observe, OTHER_BEFORE)
        histogram.labels(route="/a")
        histogram.remove(route="/a")
        flush()
        holder.run(refresh_everything)
        assert collect_registry(registry)[0].series == []
        observe(histogram, OWN_AFTER)
        flush()
        shows_exactly(registry, OWN_AFTER)
        holder.run(observe, OTHER_AFTER)
        shows_exactly(registry, OWN_AFTER + OTHER_AFTER)
    finally:
        holder.exit()


def remove_it(histogram: Histogram) -> None:
    histogram.labels(route="/a")
    histogram.remove(route="/a")


def test_a_batch_sent_again_still_reports_its_removed_series(redis_backend: RedisStore) -> None:
    """The reply to the batch Redis skipped for a removed series is lost; sent again, the batch
    is a duplicate, and Redis still says which series it skipped."""
    registry = CollectorRegistry()
    histogram = define(registry)
    observe(histogram, OWN_BEFORE)
    flush()
    run_forked(remove_it, histogram)
    flusher = redis_backend.flusher
    with flusher._flush_lock:  # the background flush waits
        observe(histogram, OWN_AFTER)
        batch = flusher._take_batch()
        assert batch is not None
        status, _, skipped = flusher._send(batch.seq, flusher._acked, batch.arguments())
        assert status == "ok" and len(skipped) == 1
        flusher._unacked = batch  # as if the reply had been lost
    assert flusher._send(batch.seq, flusher._acked, batch.arguments()) == (
        "dup",
        batch.seq,
        skipped,
    )
    assert flusher.flush()
    shows_exactly(registry, OWN_AFTER)
