"""The text exposition (format 0.0.4), checked against an independent oracle.

Every output is read back with prometheus_client's parser (``tests.helpers``) and its values are
compared with what the test recorded; no expectation is built with pytheus's own formatting code.
The only literal text compared is what the format itself fixes (``+Inf``, ``NaN``, the content
type), and the structure of lines (one ``# HELP``/``# TYPE`` per family).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytheus.exceptions import InvalidMetricNameException, LabelValidationException
from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics
from pytheus.metrics import Counter, CustomCollector, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from pytheus.samples import (
    EMPTY_LABELS,
    HistogramData,
    LabelSet,
    MetricFamily,
    MetricType,
    SummaryData,
)
from tests.helpers import family_types, parse, samples, value

INF = math.inf
HOSTILE = 'back\\slash "quoted" new\nline\\n} 1\n# TYPE injected counter\ninjected 1\n'


def scrape(registry: CollectorRegistry) -> str:
    """One scrape; the output must always be valid UTF-8 and end its last line."""
    text = generate_metrics(registry)
    text.encode("utf-8")
    assert text == "" or text.endswith("\n")
    return text


def lines(text: str) -> list[str]:
    """The lines of an exposition: the format ends lines with \\n only (not \\r, not U+2028)."""
    return text.split("\n")[:-1]


def docs(text: str) -> dict[str, str]:
    return {f.name: f.documentation for f in text_string_to_metric_families(text)}


def type_lines(text: str) -> list[str]:
    """Family names in the order of their ``# TYPE`` lines."""
    return [line.split(" ")[2] for line in lines(text) if line.startswith("# TYPE ")]


def values_by_le(sample_list: Iterable[Any], name: str) -> dict[float, float]:
    return {float(s.labels["le"]): s.value for s in sample_list if s.name == name}


def is_nan(x: float | None) -> bool:
    return x is not None and math.isnan(x)


# --- content type ------------------------------------------------------------------------------


def test_content_type() -> None:
    assert PROMETHEUS_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_empty_registry_exposes_nothing(registry: CollectorRegistry) -> None:
    assert scrape(registry) == ""


# --- every type, unlabelled --------------------------------------------------------------------


def test_unlabelled_metrics_show_zero_from_creation(registry: CollectorRegistry) -> None:
    Counter("jobs_total", "Jobs.", registry=registry)
    Gauge("depth", "Depth.", registry=registry)
    Histogram("latency_seconds", "Latency.", buckets=[0.1, 1, 10], registry=registry)
    Summary("size_bytes", "Size.", registry=registry)

    text = scrape(registry)
    assert family_types(text) == {
        "jobs": "counter",
        "depth": "gauge",
        "latency_seconds": "histogram",
        "size_bytes": "summary",
    }
    got = samples(registry)
    assert got == {
        ("jobs_total", frozenset()): 0,
        ("depth", frozenset()): 0,
        ("latency_seconds_bucket", frozenset({("le", "0.1")})): 0,
        ("latency_seconds_bucket", frozenset({("le", "1.0")})): 0,
        ("latency_seconds_bucket", frozenset({("le", "10.0")})): 0,
        ("latency_seconds_bucket", frozenset({("le", "+Inf")})): 0,
        ("latency_seconds_sum", frozenset()): 0,
        ("latency_seconds_count", frozenset()): 0,
        ("size_bytes_sum", frozenset()): 0,
        ("size_bytes_count", frozenset()): 0,
    }


def test_counter_and_gauge_values(registry: CollectorRegistry) -> None:
    counter = Counter("orders_total", "Orders.", registry=registry)
    gauge = Gauge("temperature", "Temperature.", registry=registry)
    counter.inc()
    counter.inc(2.5)
    gauge.set(21.5)
    gauge.dec(0.25)
    assert value(registry, "orders_total") == 3.5
    assert value(registry, "temperature") == 21.25


