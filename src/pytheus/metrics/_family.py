"""A metric family at run time: its description and the canonical child of each series.

Every metric object that can record (a *holder*) owns a ``_value``. It starts as a
:class:`LazyValue`, which binds the series to the backend in force on first use and then
replaces itself, so the hot path never checks whether it is bound. ``load_backend`` (and the
multi-process backends after ``fork``) reset holders to lazy values again.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytheus.backends.base import add_backend_listener, current_store
from pytheus.backends.memory import MemoryStore
from pytheus.backends.store import Value
from pytheus.exceptions import UnobservableMetricException
from pytheus.metrics._legacy import LegacyCollector
from pytheus.samples import LabelSet, MetricFamily, MetricType, Series, SeriesValue

if TYPE_CHECKING:
    from pytheus.desc import MetricDesc
    from pytheus.metrics._base import _Metric


logger = logging.getLogger(__name__)


class LazyValue:
    """Stands in for a value until the metric first records; then binds and steps aside."""

    __slots__ = ("_metric",)

    def __init__(self, metric: _Metric) -> None:
        self._metric = metric

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric._family.bind(self._metric), name)


class Unobservable:
    """The value of a partially labelled metric: any use names the labels still missing."""

    __slots__ = ("_metric",)

    def __init__(self, metric: _Metric) -> None:
        self._metric = metric

    def __getattr__(self, name: str) -> Any:
        raise self.error()

    def error(self) -> UnobservableMetricException:
        metric = self._metric
        desc = metric._family.desc
        missing = [
            n for n in desc.label_names if n not in metric._labels and n not in desc.default_labels
        ]
        return UnobservableMetricException(
            f"metric {desc.name!r} cannot record: required label(s) {missing} have no value; "
            "set them with .labels(...) first"
        )


_DETACHED = MemoryStore()
_all_families: weakref.WeakSet[Family] = weakref.WeakSet()
_all_families_lock = threading.Lock()


class Family(LegacyCollector):
    """Per-name state shared by a metric and all its labelled children.

    Implements the registry's ``Collector`` protocol (``name``, ``description``, ``type_``,
    ``collect``), and shows per-value backends what pytheus 0.6 showed them (LegacyCollector).
    """

    __slots__ = (
        "desc", "children", "lock", "holders", "attached", "bound", "storage", "transform",
        "functions", "__weakref__",
    )  # fmt: skip

    def __init__(self, desc: MetricDesc) -> None:
        self.desc = desc
        self.children: dict[tuple[str, ...], _Metric] = {}
        self.lock = threading.Lock()
        self.holders: weakref.WeakSet[_Metric] = weakref.WeakSet()
        self.attached = False
        self.bound = False
        # Info and Enum keep their values in a gauge family of their own (``storage``) and
        # turn its series into theirs (``transform``); gauges may compute values at scrape.
        self.storage: Family | None = None
        self.transform: Callable[[Sequence[Series]], Sequence[Series]] | None = None
        self.functions: dict[tuple[str, ...], Callable[[], float]] = {}
        with _all_families_lock:
            _all_families.add(self)

    @property
    def name(self) -> str:
        return self.desc.name

    @property
    def description(self) -> str:
        return self.desc.help

    @property
    def type_(self) -> MetricType:
        return self.desc.type

    def pristine(self) -> bool:
        """Neither registered anywhere nor ever recorded: safe to replace by an equal family."""
        return not self.attached and not self.bound

    def finish(self, series: Sequence[Series]) -> Sequence[Series]:
        """The series as exposed: transformed (Info, Enum), with scrape-time functions applied."""
        if self.transform is not None:
            series = self.transform(series)
        if self.functions:
            series = [self._apply_function(labels, value) for labels, value in series]
        return series

    def _apply_function(self, labels: LabelSet, value: SeriesValue) -> Series:
        values = labels.values
        if len(values) > len(self.desc.label_names):  # a per-process series: the pid label
            if labels.values[-1] != str(os.getpid()):
                return labels, value  # another process's: only the scraping process calls
            values = values[: len(self.desc.label_names)]
        function = self.functions.get(values)
        if function is None:
            return labels, value
        try:
            return labels, float(function())
        except Exception:
            logger.exception("gauge %r: set_function callback failed", self.desc.name)
            return labels, math.nan

    def attach(self) -> None:
        """Mark the family registered: from now on its values live in the backend in force.

        Until then its values live in this process's memory, so a metric that a custom collector
        creates at every scrape starts from zero each time, whatever the backend. Values recorded
        before registration move along (histogram and summary observations only when the
        backend keeps values in memory too).
        """
        if self.storage is not None:
            self.storage.attach()
        with self.lock:
            if self.attached:
                return
            self.attached = True
            moving = self.bound
        if moving and not isinstance(current_store(), MemoryStore):  # else: choose nothing yet
            self._move_scalars()

    def _move_scalars(self) -> None:
        with self.lock:
            old = {key: child._value for key, child in self.children.items()}
        self.unbind_all()
        for key, child in list(self.children.items()):
            previous = old.get(key)
            if previous is None or isinstance(previous, LazyValue):
                continue
            new = self.bind(child)
            if self.desc.type is MetricType.GAUGE:
                new.set(previous.get())  # type: ignore[union-attr]
            elif self.desc.type is MetricType.COUNTER:
                new.inc(previous.get())  # type: ignore[union-attr]

    def child(self, values: tuple[str, ...], template: _Metric) -> _Metric:
        """The canonical child for ``values``, created from ``template`` if it does not exist."""
        child = self.children.get(values)
        if child is None:
            with self.lock:
                child = self.children.get(values)
                if child is None:  # children hold values too: unbind_all finds them here
                    child = template._new_child(values)
                    self.children[values] = child
        return child

    def add_holder(self, metric: _Metric) -> None:
        """Track a metric object that records into this family and may not stay its canonical
        child (a metric's own root, which a registry may join to another family)."""
        with self.lock:
            assert metric._key is not None
            self.children.setdefault(metric._key, metric)
            self.holders.add(metric)

    def bind(self, metric: _Metric) -> Value:
        """Bind ``metric``'s series to the backend in force; return the value it records into."""
        store = current_store() if self.attached else _DETACHED
        with self.lock:
            assert metric._key is not None
            canonical = self.children.setdefault(metric._key, metric)
            value: Value = canonical._value
            if isinstance(value, LazyValue):
                value = store.bind(canonical)
                canonical._value = value
                self.bound = True
            metric._value = value
            if canonical is not metric:  # a view kept from before a removal: reset it too
                self.holders.add(metric)
        return value

    def unbind_all(self) -> None:
        """Make every holder bind again on its next use (after the backend changed)."""
        with self.lock:
            for holder in {id(h): h for h in (*self.children.values(), *self.holders)}.values():
                if not isinstance(holder._value, Unobservable):
                    holder._value = LazyValue(holder)

    def remove(self, key: tuple[str, ...]) -> bool:
        """Drop the series ``key`` from the exposition, in every process; False if unknown.

        Views of it that callers kept stay usable: their next observation re-creates the series
        from zero.
        """
        if self.storage is not None:  # Info, Enum: every stored variant of the series
            storage = self.storage
            with self.lock:
                self.children.pop(key, None)
            found = [k for k in list(storage.children) if k[: len(key)] == key]
            for stored in found:
                storage.remove(stored)
            return bool(found)
        store = current_store() if self.attached else _DETACHED
        with self.lock:
            child = self.children.get(key)
            if child is None:
                return False
        store.forget(child)  # while the child still holds its value, for stores that need it
        self._drop([(key, child)])
        return True

    def remove_all(self) -> None:
        """``clear()``: drop every series of the family, in every process, in one go for the
        stores that can (``forget_many``: one read of a shared directory, not one per series)."""
        if self.storage is not None:
            for key in list(self.children):
                self.remove(key)
            return
        store = current_store() if self.attached else _DETACHED
        with self.lock:
            children = list(self.children.items())
        if children:
            store.forget_many([child for _, child in children])
        self._drop(children)

    def _drop(self, removed: list[tuple[tuple[str, ...], _Metric]]) -> None:
        """Forget removed series here: their children, and any holder of them, bind anew."""
        keys = {key for key, _ in removed}
        with self.lock:
            for key, child in removed:
                self.children.pop(key, None)
                child._value = LazyValue(child)
            for holder in list(self.holders):
                if holder._key in keys:
                    holder._value = LazyValue(holder)

    def local_values(self) -> Iterator[tuple[LabelSet, Value]]:
        """The series this process knows, each bound to a value (binding them if needed)."""
        with self.lock:
            children = list(self.children.values())
        for child in children:
            value = child._value
            if isinstance(value, LazyValue):
                if self.children.get(child._key) is not child:  # type: ignore[arg-type]
                    continue  # removed since the list was taken: not brought back
                value = self.bind(child)
            assert child._series is not None
            yield child._series, value

    def collect(self) -> list[MetricFamily]:
        """This family's series as read from the backend in force."""
        from pytheus.collection import collect_families

        return collect_families([self])


def _unbind_everything() -> None:
    with _all_families_lock:
        families = list(_all_families)
    for family in families:
        family.unbind_all()


add_backend_listener(_unbind_everything)
