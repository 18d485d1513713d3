"""Counter: a value that only goes up (and resets when the process restarts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, overload

from pytheus.exceptions import InvalidValueException
from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import ExceptionCounter
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class Counter(_Metric):
    """A cumulative count of events.

    Example::

        from pytheus.metrics import Counter

        orders = Counter("orders_total", "Orders placed.")
        orders.inc()
        orders.inc(3)

        @orders(exceptions=(KeyError,))  # count KeyErrors raised by the function
        def place(order): ...
    """

    type_: ClassVar[MetricType] = MetricType.COUNTER
    __slots__ = ()

    def inc(self, amount: float = 1.0, exemplar: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (default 1), which must be a non-negative number.

        ``exemplar`` labels this increment (``{"trace_id": "abc"}``) for OpenMetrics scrapes.
        """
        try:
            if amount >= 0:  # also refuses NaN, which would poison the counter for good
                if exemplar is None:
                    self._value.inc(amount)
                    return
                checked = self._exemplar(amount, exemplar)
                self._value.inc(amount)
                self._keep_exemplar(checked)
                return
        except TypeError:
            pass
        raise InvalidValueException(
            f"counter {self.name!r}: increment must be a number >= 0, got {amount!r}"
        )

    def count_exceptions(self, exceptions: ExceptionTypes | None = None) -> ExceptionCounter:
        """Count exceptions of ``exceptions`` (default: any ``Exception``) raised inside it."""
        self._require_observable()
        return ExceptionCounter(self.inc, exceptions if exceptions is not None else Exception)

    @overload
    def __call__(self, func: F) -> F: ...

    @overload
    def __call__(
        self, func: None = None, exceptions: ExceptionTypes | None = None
    ) -> Callable[[F], F]: ...

    def __call__(self, func: F | None = None, exceptions: ExceptionTypes | None = None) -> Any:
        """Decorate a function to count the exceptions it raises.

        Use as ``@counter`` or ``@counter(exceptions=(KeyError,))``.
        """
        if func is None:
            return lambda f: self.count_exceptions(exceptions)(f)
        return self.count_exceptions(exceptions)(func)