def test_histogram_with_custom_buckets(registry: CollectorRegistry) -> None:
    histogram = Histogram("duration_seconds", "Duration.", buckets=[0.5, 1, 2.5], registry=registry)
    for observation in (0.1, 0.5, 0.7, 1.0, 2.0, 3.0, 100.0):
        histogram.observe(observation)

    text = scrape(registry)
    family = parse(text)["duration_seconds"]
    buckets = values_by_le(family, "duration_seconds_bucket")
    # cumulative: le is an inclusive upper bound
    assert buckets == {0.5: 2, 1.0: 4, 2.5: 5, INF: 7}
    # buckets in increasing order, +Inf last and spelled as the format spells it
    les = [s.labels["le"] for s in family if s.name == "duration_seconds_bucket"]
    assert [float(le) for le in les] == [0.5, 1.0, 2.5, INF]
    assert les[-1] == "+Inf"
    assert value(registry, "duration_seconds_sum") == 107.3
    assert value(registry, "duration_seconds_count") == 7
    assert value(registry, "duration_seconds_count") == buckets[INF]


def test_histogram_buckets_including_minus_infinity(registry: CollectorRegistry) -> None:
    histogram = Histogram("offset_seconds", "Offset.", buckets=[-INF, 0, INF], registry=registry)
    histogram.observe(-INF)
    histogram.observe(-1)
    histogram.observe(INF)

    text = scrape(registry)
    family = parse(text)["offset_seconds"]
    les = [s.labels["le"] for s in family if s.name == "offset_seconds_bucket"]
    assert les == ["-Inf", "0.0", "+Inf"]  # the spelling the format prescribes
    assert values_by_le(family, "offset_seconds_bucket") == {-INF: 1, 0.0: 2, INF: 3}
    assert value(registry, "offset_seconds_count") == 3


def test_nan_observed_into_histogram(registry: CollectorRegistry) -> None:
    histogram = Histogram("ratio", "Ratio.", buckets=[0.5, 1], registry=registry)
    histogram.observe(0.25)
    histogram.observe(math.nan)

    family = parse(scrape(registry))["ratio"]
    # NaN is not <= any bound: it is counted in +Inf only, and poisons the sum
    assert values_by_le(family, "ratio_bucket") == {0.5: 1, 1.0: 1, INF: 2}
    assert is_nan(value(registry, "ratio_sum"))
    assert value(registry, "ratio_count") == 2


def test_summary(registry: CollectorRegistry) -> None:
    summary = Summary("payload_bytes", "Payload.", registry=registry)
    summary.observe(512)
    summary.observe(1024.5)

    assert family_types(scrape(registry)) == {"payload_bytes": "summary"}
    assert value(registry, "payload_bytes_sum") == 1536.5
    assert value(registry, "payload_bytes_count") == 2


# --- labels ------------------------------------------------------------------------------------


def test_labelled_metrics_of_every_type(registry: CollectorRegistry) -> None:
    counter = Counter("hits_total", "Hits.", required_labels=["route"], registry=registry)
    gauge = Gauge("workers", "Workers.", required_labels=["pool"], registry=registry)
    histogram = Histogram(
        "wait_seconds", "Wait.", required_labels=["queue"], buckets=[1, 2], registry=registry
    )
    summary = Summary("body_bytes", "Body.", required_labels=["method"], registry=registry)
    counter.labels(route="/a").inc()
    counter.labels(route="/b").inc(4)
    gauge.labels(pool="x").set(-3)
    histogram.labels(queue="fast").observe(1.5)
    histogram.labels(queue="slow").observe(5)
    summary.labels({"method": "GET"}).observe(10)

    got = samples(registry)
    assert got[("hits_total", frozenset({("route", "/a")}))] == 1
    assert got[("hits_total", frozenset({("route", "/b")}))] == 4
    assert got[("workers", frozenset({("pool", "x")}))] == -3
    fast = frozenset({("queue", "fast")})
    assert got[("wait_seconds_bucket", fast | {("le", "1.0")})] == 0
    assert got[("wait_seconds_bucket", fast | {("le", "2.0")})] == 1
    assert got[("wait_seconds_bucket", fast | {("le", "+Inf")})] == 1
    slow = frozenset({("queue", "slow")})
    assert got[("wait_seconds_bucket", slow | {("le", "2.0")})] == 0
    assert got[("wait_seconds_bucket", slow | {("le", "+Inf")})] == 1
    assert got[("wait_seconds_sum", slow)] == 5
    assert got[("wait_seconds_count", slow)] == 1
    assert got[("body_bytes_sum", frozenset({("method", "GET")}))] == 10
    assert got[("body_bytes_count", frozenset({("method", "GET")}))] == 1
    # a labelled metric without children has no unlabelled series
    assert ("hits_total", frozenset()) not in got


