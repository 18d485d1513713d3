"""Behaviours that mutation testing found no test pinning (see docs/design.md, mutation testing).

Each test names what it pins; a change of that behaviour fails it. The memory backend, read back
through prometheus_client's parsers or the neutral sample model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.collection import collect_registry
from pytheus.exceptions import (
    BucketException,
    LabelValidationException,
    MetricDefinitionException,
)
from pytheus.exposition import generate_metrics, render_for_request
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.native import NativeHistogram
from pytheus.registry import CollectorRegistry
from pytheus.samples import HistogramData
from tests.helpers import samples, value


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    load_backend(SingleProcessBackend, {})
    yield CollectorRegistry()


def histogram_data(registry: CollectorRegistry, name: str) -> HistogramData:
    [family] = [f for f in collect_registry(registry) if f.name == name]
    [(_, data)] = family.series
    assert isinstance(data, HistogramData)
    return data


def native(registry: CollectorRegistry, name: str) -> NativeHistogram:
    found = histogram_data(registry, name).native
    assert found is not None
    return found


# --- native histograms (backends/memory.py) -------------------------------------------------------


def test_nan_goes_to_the_inf_bucket_of_a_native_histogram(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=[1, 2], native=True, registry=registry)
    histogram.observe(math.nan)
    assert histogram_data(registry, "h").bucket_counts == [0, 0, 1]
    assert native(registry, "h").count == 1 and native(registry, "h").zero_count == 0


def test_values_at_the_zero_threshold_are_in_the_zero_bucket(registry: CollectorRegistry) -> None:
    threshold = 0.5
    histogram = Histogram(
        "h", "H.", native=True, native_zero_threshold=threshold, registry=registry
    )
    for observed in (threshold, -threshold, 0.0, 0.0):
        histogram.observe(observed)
    found = native(registry, "h")
    assert found.zero_count == 4  # counted each time, not set to one
    assert found.positive == {} and found.negative == {}
    histogram.observe(math.nextafter(threshold, 1.0))
    assert sum(native(registry, "h").positive.values()) == 1


def test_the_bucket_limit_holds_with_negative_buckets_and_on_the_slow_path(
    registry: CollectorRegistry,
) -> None:
    histogram = Histogram("h", "H.", native=True, native_max_buckets=6, registry=registry)
    # negatives first, then positives on the fast path, then one beyond its table (2 ** 70)
    for observed in (-1.0, -3.0, 1.0, 3.0, 9.0, 27.0, 81.0, 2.0**70):
        histogram.observe(observed)
        found = native(registry, "h")
        assert len(found.positive) + len(found.negative) <= 6, found
    assert native(registry, "h").schema < 3  # lowered, not reset (native_reset_seconds=0)
    assert native(registry, "h").count == 8


def test_exactly_max_buckets_is_allowed_and_one_bucket_is_a_limit(
    registry: CollectorRegistry,
) -> None:
    histogram = Histogram("h", "H.", native=True, native_max_buckets=2, registry=registry)
    histogram.observe(1.0)
    histogram.observe(2.0)
    assert native(registry, "h").schema == 3  # two buckets: not lowered
    single = Histogram("s", "S.", native=True, native_max_buckets=1, registry=registry)
    for observed in (2.0, 3.0, 100.0):  # one bucket only at the lowest schema, (1, 65536]
        single.observe(observed)
    assert len(native(registry, "s").positive) == 1


def test_a_reset_keeps_exemplars_working(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytheus.backends.base import current_store

    store = current_store()
    now = [1000.0]
    monkeypatch.setattr(store, "clock", lambda: now[0])
    histogram = Histogram(
        "h", "H.", native=True, native_max_buckets=1, native_reset_seconds=10, registry=registry
    )
    histogram.observe(1.0, exemplar={"trace_id": "a"})
    now[0] += 60
    histogram.observe(1e300)  # a second bucket, past the reset time: starts again (slow path)
    histogram.observe(1e300, exemplar={"trace_id": "b"})
    data = histogram_data(registry, "h")
    assert data.native is not None and data.native.count == 2  # only what came since
    assert data.exemplars is not None
    assert [e.labels for e in data.exemplars if e is not None] == [{"trace_id": "b"}]


def test_native_histogram_exemplars_are_exposed(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=[1], native=True, registry=registry)
    histogram.observe(0.5, exemplar={"trace_id": "low"})
    histogram.observe(7.0, exemplar={"trace_id": "high"})
    exemplars = histogram_data(registry, "h").exemplars
    assert exemplars is not None
    assert [e.labels["trace_id"] if e else None for e in exemplars] == ["low", "high"]


def test_classic_exemplars_land_in_the_bucket_of_their_value(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=[1, 2], registry=registry)
    histogram.observe(0.1, exemplar={"at": "below the first bound"})
    histogram.observe(math.nan, exemplar={"at": "nan"})
    exemplars = histogram_data(registry, "h").exemplars
    assert exemplars is not None
    assert [e.labels["at"] if e else None for e in exemplars] == [
        "below the first bound",
        None,
        "nan",
    ]


# --- summaries ---------------------------------------------------------------------------------


def test_a_summary_with_quantiles_sums_and_keeps_its_window(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    summary = Summary(
        "s", "S.", quantiles=[0.5], max_age_seconds=600, age_buckets=5, registry=registry
    )
    for observed in (1.0, 2.0, 4.0):
        summary.observe(observed)
    assert value(registry, "s_sum") == 7.0 and value(registry, "s_count") == 3
    now[0] += 100  # well within max_age_seconds
    assert value(registry, "s", quantile="0.5") == pytest.approx(2.0, rel=0.01)
    now[0] += 2000  # past it: the window is empty
    assert math.isnan(value(registry, "s", quantile="0.5") or 0.0)


# --- the text format (exposition/text.py) ------------------------------------------------------


def test_classic_names_are_written_bare_and_exemplars_are_dropped(
    registry: CollectorRegistry,
) -> None:
    counter = Counter("orders_total", "Orders.", registry=registry)
    counter.inc(exemplar={"trace_id": "abc"})
    lines = generate_metrics(registry).splitlines()
    assert "orders_total 1.0" in lines  # not {"orders_total"} 1.0, nor a failure
    body = render_for_request(registry, "application/openmetrics-text", None)[0].decode()
    assert 'orders_total 1.0 # {trace_id="abc"} 1.0' in body


def test_counts_that_are_not_integers_are_written(registry: CollectorRegistry) -> None:
    from pytheus.exposition import text
    from pytheus.samples import EMPTY_LABELS, MetricFamily, MetricType

    family = MetricFamily(
        "h",
        MetricType.HISTOGRAM,
        "H.",
        [(EMPTY_LABELS, HistogramData((1.0, math.inf), [0.5, 2.0], 3.0))],
    )
    assert 'h_bucket{le="1.0"} 0.5' in text.render([family])
    assert "h_count 2.5" in text.render([family])


# --- metrics/ ------------------------------------------------------------------------------------


def test_views_and_removal(registry: CollectorRegistry) -> None:
    plain = Counter("plain_total", "P.", registry=registry)
    with pytest.raises(LabelValidationException, match="has no labels"):
        plain.remove()
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    child = counter.labels(a="1")
    assert child.labels() is child and child.labels({}) is child
    odd = counter.labels(a=["x"])
    odd.inc()
    assert value(registry, "c_total", a="['x']") == 1
    child.inc()
    counter.remove(a="1")
    counter.remove(a="1")  # twice: nothing to remove the second time
    child.inc(2)  # a view kept from before the removal records into a new series
    assert value(registry, "c_total", a="1") == 2


def test_exemplars_carry_the_time_they_were_recorded(registry: CollectorRegistry) -> None:
    before = time.time()
    Counter("c_total", "C.", registry=registry).inc(exemplar={"trace_id": "t"})
    body = render_for_request(registry, "application/openmetrics-text", None)[0].decode()
    [sample] = [s for f in om_parse(body) for s in f.samples]  # type: ignore[no-untyped-call]
    assert sample.exemplar is not None
    assert before <= float(sample.exemplar.timestamp) <= time.time()


def test_set_function_on_some_series_leaves_the_others(registry: CollectorRegistry) -> None:
    gauge = Gauge("g", "G.", required_labels=["pool"], registry=registry)
    gauge.labels(pool="a").set_function(lambda: 7)
    gauge.labels(pool="b").set(3)
    assert value(registry, "g", pool="a") == 7 and value(registry, "g", pool="b") == 3


def test_registering_after_recording_keeps_observations() -> None:
    load_backend(SingleProcessBackend, {})
    histogram = Histogram("late_seconds", "L.", buckets=[1], registry=None)
    summary = Summary("late_bytes", "L.", registry=None)
    histogram.observe(0.5)
    summary.observe(3.0)
    registry = CollectorRegistry()
    registry.register(histogram)
    registry.register(summary)
    assert value(registry, "late_seconds_count") == 1 and value(registry, "late_bytes_sum") == 3


def test_metrics_rebind_when_another_backend_is_loaded(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", registry=registry)
    counter.inc()
    load_backend(SingleProcessBackend, {})  # a new store: the value starts again there
    counter.inc(5)
    assert value(registry, "c_total") == 5


def test_info_and_enum_keep_help_and_default_labels(registry: CollectorRegistry) -> None:
    build = Info("build", "Build of it.", required_labels=["env"], default_labels={"env": "prod"},
                 registry=registry)  # fmt: skip
    build.info({"version": "1"})
    phase = Enum("phase", "Phase of it.", states=["a", "b"], required_labels=["env"],
                 default_labels={"env": "prod"}, registry=registry)  # fmt: skip
    phase.state("b")
    text = generate_metrics(registry)
    assert "# HELP build_info Build of it." in text and "# HELP phase Phase of it." in text
    assert value(registry, "build_info", env="prod", version="1") == 1
    assert value(registry, "phase", env="prod", phase="b") == 1
    summary = Summary("s", "S.", required_labels=["env"], default_labels={"env": "prod"},
                      registry=registry)  # fmt: skip
    summary.observe(1)
    assert value(registry, "s_count", env="prod") == 1


def test_an_enum_set_back_shows_its_last_state(registry: CollectorRegistry) -> None:
    phase = Enum("phase", "P.", states=["a", "b"], registry=registry)
    for state in ("a", "b", "a"):
        phase.state(state)
    assert value(registry, "phase", phase="a") == 1 and value(registry, "phase", phase="b") == 0


def test_a_counter_decorator_counts_only_the_exceptions_given(registry: CollectorRegistry) -> None:
    failures = Counter("failures_total", "F.", registry=registry)

    @failures(exceptions=(KeyError,))
    def fail(error: Exception) -> None:
        raise error

    def fail_too(error: Exception) -> None:
        raise error

    counted = failures(fail_too, exceptions=(KeyError,))  # type: ignore[call-overload]
    for error in (KeyError("k"), ValueError("v")):
        with pytest.raises(type(error)):
            fail(error)
        with pytest.raises(type(error)):
            counted(error)
    assert value(registry, "failures_total") == 2  # the KeyErrors only, one from each form


def test_gauge_modes_and_dec(registry: CollectorRegistry) -> None:
    with pytest.raises(MetricDefinitionException, match="not one of"):
        Gauge("bad", "B.", multiprocess_mode="bogus", registry=registry)
    gauge = Gauge("g", "G.", multiprocess_mode="livesum", registry=registry)
    gauge.set(5)
    gauge.dec()
    assert value(registry, "g") == 4


def test_native_histogram_options_at_their_edges(registry: CollectorRegistry) -> None:
    Histogram("unlimited", "U.", native=True, native_max_buckets=0, registry=registry)
    Histogram("exact_zero", "Z.", native=True, native_zero_threshold=0, registry=registry)
    for option in (
        {"native_zero_threshold": math.nan},
        {"native_reset_seconds": math.inf},
        {"native_max_buckets": -1},
    ):
        with pytest.raises(BucketException):
            Histogram("h", "H.", native=True, registry=CollectorRegistry(), **option)


def test_definitions_refused(registry: CollectorRegistry) -> None:
    with pytest.raises(MetricDefinitionException, match="distinct"):
        Enum("e", "E.", states=["a", "a"], registry=registry)
    with pytest.raises(LabelValidationException, match="reserves"):
        Info("i", "I.", registry=registry).info({"__reserved": "x"})
    with pytest.raises(MetricDefinitionException, match="age_buckets"):
        Summary("s", "S.", quantiles=[0.5], age_buckets=0, registry=registry)
    assert samples(registry) == {}


def test_the_last_call_wins_when_the_clock_stands_still(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)  # two calls, one clock reading
    phase = Enum("phase", "P.", states=["a", "b", "c"], registry=registry)
    for state in ("c", "b"):
        phase.state(state)
    assert value(registry, "phase", phase="b") == 1 and value(registry, "phase", phase="c") == 0


def test_gauges_differing_only_in_mode_are_two_definitions(registry: CollectorRegistry) -> None:
    from pytheus.exceptions import DuplicateMetricException

    Gauge("workers", "W.", multiprocess_mode="livesum", registry=registry)
    with pytest.raises(DuplicateMetricException):
        Gauge("workers", "W.", multiprocess_mode="max", registry=registry)


def test_summary_window_defaults_and_age_buckets(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults are prometheus_client's, 600 s in 5 age buckets of 120 s aligned to the
    clock: an observation leaves with its bucket, 600 s after the bucket began. With one age
    bucket, the bucket is the whole 600 s."""
    start = 1_200_000.0  # a multiple of 600 (and of 120)
    now = [start + 121]  # in the second 120 s bucket, and in the first 600 s one
    monkeypatch.setattr(time, "time", lambda: now[0])
    default = Summary("d", "D.", quantiles=[0.5], registry=registry)
    single = Summary("o", "O.", quantiles=[0.5], age_buckets=1, registry=registry)
    default.observe(3.0)
    single.observe(3.0)

    def median(name: str) -> float:
        return value(registry, name, quantile="0.5") or 0.0

    now[0] = start + 650
    assert median("d") == pytest.approx(3.0, rel=0.01)
    assert math.isnan(median("o"))  # its bucket began at the start: gone at start + 600
    now[0] = start + 710
    assert median("d") == pytest.approx(3.0, rel=0.01)  # its bucket began at start + 120
    now[0] = start + 721
    assert math.isnan(median("d"))


