"""The OpenMetrics exposition, read back by independent parsers.

Every output goes through prometheus_client's strict OpenMetrics parser, which enforces the
spec's rules (``# EOF``, counter ``_total`` samples, canonical ``le``, no NaN or negative
counter-like values, exemplars only on counters and buckets). Values are compared with what the
test recorded, never with pytheus's own formatting. The last test has the Prometheus server
itself scrape a pytheus server: it asks for OpenMetrics and reads exemplars and units from it.

``promtool check metrics`` (2.42) is not used here: it reads only the 0.0.4 text format, so it
rejects any OpenMetrics exposition with an ``unknown`` family or an exemplar.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.collection import collect_registry
from pytheus.exposition import OPENMETRICS_CONTENT_TYPE, generate_metrics, openmetrics
from pytheus.metrics import Counter, CustomCollector, Gauge, Histogram, Summary
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
from pytheus.serving import start_http_server
from tests.conftest import require_program

INF = math.inf
HOSTILE_HELP = [
    'Help with "double quotes", a \\ backslash and a \\n literal.',
    "Help over\ntwo lines, then\n# TYPE injected counter\ninjected_total 1\n# EOF",
    "Help ending in a backslash \\",
    "Unicode help: é ü 雪 🚀 \u2028 \u00a0, a carriage\rreturn, a tab\tand a NUL \x00.",
]
HOSTILE_VALUES = [
    "",
    '"',
    "\\",
    '\\"',
    "\n",
    "\\n",
    "back\\slash\\",
    '} 1 # {trace_id="x"} 1\ninjected_total{a="b"} 2\n# EOF',
    "unicode é ü 雪 🚀 \u2028",
    "cr\rtab\tnul\x00",
    "a,b=c{d}",
]

Key = tuple[str, frozenset[tuple[str, str]]]

# prometheus_client's strict OpenMetrics parser (its functions carry no annotations)
text_string_to_metric_families: Callable[[str], Iterator[Any]] = (
    openmetrics_parser.text_string_to_metric_families
)


def scrape(registry: CollectorRegistry) -> str:
    text = openmetrics.render(collect_registry(registry))
    assert text.endswith("# EOF\n")
    return text


def families(text: str) -> dict[str, Any]:
    """Family name -> prometheus_client Metric, parsed strictly."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples_of(parsed: Iterator[Any] | list[Any]) -> dict[Key, float]:
    result: dict[Key, float] = {}
    for family in parsed:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in result, f"duplicate series {key}"
            result[key] = sample.value
    return result


def om_samples(text: str) -> dict[Key, float]:
    return samples_of(list(text_string_to_metric_families(text)))


