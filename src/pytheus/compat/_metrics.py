"""pytheus metrics with prometheus_client's constructors and method names.

Each class *is* the pytheus metric (same hot path, same backends); only what prometheus_client
spells differently is added: ``labelnames``/``namespace``/``subsystem``/``unit``, a
prometheus_client ``registry``, ``count_exceptions(exception=...)``, ``Counter.reset()``,
``Enum(states=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pytheus.compat._bridge import pytheus_registry_for
from pytheus.exceptions import MetricDefinitionException
from pytheus.metrics import Counter as _Counter
from pytheus.metrics import Enum as _Enum
from pytheus.metrics import Gauge as _Gauge
from pytheus.metrics import Histogram as _Histogram
from pytheus.metrics import Info as _Info
from pytheus.metrics import Summary as _Summary
from pytheus.metrics._timing import ExceptionCounter
from pytheus.registry import REGISTRY

DEFAULT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf"),
)  # fmt: skip  # prometheus_client's


def _default_registry() -> Any:
    try:
        from prometheus_client import registry
    except ImportError:  # used without prometheus_client: pytheus's default registry
        return REGISTRY
    return registry.REGISTRY


def full_name(kind: str, name: str, namespace: str, subsystem: str, unit: str) -> str:
    """The exposed name, built as prometheus_client builds it."""
    if not name:
        raise MetricDefinitionException("metric name should not be empty")
    joined = "_".join(part for part in (namespace, subsystem, name) if part)
    if kind == "counter" and joined.endswith("_total"):
        joined = joined[: -len("_total")]
    if unit and kind in ("info", "stateset"):
        raise MetricDefinitionException(
            f"metric {joined!r}: an {kind} cannot have a unit (unit={unit!r})"
        )
    if unit and not joined.endswith("_" + unit):
        joined += "_" + unit
    return joined


def _options(
    kind: str,
    name: str,
    documentation: str,
    labelnames: Iterable[str],
    namespace: str,
    subsystem: str,
    unit: str,
    registry: Any,
) -> dict[str, Any]:
    """The pytheus constructor arguments for prometheus_client's ones."""
    if isinstance(labelnames, str):  # prometheus_client accepts one name as a string
        labelnames = (labelnames,)
    return {
        "name": full_name(kind, name, namespace, subsystem, unit),
        "description": documentation,
        "required_labels": list(labelnames) or None,
        "registry": pytheus_registry_for(_default_registry() if registry is _DEFAULT else registry),
    }


_DEFAULT: Any = object()  # prometheus_client's default REGISTRY, looked up when used


class Counter(_Counter):
    """prometheus_client's ``Counter``, recording into pytheus.

    Example::

        c = Counter("requests", "Requests.", ["method"], namespace="shop")  # shop_requests_total
        c.labels("GET").inc()
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "counter", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        super().__init__(**o, unit=unit)

    def count_exceptions(  # type: ignore[override]
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> ExceptionCounter:
        return super().count_exceptions(exception)

    def reset(self) -> None:
        """Start this counter's series again from zero (a scraper sees a counter reset)."""
        self._require_observable()
        assert self._key is not None
        self._family.remove(self._key)
        self.inc(0)


class Gauge(_Gauge):
    """prometheus_client's ``Gauge``; ``multiprocess_mode`` takes the same names."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        multiprocess_mode: str = "all",
    ) -> None:
        o = _options("gauge", name, documentation, labelnames, namespace, subsystem, unit, registry)
        super().__init__(**o, multiprocess_mode=multiprocess_mode, unit=unit)


class Histogram(_Histogram):
    """prometheus_client's ``Histogram``, with its default buckets."""

    __slots__ = ()
    DEFAULT_BUCKETS = DEFAULT_BUCKETS

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        buckets: Sequence[float | str] = DEFAULT_BUCKETS,
    ) -> None:
        o = _options(
            "histogram", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        bounds = [float(b) for b in buckets]
        if "le" in (o["required_labels"] or ()):
            raise MetricDefinitionException(f"histogram {o['name']!r}: 'le' is a reserved label")
        super().__init__(**o, buckets=bounds, unit=unit)


class Summary(_Summary):
    """prometheus_client's ``Summary`` (``_count`` and ``_sum``; no quantiles, as there)."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "summary", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        super().__init__(**o, unit=unit)


class Info(_Info):
    """prometheus_client's ``Info``: ``info({"version": "1.2"})``."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options("info", name, documentation, labelnames, namespace, subsystem, unit, registry)
        super().__init__(**o)


class Enum(_Enum):
    """prometheus_client's ``Enum``: the first state is the initial one."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "stateset", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        if not states:
            raise MetricDefinitionException(f"enum {o['name']!r}: no states given")
        super().__init__(**o, states=states)


CLIENT_METRICS: dict[str, type] = {
    "Counter": Counter,
    "Gauge": Gauge,
    "Histogram": Histogram,
    "Summary": Summary,
    "Info": Info,
    "Enum": Enum,
}