def test_partially_labelled_metric_has_no_series(registry: CollectorRegistry) -> None:
    requests = Counter(
        "requests_total", "Requests.", required_labels=["method", "code"], registry=registry
    )
    requests.labels(method="GET")  # partial: records nothing, shows nothing
    text = scrape(registry)
    assert parse(text) == {"requests": []}
    assert family_types(text) == {"requests": "counter"}


def test_labels_in_declared_order(registry: CollectorRegistry) -> None:
    names = ["zone", "app", "method"]  # deliberately not sorted
    counter = Counter("calls_total", "Calls.", required_labels=names, registry=registry)
    histogram = Histogram(
        "call_seconds", "Call.", required_labels=names, buckets=[1], registry=registry
    )
    summary = Summary("call_bytes", "Bytes.", required_labels=names, registry=registry)
    # given in another order than declared, and in two steps
    counter.labels(method="GET", app="shop").labels(zone="eu").inc()
    histogram.labels(method="GET", zone="eu", app="shop").observe(0.5)
    summary.labels({"app": "shop", "method": "GET", "zone": "eu"}).observe(3)

    families = parse(scrape(registry))
    seen = 0
    for family_samples in families.values():
        for sample in family_samples:
            expected = [*names, "le"] if sample.name.endswith("_bucket") else names
            assert list(sample.labels) == expected, sample
            assert sample.labels["zone"] == "eu"
            assert sample.labels["app"] == "shop"
            seen += 1
    assert seen == 1 + 4 + 2


def test_default_labels(registry: CollectorRegistry) -> None:
    # every label has a default: the series exists (with 0) from creation
    Gauge(
        "build_info",
        "Build.",
        required_labels=["version", "commit"],
        default_labels={"version": "1.2", "commit": "abc"},
        registry=registry,
    )
    # one default: a series appears once the other label is given; defaults can be overridden
    counter = Counter(
        "errors_total",
        "Errors.",
        required_labels=["service", "kind"],
        default_labels={"service": "api"},
        registry=registry,
    )
    counter.labels(kind="timeout").inc()
    counter.labels(kind="refused", service="db").inc(2)

    got = samples(registry)
    assert got == {
        ("build_info", frozenset({("version", "1.2"), ("commit", "abc")})): 0,
        ("errors_total", frozenset({("service", "api"), ("kind", "timeout")})): 1,
        ("errors_total", frozenset({("service", "db"), ("kind", "refused")})): 2,
    }
    for sample in parse(scrape(registry))["errors"]:
        assert list(sample.labels) == ["service", "kind"]


def test_histogram_with_default_labels_shows_buckets_from_creation(
    registry: CollectorRegistry,
) -> None:
    Histogram(
        "startup_seconds",
        "Startup.",
        required_labels=["host"],
        default_labels={"host": "h1"},
        buckets=[1],
        registry=registry,
    )
    got = samples(registry)
    host = frozenset({("host", "h1")})
    assert got[("startup_seconds_bucket", host | {("le", "1.0")})] == 0
    assert got[("startup_seconds_bucket", host | {("le", "+Inf")})] == 0
    assert got[("startup_seconds_count", host)] == 0


