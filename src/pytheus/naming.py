"""Validation of metric and label names, done once when a metric is defined.

Two validation schemes, as in Prometheus:

- ``"legacy"`` (the default): metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and label names
  ``[a-zA-Z_][a-zA-Z0-9_]*``, as every Prometheus version reads them;
- ``"utf8"``: any non-empty string that is valid UTF-8 (Prometheus 3 reads such names). Label
  names still may not start with ``__``, and ``le`` and ``quantile`` stay reserved.

The scheme is chosen for the whole process, before metrics are defined, with
:func:`set_validation_scheme` or the environment variable ``PYTHEUS_NAME_VALIDATION``
(``utf8`` or ``legacy``), read once when pytheus is imported. A name is checked with the scheme in
force when its metric is defined; switching later does not re-check metrics already defined.

Example::

    from pytheus.naming import set_validation_scheme

    set_validation_scheme("utf8")
    Counter("http.server.requests", "Requests.", required_labels=["http.method"])

How names that are not classic are exposed depends on what the scraper accepts: see
:mod:`pytheus.exposition.escaping`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Literal

from pytheus.exceptions import InvalidMetricNameException, LabelValidationException

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

ValidationScheme = Literal["legacy", "utf8"]
LEGACY: ValidationScheme = "legacy"
UTF8: ValidationScheme = "utf8"
ENV_VAR = "PYTHEUS_NAME_VALIDATION"

_lock = threading.Lock()
_scheme: ValidationScheme = LEGACY


def set_validation_scheme(scheme: str) -> None:
    """Choose how names are validated from now on: ``"legacy"`` (default) or ``"utf8"``.

    Raises :class:`ValueError` for any other value. Thread-safe; metrics defined before the
    call keep their names.
    """
    global _scheme
    if scheme not in (LEGACY, UTF8):
        raise ValueError(f"name validation scheme must be 'legacy' or 'utf8', not {scheme!r}")
    with _lock:
        _scheme = LEGACY if scheme == LEGACY else UTF8


def get_validation_scheme() -> ValidationScheme:
    """The name validation scheme in force: ``"legacy"`` or ``"utf8"``."""
    return _scheme


def utf8_names() -> bool:
    """Whether names that are not classic may be defined (the ``"utf8"`` scheme is in force)."""
    return _scheme == UTF8


def is_legacy_metric_name(name: str) -> bool:
    """Whether ``name`` is a classic metric name, written as is in every format."""
    return METRIC_NAME_RE.fullmatch(name) is not None


def is_legacy_label_name(name: str) -> bool:
    """Whether ``name`` is a classic label name, written as is in every format."""
    return LABEL_NAME_RE.fullmatch(name) is not None


def _valid_utf8(name: object) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        name.encode("utf-8")  # lone surrogates cannot be
    except UnicodeEncodeError:
        return False
    return True


def validate_metric_name(name: object, what: str = "metric name") -> str:
    """Return ``name`` if it is a valid metric name in the scheme in force, else raise."""
    if _scheme == UTF8:
        if not _valid_utf8(name):
            raise InvalidMetricNameException(
                f"invalid {what} {name!r}: it must be a non-empty, valid UTF-8 string"
            )
    elif not isinstance(name, str) or METRIC_NAME_RE.fullmatch(name) is None:
        raise InvalidMetricNameException(
            f"invalid {what} {name!r}: it must match [a-zA-Z_:][a-zA-Z0-9_:]* "
            f"(or set_validation_scheme('utf8') to allow any UTF-8 name)"
        )
    assert isinstance(name, str)
    return name


def is_valid_metric_name(name: object) -> bool:
    """Whether ``name`` may be a metric name in the scheme in force (classic, or any UTF-8)."""
    if _scheme == UTF8:
        return _valid_utf8(name)
    return isinstance(name, str) and METRIC_NAME_RE.fullmatch(name) is not None


def is_valid_label_name(name: object) -> bool:
    """Whether ``name`` may be a label name in the scheme in force (classic, or any UTF-8).

    Only the characters are checked: the ``__`` prefix and reserved names are the callers' rules.
    """
    return _valid_utf8(name) if _scheme == UTF8 else _legacy_label(name)


def _legacy_label(name: object) -> bool:
    return isinstance(name, str) and LABEL_NAME_RE.fullmatch(name) is not None


def check_label_name(metric_name: str, label: object, what: str = "label name") -> str:
    """Return ``label`` if it is a valid label name in the scheme in force, else raise.

    The :class:`~pytheus.exceptions.LabelValidationException` names the metric, ``what`` the
    name is (``"label name"``, ``"exemplar label name"``) and the rule it breaks.

    Example::

        check_label_name("requests_total", "http_method")  # "http_method"
        check_label_name("requests_total", "http.method")  # raises, unless the scheme is utf8
    """
    utf8 = _scheme == UTF8
    if _valid_utf8(label) if utf8 else _legacy_label(label):
        assert isinstance(label, str)
        return label
    rule = (
        "it must be a non-empty, valid UTF-8 string"
        if utf8
        else "it must match [a-zA-Z_][a-zA-Z0-9_]* "
        "(or set_validation_scheme('utf8') to allow any UTF-8 name)"
    )
    raise LabelValidationException(f"metric {metric_name!r}: invalid {what} {label!r}: {rule}")


def validate_label_names(
    metric_name: str, names: Iterable[object], reserved: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Return the label names as a tuple if all are valid for ``metric_name``, else raise."""
    seen: list[str] = []
    for raw in names:
        label = check_label_name(metric_name, raw)
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


def _from_environment() -> None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value:
        try:
            set_validation_scheme(value)
        except ValueError:
            raise ValueError(
                f"{ENV_VAR}={value!r}: the name validation scheme must be 'legacy' or 'utf8'"
            ) from None


_from_environment()