def same(a: dict[Key, float], b: dict[Key, float]) -> bool:
    """Equal sample maps, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


class FamilyCollector(CustomCollector):
    """Yields ready-made MetricFamily objects, as a custom collector may."""

    def __init__(self, *items: MetricFamily) -> None:
        self.items = items

    def collect(self) -> Iterator[MetricFamily]:
        yield from self.items


# --- format basics -----------------------------------------------------------------------------


def test_content_type() -> None:
    assert OPENMETRICS_CONTENT_TYPE == "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_empty_registry_is_only_eof(registry: CollectorRegistry) -> None:
    assert scrape(registry) == "# EOF\n"
    assert families(scrape(registry)) == {}


def test_every_type_with_values(registry: CollectorRegistry) -> None:
    Counter("orders_total", "Orders.", registry=registry).inc(3)
    Counter("retries", "Retries, named without _total.", registry=registry).inc()
    Gauge("depth", "Depth.", registry=registry).set(-2.5)
    histogram = Histogram("latency_seconds", "Latency.", buckets=[0.1, 1, 10], registry=registry)
    for observation in (0.05, 0.1, 0.5, 5, 50):
        histogram.observe(observation)
    summary = Summary("size_bytes", "Size.", registry=registry)
    summary.observe(10)
    summary.observe(32)

    text = scrape(registry)
    parsed = families(text)
    assert {name: f.type for name, f in parsed.items()} == {
        "orders": "counter",
        "retries": "counter",
        "depth": "gauge",
        "latency_seconds": "histogram",
        "size_bytes": "summary",
    }
    assert parsed["orders"].documentation == "Orders."
    assert om_samples(text) == {
        ("orders_total", frozenset()): 3,
        ("retries_total", frozenset()): 1,
        ("depth", frozenset()): -2.5,
        ("latency_seconds_bucket", frozenset({("le", "0.1")})): 2,
        ("latency_seconds_bucket", frozenset({("le", "1.0")})): 3,
        ("latency_seconds_bucket", frozenset({("le", "10.0")})): 4,
        ("latency_seconds_bucket", frozenset({("le", "+Inf")})): 5,
        ("latency_seconds_count", frozenset()): 5,
        ("latency_seconds_sum", frozenset()): 55.65,
        ("size_bytes_count", frozenset()): 2,
        ("size_bytes_sum", frozenset()): 42,
    }


def test_same_samples_as_the_text_format(registry: CollectorRegistry) -> None:
    """Both formats expose the same series with the same values (read by two parsers)."""
    labels = ["method", "code"]
    counter = Counter("requests_total", "Requests.", required_labels=labels, registry=registry)
    gauge = Gauge("in_flight", "In flight.", required_labels=labels, registry=registry)
    histogram = Histogram("duration_seconds", "D.", required_labels=labels, registry=registry)
    summary = Summary("payload_bytes", "P.", required_labels=labels, registry=registry)
    for index, (method, code) in enumerate([("GET", "200"), ("POST", "500"), ("GET", "404")]):
        counter.labels(method=method, code=code).inc(index + 1)
        gauge.labels(method=method, code=code).set(index * 1.5)
        histogram.labels(method=method, code=code).observe(index / 7)
        summary.labels(method=method, code=code).observe(index * 100)
    Gauge("special", "S.", required_labels=["kind"], registry=registry).labels(kind="nan").set(
        math.nan
    )

    from_text = samples_of(list(text_parse(generate_metrics(registry))))
    assert len(from_text) == 3 * (1 + 1 + (11 + 1 + 2) + 2) + 1
    assert same(om_samples(scrape(registry)), from_text)


def test_counter_family_names_drop_total(registry: CollectorRegistry) -> None:
    Counter("jobs_total", "Jobs.", registry=registry).inc(2)
    Counter("jobs_failed", "Failed.", registry=registry).inc()
    text = scrape(registry)
    assert set(families(text)) == {"jobs", "jobs_failed"}
    assert "# TYPE jobs counter\n" in text
    assert "# TYPE jobs_failed counter\n" in text
    assert om_samples(text) == {
        ("jobs_total", frozenset()): 2,
        ("jobs_failed_total", frozenset()): 1,
    }


def test_prefixed_registry(backend: str) -> None:
    registry = CollectorRegistry(prefix="shop")
    Counter("orders_total", "Orders.", registry=registry).inc()
    Histogram("wait_seconds", "Wait.", buckets=[1], registry=registry).observe(2)
    text = scrape(registry)
    assert set(families(text)) == {"shop_orders", "shop_wait_seconds"}
    assert om_samples(text)[("shop_orders_total", frozenset())] == 1
    assert om_samples(text)[("shop_wait_seconds_count", frozenset())] == 1


def test_units(registry: CollectorRegistry) -> None:
    Counter("read_bytes_total", "Read.", registry=registry, unit="bytes").inc(512)
    Gauge("temperature_celsius", "T.", registry=registry, unit="celsius").set(21.5)
    Histogram("wait_seconds", "W.", buckets=[1], registry=registry, unit="seconds").observe(0.5)
    Summary("payload_bytes", "P.", registry=registry, unit="bytes").observe(3)
    Gauge("no_unit_ratio", "No unit.", registry=registry).set(0.5)

    parsed = families(scrape(registry))  # the parser checks each name ends in _<unit>
    assert {name: f.unit for name, f in parsed.items()} == {
        "read_bytes": "bytes",
        "temperature_celsius": "celsius",
        "wait_seconds": "seconds",
        "payload_bytes": "bytes",
        "no_unit_ratio": "",
    }


def test_untyped_family_is_unknown(registry: CollectorRegistry) -> None:
    series: list[tuple[LabelSet, Any]] = [(LabelSet(("a",), ("1",)), 7.0)]
    registry.register(FamilyCollector(MetricFamily("legacy", MetricType.UNTYPED, "L.", series)))
    text = scrape(registry)
    assert "# TYPE legacy unknown\n" in text
    assert families(text)["legacy"].type == "unknown"
    assert om_samples(text) == {("legacy", frozenset({("a", "1")})): 7}


def test_info_and_stateset_families(registry: CollectorRegistry) -> None:
    """Built from the model; MetricType("info") and ("stateset") are the types' spellings."""
    info = MetricFamily(
        "build", MetricType("info"), "Build.", [(LabelSet(("version",), ("1.2",)), 1.0)]
    )
    states: list[tuple[LabelSet, Any]] = [
        (LabelSet(("task_state",), (state,)), float(state == "running"))
        for state in ("starting", "running")
    ]
    stateset = MetricFamily("task_state", MetricType("stateset"), "State.", states)
    registry.register(FamilyCollector(info, stateset))
    text = scrape(registry)
    parsed = families(text)  # the parser wants build_info samples of 1, stateset values 0 or 1
    assert {name: f.type for name, f in parsed.items()} == {
        "build": "info",
        "task_state": "stateset",
    }
    assert om_samples(text) == {
        ("build_info", frozenset({("version", "1.2")})): 1,
        ("task_state", frozenset({("task_state", "starting")})): 0,
        ("task_state", frozenset({("task_state", "running")})): 1,
    }


