"""Histogram: observations counted in buckets, with their sum."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pytheus.desc import DEFAULT_BUCKETS, MetricDesc
from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import Timer
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])


class Histogram(_Metric):
    """Counts observations (request durations, sizes) in configurable buckets.

    ``buckets`` is any strictly increasing sequence; ``+Inf`` is added when missing.

    Example::

        from pytheus.metrics import Histogram

        latency = Histogram("request_duration_seconds", "Time to serve a request.")
        latency.observe(0.27)
        with latency.time():
            ...

        @latency
        def handler(): ...
    """

    type_: ClassVar[MetricType] = MetricType.HISTOGRAM
    DEFAULT_BUCKETS: ClassVar[tuple[float, ...]] = DEFAULT_BUCKETS
    __slots__ = ()

    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
        buckets: Sequence[float] | None = DEFAULT_BUCKETS,
        *,
        unit: str = "",
    ) -> None:
        desc = MetricDesc.build(
            name,
            description,
            self.type_,
            required_labels,
            default_labels,
            buckets=buckets,
            unit=unit,
        )
        self._define(desc, registry)

    @property
    def _upper_bounds(self) -> tuple[float, ...]:
        return self._family.desc.upper_bounds

    def observe(self, value: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Record one observation; ``exemplar`` labels it for the bucket it falls in."""
        if exemplar is not None:
            self._observe_with_exemplar(value, exemplar)
            return
        try:
            self._value.observe(value)
        except TypeError:
            raise self._invalid_value(value) from None

    def _observe_with_exemplar(self, value: float, exemplar: Mapping[str, str]) -> None:
        try:
            checked = self._exemplar(value, exemplar)
        except (TypeError, ValueError):
            raise self._invalid_value(value) from None
        self.observe(value)
        self._keep_exemplar(checked)

    def time(self) -> Timer:
        """Observe the seconds spent inside the block (or decorated call)."""
        self._require_observable()
        return Timer(self.observe)

    def __call__(self, func: F) -> F:
        """Decorate a function to observe the duration of each call."""
        return self.time()(func)
