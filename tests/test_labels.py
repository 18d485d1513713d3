"""Labels: required, partial, default; on every backend."""

from __future__ import annotations

import pytest

from pytheus.exceptions import LabelValidationException, UnobservableMetricException
from pytheus.metrics import Counter, Histogram, Summary
from pytheus.registry import CollectorRegistry
from tests.helpers import samples, value


def test_labels_dict_and_keywords_reach_the_same_series(registry: CollectorRegistry) -> None:
    counter = Counter("hits_total", "Hits.", required_labels=["method", "code"], registry=registry)
    counter.labels({"method": "GET", "code": "200"}).inc()
    counter.labels(method="GET", code="200").inc()
    counter.labels(code="200", method="GET").inc()
    counter.labels({"method": "GET"}, code="200").inc()
    assert counter.labels(method="GET", code="200") is counter.labels(
        {"code": "200", "method": "GET"}
    )
    assert value(registry, "hits_total", method="GET", code="200") == 4
    assert len(samples(registry)) == 1


def test_labels_return_same_class(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", required_labels=["a"], buckets=[1], registry=registry)
    child = histogram.labels(a="x")
    assert type(child) is Histogram
    assert child._upper_bounds == (1.0, float("inf"))
    assert child.name == "h"


def test_partial_labels_build_up(registry: CollectorRegistry) -> None:
    counter = Counter(
        "cache_hits_total", "Hits.", required_labels=["system", "origin"], registry=registry
    )
    system_a = counter.labels({"system": "a"})
    system_b = counter.labels(system="b")
    with pytest.raises(UnobservableMetricException):
        system_a.inc()
    system_a.labels({"origin": "f"}).inc()
    system_a.labels(origin="g").inc(2)
    system_b.labels(origin="f").inc(3)
    assert samples(registry) == {
        ("cache_hits_total", frozenset({("system", "a"), ("origin", "f")})): 1,
        ("cache_hits_total", frozenset({("system", "a"), ("origin", "g")})): 2,
        ("cache_hits_total", frozenset({("system", "b"), ("origin", "f")})): 3,
    }


def test_labels_empty_returns_same_object(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    assert counter.labels({}) is counter
    assert counter.labels() is counter
    partial = counter.labels(a="1")
    assert partial.labels({}) is partial


def test_labelled_metric_without_labels_cannot_record(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    with pytest.raises(UnobservableMetricException, match="c_total"):
        counter.inc()
    summary = Summary("s", "S.", required_labels=["a"], registry=registry)
    with pytest.raises(UnobservableMetricException):
        summary.observe(1)
    with pytest.raises(UnobservableMetricException):
        summary.time()
    assert samples(registry) == {}  # partially labelled metrics produce no series


def test_unknown_label_name_is_refused(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    with pytest.raises(LabelValidationException, match=r"'c_total'.*'b'"):
        counter.labels(b="1")
    plain = Counter("plain_total", "Plain.", registry=registry)
    with pytest.raises(LabelValidationException, match="plain_total"):
        plain.labels(a="1")


def test_default_labels_fill_and_can_be_overridden(registry: CollectorRegistry) -> None:
    histogram = Histogram(
        "duration_seconds",
        "Duration.",
        required_labels=["service", "method"],
        default_labels={"service": "main"},
        buckets=[1],
        registry=registry,
    )
    histogram.labels(method="GET").observe(0.5)
    histogram.labels(method="GET", service="main").observe(0.5)  # same series as the default
    histogram.labels(method="GET", service="side").observe(2)
    got = samples(registry)
    assert got[("duration_seconds_count", frozenset({("service", "main"), ("method", "GET")}))] == 2
    assert got[("duration_seconds_count", frozenset({("service", "side"), ("method", "GET")}))] == 1


def test_all_default_labels_make_the_metric_observable(registry: CollectorRegistry) -> None:
    counter = Counter(
        "c_total",
        "C.",
        required_labels=["service"],
        default_labels={"service": "main"},
        registry=registry,
    )
    assert value(registry, "c_total", service="main") == 0  # shown from creation
    counter.inc()
    counter.labels(service="main").inc()
    counter.labels(service="other").inc(5)
    assert value(registry, "c_total", service="main") == 2
    assert value(registry, "c_total", service="other") == 5


def test_default_labels_must_be_declared(registry: CollectorRegistry) -> None:
    with pytest.raises(LabelValidationException, match=r"'c_total'.*'zone'"):
        Counter(
            "c_total", "C.", required_labels=["a"], default_labels={"zone": "x"}, registry=registry
        )


def test_label_values_are_converted_with_str(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", required_labels=["code", "ok"], registry=registry)
    counter.labels(code=200, ok=True).inc()
    counter.labels(code="200", ok="True").inc()
    counter.labels(code=200, ok=True).inc()
    assert value(registry, "c_total", code="200", ok="True") == 3


def test_int_and_bool_label_values_do_not_collide(registry: CollectorRegistry) -> None:
    counter = Counter("c_total", "C.", required_labels=["v"], registry=registry)
    counter.labels(v=1).inc()
    counter.labels(v=True).inc(2)
    counter.labels(v=1.0).inc(3)
    assert value(registry, "c_total", v="1") == 1
    assert value(registry, "c_total", v="True") == 2
    assert value(registry, "c_total", v="1.0") == 3


@pytest.mark.parametrize(("metric_class", "label"), [(Histogram, "le"), (Summary, "quantile")])
def test_reserved_label_names(metric_class: type[Histogram] | type[Summary], label: str) -> None:
    with pytest.raises(LabelValidationException, match="reserved"):
        metric_class("m", "M.", required_labels=[label], registry=None)


@pytest.mark.parametrize("bad", ["__name", "1a", "a-b", "", "a b", "é"])
def test_invalid_label_names(bad: str) -> None:
    with pytest.raises(LabelValidationException, match="'m'"):
        Counter("m", "M.", required_labels=[bad], registry=None)


def test_duplicate_and_string_label_declarations() -> None:
    with pytest.raises(LabelValidationException, match="twice"):
        Counter("m", "M.", required_labels=["a", "a"], registry=None)
    with pytest.raises(LabelValidationException, match="sequence"):
        Counter("m", "M.", required_labels="abc", registry=None)


def test_unencodable_label_value_is_refused_at_labels() -> None:
    counter = Counter("m_total", "M.", required_labels=["a"], registry=None)
    with pytest.raises(LabelValidationException, match="UTF-8"):
        counter.labels(a="\ud800")


def test_series_keep_declared_label_order(registry: CollectorRegistry) -> None:
    from pytheus.exposition import generate_metrics

    counter = Counter("c_total", "C.", required_labels=["zeta", "alpha"], registry=registry)
    counter.labels(alpha="1", zeta="2").inc()
    line = next(ln for ln in generate_metrics(registry).splitlines() if not ln.startswith("#"))
    assert line.index("zeta") < line.index("alpha")


def test_remove_and_clear(registry: CollectorRegistry) -> None:
    from pytheus.metrics import Gauge

    counter = Counter("jobs_total", "Jobs.", required_labels=["queue"], registry=registry)
    kept = counter.labels(queue="a")
    kept.inc(5)
    counter.labels(queue="b").inc(2)
    counter.remove(queue="a")
    assert value(registry, "jobs_total", queue="a") is None
    assert value(registry, "jobs_total", queue="b") == 2
    kept.inc()  # a view kept by the caller re-creates the series, from zero
    assert value(registry, "jobs_total", queue="a") == 1
    counter.labels({"queue": "a"}).inc()
    assert value(registry, "jobs_total", queue="a") == 2
    counter.remove({"queue": "missing"})  # removing an unknown series does nothing
    counter.clear()
    assert samples(registry) == {}
    counter.labels(queue="b").inc()
    assert value(registry, "jobs_total", queue="b") == 1

    histogram = Histogram("h", "H.", required_labels=["a"], buckets=[1], registry=registry)
    histogram.labels(a="x").observe(0.5)
    histogram.remove(a="x")
    assert value(registry, "h_count", a="x") is None
    histogram.labels(a="x").observe(2)
    assert value(registry, "h_count", a="x") == 1
    assert value(registry, "h_bucket", a="x", le="1.0") == 0

    gauge = Gauge("g", "G.", required_labels=["a"], registry=registry)
    gauge.labels(a="x").set(5)
    gauge.remove(a="x")
    assert value(registry, "g", a="x") is None
    gauge.labels(a="x").set(3)
    assert value(registry, "g", a="x") == 3

    with pytest.raises(UnobservableMetricException):
        Counter("two_total", "T.", required_labels=["a", "b"], registry=registry).remove(a="1")
    with pytest.raises(LabelValidationException, match="no labels"):
        Counter("plain_total", "P.", registry=registry).remove()


def test_positional_label_values_as_in_prometheus_client(registry: CollectorRegistry) -> None:
    requests = Counter(
        "requests_total", "Requests.", required_labels=["method", "code"], registry=registry
    )
    requests.labels("GET", "200").inc()
    requests.labels("GET", "200").inc()  # the cached view
    requests.labels({"method": "GET", "code": "200"}).inc()  # the same series
    requests.labels(method="POST").labels("500").inc()  # the labels not set yet, in order
    requests.labels("PUT", code="201").inc()  # values first, then names
    assert value(registry, "requests_total", method="GET", code="200") == 3
    assert value(registry, "requests_total", method="POST", code="500") == 1
    assert value(registry, "requests_total", method="PUT", code="201") == 1
    requests.remove("GET", "200")
    assert value(registry, "requests_total", method="GET", code="200") is None
    for wrong in (("GET",), ("GET", "200", "extra")):
        with pytest.raises(LabelValidationException) as raised:
            requests.labels(*wrong)
        message = str(raised.value)
        assert "'requests_total'" in message and "['method', 'code']" in message