def test_info_and_enum_metrics(registry: CollectorRegistry) -> None:
    """Through the metric API."""
    import pytheus.metrics as metrics

    metrics.Info("app", "App.", registry=registry).info({"version": "2.0", "commit": "abc"})
    metrics.Enum("phase", "Phase.", states=["init", "ready"], registry=registry).state("ready")
    text = scrape(registry)
    assert {name: f.type for name, f in families(text).items()} == {
        "app": "info",
        "phase": "stateset",
    }
    assert om_samples(text) == {
        ("app_info", frozenset({("version", "2.0"), ("commit", "abc")})): 1,
        ("phase", frozenset({("phase", "init")})): 0,
        ("phase", frozenset({("phase", "ready")})): 1,
    }


# --- escaping and special values ---------------------------------------------------------------


@pytest.mark.parametrize("help_text", HOSTILE_HELP)
def test_hostile_help_round_trips(registry: CollectorRegistry, help_text: str) -> None:
    Counter("hostile_total", help_text, registry=registry).inc()
    Gauge("hostile_depth", help_text, registry=registry)
    parsed = families(scrape(registry))
    assert parsed["hostile"].documentation == help_text
    assert parsed["hostile_depth"].documentation == help_text
    assert set(parsed) == {"hostile", "hostile_depth"}  # nothing injected


def test_hostile_label_values_round_trip(registry: CollectorRegistry) -> None:
    labels = ["first", "second"]
    counter = Counter("hostile_total", "H.", required_labels=labels, registry=registry)
    histogram = Histogram(
        "hostile_seconds", "H.", required_labels=labels, buckets=[1], registry=registry
    )
    expected: dict[Key, float] = {}
    for index, value in enumerate(HOSTILE_VALUES):
        other = HOSTILE_VALUES[-1 - index]
        counter.labels(first=value, second=other).inc(index)
        histogram.labels(first=value, second=other).observe(index)
        pairs = {("first", value), ("second", other)}
        expected[("hostile_total", frozenset(pairs))] = index

    parsed = om_samples(scrape(registry))
    assert {k: v for k, v in parsed.items() if k[0] == "hostile_total"} == expected
    assert {k for k in parsed if k[0] == "hostile_seconds_count"} == {
        ("hostile_seconds_count", k[1]) for k in expected
    }