@pytest.mark.usefixtures("utf8")
def test_utf8_histogram_and_summary_lines_in_the_text_format(registry: CollectorRegistry) -> None:
    """Written by hand from the text format's grammar (1.0.0 quotes names inside the braces);
    rendered under one escaping scheme, then another, so that nothing memoised for the first
    leaks into the second."""
    histogram = Histogram(
        "req.duration", "D.", required_labels=["http.method"], buckets=[1], registry=registry
    )
    histogram.labels(**{"http.method": "GET"}).observe(0.5)
    summary = Summary(
        "req.size", "S.", required_labels=["http.method"], quantiles=[0.5], registry=registry
    )
    summary.labels(**{"http.method": "GET"}).observe(2)

    def lines(accept: str) -> list[str]:
        body = render_for_request(registry, accept, None)[0].decode()
        return [line for line in body.splitlines() if not line.startswith("#")]

    quoted = lines("text/plain;version=1.0.0;escaping=allow-utf-8")
    assert quoted[:4] == [
        '{"req.duration_bucket","http.method"="GET",le="1.0"} 1',
        '{"req.duration_bucket","http.method"="GET",le="+Inf"} 1',
        '{"req.duration_sum","http.method"="GET"} 0.5',
        '{"req.duration_count","http.method"="GET"} 1',
    ]
    assert quoted[4].startswith('{"req.size","http.method"="GET",quantile="0.5"} 1.99')
    assert quoted[5:] == ['{"req.size_sum","http.method"="GET"} 2.0',
                          '{"req.size_count","http.method"="GET"} 1']  # fmt: skip
    escaped = lines("text/plain;version=0.0.4;escaping=values")
    assert escaped[:4] == [
        'U__req_2e_duration_bucket{U__http_2e_method="GET",le="1.0"} 1',
        'U__req_2e_duration_bucket{U__http_2e_method="GET",le="+Inf"} 1',
        'U__req_2e_duration_sum{U__http_2e_method="GET"} 0.5',
        'U__req_2e_duration_count{U__http_2e_method="GET"} 1',
    ]
    assert escaped[4].startswith('U__req_2e_size{U__http_2e_method="GET",quantile="0.5"} 1.99')
    assert escaped[5:] == ['U__req_2e_size_sum{U__http_2e_method="GET"} 2.0',
                           'U__req_2e_size_count{U__http_2e_method="GET"} 1']  # fmt: skip
