"""How metric and label names that are not classic are written: the UTF-8 escaping schemes.

A scraper says which scheme it wants with the ``escaping`` parameter of its ``Accept`` header,
and the response's ``Content-Type`` repeats it (see :mod:`pytheus.exposition.negotiation`).
The schemes are those of Prometheus (``prometheus/common``'s ``model.EscapeName``, documented in
https://prometheus.io/docs/instrumenting/escaping_schemes/):

- ``allow-utf-8``: no escaping; the text formats write a name that is not classic in double
  quotes (``{"http.server.duration",le="0.1"} 3``, ``"http.method"="GET"``);
- ``underscores`` (the default): every character a classic name cannot have becomes ``_``:
  ``http.server.duration`` -> ``http_server_duration``;
- ``dots``: ``_`` becomes ``__``, ``.`` becomes ``_dot_``, any other such character ``__``:
  ``http.server.duration`` -> ``http_dot_server_dot_duration``;
- ``values``: the prefix ``U__``, ``_`` becomes ``__`` and any other such character
  ``_<hex code point>_``: ``http.server.duration`` -> ``U__http_2e_server_2e_duration``.

A classic name is never changed, whatever the scheme (as ``model.EscapeMetricFamily`` does), so
an exposition of classic names is the same under every scheme. :func:`escape_name` itself is
``model.EscapeName`` and, like it, escapes the underscores of a classic name under ``dots``.

Label names are escaped with the characters of classic *label* names (no ``:``), so that an
escaped label name is always one a classic parser reads; ``prometheus/common`` keeps ``:``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final

from pytheus.desc import EXEMPLAR_MAX_CHARACTERS, exemplar_length
from pytheus.naming import is_legacy_label_name, is_legacy_metric_name
from pytheus.samples import MetricFamily, MetricType

ALLOW_UTF8: Final = "allow-utf-8"
UNDERSCORES: Final = "underscores"
DOTS: Final = "dots"
VALUES: Final = "values"
SCHEMES: Final = frozenset({ALLOW_UTF8, UNDERSCORES, DOTS, VALUES})
DEFAULT_SCHEME: Final = UNDERSCORES
"""The scheme used when the scraper names none (or one pytheus does not know), as in Prometheus."""


def _legacy_rune(char: str, index: int, colon: bool) -> bool:
    return (
        "a" <= char <= "z"
        or "A" <= char <= "Z"
        or char == "_"
        or (colon and char == ":")
        or ("0" <= char <= "9" and index > 0)
    )


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


def escape_name(name: str, scheme: str, *, label: bool = False) -> str:
    """``name`` escaped by ``scheme``, exactly as ``model.EscapeName`` of prometheus/common.

    With ``label=True`` the characters allowed as they are are those of classic label names
    (``:`` is escaped too). Raises :class:`ValueError` for an unknown scheme.

    Example::

        escape_name("http.server.duration", "underscores")  # "http_server_duration"
        escape_name("http.server.duration", "dots")  # "http_dot_server_dot_duration"
        escape_name("http.server.duration", "values")  # "U__http_2e_server_2e_duration"
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown escaping scheme {scheme!r}; known: {sorted(SCHEMES)}")
    if not name or scheme == ALLOW_UTF8:
        return name
    colon = not label
    legacy = is_legacy_label_name(name) if label else is_legacy_metric_name(name)
    out: list[str] = []
    if scheme == UNDERSCORES:
        if legacy:
            return name
        for index, char in enumerate(name):
            out.append(char if _legacy_rune(char, index, colon) else "_")
    elif scheme == DOTS:  # no early return: the underscores of a classic name double too
        for index, char in enumerate(name):
            if char == "_":
                out.append("__")
            elif char == ".":
                out.append("_dot_")
            elif _legacy_rune(char, index, colon):
                out.append(char)
            else:
                out.append("__")
    else:  # VALUES
        if legacy:
            return name
        out.append("U__")
        for index, char in enumerate(name):
            if char == "_":
                out.append("__")
            elif _legacy_rune(char, index, colon):
                out.append(char)
            elif _is_surrogate(char):  # not a valid rune: Go writes U+FFFD
                out.append("_FFFD_")
            else:
                out.append(f"_{ord(char):x}_")
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def metric_name(name: str, scheme: str) -> str:
    """A metric name as a format writes it under ``scheme``, before quoting.

    Classic names are returned as they are; under ``allow-utf-8`` every name is (the format
    quotes the ones that are not classic, see :func:`needs_quotes`).
    """
    if scheme == ALLOW_UTF8 or is_legacy_metric_name(name):
        return name
    return escape_name(name, scheme)


