"""The OpenMetrics text format, version 1.0.0.

How it differs from the Prometheus text format (:mod:`pytheus.exposition.text`):

- the exposition ends with ``# EOF``;
- a counter family is named without ``_total`` and its samples with it: a counter defined as
  ``orders_total`` or as ``orders`` is family ``orders`` with samples ``orders_total``;
- an info family ``build`` has samples ``build_info``; a stateset's samples are labelled with
  the family's name, one per state, as the model gives them (a name with ``:``, which a
  label name cannot have, is escaped for the family too, so the two stay the same);
- ``# UNIT`` is written for families with a unit; untyped families are typed ``unknown``;
- help text escapes double quotes too;
- counter samples and histogram buckets carry their exemplar, if any:
  ``orders_total 3.0 # {trace_id="abc"} 1.0 1700000000.0``; its label names are quoted or
  escaped as the other names are (an exemplar that escaping makes longer than the 128
  characters OpenMetrics allows is left out).

OpenMetrics forbids some values the Prometheus format allows. Rather than break the whole scrape,
the sample that would be invalid is left out:

- a counter total that is negative or NaN;
- a histogram's ``_count`` and ``_sum`` when a bucket bound is negative (the spec forbids the sum
  then, and the count goes with it) or when the sum is negative or NaN (after such observations);
  the ``+Inf`` bucket still holds the count;
- a summary's ``_count`` or ``_sum`` when negative or NaN, and negative quantile values.

The ``_created`` series are not written.

Names that are not classic are escaped as the scraper asked, or quoted under ``allow-utf-8``
(``{"http.server.requests_total","http.method"="GET"} 3.0``), as in the text format
(:mod:`pytheus.exposition.text`); Prometheus 3 reads OpenMetrics 1.0.0 quoted so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pytheus.exposition.escaping import (
    DEFAULT_SCHEME,
    SAMPLE_SUFFIXES,
    exemplar_pairs,
    family_name,
    metric_name,
    needs_quotes,
    quote,
    series_name,
    stateset_name,
)
from pytheus.exposition.text import (
    CHUNK_LINES,
    bucket_labels,
    format_count,
    format_value,
    render_labels,
    render_pairs,
)
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_TYPE_NAMES = {"untyped": "unknown"}


def escape_help(text: str) -> str:
    """Help text escaped for OpenMetrics: backslash, newline and double quote."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_exemplar(exemplar: Exemplar | None, escaping: str = DEFAULT_SCHEME) -> str:
    """`` # {labels} value [timestamp]`` to append to a sample line, or ``""`` without one."""
    if exemplar is None:
        return ""
    pairs = exemplar_pairs(exemplar.labels, escaping)
    if pairs is None:  # longer than OpenMetrics allows once its names are escaped
        return ""
    labels = render_pairs(pairs, escaping) or "{}"
    timestamp = "" if exemplar.timestamp is None else f" {format_value(exemplar.timestamp)}"
    return f" # {labels} {format_value(exemplar.value)}{timestamp}"


def render(families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME) -> str:
    """The exposition of ``families`` in OpenMetrics 1.0.0, ending with ``# EOF``.

    ``escaping`` is the scheme for names that are not classic (see
    :mod:`pytheus.exposition.escaping`); classic names are written as they are.

    Example::

        from pytheus.collection import collect_registry
        from pytheus.exposition import openmetrics

        body = openmetrics.render(collect_registry(registry)).encode("utf-8")
    """
    return "".join(render_chunks(families, escaping))


def render_chunks(
    families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME
) -> Iterator[str]:
    """:func:`render`'s text in chunks (see :data:`pytheus.exposition.text.CHUNK_LINES`)."""
    out: list[str] = []
    append = out.append
    for family in families:
        if family.type is MetricType.STATESET:
            name = stateset_name(family.name, escaping)
        else:
            name = metric_name(family_name(family), escaping)
        quoted = needs_quotes(name, escaping)
        head = quote(name) if quoted else name
        if family.help:
            append(f"# HELP {head} {escape_help(family.help)}\n")
        type_name = family.type.value
        append(f"# TYPE {head} {_TYPE_NAMES.get(type_name, type_name)}\n")
        if family.unit:
            append(f"# UNIT {head} {family.unit}\n")
        counter = family.type is MetricType.COUNTER
        value_name = name + SAMPLE_SUFFIXES.get(family.type, "")  # as escaping.sample_name
        for labels, value in family.series:
            if isinstance(value, HistogramData):
                _render_histogram(out, name, quoted, labels, value, escaping)
            elif isinstance(value, SummaryData):
                _render_summary(out, name, quoted, labels, value, escaping)
            elif counter:
                _render_counter(out, value_name, quoted, labels, value, escaping)
            else:
                number = value.value if isinstance(value, CounterData) else value
                label_text = render_labels(labels, escaping)
                start = (
                    series_name(value_name, True, label_text)
                    if quoted
                    else (value_name + label_text)
                )
                append(f"{start} {format_value(number)}\n")
            if len(out) >= CHUNK_LINES:
                yield "".join(out)
                out.clear()
    append("# EOF\n")
    yield "".join(out)


def _render_counter(
    out: list[str],
    sample_name: str,
    quoted: bool,
    labels: LabelSet,
    value: float | CounterData,
    escaping: str,
) -> None:
    if isinstance(value, CounterData):
        total, exemplar = value.value, value.exemplar
    else:
        total, exemplar = value, None
    if total >= 0:  # also false for NaN
        start = series_name(sample_name, quoted, render_labels(labels, escaping))
        out.append(f"{start} {format_value(total)}{render_exemplar(exemplar, escaping)}\n")


def _render_histogram(
    out: list[str], name: str, quoted: bool, labels: LabelSet, data: HistogramData, escaping: str
) -> None:
    exemplars = data.exemplars or ()
    cumulative: float = 0
    bucket = f"{name}_bucket"
    label_texts = bucket_labels(labels, data.upper_bounds, escaping)
    for index, (label_text, count) in enumerate(zip(label_texts, data.bucket_counts)):
        cumulative += count
        exemplar = exemplars[index] if index < len(exemplars) else None
        out.append(
            f"{series_name(bucket, quoted, label_text)} {format_count(cumulative)}"
            f"{render_exemplar(exemplar, escaping)}\n"
        )
    if data.upper_bounds and data.upper_bounds[0] >= 0 and data.sum >= 0:
        label_text = render_labels(labels, escaping)
        out.append(
            f"{series_name(name + '_count', quoted, label_text)} {format_count(cumulative)}\n"
        )
        out.append(f"{series_name(name + '_sum', quoted, label_text)} {format_value(data.sum)}\n")


def _render_summary(
    out: list[str], name: str, quoted: bool, labels: LabelSet, data: SummaryData, escaping: str
) -> None:
    pairs = list(zip(labels.names, labels.values))
    for quantile, value in data.quantiles:
        if not value < 0:  # NaN is allowed: a quantile of no observations
            label_text = render_pairs([*pairs, ("quantile", format_value(quantile))], escaping)
            out.append(f"{series_name(name, quoted, label_text)} {format_value(value)}\n")
    label_text = render_labels(labels, escaping)
    if data.count >= 0:
        out.append(
            f"{series_name(name + '_count', quoted, label_text)} {format_count(data.count)}\n"
        )
    if data.sum >= 0:
        out.append(f"{series_name(name + '_sum', quoted, label_text)} {format_value(data.sum)}\n")
