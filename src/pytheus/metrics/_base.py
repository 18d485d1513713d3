"""What every metric type shares: definition, labels and binding to the backend.

A metric object is a *view* of its family. ``labels(...)`` returns another view with more label
values set: a partial view cannot record, a complete one is the family's canonical child for
that series. Views are cached, so ``labels(...)`` on an existing series is a dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from pytheus.backends.store import Value
from pytheus.desc import MetricDesc, exemplar_labels, label_value
from pytheus.exceptions import InvalidValueException, LabelValidationException
from pytheus.metrics._family import Family, LazyValue, Unobservable
from pytheus.metrics._habits import explain_habits
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import Exemplar, LabelSet, MetricFamily, MetricType

Labels = dict[str, str]
# what a view holds until it first caches a view of its own: read-only (only .get is called)
_NO_CACHE: dict[Any, Any] = MappingProxyType({})  # type: ignore[assignment]


class _Metric:
    type_: ClassVar[MetricType] = MetricType.UNTYPED

    __slots__ = (
        "_family",
        "_given",
        "_cache",
        "_series",
        "_value",
        "__weakref__",
    )

    _family: Family
    _given: Labels | None  # the label values set, or None for a complete view (from _key)
    _cache: dict[Any, _Metric]
    _series: LabelSet | None  # a complete view's labels (its key is their values)
    _value: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # prometheus_client's keywords get a clear error
            cls.__init__ = explain_habits(cls.__init__)  # type: ignore[method-assign]

    @explain_habits
    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
        *,
        unit: str = "",
    ) -> None:
        self._define(
            MetricDesc.build(
                name, description, self.type_, required_labels, default_labels, unit=unit
            ),
            registry,
        )

    @property
    def _key(self) -> tuple[str, ...] | None:
        """The series key of a complete view (its label values in declared order), else None."""
        series = self._series
        return series.values if series is not None else None

    def _define(self, desc: MetricDesc, registry: Registry | None) -> None:
        self._family = Family(desc)
        self._given = {}
        self._cache = {}
        self._series = None
        if registry is not None:
            registry.register(self)  # an equal registered family may replace ours (_join)
            self._family.attach()
        desc = self._family.desc
        if all(name in desc.default_labels for name in desc.label_names):
            key = tuple(desc.default_labels[name] for name in desc.label_names)
            self._given = None
            self._series = LabelSet(desc.label_names, key)
            self._value = LazyValue(self)
            self._family.add_holder(self)
        else:
            self._value = Unobservable(self)

    def _join(self, family: Family) -> None:
        """Share an already registered family with the same definition (called by a registry)."""
        self._family = family

    # --- labels ------------------------------------------------------------------------------

    def labels(self, *values: Any, **kwargs: Any) -> Any:
        """A view of this metric with more label values set: a dict, keywords, or both; or, as
        in prometheus_client, the values alone, in the order of ``required_labels`` (those this
        view has not set yet).

        Example::

            requests = Counter("requests_total", "Requests.", required_labels=["method", "code"])
            get = requests.labels(method="GET")   # partial: cannot record yet
            get.labels(code="200").inc()          # complete
            requests.labels({"method": "GET", "code": "200"}).inc()  # the same series
            requests.labels("GET", "200").inc()   # the same series again
        """
        if not values:
            given: Mapping[str, Any] = kwargs
        elif len(values) == 1 and isinstance(values[0], Mapping):
            given = {**values[0], **kwargs} if kwargs else values[0]
        else:
            if not kwargs and self._given == {}:  # every label by position: the series key
                # the family's children are the cache (a str can only be in a key as given)
                child = self._family.children.get(values) or self._new_series(values)
                if child is not None:
                    return child
            cached = self._cache.get(values) if not kwargs else None
            if cached is not None:
                return cached
            given = self._positional(values, kwargs)
            if not kwargs and all(type(v) is str for v in values):
                view = self._labels_slow(given, cache=False)
                self._cached(values, view)  # one entry, by the values as given
                return view
            return self.labels(given)
        if not given:
            return self
        try:
            cached = self._cache.get(tuple(given.items()))
        except TypeError:  # an unhashable label value: it still works, without the cache
            cached = None
        if cached is not None:
            return cached
        return self._labels_slow(given)

    def _new_series(self, values: tuple[Any, ...]) -> _Metric | None:
        """The child of ``values``, all the labels' values in order, as ASCII strings that
        need no conversion or check; None to take the general path."""
        names = self._family.desc.label_names
        if len(values) != len(names):
            return None
        for value in values:
            if type(value) is not str or not value.isascii():
                return None  # the general path converts and checks it (label_value)
        return self._family.child(values, self)

    def _positional(self, values: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional label values as a mapping: the labels this view has not set, in order."""
        desc = self._family.desc
        unset = [n for n in desc.label_names if n not in self._labels and n not in kwargs]
        if len(values) != len(unset):
            raise LabelValidationException(
                f"metric {desc.name!r}: labels() got {len(values)} value(s) {list(values)} for "
                f"{len(unset)} label(s) {unset}; give one value per label, in the order of "
                f"required_labels {list(desc.label_names)}, or name them: labels(name=value)"
            )
        return {**dict(zip(unset, values)), **kwargs}

    @property
    def _labels(self) -> Labels:
        """The label values this view has set (a new dict for a complete view: memory)."""
        given = self._given
        if given is not None:
            return given
        assert self._key is not None
        return dict(zip(self._family.desc.label_names, self._key))

    def _forget_cached(
        self, key: tuple[str, ...], values: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Drop this view's cache entries of a removed series (the usual spellings of its
        labels: the values as given, and the names with the values in declared order)."""
        cache = self._cache
        if cache is _NO_CACHE:
            return
        names = self._family.desc.label_names
        spellings: list[Any] = [values, tuple(kwargs.items()), tuple(zip(names, key))]
        if len(values) == 1 and isinstance(values[0], Mapping):
            spellings.append(tuple({**values[0], **kwargs}.items()))
        for spelling in spellings:
            try:
                found = cache.get(spelling)
                if found is not None and found._key == key:
                    cache.pop(spelling, None)
            except TypeError:  # an unhashable spelling: never cached
                continue

    def _cached(self, key: Any, view: _Metric) -> None:
        if self._cache is _NO_CACHE:  # a view's first cached view: its own cache now
            self._cache = {}
        self._cache[key] = view

    def _labels_slow(self, given: Mapping[str, Any], cache: bool = True) -> _Metric:
        desc = self._family.desc
        names = desc.label_names
        if not names:
            raise LabelValidationException(
                f"metric {desc.name!r} has no required_labels, "
                f"so labels {dict(given)} cannot be set"
            )
        resolved = dict(self._labels)
        cacheable = True
        for label, value in given.items():
            if label not in names:
                raise LabelValidationException(
                    f"metric {desc.name!r}: label {label!r} is not one of "
                    f"required_labels {list(names)}"
                )
            if type(value) is not str:
                cacheable = False
            resolved[label] = label_value(desc.name, label, value)
        defaults = desc.default_labels
        if all(name in resolved or name in defaults for name in names):
            values = tuple(resolved[n] if n in resolved else defaults[n] for n in names)
            view = self._family.child(values, self)
        else:
            view = self._new_view(resolved)
            view._value = Unobservable(view)
        if cacheable and cache:
            self._cached(tuple(given.items()), view)
        return view

    def remove(self, *values: Any, **kwargs: Any) -> None:
        """Remove one labelled series from the exposition (same arguments as ``labels``).

        A later observation of those labels starts the series again from zero.

        Example::

            requests.remove(method="GET", code="200")   # or remove("GET", "200")
        """
        if not self._family.desc.label_names:
            raise LabelValidationException(
                f"metric {self.name!r} has no labels; remove() takes a labelled series"
            )
        view = self.labels(*values, **kwargs)
        if view._key is None:
            view._require_observable()  # names the labels still missing
            return
        # a view cached before an earlier removal is no longer the family's child, but other
        # processes may have recorded the series again since: remove it all the same
        key = view._key
        self._family.child(key, self)
        self._family.remove(key)
        self._forget_cached(key, values, kwargs)

    def clear(self) -> None:
        """Remove every labelled series of this metric."""
        family = self._family
        if not family.desc.label_names:
            raise LabelValidationException(
                f"metric {family.desc.name!r} has no labels; clear() removes labelled series"
            )
        family.remove_all()
        if self._cache is not _NO_CACHE:
            self._cache = {}  # the views of the removed series: their memory goes with them

    def _new_view(self, labels: Labels | None, series: LabelSet | None = None) -> _Metric:
        """A partial view with ``labels`` set, or the complete view of ``series``."""
        view = object.__new__(type(self))
        view._family = self._family
        view._given = labels  # None for a complete view: its labels come from its series
        view._cache = _NO_CACHE  # most views never call labels(): no dict until one does
        view._series = series
        return view

    def _new_child(self, values: tuple[str, ...]) -> _Metric:
        """A complete view for ``values`` (called by the family, under its lock)."""
        child = self._new_view(None, LabelSet(self._family.desc.label_names, values))
        child._value = LazyValue(child)
        return child

    # --- introspection (names kept from pytheus 0.6) -------------------------------------------

    @property
    def name(self) -> str:
        return self._family.desc.name

    @property
    def description(self) -> str:
        return self._family.desc.help

    @property
    def _desc(self) -> MetricDesc:
        return self._family.desc

    @property
    def _collector(self) -> Family:
        return self._family

    @property
    def _can_observe(self) -> bool:
        return not isinstance(self._value, Unobservable)

    @property
    def _metric_value_backend(self) -> Value:
        """The value this view records into (bound to the backend in force)."""
        self._require_observable()
        value = self._value
        if isinstance(value, LazyValue):
            value = self._family.bind(self)
        return value  # type: ignore[no-any-return]

    def collect(self) -> list[MetricFamily]:
        """This metric's family as a scrape would read it (handy in tests)."""
        return self._family.collect()

    def _invalid_value(self, value: object) -> InvalidValueException:
        return InvalidValueException(
            f"{self.type_.value} {self.name!r}: {value!r} is not a number this metric can take"
        )

    def _as_number(self, value: object) -> float:
        """``value`` as a float; strings and other non-numbers are refused (slow path)."""
        if isinstance(value, (str, bytes)):
            raise self._invalid_value(value)
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise self._invalid_value(value) from None

    def _exemplar(self, value: float, labels: Mapping[str, Any]) -> Exemplar:
        """A checked exemplar of this observation (raises before anything is recorded)."""
        return Exemplar(exemplar_labels(self.name, labels), float(value), time.time())

    def _keep_exemplar(self, exemplar: Exemplar) -> None:
        """Only with an exemplar: the value keeps it if it can (``ExemplarValue``)."""
        # the value may be foreign (a per-value backend's: it cannot keep them; a user's store's)
        record = getattr(self._value, "record_exemplar", None)
        if record is not None:
            record(exemplar)

    def _require_observable(self) -> None:
        if isinstance(self._value, Unobservable):
            raise self._value.error()

    def __repr__(self) -> str:
        labels = f", labels={self._labels}" if self._labels else ""
        return f"{type(self).__qualname__}({self.name!r}{labels})"
