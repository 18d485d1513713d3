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

A value may also keep its series' latest exemplars (:class:`ExemplarValue`): those of pytheus's
own stores' counters and histograms do; a per-value backend's values, which are its own objects,
cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, Union

from pytheus.native import NativeHistogram
from pytheus.quantiles import SlidingQuantiles
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    LiveSeries,
    MetricFamily,
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


class ExemplarValue(Protocol):
    """A value that keeps the latest exemplar of its series (of each bucket, for a histogram).
    Optional: a value without ``record_exemplar`` records without its exemplars."""

    def record_exemplar(self, exemplar: Exemplar) -> None: ...


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
    """What pytheus asks of the storage of a backend. Subclass :class:`BaseStore`, which has
    the optional methods' defaults; a store that does not is given them when it is loaded."""

    def bind(self, metric: BoundSeries) -> Value:
        """Return the value object that records for ``metric``'s series in this process."""
        ...

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        """Return the series of each family, in order: everything this store knows of them.

        Raises BackendUnavailableException when the storage cannot be read.
        """
        ...

    def forget(self, metric: BoundSeries) -> None:
        """``remove()`` of ``metric``'s series, called while it still holds its value."""
        ...

    def forget_many(self, metrics: Sequence[BoundSeries]) -> None:
        """``clear()``: ``forget`` each of ``metrics`` (at once, where a store can)."""
        ...

    def living_pids(self) -> list[int] | None:
        """The processes whose values the store holds, or None when it does not know them (the
        process collector then reports this process only)."""
        ...

    def close(self) -> None:
        """Another backend replaced this one: flush what is pending, stop its threads."""
        ...

    def after_fork(self) -> None:
        """In a forked child (``os.fork``), before its first use there: start over with what
        belongs to this process alone (a file, a connection, a thread; the parent's stay the
        parent's). When a store has one of its own, every metric value binds again after it
        (``bind`` is called anew), so that the child records into what it set up here."""
        ...

    def families(self) -> list[MetricFamily]:
        """Everything the store holds, as the application would serve it, read at once, without
        the metric objects (``pytheus serve``). NotImplementedError where a store cannot list
        what it holds; BackendUnavailableException when it cannot be read."""
        ...


class BaseStore:
    """A :class:`Store` with the optional methods doing nothing, as a store whose values live
    in the metric objects needs. Subclass it and write ``bind`` and ``read``.

    Example::

        class MyStore(BaseStore):
            def bind(self, metric): ...
            def read(self, families): ...
    """

    def bind(self, metric: BoundSeries) -> Value:
        raise NotImplementedError

    def read(self, families: Sequence[StoredFamily]) -> Sequence[Sequence[Series]]:
        raise NotImplementedError

    def forget(self, metric: BoundSeries) -> None:
        return None

    def forget_many(self, metrics: Sequence[BoundSeries]) -> None:
        for metric in metrics:
            self.forget(metric)

    def living_pids(self) -> list[int] | None:
        return None

    def close(self) -> None:
        return None

    def after_fork(self) -> None:
        return None

    def families(self) -> list[MetricFamily]:
        raise NotImplementedError(f"{type(self).__name__} cannot list what it holds")


class CompletedStore(BaseStore):
    """A store that does not subclass :class:`BaseStore` (one written for an earlier pytheus),
    with the defaults of the methods it lacks: looked up once, when it is loaded."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.bind = store.bind  # type: ignore[method-assign]
        self.read = store.read  # type: ignore[method-assign]
        self._forget: Any = getattr(store, "forget", None)
        self._forget_many: Any = getattr(store, "forget_many", None)
        self._living_pids: Any = getattr(store, "living_pids", None)
        self._close: Any = getattr(store, "close", None)
        self._after_fork: Any = getattr(store, "after_fork", None)
        self._families: Any = getattr(store, "families", None)

    def forget(self, metric: BoundSeries) -> None:
        if self._forget is not None:
            self._forget(metric)

    def forget_many(self, metrics: Sequence[BoundSeries]) -> None:
        if self._forget_many is not None:
            self._forget_many(metrics)
        else:
            super().forget_many(metrics)

    def living_pids(self) -> list[int] | None:
        return None if self._living_pids is None else list(self._living_pids())

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def after_fork(self) -> None:
        if self._after_fork is not None:
            self._after_fork()

    def families(self) -> list[MetricFamily]:
        if self._families is None:
            return super().families()
        return list(self._families())


def lists_families(store: Store) -> bool:
    """Whether ``store`` has a ``families()`` of its own (what ``pytheus serve`` needs)."""
    if isinstance(store, CompletedStore):
        return store._families is not None
    return type(store).families is not BaseStore.families


def has_own_after_fork(store: Store) -> bool:
    """Whether ``store`` has an ``after_fork()`` of its own (then values bind again after it)."""
    if isinstance(store, CompletedStore):
        return store._after_fork is not None
    return type(store).after_fork is not BaseStore.after_fork


SCALAR_TYPES = frozenset({MetricType.COUNTER, MetricType.GAUGE, MetricType.UNTYPED})


def read_value(
    metric_type: MetricType, value: Value
) -> float | CounterData | HistogramData | SummaryData:
    """Read one bound value as the sample model wants it."""
    if metric_type in SCALAR_TYPES:
        # the value may be a per-value backend's own object: only some values have an exemplar
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


def empty_native(desc: MetricDesc) -> NativeHistogram:
    """The native part of a series of the native Histogram ``desc`` that recorded nothing (a
    store that holds none of it yet still serves one)."""
    return NativeHistogram(
        desc.option("native_schema"),  # type: ignore[arg-type]
        desc.option("native_zero_threshold"),  # type: ignore[arg-type]
    )
