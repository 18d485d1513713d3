"""Adapts a backend that implements only the per-value protocol (``inc/dec/set/get``).

This is the "bring your own backend" promise of pytheus 0.6: the backend class is created once
per value, as ``backend_class(config, metric, histogram_bucket=...)``. A histogram gets one value
per bucket (counting the observations in that bucket alone) and one for its sum; a summary one for
its count and one for its sum. Within a process, a histogram's (or summary's) values are changed
and read under one lock, so a scrape sees one moment of what this process observed; what other
processes observe into a shared backend meanwhile may be half there (``_count`` is derived from
the buckets, so it always equals ``+Inf``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from threading import Lock
from typing import TYPE_CHECKING, Any

from pytheus.backends.memory import bucket_name
from pytheus.backends.store import BoundSeries, ScalarValue, StoredFamily, Value, read_local
from pytheus.samples import HistogramData, MetricType, Series, SummaryData

if TYPE_CHECKING:
    from pytheus.backends.base import BackendConfig


class PerValueHistogram:
    __slots__ = ("_bounds", "_buckets", "_sum", "_last", "_lock")

    def __init__(self, backend_class: Any, config: BackendConfig, metric: BoundSeries) -> None:
        self._bounds = metric._desc.upper_bounds
        self._buckets: list[ScalarValue] = [
            backend_class(config, metric, histogram_bucket=bucket_name(b)) for b in self._bounds
        ]
        self._sum: ScalarValue = backend_class(config, metric, histogram_bucket="sum")
        self._last = len(self._bounds) - 1
        self._lock = Lock()

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)
        if index == 0 and value != value:
            index = self._last
        with self._lock:
            self._buckets[index].inc(1)
            self._sum.inc(value)

    def snapshot(self) -> HistogramData:
        with self._lock:
            return HistogramData(self._bounds, [b.get() for b in self._buckets], self._sum.get())


class PerValueSummary:
    __slots__ = ("_count", "_sum", "_lock")

    def __init__(self, backend_class: Any, config: BackendConfig, metric: BoundSeries) -> None:
        self._count: ScalarValue = backend_class(config, metric, histogram_bucket="count")
        self._sum: ScalarValue = backend_class(config, metric, histogram_bucket="sum")
        self._lock = Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._count.inc(1)
            self._sum.inc(value)

    def snapshot(self) -> SummaryData:
        with self._lock:
            return SummaryData(self._count.get(), self._sum.get())


class PerValueStore:
    """A store that creates one instance of a per-value backend class for each value."""

    def __init__(self, backend_class: Any, config: BackendConfig) -> None:
        self.backend_class = backend_class
        self.config = config

    def bind(self, metric: BoundSeries) -> Value:
        metric_type = metric._desc.type
        if metric_type is MetricType.HISTOGRAM:
            return PerValueHistogram(self.backend_class, self.config, metric)
        if metric_type is MetricType.SUMMARY:
            return PerValueSummary(self.backend_class, self.config, metric)
        value: ScalarValue = self.backend_class(self.config, metric)
        return value

    def forget(self, metric: Any) -> None:
        """``remove()``: zero the series' values through the protocol (``set(0)``)."""
        value = metric._value
        parts = [value]
        if isinstance(value, PerValueHistogram):
            parts = [*value._buckets, value._sum]
        elif isinstance(value, PerValueSummary):
            parts = [value._count, value._sum]
        for part in parts:
            if hasattr(part, "set"):
                part.set(0.0)

    def read(self, families: Sequence[StoredFamily]) -> list[list[Series]]:
        return read_local(families)
