"""Summary: the count and sum of observations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pytheus.desc import MetricDesc
from pytheus.exceptions import MetricDefinitionException
from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import Timer
from pytheus.quantiles import SlidingQuantiles
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])


class Summary(_Metric):
    """Tracks the count and the sum of observations (exposed as ``_count`` and ``_sum``).

    With ``quantiles``, it also reports those quantiles of the observations of the last
    ``max_age_seconds`` (a sliding window of ``age_buckets`` parts), each within 1 % of the true
    value (see :mod:`pytheus.quantiles`), across processes too: on the shared-file and Redis
    backends each process keeps its window and a scrape merges those of every process.

    Example::

        from pytheus.metrics import Summary

        payload = Summary("payload_bytes", "Size of received payloads.")
        payload.observe(512)
    """

    type_: ClassVar[MetricType] = MetricType.SUMMARY
    __slots__ = ()

    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
        *,
        quantiles: Sequence[float] = (),
        max_age_seconds: float = 600,
        age_buckets: int = 5,
        unit: str = "",
    ) -> None:
        options: dict[str, object] | None = None
        if quantiles:
            try:  # validates the options now, at definition
                SlidingQuantiles(tuple(quantiles), max_age_seconds, age_buckets)
            except (MetricDefinitionException, TypeError, ValueError) as error:
                raise MetricDefinitionException(f"summary {name!r}: {error}") from None
            options = {
                "quantiles": tuple(float(q) for q in quantiles),
                "max_age_seconds": float(max_age_seconds),
                "age_buckets": int(age_buckets),
            }
        desc = MetricDesc.build(
            name, description, self.type_, required_labels, default_labels,
            options=options, unit=unit,
        )  # fmt: skip
        self._define(desc, registry)

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
