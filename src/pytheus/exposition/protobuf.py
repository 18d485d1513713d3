"""The Prometheus protobuf format: length-delimited ``io.prometheus.client.MetricFamily``.

Prometheus asks for this format first when its native histograms are on, since the text formats
cannot carry them. The messages are written by hand (varints and length-delimited fields, in
field-number order, repeated scalars unpacked, as the official serializers write proto2), so
pytheus needs no protobuf package at run time. The schema is ``metrics.proto`` of
``prometheus/client_model``; the tests decode this output with that very file.

How families map:

- counter, gauge, summary (with quantiles), untyped: their own message types; a counter is named
  with ``_total`` (``Counter("orders")`` is ``orders_total``), as in every format;
- info (named ``<name>_info``) and stateset: gauges, as in the Prometheus text format;
- histogram: the classic buckets with finite bounds (``+Inf`` is implied by the count, and is
  written only to carry an exemplar, as client_golang does), and the native part when there is
  one: schema, zero bucket, spans and delta-encoded counts.

Exemplars are written where the schema has room for them: a counter's on the counter, a classic
histogram's on their buckets and, for a native histogram, all of them (oldest first) in the
histogram's ``exemplars``, which is where Prometheus reads a native histogram's exemplars. One
that escaping makes longer than the 128 characters Prometheus keeps is left out, as in
OpenMetrics.

Not written: ``created_timestamp`` (pytheus keeps no creation time) and units (the schema has
no unit field). Counts that are not integers use the ``*_float`` fields.

Names that are not classic are escaped by the scheme the scraper asked for, or written as they
are under ``allow-utf-8`` (see :mod:`pytheus.exposition.escaping`); classic names never change.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

from pytheus.exposition.escaping import (
    DEFAULT_SCHEME,
    exemplar_pairs,
    raw_label_name,
    sample_name,
)
from pytheus.native import NativeHistogram, spans_and_deltas
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)

CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

# io.prometheus.client.MetricType
_COUNTER, _GAUGE, _SUMMARY, _UNTYPED, _HISTOGRAM = 0, 1, 2, 3, 4
_FAMILY_TYPES = {
    MetricType.COUNTER: _COUNTER,
    MetricType.GAUGE: _GAUGE,
    MetricType.SUMMARY: _SUMMARY,
    MetricType.UNTYPED: _UNTYPED,
    MetricType.HISTOGRAM: _HISTOGRAM,
    MetricType.INFO: _GAUGE,
    MetricType.STATESET: _GAUGE,
}
# The field of Metric that holds a scalar of each family type.
_SCALAR_FIELDS = {_COUNTER: 3, _GAUGE: 2, _UNTYPED: 5}

_VARINT, _FIXED64, _LENGTH = 0, 1, 2
_pack_double = struct.Struct("<d").pack


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(_encode_varint(value) for value in range(1 << 14))
"""The varints of 0 .. 2**14 - 1 (one or two bytes): field keys, lengths, most counts."""


def varint(value: int) -> bytes:
    """An unsigned varint; a negative ``value`` is written as its 64-bit two's complement."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64
    return _encode_varint(value)


def zigzag(value: int) -> int:
    """The zigzag mapping of sint32/sint64: 0, -1, 1, -2 ... become 0, 1, 2, 3 ..."""
    return (value << 1) ^ (value >> 63)


def _key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def _double(number: int, value: float) -> bytes:
    return _key(number, _FIXED64) + _pack_double(value)


