"""The Prometheus text format, version 0.0.4.

Escaping follows the format's rules so that no help text or label value can break a line:
help escapes backslash and newline; label values escape backslash, double quote and newline.
Each series' rendered labels are memoised on its LabelSet, so repeated scrapes escape once.
"""

from __future__ import annotations

from collections.abc import Iterable

from pytheus.samples import (
    CounterData,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Types this format does not have are exposed as gauges, as other clients do.
_TEXT_TYPES = {MetricType.INFO: "gauge", MetricType.STATESET: "gauge"}

_SPECIAL_VALUES = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def format_value(value: float) -> str:
    """A sample value as Prometheus spells it (``1.0``, ``+Inf``, ``NaN``)."""
    text = repr(float(value))
    return _SPECIAL_VALUES.get(text, text)


def format_count(value: float) -> str:
    """A count: integral values without a fraction."""
    if isinstance(value, int):
        return str(value)
    return format_value(value)


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


def render_labels(labels: LabelSet) -> str:
    """``{a="1",b="2"}`` for a series, or ``""`` when it has no labels; memoised."""
    text = labels.rendered.get("text")
    if text is None:
        text = labels.rendered["text"] = render_pairs(zip(labels.names, labels.values))
    return text


def bucket_labels(labels: LabelSet, upper_bounds: tuple[float, ...]) -> list[str]:
    """The label strings of a series' buckets, memoised with the bounds they were made for.

    A LabelSet may be shared by histograms with different buckets (``EMPTY_LABELS`` in custom
    collectors), so the memo is only used for the very same bounds.
    """
    cached: tuple[tuple[float, ...], list[str]] | None = labels.rendered.get("text:le")
    if cached is not None and (cached[0] is upper_bounds or cached[0] == upper_bounds):
        return cached[1]
    pairs = list(zip(labels.names, labels.values))
    rendered = [render_pairs([*pairs, ("le", format_value(b))]) for b in upper_bounds]
    labels.rendered["text:le"] = (upper_bounds, rendered)
    return rendered


def render(families: Iterable[MetricFamily]) -> str:
    """The exposition of ``families`` in text format 0.0.4."""
    out: list[str] = []
    append = out.append
    for family in families:
        name, type_name = family.name, _TEXT_TYPES.get(family.type, family.type.value)
        if family.type is MetricType.INFO:
            name += "_info"
        append(f"# HELP {name} {escape_help(family.help)}\n# TYPE {name} {type_name}\n")
        for labels, value in family.series:
            if isinstance(value, HistogramData):
                _render_histogram(out, name, labels, value)
            elif isinstance(value, SummaryData):
                _render_summary(out, name, labels, value)
            elif isinstance(value, CounterData):
                append(f"{name}{render_labels(labels)} {format_value(value.value)}\n")
            else:
                append(f"{name}{render_labels(labels)} {format_value(value)}\n")
    return "".join(out)


def _render_histogram(out: list[str], name: str, labels: LabelSet, data: HistogramData) -> None:
    cumulative: float = 0
    bucket = f"{name}_bucket"
    for label_text, count in zip(bucket_labels(labels, data.upper_bounds), data.bucket_counts):
        cumulative += count
        out.append(f"{bucket}{label_text} {format_count(cumulative)}\n")
    label_text = render_labels(labels)
    out.append(f"{name}_sum{label_text} {format_value(data.sum)}\n")
    out.append(f"{name}_count{label_text} {format_count(cumulative)}\n")


def _render_summary(out: list[str], name: str, labels: LabelSet, data: SummaryData) -> None:
    pairs = list(zip(labels.names, labels.values))
    for quantile, value in data.quantiles:
        label_text = render_pairs([*pairs, ("quantile", format_value(quantile))])
        out.append(f"{name}{label_text} {format_value(value)}\n")
    label_text = render_labels(labels)
    out.append(f"{name}_sum{label_text} {format_value(data.sum)}\n")
    out.append(f"{name}_count{label_text} {format_count(data.count)}\n")
