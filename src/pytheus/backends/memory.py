"""The default backend: thread-safe values in this process's memory.

Every value has its own lock, so ``inc`` is a method call, a lock and an add; this stays
correct on free-threaded CPython, where ``x += 1`` on a shared attribute is not atomic.
"""

from __future__ import annotations

import itertools
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from math import ceil, log2
from threading import Lock, RLock
from typing import TYPE_CHECKING, Any

from pytheus.backends.store import (
    BaseStore,
    BoundSeries,
    StoredFamily,
    Value,
    read_live,
    summary_window,
)
from pytheus.native import NativeHistogram, ResetTimer
from pytheus.native import bounds_table as native_bounds_table
from pytheus.native import bucket_index as native_bucket_index
from pytheus.quantiles import SlidingQuantiles
from pytheus.samples import Exemplar, HistogramData, MetricType, Series, SummaryData

if TYPE_CHECKING:
    from pytheus.backends.base import BackendConfig


_LOCK_STRIPES = 64
_lock_pool = [RLock() for _ in range(_LOCK_STRIPES)]
_next_stripe = itertools.count()


def striped_lock() -> Any:
    """One of a fixed pool of locks, in turn: a value's lock, shared with 1/64 of the others.

    A lock per value would cost about 70 bytes per series; a value holds its lock only for an
    add or a copy, and never while taking another value's. The locks are re-entrant: a signal
    handler (or a finalizer) that records into another value of the same stripe, while its
    thread holds the lock, goes on instead of waiting for itself.
    """
    return _lock_pool[next(_next_stripe) % _LOCK_STRIPES]


class SingleProcessBackend:
    """One thread-safe value in memory; the default backend.

    Example::

        from pytheus.backends import load_backend, SingleProcessBackend
        load_backend(SingleProcessBackend)  # what pytheus does when nothing else is configured
    """

    __slots__ = ("_value", "_lock")

    def __init__(
        self,
        config: BackendConfig | None = None,
        metric: Any = None,
        histogram_bucket: str | None = None,
        *,
        lock: Any = None,
    ) -> None:
        self._value = 0.0
        self._lock = Lock() if lock is None else lock

    def inc(self, value: float) -> None:
        with self._lock:
            self._value += value

    def dec(self, value: float) -> None:
        with self._lock:
            self._value -= value

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def get(self) -> float:
        with self._lock:
            return self._value

    @classmethod
    def _make_store(cls, config: BackendConfig) -> MemoryStore:
        return MemoryStore()


class MemoryCounter(SingleProcessBackend):
    """A counter's value and its latest exemplar."""

    __slots__ = ("exemplar",)

    def __init__(self) -> None:
        super().__init__(lock=striped_lock())
        self.exemplar: Exemplar | None = None

    def record_exemplar(self, exemplar: Exemplar) -> None:
        self.exemplar = exemplar


class MemoryHistogram:
    """Per-bucket counts and a sum under one lock: a snapshot is one moment."""

    __slots__ = ("_bounds", "_counts", "_sum", "_lock", "_last", "_exemplars")

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        self._bounds = upper_bounds
        self._counts = [0] * len(upper_bounds)
        self._sum = 0.0
        self._lock = striped_lock()
        self._last = len(upper_bounds) - 1
        self._exemplars: list[Exemplar | None] | None = None

    def record_exemplar(self, exemplar: Exemplar) -> None:
        bucket = bucket_index(self._bounds, exemplar.value)
        with self._lock:
            if self._exemplars is None:
                self._exemplars = [None] * len(self._bounds)
            self._exemplars[bucket] = exemplar

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)
        if index == 0 and value != value:  # NaN compares false with every bound: count it in +Inf
            index = self._last
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> HistogramData:
        with self._lock:
            exemplars = None if self._exemplars is None else list(self._exemplars)
            return HistogramData(self._bounds, self._counts.copy(), self._sum, exemplars)


