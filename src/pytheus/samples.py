"""The neutral model a scrape produces: metric families holding series.

Collection turns a registry into a list of :class:`MetricFamily`; formatters turn that list
into bytes. Nothing here knows about backends or about a particular exposition format.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

    Immutable. Formatters may memoise their rendering of it, so a series that is scraped many
    times is escaped once: the text formats' ``{a="1"}`` in ``text`` (a string in a slot costs
    the string alone; a dict per series would cost 184 bytes more), any other in ``rendered``
    (keyed by format).
    """

    __slots__ = ("names", "values", "text", "_rendered")

    def __init__(self, names: tuple[str, ...], values: tuple[str, ...]) -> None:
        self.names = names
        self.values = values
        self.text: str | None = None
        self._rendered: dict[str, Any] | None = None  # made when first asked for: memory

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


class LiveSeries(Sequence[Series]):
    """Series read from their values while a formatter walks them, not all held at once.

    A scrape of a million series then holds one series' reading at a time, not a million (about
    90 MB at that size). Each iteration reads the values again; ``len``, indexing and ``==`` read
    them once into a list and keep it, for code that looks at a family more than once.
    """

    __slots__ = ("_read", "_list")

    def __init__(self, read: Callable[[], Iterable[Series]]) -> None:
        self._read = read
        self._list: list[Series] | None = None

    def __iter__(self) -> Iterator[Series]:
        if self._list is not None:
            return iter(self._list)
        return iter(self._read())

    def _materialised(self) -> list[Series]:
        if self._list is None:
            self._list = list(self._read())
        return self._list

    def __len__(self) -> int:
        return len(self._materialised())

    def __getitem__(self, index: Any) -> Any:
        return self._materialised()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return self._materialised() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LiveSeries({self._materialised()!r})"


@dataclass(slots=True)
class MetricFamily:
    """All series of one metric as exposed: ``name`` already carries any registry prefix."""

    name: str
    type: MetricType
    help: str
    series: Sequence[Series] = field(default_factory=list)
    unit: str = ""
