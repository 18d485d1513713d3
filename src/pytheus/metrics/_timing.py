"""Context managers and decorators shared by the metric types; ``async def`` aware."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def wrap(func: F, make_context: Callable[[], Any]) -> F:
    """Run every call of ``func`` inside a fresh ``make_context()``.

    For a coroutine function the context spans the awaited call, not the coroutine's creation.
    """
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with make_context():
                return await func(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with make_context():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Timer:
    """Measures the time spent inside it and hands the seconds to ``record``.

    Usable as ``with metric.time():`` and as a decorator ``@metric.time()``.
    """

    __slots__ = ("_record", "_start")

    def __init__(self, record: Callable[[float], None]) -> None:
        self._record = record
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._record(max(time.perf_counter() - self._start, 0.0))

    def __call__(self, func: F) -> F:
        record = self._record
        return wrap(func, lambda: Timer(record))


class InProgress:
    """Adds one while inside it, takes it away again on the way out (even on error)."""

    __slots__ = ("_inc", "_dec")

    def __init__(self, inc: Callable[[float], None], dec: Callable[[float], None]) -> None:
        self._inc = inc
        self._dec = dec

    def __enter__(self) -> InProgress:
        self._inc(1.0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._dec(1.0)

    def __call__(self, func: F) -> F:
        inc, dec = self._inc, self._dec
        return wrap(func, lambda: InProgress(inc, dec))


class ExceptionCounter:
    """Counts exceptions of the given types raised inside it, and lets them propagate."""

    __slots__ = ("_inc", "_exceptions")

    def __init__(
        self,
        inc: Callable[[float], None],
        exceptions: type[BaseException] | tuple[type[BaseException], ...],
    ) -> None:
        self._inc = inc
        self._exceptions = exceptions

    def __enter__(self) -> ExceptionCounter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self._exceptions):
            self._inc(1.0)

    def __call__(self, func: F) -> F:
        inc, exceptions = self._inc, self._exceptions
        return wrap(func, lambda: ExceptionCounter(inc, exceptions))
