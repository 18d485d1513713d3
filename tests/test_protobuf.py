"""The protobuf exposition, decoded with the official ``metrics.proto`` (see proto_oracle)."""

from __future__ import annotations

import gzip
import math
import time
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
from tests.backends_under_test import PER_VALUE


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

    families = {f.name: f for f in decode(collect_registry(registry))}
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
    assert [q.quantile for q in work.quantile] == [0.5, 0.9]
    for quantile in work.quantile:  # x[floor(q * (n - 1))] of the sorted 1, 2, 3, within 1 %
        exact = [1.0, 2.0, 3.0][math.floor(quantile.quantile * 2)]
        assert quantile.value == pytest.approx(exact, rel=0.01)
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
    """Float counts, untyped, empty native histograms, an exemplar without a timestamp."""
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
    exemplar = seen.metric[0].counter.exemplar
    assert labels_of(exemplar) == {"trace_id": "abc"} and exemplar.value == 1.0
    assert not exemplar.HasField("timestamp")
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


# --- exemplars ----------------------------------------------------------------------------------


def seconds_of(timestamp: Any) -> float:
    return float(timestamp.seconds + timestamp.nanos / 1e9)


def test_counter_and_bucket_exemplars(backend: str, registry: CollectorRegistry) -> None:
    """On every backend: what was recorded with an exemplar carries it, decoded by the schema.

    A per-value backend keeps no exemplars (documented): the counts are all there, and no
    exemplar is made up.
    """
    keeps_exemplars = backend not in PER_VALUE
    served = Counter("served_total", "Served.", registry=registry, required_labels=["path"])
    latency = Histogram("latency_seconds", "Latency.", registry=registry, buckets=[0.1, 1])
    served.labels({"path": "/a"}).inc(2, exemplar={"trace_id": "abc"})
    served.labels({"path": "/b"}).inc()
    latency.observe(0.05, exemplar={"trace_id": "fast"})
    latency.observe(0.5)
    latency.observe(7.0, exemplar={"trace_id": "slow", "span_id": "s1"})
    by_name = {family.name: family for family in decode(collect_registry(registry))}
    served_family, latency_family = by_name["served_total"], by_name["latency_seconds"]

    by_path = {labels_of(m)["path"]: m.counter for m in served_family.metric}
    assert (by_path["/a"].value, by_path["/b"].value) == (2.0, 1.0)
    assert not by_path["/b"].HasField("exemplar")
    histogram = latency_family.metric[0].histogram
    assert histogram.sample_count == 3
    buckets = [
        (bucket.upper_bound, bucket.cumulative_count, bucket.HasField("exemplar"))
        for bucket in histogram.bucket
    ]
    if not keeps_exemplars:
        assert not by_path["/a"].HasField("exemplar")
        assert buckets == [(0.1, 1, False), (1.0, 2, False)]
        return
    assert labels_of(by_path["/a"].exemplar) == {"trace_id": "abc"}
    assert by_path["/a"].exemplar.value == 2.0
    assert abs(seconds_of(by_path["/a"].exemplar.timestamp) - time.time()) < 600
    # +Inf is written only because it carries an exemplar, as client_golang does
    assert buckets == [(0.1, 1, True), (1.0, 2, False), (math.inf, 3, True)]
    assert labels_of(histogram.bucket[0].exemplar) == {"trace_id": "fast"}
    assert histogram.bucket[0].exemplar.value == 0.05
    assert labels_of(histogram.bucket[2].exemplar) == {"trace_id": "slow", "span_id": "s1"}


def test_native_histogram_exemplars_are_the_histograms() -> None:
    """Prometheus reads a native histogram's exemplars from ``Histogram.exemplars``."""
    pb2 = proto_oracle.metrics_pb2()
    proto_oracle.require_field(pb2.Histogram, "exemplars")
    registry = CollectorRegistry()
    native = Histogram("native_seconds", "Native.", registry=registry, native=True)
    both = Histogram("both_seconds", "Both.", registry=registry, buckets=[1], native=True)
    native.observe(0.25, exemplar={"trace_id": "n1"})
    both.observe(0.5, exemplar={"trace_id": "b1"})
    both.observe(3.0, exemplar={"trace_id": "b2"})
    by_name = {family.name: family for family in decode(collect_registry(registry))}
    native_family, both_family = by_name["native_seconds"], by_name["both_seconds"]

    histogram = native_family.metric[0].histogram
    assert len(histogram.bucket) == 0  # native only: no classic bucket for the exemplar
    assert [labels_of(e) for e in histogram.exemplars] == [{"trace_id": "n1"}]
    assert histogram.exemplars[0].value == 0.25
    assert histogram.exemplars[0].HasField("timestamp")  # the schema requires it for natives

    histogram = both_family.metric[0].histogram
    assert [labels_of(e)["trace_id"] for e in histogram.exemplars] == ["b1", "b2"]
    times = [seconds_of(e.timestamp) for e in histogram.exemplars]
    assert times == sorted(times)
    assert [(b.upper_bound, b.HasField("exemplar")) for b in histogram.bucket] == [(1.0, True)]


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
        st.text(max_size=10),
        max_size=3,
    ),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.one_of(st.none(), st.floats(min_value=-1e10, max_value=1e10, allow_nan=False)),
)
def test_exemplar_round_trip(labels: dict[str, str], value: float, stamp: float | None) -> None:
    data = CounterData(1.0, Exemplar(labels, value, stamp))
    [family] = decode([MetricFamily("c_total", MetricType.COUNTER, "", [(EMPTY_LABELS, data)])])
    exemplar = family.metric[0].counter.exemplar
    assert labels_of(exemplar) == labels and exemplar.value == value
    if stamp is None:
        assert not exemplar.HasField("timestamp")
    else:
        assert 0 <= exemplar.timestamp.nanos < 10**9
        assert abs(seconds_of(exemplar.timestamp) - stamp) <= 1e-6 * max(1.0, abs(stamp))
