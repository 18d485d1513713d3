"""How the values of several processes combine into one series (shared by the file and
Redis backends).

Counters, histograms and summaries add up, cell by cell. Gauges follow their
``multiprocess_mode``; the ``live`` modes and the default mode forget a process once it is dead.
Every rule is associative, so the archive of dead processes is just one more contributor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricType,
    SeriesValue,
    SummaryData,
)

if TYPE_CHECKING:
    from pytheus.desc import MetricDesc

# the types of the shared-file backend's entries that are not a metric's own cells: exemplar
# slots, native histogram blocks, a summary's window blocks (see ``backends.file``)
EXEMPLAR = "exemplar"
NATIVE = "native"
QUANTILES = "quantiles"
PART_KINDS = frozenset({EXEMPLAR, QUANTILES})
"""The entry types a series has several entries of, told apart by :attr:`SeriesKey.part`."""

Family = tuple[str, str, str, tuple[str, ...], tuple[float, ...]]
"""What every series of a family has alike, and what tells two definitions of one name apart
(two versions of a program writing to one store): the ``name``, ``type``, ``mode``,
``label_names`` and ``bounds`` of :class:`SeriesKey`, as :attr:`SeriesKey.family` gives them and
:meth:`SeriesKey.in_family` takes them. A plain tuple: a scrape makes one for every series."""


class SeriesKey(NamedTuple):
    """What a stored value is about, as both multi-process backends key their values.

    ``pid`` is the process of a per-process gauge series (``multiprocess_mode`` ``all`` or
    ``liveall``), None for every other series. ``part`` tells apart the shared-file backend's
    several entries of one kind of a series (:meth:`entry`, types :data:`PART_KINDS`): an
    exemplar slot's bucket (:attr:`bucket`), a summary's window block's size (a process moves
    its window to a larger block when it outgrows one); None for every other entry. A
    family's description entry keeps its description where a series keeps its gauge mode
    (``_format.description_key``).

    Stored, a key is a JSON list (:meth:`to_list`, :meth:`from_list`): the shared-file
    backend's entries, Redis's index of series.

    Example::

        key = SeriesKey("requests_total", "counter", "", ("code",), ("200",), ())
        key.series          # ("requests_total", "counter", "", ("code",), ("200",), ())
        key.family          # ("requests_total", "counter", "", ("code",), ())
        key.with_pid(4242)  # the same series, of process 4242
        key.entry("exemplar", part=0)  # its exemplar slot of bucket 0
    """

    name: str
    type: str
    mode: str  # a gauge's multiprocess_mode; "" for other types
    label_names: tuple[str, ...]
    label_values: tuple[str, ...]
    bounds: tuple[float, ...]  # a histogram's bucket bounds; () for other types
    pid: int | str | None = None  # the process of a per-process gauge series
    part: int | None = None  # which entry of its kind (PART_KINDS): a bucket, a block's size

    @classmethod
    def in_family(
        cls,
        family: Family,
        label_values: tuple[str, ...],
        pid: int | str | None = None,
        part: int | None = None,
    ) -> SeriesKey:
        """The key of the series of ``family`` with ``label_values``."""
        name, kind, mode, label_names, bounds = family
        return cls(name, kind, mode, label_names, label_values, bounds, pid, part)

    @classmethod
    def from_list(
        cls, fields: Sequence[Any], families: dict[Family, Family] | None = None
    ) -> SeriesKey:
        """A key stored as a list (:meth:`to_list`); ValueError or TypeError if it is not one.

        With ``families``, the parts every series of a family has alike are taken from it,
        one copy for all the keys made with it: a reader keeps thousands of keys of a few
        families.
        """
        name, kind, mode, names, values, bounds, *extra = fields
        if len(extra) > 1:
            raise ValueError(f"a stored key of {len(fields)} elements")
        kind = str(kind)
        family: Family = (
            str(name),
            kind,
            "" if mode is None else str(mode),
            tuple(str(n) for n in names),
            tuple(math.inf if b is None else float(b) for b in bounds),
        )
        if families is not None:
            family = families.setdefault(family, family)
        number = None if not extra or extra[0] is None else int(extra[0])
        label_values = tuple(str(v) for v in values)
        if kind in PART_KINDS:
            return cls.in_family(family, label_values, part=number)
        return cls.in_family(family, label_values, pid=number)

    def to_list(self) -> list[Any]:
        """The key as stored: ``[name, type, mode, label names, label values, bounds]``, then
        the ``part`` of an entry of :data:`PART_KINDS` or the ``pid`` of a per-process gauge
        series, when it has one (the seventh element was named ``pid`` for both)."""
        fields: list[Any] = [self.name, self.type, self.mode, list(self.label_names),
                             list(self.label_values), list(self.bounds)]  # fmt: skip
        number, other = (self.part, self.pid) if self.type in PART_KINDS else (self.pid, self.part)
        if other is not None:
            raise ValueError(f"a {self.type} key stores no pid, or no part: {self!r}")
        if number is not None:
            fields.append(number)
        return fields

    @property
    def series(self) -> tuple[Any, ...]:
        """The key without ``pid`` and ``part``: the series whatever process wrote it (what a
        tombstone names)."""
        return (self.name, self.type, self.mode, self.label_names, self.label_values, self.bounds)

    @property
    def family(self) -> Family:
        """The series' family: the key without label values, ``pid`` and ``part``."""
        return (self.name, self.type, self.mode, self.label_names, self.bounds)

    @property
    def untyped(self) -> tuple[Any, ...]:
        """The series without type and mode: what its exemplars are filed under."""
        return (self.name, "", "", self.label_names, self.label_values, self.bounds)

    @property
    def bucket(self) -> int:
        """The bucket of an exemplar slot's key (0 for a counter's)."""
        return self.part or 0

    def entry(self, kind: str, part: int | None = None) -> SeriesKey:
        """The key of another entry of this series (of the same process): its ``kind``
        (``"native"``, ``"exemplar"``, ``"quantiles"``, or ``"histogram"`` for the classic part
        of a native histogram) and ``part`` (an exemplar slot's bucket, a window block's size)."""
        return SeriesKey(
            self.name, kind, "", self.label_names, self.label_values, self.bounds, self.pid, part
        )

    def with_pid(self, pid: int | str | None) -> SeriesKey:
        return SeriesKey(
            self.name, self.type, self.mode, self.label_names, self.label_values, self.bounds, pid,
            self.part,
        )  # fmt: skip


