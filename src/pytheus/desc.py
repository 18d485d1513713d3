"""A frozen, validated description of a metric: everything fixed when it is defined."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytheus.exceptions import (
    BucketException,
    LabelValidationException,
    MetricDefinitionException,
)
from pytheus.naming import (
    LABEL_NAME_RE,
    check_label_name,
    validate_label_names,
    validate_metric_name,
)
from pytheus.samples import MetricType

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_RESERVED_LABELS: dict[MetricType, frozenset[str]] = {
    MetricType.HISTOGRAM: frozenset({"le"}),
    MetricType.SUMMARY: frozenset({"quantile"}),
}


@dataclass(frozen=True, slots=True)
class MetricDesc:
    """What a metric is: validated once, shared by every labelled child of the metric.

    ``upper_bounds`` is set for histograms only and always ends with ``+Inf``.
    """

    name: str
    help: str
    type: MetricType
    label_names: tuple[str, ...] = ()
    default_labels: Mapping[str, str] = field(default_factory=dict)
    upper_bounds: tuple[float, ...] = ()
    options: tuple[tuple[str, object], ...] = ()
    unit: str = ""

    @classmethod
    def build(
        cls,
        name: object,
        description: object,
        metric_type: MetricType,
        required_labels: Sequence[str] | None,
        default_labels: Mapping[str, object] | None,
        buckets: Sequence[float] | None = None,
        options: Mapping[str, object] | None = None,
        unit: str = "",
    ) -> MetricDesc:
        """Validate every part of a definition; raise a pytheus exception naming the metric."""
        name = validate_metric_name(name)
        if unit:
            _check_unit(name, metric_type, unit)
        if isinstance(required_labels, str):
            raise LabelValidationException(
                f"metric {name!r}: required_labels must be a sequence of names, "
                f"not the string {required_labels!r}"
            )
        label_names = validate_label_names(
            name, required_labels or (), _RESERVED_LABELS.get(metric_type, frozenset())
        )
        defaults: dict[str, str] = {}
        for label, value in (default_labels or {}).items():
            if label not in label_names:
                raise LabelValidationException(
                    f"metric {name!r}: default label {label!r} is not one of "
                    f"required_labels {list(label_names)}"
                )
            defaults[label] = label_value(name, label, value)
        bounds = _upper_bounds(name, buckets) if metric_type is MetricType.HISTOGRAM else ()
        return cls(
            name=name,
            help=_text(name, "description", description),
            type=metric_type,
            label_names=label_names,
            default_labels=defaults,
            upper_bounds=bounds,
            options=tuple(sorted((options or {}).items())),
            unit=unit,
        )

    def same_definition(self, other: MetricDesc) -> bool:
        """Whether two definitions can share series: same type, labels, buckets and options."""
        return (
            self.type is other.type
            and self.label_names == other.label_names
            and dict(self.default_labels) == dict(other.default_labels)
            and self.upper_bounds == other.upper_bounds
            and self.options == other.options
            and self.unit == other.unit
        )

    def option(self, key: str, default: object = None) -> object:
        return dict(self.options).get(key, default)


_SUFFIXES: dict[MetricType, tuple[str, ...]] = {
    MetricType.COUNTER: ("_total", "_created"),
    MetricType.HISTOGRAM: ("_bucket", "_sum", "_count", "_created"),
    MetricType.SUMMARY: ("_sum", "_count", "_created"),
    MetricType.INFO: ("_info",),
}


def exposed_names(name: str, metric_type: MetricType) -> set[str]:
    """Every sample name a family may expose in some format; two families must not share one."""
    if metric_type is MetricType.COUNTER and name.endswith("_total"):
        name = name[: -len("_total")]
    return {name, *(name + suffix for suffix in _SUFFIXES.get(metric_type, ()))}


def _check_unit(name: str, metric_type: MetricType, unit: str) -> None:
    """OpenMetrics wants the unit as the name's suffix: ``request_duration_seconds``."""
    if not LABEL_NAME_RE.fullmatch(unit):
        raise MetricDefinitionException(f"metric {name!r}: unit {unit!r} is not a valid name")
    stem = (
        name[: -len("_total")]
        if metric_type is MetricType.COUNTER and name.endswith("_total")
        else name
    )
    if not stem.endswith("_" + unit):
        raise MetricDefinitionException(
            f"metric {name!r}: a metric with unit {unit!r} must have a name ending in '_{unit}'"
        )


def _text(metric_name: str, what: str, value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MetricDefinitionException(
            f"metric {metric_name!r}: {what} {text!r} cannot be encoded as UTF-8"
        ) from None
    return text


def label_value(metric_name: str, label: str, value: object) -> str:
    """A label value as exposed: ``str(value)``, refused if it cannot be encoded as UTF-8."""
    text = value if type(value) is str else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LabelValidationException(
            f"metric {metric_name!r}: value {text!r} of label {label!r} cannot be encoded as UTF-8"
        ) from None
    return text


EXEMPLAR_MAX_CHARACTERS = 128


def exemplar_labels(metric_name: str, labels: Mapping[str, object]) -> dict[str, str]:
    """Exemplar labels, checked against OpenMetrics' rules (names, at most 128 characters).

    Names follow the validation scheme in force (:mod:`pytheus.naming`): classic by default,
    any UTF-8 name under ``"utf8"``. The limit counts characters (code points), not bytes.

    Example::

        exemplar_labels("requests_total", {"trace_id": "abc"})  # {"trace_id": "abc"}
    """
    checked: dict[str, str] = {}
    for name, value in labels.items():
        check_label_name(metric_name, name, "exemplar label name")
        checked[name] = label_value(metric_name, name, value)
    length = exemplar_length(checked.items())
    if length > EXEMPLAR_MAX_CHARACTERS:
        raise LabelValidationException(
            f"metric {metric_name!r}: exemplar labels have {length} characters; OpenMetrics "
            f"allows at most {EXEMPLAR_MAX_CHARACTERS} (names and values together)"
        )
    return checked


def exemplar_length(pairs: Iterable[tuple[str, str]]) -> int:
    """The characters of an exemplar's label names and values, as OpenMetrics counts them."""
    return sum(len(name) + len(value) for name, value in pairs)


def _upper_bounds(name: str, buckets: Sequence[float] | None) -> tuple[float, ...]:
    if buckets is None or len(buckets) == 0:
        bounds = list(DEFAULT_BUCKETS)
    else:
        try:
            bounds = [float(b) for b in buckets]
        except (TypeError, ValueError):
            raise BucketException(
                f"histogram {name!r}: buckets must be numbers, got {list(buckets)!r}"
            ) from None
    if any(math.isnan(b) for b in bounds):
        raise BucketException(f"histogram {name!r}: a bucket bound is NaN: {bounds}")
    for lower, upper in zip(bounds, bounds[1:]):
        if not lower < upper:
            raise BucketException(
                f"histogram {name!r}: buckets must be strictly increasing, "
                f"but {upper} follows {lower} in {bounds}"
            )
    if bounds[-1] != math.inf:
        bounds.append(math.inf)
    return tuple(bounds)
