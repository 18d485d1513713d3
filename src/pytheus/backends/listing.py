"""What a multi-process store holds, listed without the metric objects in hand (``pytheus
serve`` holds none): the families its series keys and stored descriptions define, and each
served as the application would serve it.

A store keeps, with every series, what the values are combined by (name, type, gauge mode,
label names, buckets), and once per family its description (help text, unit, an ``Enum``'s
states, a ``Summary``'s quantiles; see :mod:`pytheus.backends.descriptions`). From those,
:func:`exported_families` makes one :class:`ExportedFamily` a name, which a store reads exactly
as it reads a metric's family; Info and Enum are recognised by their hidden label. Families
written by an older pytheus, which kept no descriptions, get a fixed help text and the states
seen in the store.

Example (what ``FileStore.families()`` does)::

    table, exemplars = directory.read_all()
    for family in exported_families(count_families(table), store.descriptions(table)):
        series = read(family.storage or family)
        yield family.served(series)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pytheus.backends.aggregation import Family, SeriesKey
from pytheus.backends.descriptions import StoredDescription
from pytheus.backends.store import Value
from pytheus.desc import MetricDesc
from pytheus.metrics._shadowed import info_series, newest_per_series, state_series
from pytheus.naming import ENV_VAR as NAME_VALIDATION_ENV
from pytheus.naming import is_valid_label_name, is_valid_metric_name, utf8_names
from pytheus.samples import (
    EMPTY_LABELS,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    Series,
    SeriesValue,
    SummaryData,
)

logger = logging.getLogger("pytheus.backends")

EXPORTED_HELP = "Recorded by worker processes; aggregated by pytheus serve."
"""The help text of a family the store holds no description of (written by an older pytheus)."""

INFO_LABEL = "__info"  # the hidden label of an Info's storage gauge (pytheus.metrics.info)
STATE_LABEL = "__state"  # the hidden label of an Enum's storage gauge (pytheus.metrics.stateset)
_STORED_TYPES = frozenset(
    {MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM, MetricType.SUMMARY,
     MetricType.UNTYPED}
)  # fmt: skip



# --- what the store holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDefinition:
    """One family definition found in a store: everything its series are keyed by, but values.

    ``mode`` is the gauge's ``multiprocess_mode`` ("" when unset); ``upper_bounds`` is set for
    histograms only and ends with ``+Inf``.
    """

    name: str
    type: MetricType
    mode: str
    label_names: tuple[str, ...]
    upper_bounds: tuple[float, ...]
    help: str = EXPORTED_HELP
    unit: str = ""
    states: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = ()
    native: tuple[tuple[str, object], ...] = ()  # a native histogram's settings (descriptions)

    @property
    def family(self) -> Family:
        """The family its series keys have (:attr:`SeriesKey.family`)."""
        return (self.name, self.type.value, self.mode, self.label_names, self.upper_bounds)


def definition_from_key(key: Sequence[Any]) -> StoredDefinition | None:
    """The definition of a stored series key: a :class:`SeriesKey`, or one stored as a JSON list
    ``[name, type, mode, label names, values, bounds, ...]`` (``SeriesKey.to_list``).

    None for entries that are not metric series (exemplar slots), or that do not look valid.
    """
    try:
        if not isinstance(key, SeriesKey):
            key = SeriesKey.from_list(key)
        metric_type = MetricType(key.type)
        definition = StoredDefinition(
            str(key.name), metric_type, str(key.mode or ""),
            tuple(str(n) for n in key.label_names), tuple(float(b) for b in key.bounds),
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
    if metric_type not in _STORED_TYPES:
        return None
    if not is_valid_metric_name(definition.name) or not all(
        is_valid_label_name(label) for label in definition.label_names
    ):
        _warn_not_served(definition.name, "is left out: its name or a label name is not classic")
        return None
    return definition


def _warn_not_served(name: str, what: str) -> None:
    """Tell once what of a metric is left out for names utf8 validation would serve."""
    if utf8_names() or (name, what) in _warned_names:
        return
    _warned_names.add((name, what))
    logger.warning(
        "metric %r %s; serve it with --name-validation utf8 (or %s=utf8)",
        name,
        what,
        NAME_VALIDATION_ENV,
    )


def count_families(keys: Iterable[Sequence[Any]]) -> dict[Family, int]:
    """How many series each family has (:attr:`SeriesKey.family`), from series keys, or keys
    stored as JSON lists (a scrape lists thousands of series of a few families). A list that is
    not a key is left out."""
    families: dict[Family, int] = {}
    for key in keys:
        if not isinstance(key, SeriesKey):
            try:
                key = SeriesKey.from_list(key)
            except (TypeError, ValueError):
                continue
        family = key.family
        families[family] = families.get(family, 0) + 1
    return families


def count_definitions(keys: Iterable[Sequence[Any]]) -> dict[StoredDefinition, int]:
    """Each valid definition among series keys, with how many series it has."""
    return _definitions(count_families(keys))


def _definitions(families: dict[Family, int]) -> dict[StoredDefinition, int]:
    """The valid definitions of families, each checked once."""
    counts: dict[StoredDefinition, int] = {}
    for family, count in families.items():
        definition = definition_from_key(SeriesKey.in_family(family, ()))
        if definition is not None:
            counts[definition] = counts.get(definition, 0) + count
    return counts


def described(
    counts: dict[StoredDefinition, int], found: Iterable[StoredDescription]
) -> dict[StoredDefinition, int]:
    """The definitions with their stored help, unit and states; a family whose series are all
    gone is served from its description alone (as the application serves it: 0 when it has no
    labels)."""
    by_key: dict[Family, StoredDescription] = {}
    for d in sorted(found, key=repr):
        if d.type not in _STORED_TYPES:
            continue
        key = d.family
        known = by_key.get(key)
        # two versions of a program described it (a deployment changed its help or an Enum's
        # states): one help text is served, and the states of both, so none goes missing
        states = d.states if known is None else tuple(dict.fromkeys((*known.states, *d.states)))
        by_key[key] = dataclasses.replace(known or d, states=states)
    output: dict[StoredDefinition, int] = {}
    for definition, count in counts.items():
        description = by_key.pop(definition.family, None)
        output[_with_description(definition, description)] = count
    for description in by_key.values():
        alone = definition_from_key(SeriesKey.in_family(description.family, ()))
        if alone is not None:
            output.setdefault(_with_description(alone, description), 0)
    return output


def _with_description(
    definition: StoredDefinition, description: StoredDescription | None
) -> StoredDefinition:
    if description is None:
        return definition
    return dataclasses.replace(
        definition, help=description.help, unit=description.unit, states=description.states,
        quantiles=description.quantiles, native=description.native,
    )  # fmt: skip



def exported_families(
    families: dict[Family, int], descriptions: Iterable[StoredDescription]
) -> list[ExportedFamily]:
    """The families a store holds, one a name, sorted: from how many series each family has
    (:func:`count_families`) and the stored descriptions (a family whose series are all gone
    is served from its description alone)."""
    definitions = one_per_name(described(_definitions(families), descriptions))
    return [exported_family(definition) for definition in definitions]


_warned_conflicts: set[str] = set()
_warned_names: set[tuple[str, str]] = set()


def one_per_name(counts: dict[StoredDefinition, int]) -> list[StoredDefinition]:
    """One definition per name (the one with most series), sorted by name.

    Two definitions of a name come from two versions of a program writing to the same store.
    """
    best: dict[str, tuple[int, StoredDefinition]] = {}
    for definition, count in counts.items():
        current = best.get(definition.name)
        if current is not None and definition.name not in _warned_conflicts:
            _warned_conflicts.add(definition.name)
            logger.warning(
                "metric %r is stored with two definitions (two versions of the program?); "
                "serving the one with most series",
                definition.name,
            )
        if current is None or (count, repr(definition)) > (current[0], repr(current[1])):
            best[definition.name] = (count, definition)
    return [best[name][1] for name in sorted(best)]




class ExportedFamily:
    """A family served without a metric object: the store's series, as they are.

    It has what a store's ``read`` asks of a metric's family: ``desc``, and no local values;
    for Info and Enum a ``storage`` family (the gauge they are stored as) whose series
    ``served`` turns into theirs.
    """

    def __init__(
        self,
        desc: MetricDesc,
        storage: ExportedFamily | None = None,
        transform: Callable[[Sequence[Series]], Sequence[Series]] | None = None,
    ) -> None:
        self.desc = desc
        self.storage = storage
        self._transform = transform

    def local_values(self) -> Iterator[tuple[LabelSet, Value]]:
        """Nothing: this process records nothing."""
        return iter(())

    def served(self, series: Sequence[Series]) -> MetricFamily:
        """The family as served, given the series the store read of ``storage or self``."""
        desc = self.desc
        return MetricFamily(desc.name, desc.type, desc.help, self.finish(series), desc.unit)

    def finish(self, series: Sequence[Series]) -> Sequence[Series]:
        if self._transform is not None:
            return self._transform(series)
        per_process = self.desc.option("multiprocess_mode") in ("all", "liveall")
        if not series and not self.desc.label_names and not per_process:
            # an unlabelled metric whose processes have all gone (a live gauge mode): 0, as
            # every process that defines it shows its own series
            return [(EMPTY_LABELS, zero_value(self.desc))]
        return series


def zero_value(desc: MetricDesc) -> SeriesValue:
    """The value of a series that has recorded nothing."""
    if desc.type is MetricType.HISTOGRAM:
        return HistogramData(desc.upper_bounds, [0.0] * len(desc.upper_bounds), 0.0)
    if desc.type is MetricType.SUMMARY:
        return SummaryData(0.0, 0.0)
    return 0.0


def exported_family(definition: StoredDefinition) -> ExportedFamily:
    """The family serving the series of ``definition``; Info and Enum are recognised."""
    options: tuple[tuple[str, object], ...] = ()
    if definition.mode:
        options += (("multiprocess_mode", definition.mode),)
    if definition.quantiles:
        options += (("quantiles", definition.quantiles),)
    if definition.native and definition.type is MetricType.HISTOGRAM:
        options += (("native", True), *definition.native)
    stored = ExportedFamily(
        MetricDesc(
            name=definition.name,
            help=definition.help,
            type=definition.type,
            label_names=definition.label_names,
            upper_bounds=definition.upper_bounds,
            options=tuple(sorted(options)),
            unit=definition.unit,
        )
    )
    hidden = definition.label_names[-1:]
    if definition.type is MetricType.GAUGE and definition.mode == "max":
        own = definition.label_names[:-1]
        if hidden == (INFO_LABEL,):
            desc = MetricDesc(definition.name, definition.help, MetricType.INFO, own)
            return ExportedFamily(desc, stored, lambda series: exported_info(desc, series))
        if hidden == (STATE_LABEL,):
            desc = MetricDesc(definition.name, definition.help, MetricType.STATESET, own)
            names = (*own, definition.name)
            states = definition.states
            return ExportedFamily(desc, stored, lambda series: enum_series(names, series, states))
    return stored


def exported_info(desc: MetricDesc, series: Sequence[Series]) -> list[Series]:
    """An Info's series, from the stored information whose keys this exporter may serve.

    The keys are label names: with classic validation, information holding a key that is not
    classic is left out (with a warning), as is any that cannot be read.
    """
    kept = [(labels, value) for labels, value in series if _servable_info(labels.values[-1])]
    if len(kept) < len(series):
        _warn_not_served(desc.name, "has information left out: a key is not a classic name")
    return info_series(desc.label_names, kept)


def _servable_info(stored: str) -> bool:
    """Whether an Info's stored information (JSON ``[[key, value], ...]``) can be served."""
    try:
        pairs = json.loads(stored)
    except ValueError:
        return False
    return isinstance(pairs, list) and all(
        isinstance(pair, list)
        and len(pair) == 2
        and is_valid_label_name(pair[0])
        and not pair[0].startswith("__")
        and isinstance(pair[1], str)
        for pair in pairs
    )


def enum_series(
    names: tuple[str, ...], series: Sequence[Series], declared: tuple[str, ...] = ()
) -> list[Series]:
    """An Enum's series, with its declared states (from its stored description; without one,
    the states seen in the store)."""
    series = list(series)  # read once, looked at twice
    seen = sorted({labels.values[-1] for labels, _ in series} - set(declared))
    states = [*declared, *seen]  # a state no description declares still shows
    newest = dict(sorted(newest_per_series(series).items()))
    if declared and not newest and len(names) == 1:  # unlabelled, never set: its first state
        newest[()] = (declared[0], 0.0)
    return state_series(names, states, newest)
