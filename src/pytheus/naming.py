"""Validation of metric and label names, done once when a metric is defined."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pytheus.exceptions import InvalidMetricNameException, LabelValidationException

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def validate_metric_name(name: object, what: str = "metric name") -> str:
    """Return ``name`` if it is a valid Prometheus metric name, else raise."""
    if not isinstance(name, str) or METRIC_NAME_RE.fullmatch(name) is None:
        raise InvalidMetricNameException(
            f"invalid {what} {name!r}: it must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        )
    return name


def validate_label_names(
    metric_name: str, names: Iterable[object], reserved: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Return the label names as a tuple if all are valid for ``metric_name``, else raise."""
    seen: list[str] = []
    for label in names:
        if not isinstance(label, str) or LABEL_NAME_RE.fullmatch(label) is None:
            raise LabelValidationException(
                f"metric {metric_name!r}: invalid label name {label!r}: "
                "it must match [a-zA-Z_][a-zA-Z0-9_]*"
            )
        if label.startswith("__"):
            raise LabelValidationException(
                f"metric {metric_name!r}: label name {label!r} starts with '__', "
                "which Prometheus reserves for internal use"
            )
        if label in reserved:
            raise LabelValidationException(
                f"metric {metric_name!r}: label name {label!r} is reserved for this metric type"
            )
        if label in seen:
            raise LabelValidationException(
                f"metric {metric_name!r}: label name {label!r} is declared twice"
            )
        seen.append(label)
    return tuple(seen)
