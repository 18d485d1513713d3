"""The protobuf exposition, decoded with the official ``metrics.proto`` (see proto_oracle)."""

from __future__ import annotations

import gzip
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytheus.collection import collect_registry
from pytheus.exposition import protobuf
from pytheus.exposition.negotiation import render_for_request
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.native import MAX_SCHEMA, MIN_SCHEMA, NativeHistogram
from pytheus.registry import CollectorRegistry
from pytheus.samples import (
    EMPTY_LABELS,
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)
from tests import proto_oracle


def decode(families: list[MetricFamily]) -> list[Any]:
    """Render, decode with the official schema, and check the bytes are canonical."""
    body = protobuf.render(families)
    decoded = proto_oracle.decode_delimited(body)
    assert proto_oracle.encode_delimited(decoded) == body  # field order, no stray bytes
    return decoded


def labels_of(metric: Any) -> dict[str, str]:
    return {pair.name: pair.value for pair in metric.label}


def test_the_official_schema_has_native_histograms() -> None:
    pb2 = proto_oracle.metrics_pb2()
    assert proto_oracle.has_native_fields(pb2)


def test_varint_and_zigzag() -> None:
    assert protobuf.varint(0) == b"\x00"
    assert protobuf.varint(300) == b"\xac\x02"
    assert protobuf.varint(-1) == b"\xff" * 9 + b"\x01"
    assert [protobuf.zigzag(v) for v in (0, -1, 1, -2, 2**31 - 1, -(2**31))] == [
        0, 1, 2, 3, 2**32 - 2, 2**32 - 1,
    ]  # fmt: skip


