"""How metrics reach their storage: the internal protocols every backend is adapted to.

A :class:`Store` gives each observable series a *value object* the first time it records
(``bind``) and reads the series of whole families at scrape time (``read``). Value objects are
what the hot path calls, so they do as little as possible:

- counters and gauges get a :class:`ScalarValue` (``inc``, ``dec``, ``set``, ``get``), which is
  exactly the per-value ``Backend`` protocol of pytheus 0.6;
- histograms and summaries get an :class:`ObservationValue` (``observe``, ``snapshot``), so a
  backend can record a whole observation at once and hand a scrape one consistent moment.

Third-party backends that implement only the per-value protocol are wrapped by
:mod:`pytheus.backends.per_value`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol, Union

from pytheus.quantiles import SlidingQuantiles
from pytheus.samples import (
    CounterData,
    HistogramData,
    LabelSet,
    LiveSeries,
    MetricType,
    Series,
    SummaryData,
)

if TYPE_CHECKING:
    from pytheus.desc import MetricDesc


class ScalarValue(Protocol):
    def inc(self, value: float) -> None: ...
    def dec(self, value: float) -> None: ...
    def set(self, value: float) -> None: ...
    def get(self) -> float: ...


class ObservationValue(Protocol):
    def observe(self, value: float) -> None: ...
    def snapshot(self) -> HistogramData | SummaryData: ...


Value = Union[ScalarValue, ObservationValue]


class BoundSeries(Protocol):
    """What a store sees of the metric object it binds a value for."""

    @property
    def _desc(self) -> MetricDesc: ...
    @property
    def _series(self) -> LabelSet | None: ...


class StoredFamily(Protocol):
    """What a store sees of a metric family at scrape time."""

    @property
    def desc(self) -> MetricDesc: ...
    def local_values(self) -> Iterable[tuple[LabelSet, Value]]: ...


class Store(Protocol):
    def bind(self, metric: BoundSeries) -> Value:
        """Return the value object that records for ``metric``'s series in this process."""
        ...

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        """Return the series of each family, in order: everything this store knows of them.

        Raises BackendUnavailableException when the storage cannot be read.
        """
        ...


SCALAR_TYPES = frozenset({MetricType.COUNTER, MetricType.GAUGE, MetricType.UNTYPED})


def read_value(
    metric_type: MetricType, value: Value
) -> float | CounterData | HistogramData | SummaryData:
    """Read one bound value as the sample model wants it."""
    if metric_type in SCALAR_TYPES:
        exemplar = getattr(value, "exemplar", None)
        if exemplar is not None:
            return CounterData(value.get(), exemplar)  # type: ignore[union-attr]
        return value.get()  # type: ignore[union-attr]
    return value.snapshot()  # type: ignore[union-attr]


def read_local(families: Sequence[StoredFamily]) -> list[list[Series]]:
    """Read families from the value objects of this process, now (so that a value that fails
    fails here, where the caller expects it)."""
    return [list(_read_family(family)) for family in families]


def read_live(families: Sequence[StoredFamily]) -> list[LiveSeries]:
    """Read families from the value objects of this process as a formatter reaches each value
    (:class:`~pytheus.samples.LiveSeries`); for values that cannot fail, as the memory
    backend's."""
    return [LiveSeries(partial(_read_family, family)) for family in families]


def _read_family(family: StoredFamily) -> Iterator[Series]:
    metric_type = family.desc.type
    for labels, value in family.local_values():
        yield labels, read_value(metric_type, value)


def summary_window(desc: MetricDesc) -> SlidingQuantiles | None:
    """A new sliding window for a series of the Summary ``desc`` (None without quantiles)."""
    quantiles = desc.option("quantiles")
    if not quantiles:
        return None
    return SlidingQuantiles(
        quantiles,  # type: ignore[arg-type]
        desc.option("max_age_seconds"),  # type: ignore[arg-type]
        desc.option("age_buckets"),  # type: ignore[arg-type]
    )
