"""How the values of several processes combine into one series (shared by the file and
Redis backends).

Counters, histograms and summaries add up, cell by cell. Gauges follow their
``multiprocess_mode``; the ``live`` modes and the default mode forget a process once it is dead.
Every rule is associative, so the archive of dead processes is just one more contributor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricType,
    SeriesValue,
    SummaryData,
)


class SeriesKey(NamedTuple):
    """What a stored value is about, as both multi-process backends key their values.

    ``pid`` is the process of a per-process gauge series (``multiprocess_mode`` ``all`` or
    ``liveall``), None for every other series. The shared-file backend's other entries of a
    series (:meth:`part`) use it to tell theirs apart: an exemplar slot keeps its bucket there
    (:attr:`bucket`), a summary's window block the size of its block; and the description entry
    of a family keeps the description in ``mode``. A shared-file entry stores a key as a JSON list.

    Example::

        key = SeriesKey("requests_total", "counter", "", ("code",), ("200",), ())
        key.series          # ("requests_total", "counter", "", ("code",), ("200",), ())
        key.with_pid(4242)  # the same series, of process 4242
    """

    name: str
    type: str
    mode: str  # a gauge's multiprocess_mode; "" for other types
    label_names: tuple[str, ...]
    label_values: tuple[str, ...]
    bounds: tuple[float, ...]  # a histogram's bucket bounds; () for other types
    pid: Any = None

    @property
    def series(self) -> tuple[Any, ...]:
        """The key without ``pid``: the series whatever process wrote it (what a tombstone
        names)."""
        return self[:6]

    @property
    def untyped(self) -> tuple[Any, ...]:
        """The series without type and mode: what its exemplars are filed under."""
        return (self.name, "", "", self.label_names, self.label_values, self.bounds)

    @property
    def bucket(self) -> int:
        """The bucket of an exemplar slot's key."""
        return int(self.pid or 0)

    def part(self, kind: str, pid: Any = None) -> SeriesKey:
        """The key of another entry of this series: its ``kind`` (``"native"``, ``"exemplar"``,
        ``"quantiles"``, or ``"histogram"`` for the classic part of a native histogram)."""
        return SeriesKey(
            self.name, kind, "", self.label_names, self.label_values, self.bounds, pid
        )

    def with_pid(self, pid: Any) -> SeriesKey:
        return SeriesKey(
            self.name, self.type, self.mode, self.label_names, self.label_values, self.bounds, pid
        )


# Gauge cells: value, time of the last write, time of the last set() (0 when never set).
VALUE, LAST_WRITE, LAST_SET = 0, 1, 2

PER_PROCESS_MODES = frozenset({"all", "liveall"})
KEPT_AFTER_DEATH = frozenset({"all", "sum", "min", "max", "mostrecent"})


def merge_key(key: SeriesKey, pid: int | str | None) -> SeriesKey:
    """The key a contribution merges under: per-process gauge modes keep the pid apart."""
    if key.type == "gauge" and key.mode in PER_PROCESS_MODES:
        return key if key.pid is not None else key.with_pid(pid)
    return key if key.pid is None else key.with_pid(None)


def kept_after_death(key: SeriesKey) -> bool:
    if key.type == "exemplar":  # exemplars are samples of recent activity: the dead have none
        return False
    return key.type != "gauge" or key.mode in KEPT_AFTER_DEATH


def merge_into(table: dict[SeriesKey, list[float]], key: SeriesKey, cells: list[float]) -> None:
    current = table.get(key)
    if current is None:
        table[key] = list(cells)
        return
    if len(current) != len(cells):
        return  # a definition changed between versions of the program: keep the first
    if key.type != "gauge":
        for i, cell in enumerate(cells):
            current[i] += cell
        return
    mode = key.mode
    if mode in ("sum", "livesum"):
        current[VALUE] += cells[VALUE]
    elif mode in ("min", "livemin"):
        current[VALUE] = min(current[VALUE], cells[VALUE])
    elif mode in ("max", "livemax"):
        current[VALUE] = max(current[VALUE], cells[VALUE])
    elif mode in ("mostrecent", "livemostrecent") or current[LAST_SET] or cells[LAST_SET]:
        # the default mode: once any process set() the gauge, the latest write wins
        if cells[LAST_WRITE] > current[LAST_WRITE]:
            current[VALUE] = cells[VALUE]
    else:  # the default mode with inc/dec only: in-progress style counts add up
        current[VALUE] += cells[VALUE]
    current[LAST_WRITE] = max(current[LAST_WRITE], cells[LAST_WRITE])
    current[LAST_SET] = max(current[LAST_SET], cells[LAST_SET])


class LabelSets:
    """The label set of each merged series, made once: formatters memoise renderings on it.

    A per-process gauge series (``all``, ``liveall``) gets a ``pid`` label as well.
    """

    def __init__(self) -> None:
        self._made: dict[tuple[Any, Any, Any], LabelSet] = {}

    def adopt(self, labels: LabelSet) -> None:
        """Use ``labels`` (a series of this process's own metrics) for its series: one label set,
        and one memoised rendering, for the metric and the store."""
        self._made.setdefault((labels.names, labels.values, None), labels)

    def get(self, key: SeriesKey) -> LabelSet:
        names, values, pid = key.label_names, key.label_values, key.pid
        labels = self._made.get((names, values, pid))
        if labels is None:
            if pid is None:
                labels = LabelSet(names, values)
            else:
                labels = LabelSet((*names, "pid"), (*values, str(pid)))
            self._made[(names, values, pid)] = labels
        return labels


def series_value(
    metric_type: MetricType, bounds: tuple[float, ...], cells: list[float]
) -> SeriesValue:
    """A series' merged cells as the sample model wants them, cells missing counting as zero:
    a counter's or gauge's value; a histogram's counts per bucket, then the sum; a summary's
    count and sum."""
    if metric_type is MetricType.HISTOGRAM:
        size = len(bounds)
        cells = cells + [0.0] * (size + 1 - len(cells))
        return HistogramData(bounds, cells[:size], cells[size])
    if metric_type is MetricType.SUMMARY:
        cells = cells + [0.0] * (2 - len(cells))
        return SummaryData(cells[0], cells[1])
    return cells[0] if cells else 0.0


def with_exemplars(data: SeriesValue, found: Mapping[int, Exemplar | None]) -> SeriesValue:
    """``data`` with the exemplars ``found`` by bucket (bucket 0 for a counter)."""
    if isinstance(data, HistogramData):
        data.exemplars = [found.get(i) for i in range(len(data.upper_bounds))]
        return data
    exemplar = found.get(0)
    if isinstance(data, float) and exemplar is not None:
        return CounterData(data, exemplar)
    return data