class MemoryNativeHistogram(MemoryHistogram):
    """A histogram with a native (sparse exponential) part, under the classic part's lock.

    When an observation makes more than ``max_buckets`` buckets, the whole histogram restarts
    from that observation if ``reset_seconds`` (> 0) have passed since the last reset (or since
    it was created), by ``clock`` (``time.monotonic`` unless given), else the native schema is
    lowered by one (merging buckets pairwise) until the buckets fit, as client_golang does.

    ``observe`` is the hot path, so it does the common case inline, with the same result as
    ``NativeHistogram.observe``: for a positive value above the zero threshold, between about
    ``2**-64`` and ``2**64``, ``ceil(log2(value) * 2**schema - 1e-9)`` is the bucket's index or
    the one below (``log2`` is off by far less than ``1e-9`` there), and one comparison with the
    schema's table of bucket bounds (``pytheus.native.bounds_table``, the bounds
    :func:`~pytheus.native.bucket_index` decides with; cached here and refreshed whenever the
    schema changes) makes it exact. That is cheaper than bisecting the table. Other values take
    :meth:`_observe_native`. The native count and sum are not kept twice: they are the classic
    ones (NaN counts in ``+Inf`` and in the native count alike), filled in by :meth:`snapshot`.
    A native-only histogram (the single classic bucket ``+Inf``) skips the classic bisection:
    every value, NaN included, is in it.
    """

    __slots__ = (
        "_native",
        "_initial_schema",
        "_max_buckets",
        "_reset",
        "_only_inf",
        "_low",
        "_high",
        "_scale",
        "_positive",
        "_table",
        "_first_key",
    )

    def __init__(
        self,
        upper_bounds: tuple[float, ...],
        schema: int,
        zero_threshold: float,
        max_buckets: int,
        reset_seconds: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(upper_bounds)
        self._native = NativeHistogram(schema, zero_threshold)
        self._initial_schema = schema
        self._max_buckets = max_buckets
        self._reset = ResetTimer(reset_seconds, clock or time.monotonic)
        self._only_inf = self._last == 0
        self._refresh()

    def _refresh(self) -> None:
        """Cache what the fast path reads of the native part; after every change of schema."""
        native = self._native
        self._positive = native.positive
        table, self._first_key = native_bounds_table(native.schema)
        self._table = table
        self._scale = 2.0**native.schema
        # The fast path's values: its estimate, one below at most, stays inside the table.
        self._low = max(native.zero_threshold, table[2])
        self._high = table[-3]

    def observe(self, value: float) -> None:
        if self._only_inf:
            index = 0
        else:
            index = bisect_left(self._bounds, value)
            if index == 0 and value != value:
                index = self._last
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            if self._low < value <= self._high:
                key = ceil(log2(value) * self._scale - 1e-9)  # the index, or one below it
                if value > self._table[key - self._first_key]:
                    key += 1
                buckets = self._positive
                try:
                    buckets[key] += 1
                except KeyError:  # a new bucket: are there too many now?
                    buckets[key] = 1
                    if len(buckets) + len(self._native.negative) > self._max_buckets > 0:
                        self._shrink(index, value)
                return
            self._observe_native(index, value)

    def _observe_native(self, index: int, value: float) -> None:
        """The native part of ``observe`` for any value, at any schema (the lock is held)."""
        native = self._native
        if value > native.zero_threshold:
            buckets = native.positive
        elif value < -native.zero_threshold:
            buckets = native.negative
        else:
            if value == value:  # NaN is in the count and sum only
                native.zero_count += 1
            buckets = None
        if buckets is not None:
            key = native_bucket_index(value, native.schema)
            buckets[key] = buckets.get(key, 0) + 1
        if native.bucket_count > self._max_buckets > 0:
            self._shrink(index, value)

    def _shrink(self, index: int, value: float) -> None:
        if self._reset.due():  # start again, keeping only the latest observation
            self._counts = [0] * len(self._bounds)
            self._counts[index] = 1
            self._sum = value
            self._exemplars = None
            self._native.reset()
            self._native.schema = self._initial_schema
            self._native.observe(value)
        else:
            self._native.limit_buckets(self._max_buckets)
        self._refresh()

    def snapshot(self) -> HistogramData:
        with self._lock:
            exemplars = None if self._exemplars is None else list(self._exemplars)
            native = self._native.copy()
            native.count = sum(self._counts)
            native.sum = self._sum
            return HistogramData(self._bounds, self._counts.copy(), self._sum, exemplars, native)


class MemorySummary:
    __slots__ = ("_count", "_sum", "_lock", "_window")

    def __init__(self, window: SlidingQuantiles | None = None) -> None:
        self._count = 0
        self._sum = 0.0
        self._lock = striped_lock()
        self._window = window

    def observe(self, value: float) -> None:
        if self._window is not None:
            self._observe_with_quantiles(value)
            return
        with self._lock:
            self._count += 1
            self._sum += value

    def _observe_with_quantiles(self, value: float) -> None:
        assert self._window is not None
        now = time.time()
        with self._lock:
            self._count += 1
            self._sum += value
            self._window.observe(value, now)

    def snapshot(self) -> SummaryData:
        with self._lock:
            if self._window is None:
                return SummaryData(self._count, self._sum)
            return SummaryData(self._count, self._sum, self._window.query(time.time()))


class MemoryStore(BaseStore):
    """Binds each series to an in-memory value; a scrape reads the values directly.

    ``clock`` is the monotonic clock that native histograms measure ``native_reset_seconds``
    with; values bound after it is replaced use the new one (tests move time forward with it).
    """

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.monotonic

    def bind(self, metric: BoundSeries) -> Value:
        desc = metric._desc
        if desc.type is MetricType.HISTOGRAM:
            if desc.option("native"):
                return MemoryNativeHistogram(
                    desc.upper_bounds,
                    desc.option("native_schema"),  # type: ignore[arg-type]
                    desc.option("native_zero_threshold"),  # type: ignore[arg-type]
                    desc.option("native_max_buckets"),  # type: ignore[arg-type]
                    desc.option("native_reset_seconds"),  # type: ignore[arg-type]
                    self.clock,
                )
            return MemoryHistogram(desc.upper_bounds)
        if desc.type is MetricType.SUMMARY:
            return MemorySummary(summary_window(desc))
        if desc.type is MetricType.COUNTER:
            return MemoryCounter()
        return SingleProcessBackend(lock=striped_lock())

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        return read_live(families)


def bucket_index(upper_bounds: Sequence[float], value: float) -> int:
    """The bucket ``value`` falls in (NaN falls in ``+Inf``, as it compares false with all)."""
    index = bisect_left(upper_bounds, value)
    if index == 0 and value != value:
        return len(upper_bounds) - 1
    return index


def bucket_name(upper_bound: float) -> str:
    """The ``le`` spelling of a bucket bound: ``0.5``, ``1.0``, ``+Inf``."""
    if upper_bound == math.inf:
        return "+Inf"
    return repr(float(upper_bound))