def family_of(desc: MetricDesc) -> Family:
    """The family of the series of the metric ``desc`` describes, as they are stored."""
    mode = str(desc.option("multiprocess_mode") or "")
    return (desc.name, desc.type.value, mode, desc.label_names, desc.upper_bounds)


# Gauge cells: value, time of the last write, time of the last set() (0 when never set).
VALUE, LAST_WRITE, LAST_SET = 0, 1, 2

PER_PROCESS_MODES = frozenset({"all", "liveall"})
KEPT_AFTER_DEATH = frozenset({"all", "sum", "min", "max", "mostrecent"})


def merge_key(key: SeriesKey, pid: int | str | None) -> SeriesKey:
    """The key a contribution merges under: per-process gauge modes keep the pid apart; the
    entries of one kind of a series (window blocks of several sizes) merge into one."""
    if key.type == "gauge" and key.mode in PER_PROCESS_MODES:
        return key if key.pid is not None else key.with_pid(pid)
    if key.pid is None and key.part is None:
        return key
    return SeriesKey(key.name, key.type, key.mode, key.label_names, key.label_values, key.bounds)


def kept_after_death(key: SeriesKey) -> bool:
    if key.type == EXEMPLAR:  # exemplars are samples of recent activity: the dead have none
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
        # (label names, pid) -> label values -> their label set: the values tuple, which the
        # label set holds too, is the only key a series adds (a store keeps one per series)
        self._made: dict[tuple[tuple[str, ...], Any], dict[tuple[str, ...], LabelSet]] = {}

    def adopt(self, labels: LabelSet) -> None:
        """Use ``labels`` (a series of this process's own metrics) for its series: one label set,
        and one memoised rendering, for the metric and the store."""
        made = self._made.get((labels.names, None))
        if made is None:
            made = self._made[(labels.names, None)] = {}
        made.setdefault(labels.values, labels)

    def get(self, key: SeriesKey) -> LabelSet:
        names, values, pid = key.label_names, key.label_values, key.pid
        made = self._made.get((names, pid))
        if made is None:
            made = self._made[(names, pid)] = {}
        labels = made.get(values)
        if labels is None:
            if pid is None:
                labels = LabelSet(names, values)
            else:
                labels = LabelSet((*names, "pid"), (*values, str(pid)))
            made[values] = labels
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
