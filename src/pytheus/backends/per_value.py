"""Adapts a backend that implements only the per-value protocol (``inc/dec/set/get``).

This is the "bring your own backend" promise of pytheus 0.6: the backend class is created once
per value, as ``backend_class(config, metric, histogram_bucket=...)``. A histogram gets one value
per bucket (counting the observations in that bucket alone) and one for its sum; a summary one for
its count and one for its sum. Within a process, a histogram's (or summary's) values are changed
and read under one lock, so a scrape sees one moment of what this process observed; what other
processes observe into a shared backend meanwhile may be half there (``_count`` is derived from
the buckets, so it always equals ``+Inf``).

Backends written for pytheus 0.6 may read all values in one batch instead of one ``get()`` each:
a class method ``_generate_samples(registry)`` returning, for each family of
``registry.collect()``, its samples (``suffix``, ``labels``, ``value``), as
``pytheus-backend-rs``'s ``RedisBackend`` does. When a class has it, scrapes use it; bucket
values are then named as that backend's reader names them (``bucket_key``).
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable, Sequence
from decimal import Decimal
from threading import Lock
from typing import TYPE_CHECKING, Any

from pytheus.backends.memory import bucket_name
from pytheus.backends.store import (
    BaseStore,
    BoundSeries,
    ScalarValue,
    StoredFamily,
    Value,
    read_local,
)
from pytheus.samples import HistogramData, LabelSet, MetricType, Series, SummaryData

if TYPE_CHECKING:
    from pytheus.backends.base import BackendConfig


class PerValueHistogram:
    __slots__ = ("_bounds", "_buckets", "_sum", "_last", "_lock")

    def __init__(
        self,
        backend_class: Any,
        config: BackendConfig,
        metric: BoundSeries,
        bucket_key: Callable[[float], str] = bucket_name,
    ) -> None:
        self._bounds = metric._desc.upper_bounds
        self._buckets: list[ScalarValue] = [
            backend_class(config, metric, histogram_bucket=bucket_key(b)) for b in self._bounds
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


def rust_bucket_key(upper_bound: float) -> str:
    """A bound as Rust prints an ``f64`` (``1``, ``0.005``, ``+Inf``): pytheus-backend-rs's
    reader names bucket values so."""
    if upper_bound == float("inf"):
        return "+Inf"
    return format(Decimal(repr(float(upper_bound))).normalize(), "f")


# Per-value backends whose batch reader names buckets in its own way, by module.
BUCKET_KEYS: dict[str, Callable[[float], str]] = {"pytheus_backend_rs": rust_bucket_key}


def _bucket_key_for(backend_class: Any) -> Callable[[float], str]:
    for module_name, key in BUCKET_KEYS.items():
        module = sys.modules.get(module_name)
        # an extension's classes may say "builtins" for their module: look in the module
        if module is not None and any(v is backend_class for v in vars(module).values()):
            return key
    return bucket_name


class PerValueStore(BaseStore):
    """A store that creates one instance of a per-value backend class for each value."""

    def __init__(self, backend_class: Any, config: BackendConfig) -> None:
        self.backend_class = backend_class
        self.config = config
        self.bucket_key = _bucket_key_for(backend_class)
        # the class is foreign (pytheus 0.6's protocol), where a batch reader is optional
        self.batch_reader = getattr(backend_class, "_generate_samples", None)

    def bind(self, metric: BoundSeries) -> Value:
        metric_type = metric._desc.type
        if metric_type is MetricType.HISTOGRAM:
            return PerValueHistogram(self.backend_class, self.config, metric, self.bucket_key)
        if metric_type is MetricType.SUMMARY:
            return PerValueSummary(self.backend_class, self.config, metric)
        value: ScalarValue = self.backend_class(self.config, metric)
        return value

    def forget(self, metric: Any) -> None:
        """``remove()``: zero the series' values through the protocol (``set(0)``, which every
        per-value class has: ``load_backend`` refuses one without). A series not bound in this
        process (yet, or again since a ``load_backend``) is bound first: other processes may
        have recorded into it."""
        value = metric._metric_value_backend
        parts: list[ScalarValue] = [value]
        if isinstance(value, PerValueHistogram):
            parts = [*value._buckets, value._sum]
        elif isinstance(value, PerValueSummary):
            parts = [value._count, value._sum]
        for part in parts:
            part.set(0.0)

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        if self.batch_reader is None:
            return read_local(families)
        by_family = self.batch_reader(_FamilyList(families))
        return [self._series(family, by_family.get(family, ())) for family in families]

    def _series(self, family: StoredFamily, samples: Any) -> list[Series]:
        """A batch reader's samples of one family as series (labels in declared order)."""
        desc = family.desc
        names = desc.label_names
        bucket_index = {self.bucket_key(b): i for i, b in enumerate(desc.upper_bounds)}
        parts: dict[tuple[str, ...], dict[str, Any]] = {}
        for sample in samples:
            labels = dict(sample.labels or {})
            le = labels.pop("le", None) if sample.suffix == "_bucket" else None
            key = tuple(labels.get(n, "") for n in names)
            part = parts.setdefault(key, {})
            if le is not None:
                buckets = part.setdefault("_bucket", [0.0] * len(desc.upper_bounds))
                if le in bucket_index:
                    buckets[bucket_index[le]] = sample.value
            else:
                part[sample.suffix] = sample.value
        series: list[Series] = []
        for key, part in sorted(parts.items()):
            label_set = LabelSet(names, key)
            if desc.type is MetricType.HISTOGRAM:
                counts = part.get("_bucket", [0.0] * len(desc.upper_bounds))
                series.append(
                    (label_set, HistogramData(desc.upper_bounds, counts, part.get("_sum", 0.0)))
                )
            elif desc.type is MetricType.SUMMARY:
                series.append(
                    (label_set, SummaryData(part.get("_count", 0.0), part.get("_sum", 0.0)))
                )
            else:
                series.append((label_set, float(part.get("", 0.0))))
        return series


class _FamilyList:
    """The "registry" a 0.6 batch reader walks: ``collect()`` gives the families to read."""

    def __init__(self, families: Sequence[StoredFamily]) -> None:
        self.families = families

    def collect(self) -> Sequence[StoredFamily]:
        return self.families