# --- special values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "spelling"), [(INF, "+Inf"), (-INF, "-Inf"), (math.nan, "NaN")])
def test_special_values_on_gauges(
    registry: CollectorRegistry, number: float, spelling: str
) -> None:
    gauge = Gauge("level", "Level.", required_labels=["k"], registry=registry)
    gauge.labels(k="v").set(number)
    text = scrape(registry)
    [line] = [line for line in lines(text) if not line.startswith("#")]
    assert line.rsplit(" ", 1)[1] == spelling  # the spelling the format prescribes
    got = value(registry, "level", k="v")
    assert got is not None
    if math.isnan(number):
        assert math.isnan(got)
    else:
        assert got == number


@pytest.mark.parametrize("number", [1e300, -1e-300, 5e-324, 1.7976931348623157e308, 0.1, -0.0])
def test_extreme_values_round_trip(registry: CollectorRegistry, number: float) -> None:
    Gauge("extreme", "Extreme.", registry=registry).set(number)
    got = value(registry, "extreme")
    assert got == number
    assert got is not None and math.copysign(1, got) == math.copysign(1, number)


def test_counter_grows_to_infinity(registry: CollectorRegistry) -> None:
    counter = Counter("bytes_total", "Bytes.", registry=registry)
    counter.inc(1.7976931348623157e308)
    counter.inc(1.7976931348623157e308)
    assert value(registry, "bytes_total") == INF


# --- escaping ----------------------------------------------------------------------------------


HELP_TEXTS = [
    "back\\slash",
    "new\nline",
    'double "quote"',
    "literal \\n is not a newline",
    "trailing backslash \\",
    "trailing newline\n",
    "unicode: é ü 雪 🚀",
    "carriage\rreturn",
    HOSTILE,
]


@pytest.mark.parametrize("help_text", HELP_TEXTS)
def test_help_escaping(registry: CollectorRegistry, help_text: str) -> None:
    Counter("escaped_total", help_text, registry=registry)
    text = scrape(registry)
    assert docs(text) == {"escaped": help_text}
    assert len(lines(text)) == 3  # HELP, TYPE, one sample: nothing injected


LABEL_VALUES = [
    "",
    "back\\slash",
    'double "quote"',
    "new\nline",
    "\\n literal",
    "\\",
    '"',
    '\\"',
    "trailing backslash \\",
    "} 1",
    "a,b=c",
    "tab\tand\rcr and nul \x00",
    "unicode: é ü 雪 🚀 \u2028",
    HOSTILE,
]


@pytest.mark.parametrize("label_value", LABEL_VALUES)
def test_label_value_escaping(registry: CollectorRegistry, label_value: str) -> None:
    counter = Counter("escaped_total", "Escaped.", required_labels=["a", "b"], registry=registry)
    histogram = Histogram(
        "escaped_seconds", "E.", required_labels=["a"], buckets=[1], registry=registry
    )
    counter.labels(a=label_value, b="after").inc(7)
    histogram.labels(a=label_value).observe(0.5)

    text = scrape(registry)
    families = parse(text)
    assert set(families) == {"escaped", "escaped_seconds"}  # nothing injected
    [sample] = families["escaped"]
    assert sample.labels == {"a": label_value, "b": "after"}
    assert sample.value == 7
    for histogram_sample in families["escaped_seconds"]:
        assert histogram_sample.labels["a"] == label_value
    # HELP, TYPE and 1 counter sample; HELP, TYPE and 2 buckets, sum, count
    assert len(lines(text)) == 3 + 6


def test_label_values_from_non_strings(registry: CollectorRegistry) -> None:
    counter = Counter("typed_total", "Typed.", required_labels=["code"], registry=registry)
    counter.labels(code=200).inc()
    counter.labels(code="200").inc()  # the same series
    assert value(registry, "typed_total", code="200") == 2


