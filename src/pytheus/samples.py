"""The neutral model a scrape produces: metric families holding series.

Collection turns a registry into a list of :class:`MetricFamily`; formatters turn that list
into bytes. Nothing here knows about backends or about a particular exposition format.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from pytheus.native import NativeHistogram


class MetricType(str, enum.Enum):
    """The type of a metric family, spelled as the exposition formats spell it."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    INFO = "info"
    STATESET = "stateset"
    UNTYPED = "untyped"

    def __str__(self) -> str:
        return self.value


class LabelSet:
    """The label names and values of one series, in declared order.

    Immutable. Formatters may memoise their rendering of it in ``rendered`` (keyed by format),
    so a series that is scraped many times is escaped once.
    """

    __slots__ = ("names", "values", "_rendered")

    def __init__(self, names: tuple[str, ...], values: tuple[str, ...]) -> None:
        self.names = names
        self.values = values
        self._rendered: dict[str, Any] | None = None  # made at the first scrape: memory

    @property
    def rendered(self) -> dict[str, Any]:
        rendered = self._rendered
        if rendered is None:
            rendered = self._rendered = {}
        return rendered

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.names, self.values))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LabelSet)
            and self.names == other.names
            and self.values == other.values
        )

    def __hash__(self) -> int:
        return hash((self.names, self.values))

    def __repr__(self) -> str:
        return f"LabelSet({self.as_dict()!r})"


EMPTY_LABELS = LabelSet((), ())


@dataclass(slots=True, frozen=True)
class Exemplar:
    """A sample of one observation with its own labels (e.g. a trace id), for OpenMetrics."""

    labels: Mapping[str, str]
    value: float
    timestamp: float | None = None


@dataclass(slots=True)
class CounterData:
    """A counter's value with its latest exemplar (a plain float when there is none)."""

    value: float
    exemplar: Exemplar | None = None


@dataclass(slots=True)
class HistogramData:
    """One moment of a histogram: per-bucket (not cumulative) counts and their sum.

    ``count`` is derived from the buckets, so it always equals the ``+Inf`` bucket.
    ``exemplars``, when present, holds the latest exemplar of each bucket (or None).
    ``native``, when present, is the same moment as a native histogram (same count and sum);
    a native-only histogram has the single classic bucket ``+Inf``.
    """

    upper_bounds: tuple[float, ...]
    bucket_counts: Sequence[float]
    sum: float
    exemplars: Sequence[Exemplar | None] | None = None
    native: NativeHistogram | None = None

    @property
    def count(self) -> float:
        return sum(self.bucket_counts)


@dataclass(slots=True)
class SummaryData:
    """One moment of a summary: count, sum and optional ``(quantile, value)`` pairs."""

    count: float
    sum: float
    quantiles: tuple[tuple[float, float], ...] = ()


SeriesValue = Union[float, CounterData, HistogramData, SummaryData]
Series = tuple[LabelSet, SeriesValue]


@dataclass(slots=True)
class MetricFamily:
    """All series of one metric as exposed: ``name`` already carries any registry prefix."""

    name: str
    type: MetricType
    help: str
    series: list[Series] = field(default_factory=list)
    unit: str = ""
