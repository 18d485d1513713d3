"""The OpenMetrics text format, version 2.0.0 (a release candidate of the spec): opt-in.

Served only to a scraper that asks for ``application/openmetrics-text; version=2.0.0`` (see
:mod:`pytheus.exposition.negotiation`). How it differs from OpenMetrics 1.0.0
(:mod:`pytheus.exposition.openmetrics`):

- a sample is named exactly as its family, and the names are those 1.0.0 gives the samples: a
  counter defined as ``orders_total`` or as ``orders`` is family and sample ``orders_total``
  (so switching formats never renames a series); an info family ``build`` is ``build_info``;
- metadata comes in the order ``# TYPE``, ``# UNIT``, ``# HELP``;
- a histogram or summary is one line with a composite value, native fields before the classic
  ``bucket`` list, bucket counts absolute (not deltas), integers without a decimal point (the
  histogram observed 0.5, 1 and 3, with native schema 0 and classic bucket 1; one line each)::

      latency_seconds {count:3,sum:4.5,schema:0,zero_threshold:0.0,zero_count:0,
                       positive_spans:[-1:4],positive_buckets:[1,1,0,1],bucket:[1.0:2,+Inf:3]}
      size_bytes {count:2,sum:42.0,quantile:[]}

- a histogram line carries the exemplar of every classic bucket that has one; exemplars must
  have a timestamp in 2.0, so one without (only a custom collector makes those) is left out.

As in 1.0.0, a series whose value the spec forbids is left out rather than breaking the whole
scrape: a counter total that is negative or NaN; a summary whose count is not a non-negative
integer or whose sum is negative or NaN (its negative quantile values, or quantiles outside
0..1, are dropped). A histogram's sum may be anything; of its two parts, each is written only
when valid (no negative or NaN count, classic bounds increasing, native buckets holding no more
than the count) and the line only when one is. The count is the native part's; classic buckets
that total another count are left out: a multi-process backend may read the two parts a moment
apart. Info and stateset families get no ``# UNIT``, which the spec forbids for them.

No start timestamps (``st@``) are written: pytheus does not track when a series was created.

Names that are not classic are escaped as the scraper asked (the whole name, suffix included, as
the Prometheus text and protobuf formats do), or quoted under ``allow-utf-8``:
``{"http.server.requests_total","http.method"="GET"} 3.0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

from pytheus.exposition import openmetrics
from pytheus.exposition.escaping import (
    DEFAULT_SCHEME,
    needs_quotes,
    quote,
    sample_name,
    series_name,
    stateset_name,
)
from pytheus.exposition.text import CHUNK_LINES, format_value, render_pairs
from pytheus.native import NativeHistogram, spans_and_counts
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SeriesValue,
    SummaryData,
)

CONTENT_TYPE = "application/openmetrics-text; version=2.0.0; charset=utf-8"

_TYPE_NAMES = {"untyped": "unknown"}
_WITHOUT_UNIT = frozenset({MetricType.INFO, MetricType.STATESET})
_INF = math.inf


def format_integer(value: float) -> str:
    """A count: without a decimal point when integral, else as a float.

    Example::

        format_integer(3.0), format_integer(2.5)  # ("3", "2.5")
    """
    if isinstance(value, int):
        return str(value)
    if value.is_integer():  # exact even past 2**53: such floats are all integers
        return str(int(value))
    return format_value(value)


def render_exemplars(exemplars: Iterable[Exemplar | None], escaping: str = DEFAULT_SCHEME) -> str:
    """`` # {labels} value timestamp`` for each exemplar that has a finite timestamp.

    OpenMetrics 2.0 requires the timestamp, so an exemplar without one is left out.

    Example::

        render_exemplars([Exemplar({"trace_id": "abc"}, 0.5, 1700000000.0), None])
        # ' # {trace_id="abc"} 0.5 1700000000.0'
    """
    parts = []
    for exemplar in exemplars:
        if exemplar is None or exemplar.timestamp is None or not math.isfinite(exemplar.timestamp):
            continue
        labels = render_pairs(exemplar.labels.items(), escaping) or "{}"
        parts.append(
            f" # {labels} {format_value(exemplar.value)} {format_value(exemplar.timestamp)}"
        )
    return "".join(parts)


def render(families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME) -> str:
    """The exposition of ``families`` in OpenMetrics 2.0.0, ending with ``# EOF``.

    ``escaping`` is the scheme for names that are not classic (see
    :mod:`pytheus.exposition.escaping`); classic names are written as they are.

    Example::

        from pytheus.collection import collect_registry
        from pytheus.exposition import openmetrics2

        body = openmetrics2.render(collect_registry(registry)).encode("utf-8")
    """
    return "".join(render_chunks(families, escaping))


def render_chunks(
    families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME
) -> Iterator[str]:
    """:func:`render`'s text in chunks (see :data:`pytheus.exposition.text.CHUNK_LINES`)."""
    out: list[str] = []
    append = out.append
    for family in families:
        if family.type is MetricType.STATESET:  # its name is its state label's name too
            name = stateset_name(family.name, escaping)
        else:
            name = sample_name(family, escaping)  # as OpenMetrics 1.0 names the samples
        quoted = needs_quotes(name, escaping)
        head = quote(name) if quoted else name
        type_name = family.type.value
        append(f"# TYPE {head} {_TYPE_NAMES.get(type_name, type_name)}\n")
        if family.unit and family.type not in _WITHOUT_UNIT:
            append(f"# UNIT {head} {family.unit}\n")
        if family.help:
            append(f"# HELP {head} {openmetrics.escape_help(family.help)}\n")
        counter = family.type is MetricType.COUNTER
        for labels, value in family.series:
            sample = _sample(value, counter, escaping)
            if sample is not None:
                append(f"{_series_start(labels, name, quoted, escaping)} {sample}\n")
                if len(out) >= CHUNK_LINES:
                    yield "".join(out)
                    out.clear()
    append("# EOF\n")
    yield "".join(out)