# --- families ----------------------------------------------------------------------------------


def test_help_and_type_once_per_family(registry: CollectorRegistry) -> None:
    counter = Counter("a_total", "A.", required_labels=["x"], registry=registry)
    histogram = Histogram("b_seconds", "B.", required_labels=["x"], registry=registry)
    summary = Summary("c_bytes", "C.", required_labels=["x"], registry=registry)
    for label in ("1", "2", "3"):
        counter.labels(x=label).inc()
        histogram.labels(x=label).observe(1)
        summary.labels(x=label).observe(1)

    output = lines(scrape(registry))
    for kind in ("HELP", "TYPE"):
        names = [line.split(" ")[2] for line in output if line.startswith(f"# {kind} ")]
        assert sorted(names) == ["a_total", "b_seconds", "c_bytes"]
    # no other comment lines, no blank lines
    assert all(
        not line.startswith("#") or line.startswith(("# HELP ", "# TYPE ")) for line in output
    )
    assert all(line.strip() for line in output)


def test_families_sorted_by_name(registry: CollectorRegistry) -> None:
    for name in ("zeta", "alpha", "mid_b", "mid_a", "Upper", "_under", "colon:x"):
        Gauge(name, f"{name}.", registry=registry)
    text = scrape(registry)
    names = type_lines(text)
    assert names == sorted(names)
    assert set(names) == {"zeta", "alpha", "mid_b", "mid_a", "Upper", "_under", "colon:x"}
    assert list(parse(text)) == names  # the parser reads each family whole


def test_order_is_stable_across_scrapes(registry: CollectorRegistry) -> None:
    counter = Counter("stable_total", "S.", required_labels=["k"], registry=registry)
    for key in ("b", "a", "c"):
        counter.labels(k=key).inc()
    Gauge("another", "A.", registry=registry)
    assert scrape(registry) == scrape(registry)


def test_scrapes_reflect_new_values(registry: CollectorRegistry) -> None:
    counter = Counter("seen_total", "S.", required_labels=["k"], registry=registry)
    histogram = Histogram(
        "seen_seconds", "S.", required_labels=["k"], buckets=[1], registry=registry
    )
    counter.labels(k="v").inc()
    histogram.labels(k="v").observe(2)
    scrape(registry)
    counter.labels(k="v").inc()
    histogram.labels(k="v").observe(0.5)
    counter.labels(k="w").inc()
    got = samples(registry)
    assert got[("seen_total", frozenset({("k", "v")}))] == 2
    assert got[("seen_total", frozenset({("k", "w")}))] == 1
    assert got[("seen_seconds_bucket", frozenset({("k", "v"), ("le", "1.0")}))] == 1
    assert got[("seen_seconds_bucket", frozenset({("k", "v"), ("le", "+Inf")}))] == 2


def test_prefix(backend: str) -> None:
    registry = CollectorRegistry(prefix="shop")
    Counter("orders_total", "Orders.", registry=registry).inc()
    Histogram("checkout_seconds", "Checkout.", buckets=[1], registry=registry).observe(2)

    class Extra(CustomCollector):
        def collect(self) -> Iterator[Gauge]:
            gauge = Gauge("stock", "Stock.", registry=None)
            gauge.set(3)
            yield gauge

    registry.register(Extra())
    text = scrape(registry)
    assert type_lines(text) == ["shop_checkout_seconds", "shop_orders_total", "shop_stock"]
    assert value(registry, "shop_orders_total") == 1
    assert value(registry, "shop_checkout_seconds_bucket", le="+Inf") == 1
    assert value(registry, "shop_checkout_seconds_count") == 1
    assert value(registry, "shop_stock") == 3