def test_empty_help_is_left_out(registry: CollectorRegistry) -> None:
    Gauge("quiet", "", registry=registry).set(1)
    text = scrape(registry)
    assert "# HELP" not in text
    assert families(text)["quiet"].documentation == ""


def test_special_values(registry: CollectorRegistry) -> None:
    gauge = Gauge("special", "S.", required_labels=["kind"], registry=registry)
    numbers = {
        "inf": INF,
        "minus_inf": -INF,
        "huge": 1.7976931348623157e308,
        "tiny": 5e-324,
        "negative_zero": -0.0,
        "third": 1 / 3,
    }
    for kind, number in numbers.items():
        gauge.labels(kind=kind).set(number)
    gauge.labels(kind="nan").set(math.nan)
    Counter("endless_total", "E.", registry=registry).inc(INF)

    parsed = om_samples(scrape(registry))
    for kind, number in numbers.items():
        assert parsed[("special", frozenset({("kind", kind)}))] == number
    assert math.isnan(parsed[("special", frozenset({("kind", "nan")}))])
    assert parsed[("endless_total", frozenset())] == INF


def test_le_and_quantile_labels_are_canonical(registry: CollectorRegistry) -> None:
    Histogram("h_seconds", "H.", buckets=[1, 2.5, 1e20], registry=registry).observe(1)
    series: list[tuple[LabelSet, Any]] = [
        (EMPTY_LABELS, SummaryData(3, 6.0, ((0.0, 1.0), (0.5, 2.0), (1, 3.0))))
    ]
    registry.register(FamilyCollector(MetricFamily("s_bytes", MetricType.SUMMARY, "S.", series)))
    parsed = families(scrape(registry))  # the parser refuses "+inf", "Inf" and quantiles > 1
    les = [s.labels["le"] for s in parsed["h_seconds"].samples if s.name == "h_seconds_bucket"]
    assert [float(le) for le in les] == [1, 2.5, 1e20, INF]
    assert les[-1] == "+Inf"
    quantiles = {
        s.labels["quantile"]: s.value for s in parsed["s_bytes"].samples if "quantile" in s.labels
    }
    assert quantiles == {"0.0": 1.0, "0.5": 2.0, "1.0": 3.0}


# --- values OpenMetrics forbids ------------------------------------------------------------------


def test_histogram_with_negative_bucket_has_no_sum(registry: CollectorRegistry) -> None:
    histogram = Histogram("delta", "D.", buckets=[-INF, -1, 0, 1], registry=registry)
    for observation in (-5, -0.5, 0.5, 3):
        histogram.observe(observation)
    parsed = om_samples(scrape(registry))
    assert parsed == {
        ("delta_bucket", frozenset({("le", "-Inf")})): 0,
        ("delta_bucket", frozenset({("le", "-1.0")})): 1,
        ("delta_bucket", frozenset({("le", "0.0")})): 2,
        ("delta_bucket", frozenset({("le", "1.0")})): 3,
        ("delta_bucket", frozenset({("le", "+Inf")})): 4,
    }


@pytest.mark.parametrize("observation", [-2.0, math.nan])
def test_histogram_with_negative_or_nan_sum_has_no_sum(
    registry: CollectorRegistry, observation: float
) -> None:
    histogram = Histogram("odd_seconds", "O.", buckets=[1], registry=registry)
    histogram.observe(0.5)
    histogram.observe(observation)
    parsed = om_samples(scrape(registry))
    assert ("odd_seconds_sum", frozenset()) not in parsed
    assert ("odd_seconds_count", frozenset()) not in parsed
    assert parsed[("odd_seconds_bucket", frozenset({("le", "+Inf")}))] == 2


def test_summary_with_negative_sum_keeps_count(registry: CollectorRegistry) -> None:
    Summary("change", "C.", registry=registry).observe(-3)
    parsed = om_samples(scrape(registry))
    assert parsed == {("change_count", frozenset()): 1}


