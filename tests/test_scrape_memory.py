"""What a scrape costs in memory on the default backend (issue 17), counted with tracemalloc
(deterministic: no timing here).

- While it runs: a scrape reads each value as the formatter reaches it and joins the body in one
  growing buffer, so its extra peak is a small multiple of the body, not of the series (the
  issue's target: at most twice the body, gzip included).
- After it: what a scrape keeps per series is its memoised label text (a string), not a dict
  per series.
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.collection import collect_registry
from pytheus.exposition.negotiation import render_for_request
from pytheus.metrics import Counter, CustomCollector, Histogram
from pytheus.registry import CollectorRegistry
from pytheus.samples import (
    EMPTY_LABELS,
    HistogramData,
    LiveSeries,
    MetricFamily,
    MetricType,
    Series,
)
from tests.conftest import backend_restored

SERIES = 20_000


@pytest.fixture
def big_registry() -> Iterator[CollectorRegistry]:
    with backend_restored():
        load_backend(SingleProcessBackend)
        registry = CollectorRegistry()
        counter = Counter("big_total", "Big.", required_labels=["a", "b"], registry=registry)
        histogram = Histogram("big_seconds", "Big.", required_labels=["a"], registry=registry)
        for i in range(SERIES):
            counter.labels(f"a{i}", f"b{i}").inc()
        for i in range(SERIES // 20):
            histogram.labels(f"a{i}").observe(0.3)
        yield registry


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text; version=2.0.0",
    ],
)
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_scrape_holds_little_more_than_its_body(
    big_registry: CollectorRegistry, accept: str | None, encoding: str | None
) -> None:
    render_for_request(big_registry, accept, None)  # the memoised label texts are made here
    plain, _, _ = render_for_request(big_registry, accept, None)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _body, _, used = render_for_request(big_registry, accept, encoding)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert used == encoding and len(plain) > 20 * SERIES
    # holding every series' reading, or a string per line, would be several times the body
    assert peak < 2 * len(plain), (peak, len(plain))


def test_a_scrape_keeps_a_string_per_series_not_a_dict(big_registry: CollectorRegistry) -> None:
    render_for_request(big_registry, None, None)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        render_for_request(big_registry, "application/openmetrics-text; version=1.0.0", None)
        render_for_request(big_registry, None, None)  # the same label texts, made once
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert kept < 1_000, kept  # already made by the first scrape: nothing per series

    registry = CollectorRegistry()
    counter = Counter("fresh_total", "Fresh.", required_labels=["a", "b"], registry=registry)
    for i in range(SERIES):
        counter.labels(f"a{i}", f"b{i}").inc()
    render_for_request(registry, None, None)  # imports and first-use caches
    counter.labels("x", "y").inc()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(SERIES):  # new series, scraped for the first time below
            counter.labels(f"c{i}", f"d{i}").inc()
        gc.collect()
        created = tracemalloc.get_traced_memory()[0]
        render_for_request(registry, None, None)
        gc.collect()
        per_series = (tracemalloc.get_traced_memory()[0] - created) / SERIES
    finally:
        tracemalloc.stop()
    assert base < created
    # the label text '{a="c1",b="d1"}' as a string (about 70 bytes); a dict each would add 184
    assert per_series < 100, per_series


def test_live_series_read_when_walked_and_keep_what_they_were_asked_for() -> None:
    reads: list[int] = []
    value = [1.0]

    def read() -> Iterator[Series]:
        reads.append(1)
        yield EMPTY_LABELS, value[0]

    series = LiveSeries(read)
    assert reads == []
    assert [item for item in series] == [(EMPTY_LABELS, 1.0)]  # a walk: list() would ask len()
    value[0] = 2.0
    assert [item for item in series] == [(EMPTY_LABELS, 2.0)]  # each walk reads again
    assert len(reads) == 2
    assert len(series) == 1 and series[0] == (EMPTY_LABELS, 2.0)
    value[0] = 3.0
    assert series == [(EMPTY_LABELS, 2.0)] and list(series) == [(EMPTY_LABELS, 2.0)]
    assert len(reads) == 3  # looked at as a list: read once and kept


class _BoundsCollector(CustomCollector):
    """Histograms made by hand, with bounds as a list and with 0.0 and -0.0 as bounds."""

    def collect(self) -> Iterator[MetricFamily]:
        yield MetricFamily(
            "listed_seconds", MetricType.HISTOGRAM, "Listed.",
            [(EMPTY_LABELS, HistogramData([1.0, math.inf], [1, 0], 0.5))],  # type: ignore[arg-type]
        )  # fmt: skip
        for name, zero in (("negative_zero_seconds", -0.0), ("zero_seconds", 0.0)):
            data = HistogramData((zero, math.inf), [0, 1], 2.0)
            yield MetricFamily(name, MetricType.HISTOGRAM, "Z.", [(EMPTY_LABELS, data)])


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_hand_made_histogram_bounds_keep_their_spelling(accept: str | None) -> None:
    registry = CollectorRegistry()
    registry.register(_BoundsCollector())
    for _ in range(2):  # the second scrape uses what the first memoised
        body = render_for_request(registry, accept, None)[0].decode()
        parse = openmetrics_families if accept else text_string_to_metric_families
        found = {
            (sample.name, sample.labels.get("le"))
            for family in parse(body)
            for sample in family.samples
        }
        assert ("listed_seconds_bucket", "1.0") in found, body
        assert ("negative_zero_seconds_bucket", "-0.0") in found, body
        assert ("zero_seconds_bucket", "0.0") in found, body


def test_collect_is_a_snapshot_on_the_memory_backend() -> None:
    with backend_restored():
        load_backend(SingleProcessBackend)
        registry = CollectorRegistry()
        jobs = Counter("jobs_total", "Jobs.", registry=registry)
        jobs.inc()
        [family] = collect_registry(registry)
        [collected] = jobs.collect()
        jobs.inc(5)
        assert [v for _, v in family.series] == [1.0]
        assert [v for _, v in collected.series] == [1.0]


def test_a_series_removed_during_a_scrape_is_not_brought_back() -> None:
    with backend_restored():
        load_backend(SingleProcessBackend)
        registry = CollectorRegistry()
        counter = Counter("rotated_total", "R.", required_labels=["t"], registry=registry)
        for name in ("a", "b", "c"):
            counter.labels(name).inc()
        load_backend(SingleProcessBackend)  # every value binds again at its next use
        [family] = collect_registry(registry, live=True)
        walk = iter(family.series)
        next(walk)  # the scrape has begun: the list of series is taken
        counter.remove("c")
        rest = [labels.values for labels, _ in walk]
        assert ("c",) not in rest
        assert [labels.values for labels, _ in collect_registry(registry)[0].series] == [
            ("a",),
            ("b",),
        ]
