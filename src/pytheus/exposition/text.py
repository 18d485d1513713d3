"""The Prometheus text format, version 0.0.4.

Escaping follows the format's rules so that no help text or label value can break a line:
help escapes backslash and newline; label values escape backslash, double quote and newline.
Each series' rendered labels are memoised on its LabelSet, so repeated scrapes escape once.

Names that are not classic (possible with ``pytheus.naming.set_validation_scheme("utf8")``) are
written by the escaping scheme the scraper asked for (:mod:`pytheus.exposition.escaping`):
escaped, or under ``allow-utf-8`` quoted as Prometheus 3 reads them::

    # TYPE "http.server.duration" histogram
    {"http.server.duration_bucket","http.method"="GET",le="0.1"} 3

Classic names are written as they are under every scheme.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from pytheus.exposition.escaping import (
    DEFAULT_SCHEME,
    label_name,
    needs_quotes,
    quote,
    sample_name,
    series_name,
)
from pytheus.samples import (
    CounterData,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"
"""Version 1.0.0 is 0.0.4 that may quote names that are not classic (Prometheus 3 reads it)."""

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


def render_pairs(pairs: Iterable[tuple[str, str]], escaping: str = DEFAULT_SCHEME) -> str:
    """``{a="1",b="2"}``, or ``""`` for no pairs; label names written as ``escaping`` says."""
    inner = ",".join(
        f'{label_name(name, escaping)}="{escape_label_value(value)}"' for name, value in pairs
    )
    return f"{{{inner}}}" if inner else ""


def _memo_key(kind: str, escaping: str) -> str:
    return kind if escaping == DEFAULT_SCHEME else f"{kind}:{escaping}"


def render_labels(labels: LabelSet, escaping: str = DEFAULT_SCHEME) -> str:
    """``{a="1",b="2"}`` for a series, or ``""`` when it has no labels; memoised."""
    if escaping == DEFAULT_SCHEME:
        text = labels.text
        if text is None:
            text = labels.text = render_pairs(zip(labels.names, labels.values))
        return text
    key = _memo_key("text", escaping)
    text = labels.rendered.get(key)
    if text is None:
        text = labels.rendered[key] = render_pairs(zip(labels.names, labels.values), escaping)
    return text


def bucket_labels(
    labels: LabelSet, upper_bounds: tuple[float, ...], escaping: str = DEFAULT_SCHEME
) -> list[str]:
    """The label strings of a series' buckets, ``{a="1",le="0.5"}`` for each bound.

    Made at each scrape from the series' memoised label text: memoising them too would keep a
    string per bucket per series (about 1,400 bytes for the default buckets).
    """
    if escaping != DEFAULT_SCHEME:
        return _bucket_labels_escaped(labels, upper_bounds, escaping)
    head = _open(render_labels(labels))
    return [head + pair for pair in _bound_pairs(upper_bounds)]


def _open(label_text: str) -> str:
    """A series' label text open for one more pair: ``{a="1",`` (``{`` for no labels)."""
    return label_text[:-1] + "," if label_text else "{"


_BOUND_PAIRS: dict[int, tuple[Sequence[float], list[str]]] = {}


def _bound_pairs(upper_bounds: Sequence[float]) -> list[str]:
    """``le="0.5"}`` for each bound: the end of a bucket's label text.

    Memoised for the very same tuple of bounds (a family's, at every scrape), kept alive with
    its entry so that its id is not reused; not by value, where ``0.0 == -0.0``.
    """
    cached = _BOUND_PAIRS.get(id(upper_bounds))
    if cached is not None and cached[0] is upper_bounds:
        return cached[1]
    pairs = [f'le="{format_value(bound)}"}}' for bound in upper_bounds]
    if isinstance(upper_bounds, tuple):
        if len(_BOUND_PAIRS) >= 256:
            _BOUND_PAIRS.clear()
        _BOUND_PAIRS[id(upper_bounds)] = (upper_bounds, pairs)
    return pairs