def _uint(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + varint(value)


def _sint(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + varint(zigzag(value))


def _bytes(number: int, value: bytes) -> bytes:
    return _key(number, _LENGTH) + varint(len(value)) + value


def _string(number: int, value: str) -> bytes:
    return _bytes(number, value.encode("utf-8"))


def _as_uint(value: float) -> int | None:
    """``value`` as a uint64 when it is a non-negative integer, else None."""
    if isinstance(value, int):
        return value if 0 <= value < 2**64 else None
    if 0 <= value < 2**64 and float(value).is_integer():
        return int(value)
    return None


def _timestamp(number: int, seconds: float) -> bytes:
    """A ``google.protobuf.Timestamp`` (proto3: zero fields are left out)."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return _bytes(number, (_uint(1, whole) if whole else b"") + (_uint(2, nanos) if nanos else b""))


def _exemplar(number: int, exemplar: Exemplar | None, escaping: str) -> bytes:
    pairs = None if exemplar is None else exemplar_pairs(exemplar.labels, escaping)
    if exemplar is None or pairs is None:
        return b""
    parts = [_bytes(1, _string(1, name) + _string(2, value)) for name, value in pairs]
    parts.append(_double(2, exemplar.value))
    if exemplar.timestamp is not None and math.isfinite(exemplar.timestamp):
        parts.append(_timestamp(3, exemplar.timestamp))
    return _bytes(number, b"".join(parts))


def _labels(labels: LabelSet, escaping: str = DEFAULT_SCHEME) -> bytes:
    key = "protobuf" if escaping == DEFAULT_SCHEME else f"protobuf:{escaping}"
    cached = labels.rendered.get(key)
    if cached is None:
        cached = labels.rendered[key] = b"".join(
            _bytes(1, _string(1, raw_label_name(name, escaping)) + _string(2, value))
            for name, value in zip(labels.names, labels.values)
        )
    assert isinstance(cached, bytes)
    return cached


def _summary(data: SummaryData) -> bytes:
    count = _as_uint(data.count)  # the schema has no float count for summaries
    parts = [b"" if count is None else _uint(1, count), _double(2, data.sum)]
    for quantile, value in data.quantiles:
        parts.append(_bytes(3, _double(1, quantile) + _double(2, value)))
    return b"".join(parts)


def _spans(number: int, spans: list[tuple[int, int]]) -> bytes:
    return b"".join(_bytes(number, _sint(1, offset) + _uint(2, length)) for offset, length in spans)


def _histogram(data: HistogramData, escaping: str) -> bytes:
    native = data.native
    count = native.count if native is not None else data.count
    integral = _as_uint(count)
    parts = [b"" if integral is None else _uint(1, integral), _double(2, data.sum)]
    exemplars = data.exemplars or ()
    cumulative: float = 0
    for at, (bound, bucket_count) in enumerate(zip(data.upper_bounds, data.bucket_counts)):
        cumulative += bucket_count
        exemplar = exemplars[at] if at < len(exemplars) else None
        if bound == math.inf and (exemplar is None or native is not None):
            continue  # implied by the count; a native histogram's exemplars go below
        as_uint = _as_uint(cumulative)
        if as_uint is None:
            bucket = _double(2, bound) + _exemplar(3, exemplar, escaping) + _double(4, cumulative)
        else:
            bucket = _uint(1, as_uint) + _double(2, bound) + _exemplar(3, exemplar, escaping)
        parts.append(_bytes(3, bucket))
    if integral is None:
        parts.append(_double(4, count))
    if native is not None:
        parts.append(_native(native))
        kept = sorted((e for e in exemplars if e is not None), key=_exemplar_time)
        parts.extend(_exemplar(16, exemplar, escaping) for exemplar in kept)
    return b"".join(parts)


def _exemplar_time(exemplar: Exemplar) -> float:
    return -math.inf if exemplar.timestamp is None else exemplar.timestamp


def _native(native: NativeHistogram) -> bytes:
    parts = [
        _sint(5, native.schema),
        _double(6, native.zero_threshold),
        _uint(7, native.zero_count),
    ]
    negative_spans, negative_deltas = spans_and_deltas(native.negative)
    positive_spans, positive_deltas = spans_and_deltas(native.positive)
    if (
        native.zero_threshold == 0
        and native.zero_count == 0
        and not positive_spans
        and not negative_spans
    ):
        positive_spans = [(0, 0)]  # an empty span marks the histogram native, as in client_golang
    parts.append(_spans(9, negative_spans))
    parts.append(_sints(10, negative_deltas))
    parts.append(_spans(12, positive_spans))
    parts.append(_sints(13, positive_deltas))
    return b"".join(parts)


def _sints(number: int, values: list[int]) -> bytes:
    """``values`` as a repeated (unpacked) sint64 field: the bulk of a native histogram."""
    key = _key(number, _VARINT)
    small = _SMALL_VARINTS
    return b"".join([
        key + (small[z] if (z := (value << 1) ^ (value >> 63)) < 16384 else varint(z))
        for value in values
    ])  # fmt: skip


def _metric(
    family_type: int, labels: LabelSet, value: object, escaping: str = DEFAULT_SCHEME
) -> bytes:
    body = _labels(labels, escaping)
    if isinstance(value, HistogramData):
        return body + _bytes(7, _histogram(value, escaping))
    if isinstance(value, SummaryData):
        return body + _bytes(4, _summary(value))
    if isinstance(value, CounterData):
        scalar = _double(1, value.value)
        if family_type == _COUNTER:
            scalar += _exemplar(2, value.exemplar, escaping)
        return body + _bytes(_SCALAR_FIELDS.get(family_type, 2), scalar)
    assert isinstance(value, (int, float))
    return body + _bytes(_SCALAR_FIELDS.get(family_type, 2), _double(1, value))


def family_message(family: MetricFamily, escaping: str = DEFAULT_SCHEME) -> bytes:
    """One ``MetricFamily`` message (not length-prefixed); names written as ``escaping`` says."""
    family_type = _FAMILY_TYPES[family.type]
    parts = [_string(1, sample_name(family, escaping))]
    if family.help:
        parts.append(_string(2, family.help))
    parts.append(_uint(3, family_type))
    for labels, value in family.series:
        parts.append(_bytes(4, _metric(family_type, labels, value, escaping)))
    return b"".join(parts)


def render(families: Iterable[MetricFamily], escaping: str = DEFAULT_SCHEME) -> bytes:
    """``families`` as length-delimited ``MetricFamily`` messages.

    Example::

        from pytheus.collection import collect_registry
        from pytheus.exposition import protobuf

        body = protobuf.render(collect_registry(registry))
    """
    out: list[bytes] = []
    for family in families:
        message = family_message(family, escaping)
        out.append(varint(len(message)))
        out.append(message)
    return b"".join(out)