def stateset_name(name: str, scheme: str) -> str:
    """A stateset's name as OpenMetrics writes it under ``scheme``, before quoting.

    OpenMetrics labels a stateset's samples with the family's own name, so the family name must
    be one a label can have too: under a scheme that escapes, a name that is not a classic
    *label* name is escaped as one, ``:`` included (``task:state`` -> ``task_state``), exactly
    as :func:`label_name` writes the state label.
    """
    if scheme == ALLOW_UTF8 or is_legacy_label_name(name):
        return name
    return escape_name(name, scheme, label=True)


@functools.lru_cache(maxsize=4096)
def label_name(name: str, scheme: str) -> str:
    """A label name as the text formats write it: as it is, quoted, or escaped.

    ``le`` -> ``le``; under ``allow-utf-8`` ``http.method`` -> ``"http.method"``; under
    ``underscores`` -> ``http_method``.
    """
    if is_legacy_label_name(name):
        return name
    if scheme == ALLOW_UTF8:
        return quote(name)
    return escape_name(name, scheme, label=True)


@functools.lru_cache(maxsize=4096)
def raw_label_name(name: str, scheme: str) -> str:
    """A label name as the protobuf format writes it: as it is, or escaped (never quoted)."""
    if scheme == ALLOW_UTF8 or is_legacy_label_name(name):
        return name
    return escape_name(name, scheme, label=True)


def exemplar_pairs(labels: Mapping[str, str], scheme: str) -> list[tuple[str, str]] | None:
    """An exemplar's labels with their names as ``scheme`` writes them, or None to leave it out.

    Names are escaped, or kept as they are under ``allow-utf-8`` (as :func:`raw_label_name`
    gives them: the text formats quote them with :func:`label_name`, protobuf writes them as
    they are). Escaping lengthens names (``trace.id`` -> ``U__trace_2e_id``), so an exemplar
    that was within the 128 characters OpenMetrics allows may not be once escaped: then None,
    and the exemplar is not written rather than making the whole scrape invalid.

    Example::

        exemplar_pairs({"trace.id": "abc"}, "underscores")  # [("trace_id", "abc")]
        exemplar_pairs({"trace.id": "abc"}, "allow-utf-8")  # [("trace.id", "abc")]
    """
    pairs = [(raw_label_name(name, scheme), value) for name, value in labels.items()]
    if exemplar_length(pairs) > EXEMPLAR_MAX_CHARACTERS:
        return None
    return pairs


def needs_quotes(name: str, scheme: str) -> bool:
    """Whether the text formats write the metric name ``name`` quoted, in braces."""
    return scheme == ALLOW_UTF8 and not is_legacy_metric_name(name)


def quote(name: str) -> str:
    """``name`` in double quotes, with backslash, double quote and newline escaped."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def series_name(name: str, quoted: bool, label_text: str) -> str:
    """The start of a sample line: ``name{labels}``, or ``{"name",labels}`` when quoted.

    ``label_text`` is ``{...}`` or ``""``, as :func:`pytheus.exposition.text.render_labels`
    gives it.
    """
    if not quoted:
        return name + label_text
    if label_text:
        return f"{{{quote(name)},{label_text[1:]}"
    return f"{{{quote(name)}}}"


# Types whose value samples carry a suffix the family's stem has not.
SAMPLE_SUFFIXES = {MetricType.COUNTER: "_total", MetricType.INFO: "_info"}


def family_name(family: MetricFamily) -> str:
    """The stem of ``family``'s name: a counter's without ``_total``, an info's without ``_info``
    (OpenMetrics 1.0 names the family so).

    Example::

        family_name(MetricFamily("orders_total", MetricType.COUNTER, "Orders."))  # "orders"
    """
    name = family.name
    suffix = SAMPLE_SUFFIXES.get(family.type)
    if suffix and name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return name


def sample_name(family: MetricFamily, escaping: str = DEFAULT_SCHEME) -> str:
    """The name of ``family``'s value samples, the same in every format, so that a series is
    stored under one name whatever the scraper negotiates: a counter's ends in ``_total``
    (``Counter("jobs")`` is ``jobs_total``), an info's in ``_info``; the stem is escaped as
    ``escaping`` says, the suffix kept.

    Example::

        sample_name(MetricFamily("jobs", MetricType.COUNTER, "Jobs."))  # "jobs_total"
    """
    return metric_name(family_name(family), escaping) + SAMPLE_SUFFIXES.get(family.type, "")