def test_every_metric_type_from_a_registry() -> None:
    pb2 = proto_oracle.metrics_pb2()
    registry = CollectorRegistry()
    Counter("orders_total", "Orders.\nAll of them.", registry=registry).inc(3)
    gauge = Gauge("temperature", "Température.", ["room"], registry=registry)
    gauge.labels(room='hall "1"\n').set(-2.5)
    summary = Summary("work_seconds", "Work.", registry=registry, quantiles=[0.5, 0.9])
    for value in (1.0, 2.0, 3.0):
        summary.observe(value)
    Summary("plain_seconds", "Plain.", registry=registry).observe(4.0)
    Info("build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("state", "State.", registry=registry, states=["a", "b"]).state("b")
    classic = Histogram("classic_seconds", "Classic.", registry=registry, buckets=[1, 2])
    for value in (0.5, 1.5, 7.0):
        classic.observe(value)
    native = Histogram("native_seconds", "Native.", registry=registry, native=True)
    for value in (0.5, 1.5, -7.0, 0.0):
        native.observe(value)

    model = collect_registry(registry)
    families = {f.name: f for f in decode(model)}
    [(_, work_data)] = next(f for f in model if f.name == "work_seconds").series
    assert isinstance(work_data, SummaryData)
    assert sorted(families) == [
        "build_info", "classic_seconds", "native_seconds", "orders_total", "plain_seconds",
        "state", "temperature", "work_seconds",
    ]  # fmt: skip

    orders = families["orders_total"]
    assert (orders.help, orders.type) == ("Orders.\nAll of them.", pb2.COUNTER)
    assert orders.metric[0].counter.value == 3.0

    temperature = families["temperature"]
    assert temperature.type == pb2.GAUGE and temperature.help == "Température."
    [metric] = temperature.metric
    assert labels_of(metric) == {"room": 'hall "1"\n'}
    assert metric.gauge.value == -2.5

    work = families["work_seconds"].metric[0].summary
    assert families["work_seconds"].type == pb2.SUMMARY
    assert (work.sample_count, work.sample_sum) == (3, 6.0)
    assert [(q.quantile, q.value) for q in work.quantile] == list(work_data.quantiles)
    assert [q.quantile for q in work.quantile] == [0.5, 0.9]
    plain = families["plain_seconds"].metric[0].summary
    assert (plain.sample_count, plain.sample_sum, len(plain.quantile)) == (1, 4.0, 0)

    build = families["build_info"]
    assert build.type == pb2.GAUGE
    assert labels_of(build.metric[0]) == {"version": "1.2"}
    assert build.metric[0].gauge.value == 1.0

    state = families["state"]
    assert state.type == pb2.GAUGE
    assert {labels_of(m)["state"]: m.gauge.value for m in state.metric} == {"a": 0.0, "b": 1.0}

    histogram = families["classic_seconds"].metric[0].histogram
    assert families["classic_seconds"].type == pb2.HISTOGRAM
    assert (histogram.sample_count, histogram.sample_sum) == (3, 9.0)
    assert [(b.upper_bound, b.cumulative_count) for b in histogram.bucket] == [(1, 1), (2, 2)]
    assert not histogram.HasField("schema")
    assert not histogram.positive_span

    histogram = families["native_seconds"].metric[0].histogram
    assert (histogram.sample_count, histogram.sample_sum) == (4, -5.0)
    assert not histogram.bucket
    assert (histogram.schema, histogram.zero_threshold, histogram.zero_count) == (
        3, 2.0**-128, 1,
    )  # fmt: skip
    expected = NativeHistogram(3, 2.0**-128)
    for value in (0.5, 1.5, -7.0, 0.0):
        expected.observe(value)
    positive = proto_oracle.native_buckets(histogram.positive_span, histogram.positive_delta)
    negative = proto_oracle.native_buckets(histogram.negative_span, histogram.negative_delta)
    assert (positive, negative) == (expected.positive, expected.negative)


def test_classic_and_native_together() -> None:
    registry = CollectorRegistry()
    h = Histogram("both", "Both.", registry=registry, buckets=[0.1, 1], native=True)
    for value in (0.05, 0.5, 5.0):
        h.observe(value)
    [family] = decode(collect_registry(registry))
    histogram = family.metric[0].histogram
    assert [(b.upper_bound, b.cumulative_count) for b in histogram.bucket] == [(0.1, 1), (1, 2)]
    assert histogram.schema == 3 and histogram.sample_count == 3
    positive = proto_oracle.native_buckets(histogram.positive_span, histogram.positive_delta)
    assert sum(positive.values()) == 3


def test_model_edge_cases() -> None:
    """Float counts, untyped, empty native histograms, counter exemplars (not written)."""
    series_labels = LabelSet(("a",), ("x",))
    empty_native = NativeHistogram(0, 0.0)
    families = [
        MetricFamily("odd", MetricType.HISTOGRAM, "", [
            (EMPTY_LABELS, HistogramData((1.0, math.inf), [0.5, 1.0], 2.0)),
        ]),
        MetricFamily("empty_native", MetricType.HISTOGRAM, "", [
            (EMPTY_LABELS, HistogramData((math.inf,), [0], 0.0, None, empty_native)),
        ]),
        MetricFamily("raw", MetricType.UNTYPED, "Raw.", [(series_labels, 7.0)]),
        MetricFamily("seen_total", MetricType.COUNTER, "", [
            (EMPTY_LABELS, CounterData(2.0, Exemplar({"trace_id": "abc"}, 1.0))),
        ]),
        MetricFamily("float_summary", MetricType.SUMMARY, "", [
            (EMPTY_LABELS, SummaryData(2.5, 1.0)),
        ]),
        MetricFamily("nothing", MetricType.GAUGE, ""),
    ]  # fmt: skip
    pb2 = proto_oracle.metrics_pb2()
    odd, empty, raw, seen, summary, nothing = decode(families)

    histogram = odd.metric[0].histogram
    assert not histogram.HasField("sample_count")
    assert histogram.sample_count_float == 1.5
    [bucket] = histogram.bucket
    assert bucket.cumulative_count_float == 0.5 and not bucket.HasField("cumulative_count")

    histogram = empty.metric[0].histogram
    assert histogram.schema == 0 and histogram.zero_threshold == 0.0
    assert [(s.offset, s.length) for s in histogram.positive_span] == [(0, 0)]  # marks native

    assert raw.type == pb2.UNTYPED and raw.metric[0].untyped.value == 7.0
    assert labels_of(raw.metric[0]) == {"a": "x"}
    assert seen.metric[0].counter.value == 2.0
    assert not seen.metric[0].counter.HasField("exemplar")
    assert not summary.metric[0].summary.HasField("sample_count")
    assert (nothing.name, nothing.HasField("help"), len(nothing.metric)) == ("nothing", False, 0)


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(finite, st.sampled_from([0.0, 1.0, -1.0, 2.0**-130, math.inf, -math.inf])),
        max_size=100,
    ),
    st.integers(MIN_SCHEMA, MAX_SCHEMA),
    st.sampled_from([0.0, 2.0**-128, 1e-3, 1.0]),
)
def test_decoding_gives_back_what_was_observed(
    values: list[float], schema: int, zero_threshold: float
) -> None:
    observed = NativeHistogram(schema, zero_threshold)
    for value in values:
        observed.observe(value)
    data = HistogramData((math.inf,), [len(values)], observed.sum, None, observed.copy())
    [family] = decode([MetricFamily("h", MetricType.HISTOGRAM, "", [(EMPTY_LABELS, data)])])
    histogram = family.metric[0].histogram
    assert histogram.sample_count == len(values) == observed.count
    assert histogram.sample_sum == observed.sum or math.isnan(observed.sum)
    assert histogram.schema == schema
    assert histogram.zero_threshold == zero_threshold
    assert histogram.zero_count == observed.zero_count
    positive = proto_oracle.native_buckets(histogram.positive_span, histogram.positive_delta)
    negative = proto_oracle.native_buckets(histogram.negative_span, histogram.negative_delta)
    assert positive == observed.positive
    assert negative == observed.negative
    assert sum(positive.values()) + sum(negative.values()) + histogram.zero_count == len(values)


PROMETHEUS_PROTOBUF_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
    "q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,"
    "application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "is_protobuf"),
    [
        (PROMETHEUS_PROTOBUF_FIRST, True),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=delimited", True),
        ("Application/Vnd.Google.Protobuf; Proto=io.prometheus.client.MetricFamily; "
         "Encoding=Delimited", True),
        ("application/vnd.google.protobuf", False),  # proto and encoding are required
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily", False),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
         "encoding=text", False),
        ("application/vnd.google.protobuf;proto=other.Message;encoding=delimited", False),
        ("application/*", False),  # ties keep the earlier text formats
        ("*/*", False),
    ],
)  # fmt: skip
def test_negotiation(accept: str, is_protobuf: bool) -> None:
    registry = CollectorRegistry()
    Counter("hits_total", "Hits.", registry=registry).inc()
    body, content_type, encoding = render_for_request(registry, accept, "gzip")
    assert encoding == "gzip"
    assert (content_type == protobuf.CONTENT_TYPE) is is_protobuf
    if is_protobuf:
        assert content_type == proto_oracle.CONTENT_TYPE
        [family] = proto_oracle.decode_delimited(gzip.decompress(body))
        assert (family.name, family.metric[0].counter.value) == ("hits_total", 1.0)