@pytest.mark.parametrize("prefix", ["", "1app", "my-app", "__x y"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidMetricNameException, match=re.escape(repr(prefix))):
        CollectorRegistry(prefix=prefix)


# --- custom collectors -------------------------------------------------------------------------


class QueueCollector(CustomCollector):
    def collect(self) -> Iterator[Any]:
        depth = Gauge("queue_depth", "Jobs waiting.", required_labels=["queue"], registry=None)
        depth.labels(queue="high").set(4)
        depth.labels(queue="low").set(9)
        yield depth
        latency = Histogram("queue_wait_seconds", "Wait.", buckets=[1, 5], registry=None)
        latency.observe(3)
        yield latency
        processed = Counter("queue_processed_total", "Processed.", registry=None)
        processed.inc(12)
        yield processed


class BrokenCollector(CustomCollector):
    def __init__(self) -> None:
        self.broken = False

    def collect(self) -> Iterator[Any]:
        gauge = Gauge("broken_gauge", "Half-made.", registry=None)
        gauge.set(1)
        yield gauge
        if self.broken:
            raise RuntimeError("the data source is down")


def test_custom_collector(registry: CollectorRegistry) -> None:
    Counter("own_total", "Own.", registry=registry).inc()
    registry.register(QueueCollector())
    text = scrape(registry)
    assert family_types(text) == {
        "own": "counter",
        "queue_depth": "gauge",
        "queue_wait_seconds": "histogram",
        "queue_processed": "counter",
    }
    names = type_lines(text)
    assert names == sorted(names)
    got = samples(registry)
    assert got[("queue_depth", frozenset({("queue", "high")}))] == 4
    assert got[("queue_depth", frozenset({("queue", "low")}))] == 9
    assert got[("queue_wait_seconds_bucket", frozenset({("le", "1.0")}))] == 0
    assert got[("queue_wait_seconds_bucket", frozenset({("le", "5.0")}))] == 1
    assert got[("queue_wait_seconds_count", frozenset())] == 1
    assert got[("queue_processed_total", frozenset())] == 12
    assert got[("own_total", frozenset())] == 1
    assert docs(text)["queue_depth"] == "Jobs waiting."
    # collected afresh each scrape: values do not accumulate
    assert samples(registry) == got


def test_failing_custom_collector_is_left_out(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    Counter("own_total", "Own.", registry=registry).inc(5)
    broken = BrokenCollector()
    registry.register(broken)
    registry.register(QueueCollector())
    assert value(registry, "broken_gauge") == 1

    broken.broken = True
    with caplog.at_level(logging.ERROR):
        got = samples(registry)  # the scrape itself does not raise
    assert all(name != "broken_gauge" for name, _ in got)  # nothing half-made is exposed
    assert got[("own_total", frozenset())] == 5
    assert got[("queue_depth", frozenset({("queue", "low")}))] == 9
    assert "brokencollector" in caplog.text.lower()


def test_custom_collector_failing_from_the_start(registry: CollectorRegistry) -> None:
    class AlwaysFails(CustomCollector):
        def collect(self) -> Iterator[Any]:
            raise ValueError("no")

    Gauge("fine", "Fine.", registry=registry).set(2)
    registry.register(AlwaysFails())
    assert samples(registry) == {("fine", frozenset()): 2}


def test_custom_collector_yielding_families_with_different_buckets(
    registry: CollectorRegistry,
) -> None:
    """Families sharing a LabelSet (``EMPTY_LABELS``) keep their own bucket bounds."""

    class Families(CustomCollector):
        def collect(self) -> Iterator[MetricFamily]:
            for name, bound in (("first", 1.0), ("second", 2.0)):
                data = HistogramData((bound, INF), [1, 2], 4.0)
                yield MetricFamily(name, MetricType.HISTOGRAM, "H.", [(EMPTY_LABELS, data)])

    registry.register(Families())
    for _ in range(2):  # the second scrape uses memoised labels
        families = parse(scrape(registry))
        assert values_by_le(families["first"], "first_bucket") == {1.0: 1, INF: 3}
        assert values_by_le(families["second"], "second_bucket") == {2.0: 1, INF: 3}
        assert value(registry, "second_count") == 3


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a\n", "a.b", "__name__{}"])
@pytest.mark.parametrize("metric_class", [Counter, Gauge, Histogram, Summary])
def test_invalid_metric_names(metric_class: type[Any], name: str) -> None:
    with pytest.raises(InvalidMetricNameException, match=re.escape(repr(name))):
        metric_class(name, "Help.", registry=None)


@pytest.mark.parametrize("label", ["", "1a", "a-b", "a:b", "é", "__reserved", "__"])
@pytest.mark.parametrize("metric_class", [Counter, Gauge, Histogram, Summary])
def test_invalid_label_names(metric_class: type[Any], label: str) -> None:
    with pytest.raises(LabelValidationException, match="'named_metric'"):
        metric_class("named_metric", "Help.", required_labels=[label], registry=None)


def test_reserved_label_names_per_type() -> None:
    with pytest.raises(LabelValidationException, match=r"'h_seconds'.*'le'"):
        Histogram("h_seconds", "H.", required_labels=["le"], registry=None)
    with pytest.raises(LabelValidationException, match=r"'s_bytes'.*'quantile'"):
        Summary("s_bytes", "S.", required_labels=["quantile"], registry=None)
    # only reserved for the type that exposes them
    Counter("c_total", "C.", required_labels=["le", "quantile"], registry=None)
    Summary("s2_bytes", "S.", required_labels=["le"], registry=None)
    Histogram("h2_seconds", "H.", required_labels=["quantile"], registry=None)


def test_valid_unusual_names_are_exposed(registry: CollectorRegistry) -> None:
    gauge = Gauge("ns:sub_system:Metric_1", "G.", required_labels=["_x", "L2"], registry=registry)
    gauge.labels(_x="1", L2="2").set(1)
    assert samples(registry) == {
        ("ns:sub_system:Metric_1", frozenset({("_x", "1"), ("L2", "2")})): 1
    }


def test_custom_collector_yielding_summary_with_quantiles(registry: CollectorRegistry) -> None:
    class Quantiles(CustomCollector):
        def collect(self) -> Iterator[MetricFamily]:
            labels = LabelSet(("path",), ('/"x"\n',))
            data = SummaryData(4, 10.5, ((0.5, 2.0), (0.99, INF), (1.0, math.nan)))
            yield MetricFamily("rpc_seconds", MetricType.SUMMARY, "RPC.", [(labels, data)])

    registry.register(Quantiles())
    [*quantiles, total, count] = parse(scrape(registry))["rpc_seconds"]
    assert [(s.name, s.labels) for s in quantiles] == [
        ("rpc_seconds", {"path": '/"x"\n', "quantile": q}) for q in ("0.5", "0.99", "1.0")
    ]
    assert [s.value for s in quantiles[:2]] == [2.0, INF]
    assert math.isnan(quantiles[2].value)
    assert (total.name, total.labels, total.value) == ("rpc_seconds_sum", {"path": '/"x"\n'}, 10.5)
    assert (count.name, count.value) == ("rpc_seconds_count", 4)


def test_thousands_of_label_sets(registry: CollectorRegistry) -> None:
    """5,000 series with awkward label values: every one parses back exactly, once."""
    import random

    generator = random.Random(11)
    alphabet = 'abc"\\\n\t{}=,é日本\u2028 #'
    counter = Counter("many_total", "Many.", required_labels=["key", "other"], registry=registry)
    expected: dict[tuple[str, str], float] = {}
    for n in range(5000):
        value_ = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 12)))
        key = (f"{n}:{value_}", str(n % 7))
        counter.labels(key=key[0], other=key[1]).inc(n % 3 + 1)
        expected[key] = expected.get(key, 0) + n % 3 + 1
    [family] = [f for f in text_string_to_metric_families(scrape(registry)) if f.name == "many"]
    got = {(s.labels["key"], s.labels["other"]): s.value for s in family.samples}
    assert got == expected