def test_negative_quantile_values_are_left_out(registry: CollectorRegistry) -> None:
    data = SummaryData(4, 2.0, ((0.1, -1.0), (0.5, math.nan), (0.9, 2.0)))
    series: list[tuple[LabelSet, Any]] = [(EMPTY_LABELS, data)]
    registry.register(FamilyCollector(MetricFamily("drift", MetricType.SUMMARY, "D.", series)))
    parsed = om_samples(scrape(registry))
    assert set(parsed) == {
        ("drift", frozenset({("quantile", "0.5")})),
        ("drift", frozenset({("quantile", "0.9")})),
        ("drift_count", frozenset()),
        ("drift_sum", frozenset()),
    }


# --- exemplars ---------------------------------------------------------------------------------


def render_one(*items: MetricFamily) -> dict[str, Any]:
    text = openmetrics.render(list(items))
    return families(text)


def test_counter_exemplars() -> None:
    series: list[tuple[LabelSet, Any]] = [
        (LabelSet(("path",), ("/a",)), CounterData(3.0, Exemplar({"trace_id": "abc"}, 1.0, 1.7e9))),
        (LabelSet(("path",), ("/b",)), CounterData(1.0, Exemplar({"trace_id": "def"}, 0.5))),
        (LabelSet(("path",), ("/c",)), CounterData(2.0)),
        (LabelSet(("path",), ("/d",)), 4.0),
    ]
    parsed = render_one(MetricFamily("hits_total", MetricType.COUNTER, "Hits.", series))
    by_path = {s.labels["path"]: s for s in parsed["hits"].samples}
    assert by_path["/a"].value == 3
    assert by_path["/a"].exemplar.labels == {"trace_id": "abc"}
    assert by_path["/a"].exemplar.value == 1.0
    assert float(by_path["/a"].exemplar.timestamp) == 1.7e9
    assert by_path["/b"].exemplar.labels == {"trace_id": "def"}
    assert by_path["/b"].exemplar.timestamp is None
    assert by_path["/c"].exemplar is None
    assert by_path["/d"].exemplar is None


def test_exemplar_line_syntax() -> None:
    series: list[tuple[LabelSet, Any]] = [
        (EMPTY_LABELS, CounterData(1.0, Exemplar({"trace_id": "abc"}, 0.3, 1700000000.0)))
    ]
    text = openmetrics.render([MetricFamily("x_total", MetricType.COUNTER, "X.", series)])
    assert 'x_total 1.0 # {trace_id="abc"} 0.3 1700000000.0\n' in text


def test_histogram_exemplars_sit_on_their_buckets() -> None:
    exemplars = [
        Exemplar({"trace_id": "fast"}, 0.05, 1700000000.5),
        None,
        Exemplar({"trace_id": "slow", "span_id": "7"}, 12.0),
    ]
    data = HistogramData((0.1, 1.0, INF), [1, 0, 2], 24.05, exemplars)
    family = MetricFamily("op_seconds", MetricType.HISTOGRAM, "Op.", [(EMPTY_LABELS, data)])
    samples = render_one(family)["op_seconds"].samples
    buckets = {s.labels["le"]: s for s in samples if s.name.endswith("_bucket")}
    assert [b.value for b in buckets.values()] == [1, 1, 3]
    assert buckets["0.1"].exemplar.labels == {"trace_id": "fast"}
    assert buckets["0.1"].exemplar.value == 0.05
    assert float(buckets["0.1"].exemplar.timestamp) == 1700000000.5
    assert buckets["1.0"].exemplar is None
    assert buckets["+Inf"].exemplar.labels == {"trace_id": "slow", "span_id": "7"}


