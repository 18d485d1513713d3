"""Summary: the count and sum of observations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import Timer
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])


class Summary(_Metric):
    """Tracks the count and the sum of observations (exposed as ``_count`` and ``_sum``).

    Example::

        from pytheus.metrics import Summary

        payload = Summary("payload_bytes", "Size of received payloads.")
        payload.observe(512)
    """

    type_: ClassVar[MetricType] = MetricType.SUMMARY
    __slots__ = ()

    def observe(self, value: float) -> None:
        """Record one observation."""
        try:
            self._value.observe(value)
        except TypeError:
            raise self._invalid_value(value) from None

    def time(self) -> Timer:
        """Observe the seconds spent inside the block (or decorated call)."""
        self._require_observable()
        return Timer(self.observe)

    def __call__(self, func: F) -> F:
        """Decorate a function to observe the duration of each call."""
        return self.time()(func)