def _series_start(labels: LabelSet, name: str, quoted: bool, escaping: str) -> str:
    """``name{labels}`` (or ``{"name",labels}``), memoised for the name it was made with.

    A LabelSet may be shared by families (``EMPTY_LABELS`` in custom collectors), so the memo
    is only used for the very same name.
    """
    key = "om2" if escaping == DEFAULT_SCHEME else f"om2:{escaping}"
    cached: tuple[str, str] | None = labels.rendered.get(key)
    if cached is not None and cached[0] == name:
        return cached[1]
    start = series_name(name, quoted, render_pairs(zip(labels.names, labels.values), escaping))
    labels.rendered[key] = (name, start)
    return start


def _sample(value: SeriesValue, counter: bool, escaping: str) -> str | None:
    """The value (and exemplars) of one sample line, or None when the spec forbids the value."""
    if isinstance(value, HistogramData):
        return _histogram(value, escaping)
    if isinstance(value, SummaryData):
        return _summary(value)
    if isinstance(value, CounterData):
        number, exemplar = value.value, value.exemplar
    else:
        number, exemplar = value, None
    if not counter:
        return format_value(number)
    if not number >= 0:  # also true for NaN
        return None
    return format_value(number) + render_exemplars((exemplar,), escaping)


def _is_count(value: float) -> bool:
    return value >= 0  # false for NaN


def _histogram(data: HistogramData, escaping: str) -> str | None:
    """Count, sum, the native part, then the classic one: each part written when it is valid.

    The count is the native part's when there is one (it includes NaN observations); classic
    buckets that total something else are left out, as the spec wants the ``+Inf`` bucket to
    equal the count.
    """
    classic = _classic_buckets(data.upper_bounds, data.bucket_counts)
    fields = []
    if data.native is not None and (native := _native_fields(data.native)) is not None:
        count: float = data.native.count
        fields.append(native)
        classic_kept = any(bound != _INF for bound in data.upper_bounds)  # not native-only
        if classic is not None and classic_kept and classic[1] == count:
            fields.append(classic[0])
    elif classic is not None:
        count = classic[1]
        fields.append(classic[0])
    else:
        return None
    head = f"{{count:{format_integer(count)},sum:{format_value(data.sum)},"
    return f"{head}{','.join(fields)}}}{render_exemplars(data.exemplars or (), escaping)}"


def _classic_buckets(bounds: Sequence[float], counts: Sequence[float]) -> tuple[str, float] | None:
    """``bucket:[bound:cumulative,...,+Inf:total]`` and the total; None when the spec forbids it.

    Bounds that do not end with ``+Inf`` (a custom collector's) get a ``+Inf`` bucket holding
    the total, as every observation is at most ``+Inf``.
    """
    parts = []
    cumulative: float = 0
    previous = -_INF
    for index, (bound, count) in enumerate(zip(bounds, counts)):
        if not _is_count(count) or not (bound > previous or (index == 0 and bound == -_INF)):
            return None  # NaN or out of order (NaN fails every comparison)
        cumulative += count
        previous = bound
        parts.append(f"{format_value(bound)}:{format_integer(cumulative)}")
    if previous != _INF:
        parts.append(f"+Inf:{format_integer(cumulative)}")
    return f"bucket:[{','.join(parts)}]", cumulative


def _native_fields(native: NativeHistogram) -> str | None:
    """``schema:..,zero_threshold:..,zero_count:..`` and the spans and counts of each sign.

    None when a count is negative or NaN, when the buckets hold more than the count (which
    may exceed them by the NaN observations), or when the zero threshold is not finite.
    """
    if not (math.isfinite(native.zero_threshold) and _is_count(native.zero_count)):
        return None
    fields = [
        f"schema:{native.schema}",
        f"zero_threshold:{format_value(native.zero_threshold)}",
        f"zero_count:{format_integer(native.zero_count)}",
    ]
    in_buckets: float = native.zero_count
    for sign, buckets in (("negative", native.negative), ("positive", native.positive)):
        if not buckets:  # the spec says to leave out the fields of a sign without buckets
            continue
        spans, counts = spans_and_counts(buckets)
        if not all(_is_count(count) for count in counts):
            return None
        in_buckets += sum(counts)
        fields.append(f"{sign}_spans:[{','.join(f'{o}:{n}' for o, n in spans)}]")
        fields.append(f"{sign}_buckets:[{','.join(map(format_integer, counts))}]")
    if not native.count >= in_buckets:  # also false for a NaN count
        return None
    return ",".join(fields)


def _summary(data: SummaryData) -> str | None:
    count = data.count
    integral = isinstance(count, int) or count.is_integer()
    if not (_is_count(count) and integral and data.sum >= 0):
        return None
    quantiles: dict[float, float] = {}
    for quantile, value in data.quantiles:
        if 0 <= quantile <= 1 and not value < 0 and quantile not in quantiles:
            quantiles[quantile] = value  # NaN values stay: a quantile of no observations
    pairs = ",".join(f"{format_value(q)}:{format_value(quantiles[q])}" for q in sorted(quantiles))
    return f"{{count:{format_integer(count)},sum:{format_value(data.sum)},quantile:[{pairs}]}}"