def test_exemplar_labels_are_escaped_and_may_be_empty() -> None:
    hostile = 'a "b" \\ c\nd'
    series: list[tuple[LabelSet, Any]] = [
        (LabelSet(("k",), ("1",)), CounterData(1.0, Exemplar({"note": hostile}, 1.0))),
        (LabelSet(("k",), ("2",)), CounterData(1.0, Exemplar({}, 2.0))),
    ]
    parsed = render_one(MetricFamily("e_total", MetricType.COUNTER, "E.", series))
    exemplars = {s.labels["k"]: s.exemplar for s in parsed["e"].samples}
    assert exemplars["1"].labels == {"note": hostile}
    assert exemplars["2"].labels == {}
    assert exemplars["2"].value == 2.0


def test_exemplar_of_128_characters_is_accepted() -> None:
    """The spec's limit is 128 characters of label names and values; the parser enforces it."""
    labels = {"trace_id": "x" * (128 - len("trace_id"))}
    series: list[tuple[LabelSet, Any]] = [(EMPTY_LABELS, CounterData(1.0, Exemplar(labels, 1.0)))]
    parsed = render_one(MetricFamily("long_total", MetricType.COUNTER, "L.", series))
    assert parsed["long"].samples[0].exemplar.labels == labels


# --- the Prometheus server as the peer ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.system
def test_prometheus_scrapes_openmetrics_with_exemplars(tmp_path: Path) -> None:
    prometheus = require_program("prometheus")
    registry = CollectorRegistry()
    Counter("om_jobs_total", "Jobs.", registry=registry).inc(5)
    Gauge("om_temperature_celsius", "Temperature.", registry=registry, unit="celsius").set(21.5)
    Histogram(
        "om_wait_seconds", "Wait.", buckets=[1, 2], registry=registry, unit="seconds"
    ).observe(1.5)
    exemplar_series: list[tuple[LabelSet, Any]] = [
        (EMPTY_LABELS, CounterData(7.0, Exemplar({"trace_id": "abc123"}, 2.0, time.time())))
    ]
    registry.register(
        FamilyCollector(MetricFamily("om_traced_total", MetricType.COUNTER, "T.", exemplar_series))
    )

    prometheus_port = free_port()
    base = f"http://127.0.0.1:{prometheus_port}"
    with (
        start_http_server(0, addr="127.0.0.1", registry=registry) as server,
        open(tmp_path / "prometheus.log", "wb") as log,
    ):
        config = {
            "global": {"scrape_interval": "200ms", "scrape_timeout": "200ms"},
            "scrape_configs": [
                {
                    "job_name": "pytheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
                }
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            target = wait_for_scrape(base, process)
            assert target["health"] == "up", target
            assert target["lastError"] == ""

            values = {
                name: float(api(base, "/api/v1/query", query=name)["result"][0]["value"][1])
                for name in ("om_jobs_total", "om_temperature_celsius", "om_wait_seconds_count")
            }
            assert values == {
                "om_jobs_total": 5,
                "om_temperature_celsius": 21.5,
                "om_wait_seconds_count": 1,
            }
            metadata = api(base, "/api/v1/targets/metadata", match_target='{job="pytheus"}')
            units = {m["metric"]: (m["type"], m["unit"]) for m in metadata}
            assert units["om_temperature_celsius"] == ("gauge", "celsius")  # read from # UNIT
            assert units["om_wait_seconds"] == ("histogram", "seconds")
            assert units["om_jobs"] == ("counter", "")  # the OpenMetrics family name

            now = time.time()
            found = api(
                base,
                "/api/v1/query_exemplars",
                query="om_traced_total",
                start=str(now - 600),
                end=str(now + 600),
            )
            assert [e["labels"] for group in found for e in group["exemplars"]] == [
                {"trace_id": "abc123"}
            ]
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_scrape(base: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The pytheus target once Prometheus has scraped it (its first scrape comes within ~5 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "prometheus exited; see prometheus.log"
        try:
            targets = api(base, "/api/v1/targets")["activeTargets"]
        except OSError:
            targets = []
        for target in targets:
            if not target["lastScrape"].startswith("0001"):
                return dict(target)
        time.sleep(0.1)
    raise AssertionError("prometheus did not scrape the target")
