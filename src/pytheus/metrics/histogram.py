"""Histogram: observations counted in buckets, with their sum."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pytheus import native as _native
from pytheus.desc import DEFAULT_BUCKETS, MetricDesc
from pytheus.exceptions import BucketException, PytheusException
from pytheus.metrics._base import _Metric
from pytheus.metrics._timing import Timer
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import MetricType

F = TypeVar("F", bound=Callable[..., Any])


class Histogram(_Metric):
    """Counts observations (request durations, sizes) in configurable buckets.

    ``buckets`` is any strictly increasing sequence; ``+Inf`` is added when missing.

    ``native=True`` also keeps a native histogram (sparse exponential buckets, exposed in the
    protobuf format, which Prometheus asks for when its native histograms are on). It is
    native-only unless ``buckets`` is given: then the classic buckets are kept as well. A
    native-only histogram has the single classic bucket ``+Inf``, so the text formats still
    show its ``_count`` and ``_sum``. Keyword-only options, as in client_golang:

    - ``native_bucket_factor`` (1.1): the growth from one bucket to the next is at most this;
      the schema is the coarsest one that satisfies it (1.1 gives schema 3);
    - ``native_max_buckets`` (160, 0 for no limit): past it the schema is lowered by one,
      merging buckets pairwise;
    - ``native_zero_threshold`` (2**-128): values with ``abs(value)`` at most this are counted
      in the zero bucket;
    - ``native_reset_seconds`` (0 = never): past ``native_max_buckets``, restart the histogram
      (classic part included) instead if this long has passed since it last started.

    The memory, shared-file and Redis backends record native histograms; processes are merged at
    the lowest schema among them, and each process restarts its own part. A per-value
    (bring-your-own) backend keeps the classic part only.

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
        buckets: Sequence[float] | None = None,
        *,
        unit: str = "",
        native: bool = False,
        native_bucket_factor: float = _native.DEFAULT_BUCKET_FACTOR,
        native_max_buckets: int = _native.DEFAULT_MAX_BUCKETS,
        native_zero_threshold: float = _native.DEFAULT_ZERO_THRESHOLD,
        native_reset_seconds: float = 0,
    ) -> None:
        options: dict[str, object] | None = None
        if native:
            options = _native_options(
                name,
                native_bucket_factor,
                native_max_buckets,
                native_zero_threshold,
                native_reset_seconds,
            )
            if buckets is None:
                buckets = (math.inf,)
        desc = MetricDesc.build(
            name,
            description,
            self.type_,
            required_labels,
            default_labels,
            buckets=buckets,
            options=options,
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
        except PytheusException:
            raise  # a bad exemplar label, named as such (these are ValueErrors too)
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


def _native_options(
    name: str, factor: float, max_buckets: int, zero_threshold: float, reset_seconds: float
) -> dict[str, object]:
    """The validated native-histogram options of a definition (kept in ``MetricDesc.options``)."""
    try:
        schema = _native.schema_for_factor(float(factor))
    except (TypeError, ValueError):
        raise BucketException(
            f"histogram {name!r}: native_bucket_factor must be a number > 1, got {factor!r}"
        ) from None
    if not isinstance(max_buckets, int) or isinstance(max_buckets, bool) or max_buckets < 0:
        raise BucketException(
            f"histogram {name!r}: native_max_buckets must be an int >= 0, got {max_buckets!r}"
        )
    try:
        threshold, reset = float(zero_threshold), float(reset_seconds)
    except (TypeError, ValueError):
        threshold = reset = math.nan
    if not 0 <= threshold < math.inf:
        raise BucketException(
            f"histogram {name!r}: native_zero_threshold must be a finite number >= 0, "
            f"got {zero_threshold!r}"
        )
    if not 0 <= reset < math.inf:
        raise BucketException(
            f"histogram {name!r}: native_reset_seconds must be a finite number >= 0, "
            f"got {reset_seconds!r}"
        )
    return {
        "native": True,
        "native_schema": schema,
        "native_zero_threshold": threshold,
        "native_max_buckets": max_buckets,
        "native_reset_seconds": reset,
    }
