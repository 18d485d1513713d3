"""What Info and Enum share: their values live in a gauge family of their own.

Each ``info()`` or ``state()`` call sets a gauge series, labelled with the metric's labels and
one more label holding the information (or the state), to a stamp: the current time, but
never less than just above the process's previous stamp, so that within a process the call
made last wins even when the wall clock steps back. Across processes the gauge keeps the
highest stamp (``multiprocess_mode="max"``), so at scrape the newest information of each series
wins, whichever process recorded it, in every backend.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytheus.desc import MetricDesc
from pytheus.metrics._base import _Metric
from pytheus.metrics._family import Family
from pytheus.registry import Registry
from pytheus.samples import LabelSet, MetricType, Series


class _Shadowed(_Metric):
    """A metric whose family stores its values in a hidden gauge family."""

    __slots__ = ()
    _hidden_label: str = "__value"

    def _define_shadowed(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None,
        default_labels: Mapping[str, str] | None,
        registry: Registry | None,
        transform: Callable[[Family, Sequence[Series]], Sequence[Series]],
        options: Mapping[str, object] | None = None,
    ) -> None:
        desc = MetricDesc.build(
            name, description, self.type_, required_labels, default_labels, options=options
        )
        self._define(desc, registry)
        family = self._family
        if family.storage is None:  # not joined to an existing identical family
            storage_desc = MetricDesc(
                name=desc.name,
                help=desc.help,
                type=MetricType.GAUGE,
                label_names=(*desc.label_names, self._hidden_label),
                options=(
                    ("multiprocess_mode", "max"),
                    ("shadow_of", desc.type.value),
                    *((("states", desc.option("states")),) if desc.option("states") else ()),
                ),
            )
            family.storage = Family(storage_desc)
            family.transform = lambda series: transform(family, series)
            if family.attached:
                family.storage.attach()

    def _record(self, hidden_value: str) -> None:
        """Mark ``hidden_value`` as this series' newest information."""
        self._require_observable()
        assert self._key is not None
        storage = self._family.storage
        assert storage is not None
        child = storage.child((*self._key, hidden_value), self._storage_template())
        child._value.set(_stamp())

    def _storage_template(self) -> _Metric:
        storage = self._family.storage
        assert storage is not None
        template = object.__new__(_StorageView)
        template._family = storage
        return template


_last_stamp = 0.0
_stamp_lock = threading.Lock()


def _stamp() -> float:
    """The wall-clock time, or just above the previous stamp if the clock is not past it."""
    global _last_stamp
    with _stamp_lock:
        now = time.time()
        _last_stamp = now if now > _last_stamp else math.nextafter(_last_stamp, math.inf)
        return _last_stamp


class _StorageView(_Metric):
    """The gauge-like views of the hidden family (never seen by users)."""

    __slots__ = ()
    type_ = MetricType.GAUGE


def newest_per_series(series: Iterable[Series]) -> dict[tuple[str, ...], tuple[str, float]]:
    """For each series (labels without the hidden one): the hidden value set last, and when."""
    newest: dict[tuple[str, ...], tuple[str, float]] = {}
    for labels, value in series:
        *own, hidden = labels.values
        when = float(value)  # type: ignore[arg-type]
        key = tuple(own)
        if when > 0 and (key not in newest or when > newest[key][1]):
            newest[key] = (hidden, when)
    return newest


def info_series(
    own_names: tuple[str, ...], series: Iterable[Series], cache: dict[Any, LabelSet] | None = None
) -> list[Series]:
    """An Info's series: the newest information of each, as labels, with value 1."""
    cache = {} if cache is None else cache
    output: list[Series] = []
    for own, (hidden, _) in newest_per_series(series).items():
        pairs = [(str(k), str(v)) for k, v in json.loads(hidden)]
        names = (*own_names, *(k for k, _ in pairs))
        output.append((label_set(names, (*own, *(v for _, v in pairs)), cache), 1.0))
    return output


def state_series(
    names: tuple[str, ...],
    states: Sequence[str],
    newest: dict[tuple[str, ...], tuple[str, float]],
    cache: dict[Any, LabelSet] | None = None,
) -> list[Series]:
    """An Enum's series: for each of its series, 1 for the current state and 0 for the others."""
    cache = {} if cache is None else cache
    output: list[Series] = []
    for own, (current, _) in newest.items():
        for state in states:
            output.append(
                (label_set(names, (*own, state), cache), 1.0 if state == current else 0.0)
            )
    return output


def label_set(
    names: tuple[str, ...], values: tuple[str, ...], cache: dict[Any, LabelSet]
) -> LabelSet:
    labels = cache.get(values)
    if labels is None:
        labels = cache[values] = LabelSet(names, values)
    return labels