def _bucket_labels_escaped(
    labels: LabelSet, upper_bounds: tuple[float, ...], escaping: str
) -> list[str]:
    """:func:`bucket_labels` for names that are not classic, memoised with the bounds they were
    made for (a LabelSet may be shared by histograms with different buckets: ``EMPTY_LABELS``
    in custom collectors)."""
    key = _memo_key("text:le", escaping)
    cached: tuple[tuple[float, ...], list[str]] | None = labels.rendered.get(key)
    if cached is not None and (cached[0] is upper_bounds or cached[0] == upper_bounds):
        return cached[1]
    pairs = list(zip(labels.names, labels.values))
    rendered = [render_pairs([*pairs, ("le", format_value(b))], escaping) for b in upper_bounds]
    labels.rendered[key] = (upper_bounds, rendered)
    return rendered


def render(families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME) -> str:
    """The exposition of ``families`` in text format 0.0.4 (and 1.0.0, which quotes names).

    ``escaping`` is the scheme for names that are not classic (see
    :mod:`pytheus.exposition.escaping`); classic names are written as they are.
    """
    return "".join(render_chunks(families, escaping))


CHUNK_LINES = 1024
"""Lines a formatter joins into one chunk: a scrape holds chunks, never a string per line."""


def render_chunks(
    families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME
) -> Iterator[str]:
    """:func:`render`'s text in chunks of about :data:`CHUNK_LINES` lines."""
    out: list[str] = []
    append = out.append
    for family in families:
        name = sample_name(family, escaping)  # counters end in _total, as in OpenMetrics
        type_name = _TEXT_TYPES.get(family.type, family.type.value)
        quoted = needs_quotes(name, escaping)
        head = quote(name) if quoted else name
        append(f"# HELP {head} {escape_help(family.help)}\n# TYPE {head} {type_name}\n")
        for labels, value in family.series:
            if isinstance(value, HistogramData):
                _render_histogram(out, name, quoted, labels, value, escaping)
            elif isinstance(value, SummaryData):
                _render_summary(out, name, quoted, labels, value, escaping)
            else:
                number = value.value if isinstance(value, CounterData) else value
                label_text = render_labels(labels, escaping)
                start = series_name(name, True, label_text) if quoted else name + label_text
                append(f"{start} {format_value(number)}\n")
            if len(out) >= CHUNK_LINES:
                yield "".join(out)
                out.clear()
    yield "".join(out)


def _render_histogram(
    out: list[str], name: str, quoted: bool, labels: LabelSet, data: HistogramData, escaping: str
) -> None:
    cumulative: float = 0
    bucket = f"{name}_bucket"
    label_texts = bucket_labels(labels, data.upper_bounds, escaping)
    for label_text, count in zip(label_texts, data.bucket_counts):
        cumulative += count
        out.append(f"{series_name(bucket, quoted, label_text)} {format_count(cumulative)}\n")
    label_text = render_labels(labels, escaping)
    out.append(f"{series_name(name + '_sum', quoted, label_text)} {format_value(data.sum)}\n")
    out.append(f"{series_name(name + '_count', quoted, label_text)} {format_count(cumulative)}\n")


def _render_summary(
    out: list[str], name: str, quoted: bool, labels: LabelSet, data: SummaryData, escaping: str
) -> None:
    label_text = render_labels(labels, escaping)
    if escaping == DEFAULT_SCHEME:  # the series' memoised label text, with the quantile added
        head = _open(label_text)
        quantile_texts = [f'{head}quantile="{format_value(q)}"}}' for q, _ in data.quantiles]
    else:
        pairs = list(zip(labels.names, labels.values))
        quantile_texts = [
            render_pairs([*pairs, ("quantile", format_value(q))], escaping)
            for q, _ in data.quantiles
        ]
    for quantile_text, (_, value) in zip(quantile_texts, data.quantiles):
        out.append(f"{series_name(name, quoted, quantile_text)} {format_value(value)}\n")
    out.append(f"{series_name(name + '_sum', quoted, label_text)} {format_value(data.sum)}\n")
    out.append(f"{series_name(name + '_count', quoted, label_text)} {format_count(data.count)}\n")
