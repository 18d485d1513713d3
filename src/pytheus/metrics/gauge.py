"""Gauge: a value that goes up and down."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, overload

from pytheus.desc import MetricDesc
from pytheus.exceptions import MetricDefinitionException
from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import InProgress, Timer
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])

MULTIPROCESS_MODES = frozenset(
    {
        "all", "sum", "min", "max", "mostrecent",
        "liveall", "livesum", "livemin", "livemax", "livemostrecent",
    }
)  # fmt: skip


class Gauge(_Metric):
    """A value that can go up and down: in-progress work, queue sizes, temperatures.

    ``multiprocess_mode`` says how multi-process backends combine the values of several
    processes (see the backends documentation); the single-process backend ignores it.

    Example::

        from pytheus.metrics import Gauge

        queue_size = Gauge("queue_size", "Jobs waiting.")
        queue_size.set(12)

        in_flight = Gauge("requests_in_flight", "Requests being served.")
        with in_flight.track_inprogress():
            ...
    """

    type_: ClassVar[MetricType] = MetricType.GAUGE
    __slots__ = ()

    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
        multiprocess_mode: str | None = None,
        *,
        unit: str = "",
    ) -> None:
        if multiprocess_mode is not None and multiprocess_mode not in MULTIPROCESS_MODES:
            raise MetricDefinitionException(
                f"gauge {name!r}: multiprocess_mode {multiprocess_mode!r} is not one of "
                f"{sorted(MULTIPROCESS_MODES)}"
            )
        options = {"multiprocess_mode": multiprocess_mode} if multiprocess_mode else None
        desc = MetricDesc.build(
            name,
            description,
            self.type_,
            required_labels,
            default_labels,
            options=options,
            unit=unit,
        )
        self._define(desc, registry)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (default 1)."""
        try:
            self._value.inc(amount)
        except TypeError:
            raise self._invalid_value(amount) from None

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` (default 1)."""
        try:
            self._value.dec(amount)
        except TypeError:
            raise self._invalid_value(amount) from None

    def set(self, value: float) -> None:
        """Set the gauge to ``value``."""
        self._value.set(value if value.__class__ is float else self._as_number(value))

    def set_to_current_time(self) -> None:
        """Set the gauge to the current Unix time in seconds."""
        self._value.set(time.time())

    def set_function(self, function: Callable[[], float]) -> None:
        """Expose ``function()`` as the value, called at every scrape.

        With a multi-process backend, the process that serves the scrape calls it, so define
        it in every process (as module-level code is).

        Example::

            queue_size = Gauge("queue_size", "Jobs waiting.")
            queue_size.set_function(lambda: len(jobs))
        """
        self._require_observable()
        assert self._key is not None
        self._family.functions[self._key] = function

    def track_inprogress(self) -> InProgress:
        """Add 1 while inside the block (or decorated call), subtract it on the way out."""
        self._require_observable()
        return InProgress(self.inc, self.dec)

    def time(self) -> Timer:
        """Set the gauge to the seconds spent inside the block (or decorated call)."""
        self._require_observable()
        return Timer(self.set)

    @overload
    def __call__(self, func: F) -> F: ...

    @overload
    def __call__(self, func: None = None, track_inprogress: bool = False) -> Callable[[F], F]: ...

    def __call__(self, func: F | None = None, track_inprogress: bool = False) -> Any:
        """Decorate a function: time it (``@gauge``), or count it while it runs.

        Use ``@gauge(track_inprogress=True)`` for the latter.
        """

        def decorate(f: F) -> F:
            context = self.track_inprogress() if track_inprogress else self.time()
            return context(f)

        return decorate if func is None else decorate(func)
