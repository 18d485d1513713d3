"""UTF-8 metric and label names: the opt-in, the escaping schemes, negotiation and exposition,
Info keys, Enum state labels and exemplar labels, every backend, and hostile names (property).

The expected escapes are the examples of the Prometheus documentation ("UTF-8 escaping
schemes") and the scenarios of prometheus/common's ``TestEscapeName``. Quoted output is read
back with prometheus_client's parsers, which read quoted UTF-8 names (0.26); escaped output with
the same parsers, checked to hold classic names only, and with ``promtool check metrics``.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.collection import collect_registry
from pytheus.exceptions import InvalidMetricNameException, LabelValidationException
from pytheus.exposition import OPENMETRICS_CONTENT_TYPE as OM
from pytheus.exposition import PROMETHEUS_CONTENT_TYPE as TEXT
from pytheus.exposition import openmetrics, render_for_request, text
from pytheus.exposition.escaping import escape_name, exemplar_pairs, label_name, metric_name
from pytheus.exposition.negotiation import negotiate
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.naming import (
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    get_validation_scheme,
    set_validation_scheme,
)
from pytheus.registry import CollectorRegistry
from tests import proto_oracle
from tests.backends_under_test import PER_VALUE
from tests.conftest import require_program

om_parse: Callable[[str], Iterator[Any]] = openmetrics_parser.text_string_to_metric_families

PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3_TEXT = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,*/*;q=0.1"
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)


def utf8_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("http.server.requests_total", "Requests.", ["http.method"], registry=registry).labels(
        {"http.method": "GET"}
    ).inc(3)
    Histogram(
        "http.server.duration", "Duration.", ["http.method"], buckets=[0.1], registry=registry
    ).labels({"http.method": "GET"}).observe(0.05)
    Summary("rpc.size", "Size.", registry=registry).observe(7)
    Gauge("classic_depth", "Classic name, UTF-8 label.", ["node.name"], registry=registry).labels(
        {"node.name": "n1"}
    ).set(4)
    Gauge("temp °C", "Spaces and symbols.", registry=registry).set(21)
    Gauge('say "hi"\\', "Quotes and a backslash.", registry=registry).set(1)
    Enum("task.state", "State.", states=["a", "b"], registry=registry).state("b")
    Counter("plain_total", "Classic.", registry=registry).inc()
    return registry


SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def by_name(families: Any) -> dict[str, dict[SampleKey, Any]]:
    """Family name -> {(sample name, labels as sorted tuple): value}."""
    return {
        f.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        for f in families
    }


# --- the opt-in ----------------------------------------------------------------------------------


def test_the_default_is_legacy_validation() -> None:
    assert get_validation_scheme() == "legacy"
    registry = CollectorRegistry()
    with pytest.raises(InvalidMetricNameException, match="set_validation_scheme"):
        Counter("http.server.requests_total", "R.", registry=registry)
    with pytest.raises(LabelValidationException):
        Counter("requests_total", "R.", ["http.method"], registry=registry)
    with pytest.raises(InvalidMetricNameException):
        CollectorRegistry(prefix="my.app")


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize("name", ["http.server.duration", "1st", "temp °C", "花火", "😱", "a b"])
def test_utf8_accepts_any_utf8_name(name: str) -> None:
    registry = CollectorRegistry(prefix="my.app")
    Gauge(name, "G.", [name + ".label"], registry=registry).labels({name + ".label": "v"}).set(1)
    [family] = collect_registry(registry)
    assert family.name == f"my.app_{name}"


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize("name", ["", "a\udc80b", 7, None])
def test_utf8_still_refuses_invalid_metric_names(name: Any) -> None:
    with pytest.raises(InvalidMetricNameException):
        Gauge(name, "G.", registry=CollectorRegistry())


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("metric", "labels", "match"),
    [
        (Gauge, [""], "UTF-8"),
        (Gauge, ["a\udc80"], "UTF-8"),
        (Gauge, ["__x.y"], "starts with '__'"),
        (Gauge, ["a.b", "a.b"], "declared twice"),
        (Histogram, ["le"], "reserved"),
        (Summary, ["quantile"], "reserved"),
    ],
)
def test_utf8_label_rules(metric: Any, labels: list[str], match: str) -> None:
    with pytest.raises(LabelValidationException, match=match):
        metric("x.y", "X.", labels, registry=CollectorRegistry())


def test_names_are_checked_once_at_definition(utf8: None) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("defined.in.utf8", "G.", registry=registry)
    set_validation_scheme("legacy")
    gauge.set(2)  # still works, and is still exposed (escaped)
    assert "defined_in_utf8 2.0" in text.render(collect_registry(registry))
    with pytest.raises(InvalidMetricNameException):
        Gauge("another.one", "G.", registry=registry)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="'legacy' or 'utf8'"):
        set_validation_scheme("UTF-8")
    assert get_validation_scheme() == "legacy"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("utf8", "utf8"), ("UTF8", "utf8"), ("legacy", "legacy"), ("", "legacy")],
)
def test_environment_variable(value: str, expected: str) -> None:
    env = {**os.environ, "PYTHEUS_NAME_VALIDATION": value}
    code = "from pytheus.naming import get_validation_scheme; print(get_validation_scheme())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == expected


def test_environment_variable_with_a_typo_fails_loudly() -> None:
    env = {**os.environ, "PYTHEUS_NAME_VALIDATION": "utf-8"}
    result = subprocess.run(
        [sys.executable, "-c", "import pytheus.naming"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "PYTHEUS_NAME_VALIDATION='utf-8'" in result.stderr


# --- the escaping schemes ------------------------------------------------------------------------

# (input, underscores, dots, values): the Prometheus docs' examples, then prometheus/common's.
ESCAPES = [
    ("metric.name/with/slashes", "metric_name_with_slashes", None, None),
    ("metric.name.with.dots", None, "metric_dot_name_dot_with_dot_dots", None),
    # The docs write U__metric_2E_name; prometheus/common writes lower-case hex, as here.
    ("metric.name", None, None, "U__metric_2e_name"),
    (
        "http.server.duration",
        "http_server_duration",
        "http_dot_server_dot_duration",
        "U__http_2e_server_2e_duration",
    ),
    (
        "no:escaping_required",
        "no:escaping_required",
        "no:escaping__required",
        "no:escaping_required",
    ),
    (
        "mysystem.prod.west.cpu.load_total",
        "mysystem_prod_west_cpu_load_total",
        "mysystem_dot_prod_dot_west_dot_cpu_dot_load__total",
        "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load__total",
    ),
    ("http.status:sum", "http_status:sum", "http_dot_status:sum", "U__http_2e_status:sum"),
    ("label with 😱", "label_with__", "label__with____", "U__label_20_with_20__1f631_"),
    ("花火", "__", "____", "U___82b1__706b_"),
    ("label with \u0100", "label_with__", "label__with____", "U__label_20_with_20__100_"),
    ("1st", "_st", "__st", "U___31_st"),
    ("", "", "", ""),
]


@pytest.mark.parametrize(("name", "underscores", "dots", "values"), ESCAPES)
def test_escape_name(
    name: str, underscores: str | None, dots: str | None, values: str | None
) -> None:
    for scheme, expected in (("underscores", underscores), ("dots", dots), ("values", values)):
        if expected is not None:
            assert escape_name(name, scheme) == expected, scheme
    assert escape_name(name, "allow-utf-8") == name


def test_escape_name_invalid_rune_and_unknown_scheme() -> None:
    assert escape_name("\ud800", "values") == "U___FFFD_"
    with pytest.raises(ValueError, match="unknown escaping scheme"):
        escape_name("a.b", "UNDERSCORES")


def test_classic_names_are_never_changed_in_the_exposition() -> None:
    for scheme in ("allow-utf-8", "underscores", "dots", "values"):
        assert metric_name("my_metric:sum", scheme) == "my_metric:sum"
        assert label_name("my_label", scheme) == "my_label"
    assert escape_name("my_metric", "dots") == "my__metric"  # EscapeName itself doubles them


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("allow-utf-8", '"http.method"'),
        ("underscores", "http_method"),
        ("dots", "http_dot_method"),
        ("values", "U__http_2e_method"),
    ],
)
def test_label_names(scheme: str, expected: str) -> None:
    assert label_name("http.method", scheme) == expected


def test_label_names_escape_the_colon() -> None:
    """Classic label names have no ':'; prometheus/common keeps it, pytheus escapes it."""
    assert label_name("a:b", "underscores") == "a_b"
    assert label_name("a:b", "values") == "U__a_3a_b"
    assert label_name('a"b', "allow-utf-8") == '"a\\"b"'


def unescape_values(name: str) -> str:
    """prometheus/common's UnescapeName for ``values``, written from the spec."""
    assert name.startswith("U__")
    out, rest = [], name[3:]
    while rest:
        if rest[0] != "_":
            out.append(rest[0])
            rest = rest[1:]
        elif rest[1] == "_":
            out.append("_")
            rest = rest[2:]
        else:
            code, _, rest = rest[1:].partition("_")
            out.append(chr(int(code, 16)))
    return "".join(out)


def _classic_rune(rune: str, at: int, label: bool) -> bool:
    """Whether ``rune`` at position ``at`` may stand in a classic name (':' not in labels)."""
    if rune == "_" or (rune == ":" and not label):
        return True
    return rune.isascii() and (rune.isalpha() or (rune.isdigit() and at > 0))


def spec_label_name(name: str, scheme: str) -> str:
    """A label name as written under ``scheme``, from prometheus/common's EscapeName
    documentation (an oracle apart from ``pytheus.exposition.escaping``): classic names as they
    are; others quoted under allow-utf-8, or escaped rune by rune (pytheus escapes ':' in label
    names too)."""
    if name and all(_classic_rune(rune, at, True) for at, rune in enumerate(name)):
        return name
    if scheme == "allow-utf-8":
        return f'"{spec_label_value(name)}"'
    runes = []
    for at, rune in enumerate(name):
        classic = _classic_rune(rune, at, True)
        if scheme == "underscores":
            runes.append(rune if classic else "_")
        elif scheme == "dots":
            dots = {"_": "__", ".": "_dot_"}
            runes.append(dots.get(rune, rune if classic else "__"))
        else:
            runes.append("__" if rune == "_" else rune if classic else f"_{ord(rune):x}_")
    return ("U__" if scheme == "values" else "") + "".join(runes)


def spec_label_value(value: str) -> str:
    """A label value as the text formats write it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@pytest.mark.parametrize("scheme", ["underscores", "dots", "values"])
def test_the_oracle_agrees_with_the_spec_examples(scheme: str) -> None:
    column = {"underscores": 1, "dots": 2, "values": 3}[scheme]
    for row in ESCAPES:
        name, expected = row[0], row[column]
        classic = re.fullmatch(r"[a-zA-Z_]\w*", name)
        if expected is not None and name and ":" not in name and not classic:
            assert spec_label_name(name, scheme) == expected, name
    assert spec_label_name('a"b\n', "allow-utf-8") == '"a\\"b\\n"'


NAMES = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)


@given(NAMES)
def test_escaped_names_are_classic_and_values_round_trip(name: str) -> None:
    for scheme in ("underscores", "dots", "values"):
        assert METRIC_NAME_RE.fullmatch(metric_name(name, scheme)), scheme
        assert LABEL_NAME_RE.fullmatch(label_name(name, scheme)), scheme
    if not METRIC_NAME_RE.fullmatch(name):
        assert unescape_values(escape_name(name, "values")) == name


# --- negotiation ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("accept", "escaping", "content_type"),
    [
        (PROMETHEUS_3, "allow-utf-8", OM + "; escaping=allow-utf-8"),
        (
            PROMETHEUS_3_TEXT,
            "allow-utf-8",
            "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
        ),
        (PROMETHEUS_2, "underscores", OM),
        ("text/plain;version=0.0.4;q=1.0,*/*;q=0.1", "underscores", TEXT),
        (None, "underscores", TEXT),
        ("*/*", "underscores", TEXT),
        ("text/plain;version=0.0.4;escaping=underscores", "underscores", TEXT),
        ("text/plain;version=0.0.4;escaping=dots", "dots", TEXT + "; escaping=dots"),
        ("text/plain;escaping=VALUES", "values", TEXT + "; escaping=values"),
        ("text/plain;escaping=bogus", "underscores", TEXT),
        ("application/openmetrics-text;escaping=values", "values", OM + "; escaping=values"),
        # the escaping of the range that chose the format, not of another range
        ("text/plain;escaping=dots;q=0.1,application/openmetrics-text", "underscores", OM),
        (
            PROTOBUF + ";escaping=allow-utf-8",
            "allow-utf-8",
            proto_oracle.CONTENT_TYPE + "; escaping=allow-utf-8",
        ),
    ],
)
def test_negotiation(accept: str | None, escaping: str, content_type: str) -> None:
    negotiated = negotiate(accept)
    assert negotiated.escaping == escaping
    assert negotiated.content_type.lower() == content_type.lower()


@pytest.mark.parametrize("accept", [PROMETHEUS_3, PROMETHEUS_3_TEXT, "text/plain;escaping=dots"])
def test_legacy_validation_ignores_escaping(accept: str) -> None:
    negotiated = negotiate(accept)
    assert negotiated.escaping == "underscores"
    assert "escaping" not in negotiated.content_type


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    "accept", [None, PROMETHEUS_2, PROMETHEUS_3, PROMETHEUS_3_TEXT, "text/plain;escaping=dots",
               "application/openmetrics-text;escaping=values"],
)  # fmt: skip
def test_classic_names_are_byte_identical_under_every_scheme(accept: str | None) -> None:
    registry = CollectorRegistry()
    Counter("requests_total", "R.", ["code"], registry=registry).labels(code="200").inc()
    Histogram("latency_seconds", "L.", buckets=[1], registry=registry).observe(0.5)
    body, content_type, _ = render_for_request(registry, accept, None)
    families = collect_registry(registry)
    classic = (
        openmetrics.render(families) if "openmetrics" in content_type else text.render(families)
    )
    assert body == classic.encode("utf-8")


# --- exposition ----------------------------------------------------------------------------------


def test_prometheus_3_gets_quoted_openmetrics(utf8: None) -> None:
    body, content_type, _ = render_for_request(utf8_registry(), PROMETHEUS_3, None)
    assert content_type == OM + "; escaping=allow-utf-8"
    exposition = body.decode("utf-8")
    assert '# TYPE "http.server.duration" histogram\n' in exposition
    assert '{"http.server.duration_bucket","http.method"="GET",le="0.1"} 1\n' in exposition
    assert '{"http.server.requests_total","http.method"="GET"} 3.0\n' in exposition
    assert 'classic_depth{"node.name"="n1"} 4.0\n' in exposition
    assert '{"say \\"hi\\"\\\\"} 1.0\n' in exposition
    assert "plain_total 1.0\n" in exposition
    families = by_name(om_parse(exposition))  # the strict OpenMetrics parser
    assert (
        families["http.server.duration"][
            ("http.server.duration_bucket", (("http.method", "GET"), ("le", "0.1")))
        ]
        == 1
    )
    assert (
        families["http.server.requests"][("http.server.requests_total", (("http.method", "GET"),))]
        == 3
    )
    assert families["task.state"][("task.state", (("task.state", "b"),))] == 1
    assert families['say "hi"\\'] == {('say "hi"\\', ()): 1}
    assert families["temp °C"] == {("temp °C", ()): 21}


def test_text_1_0_0_quotes_names(utf8: None) -> None:
    body, content_type, _ = render_for_request(utf8_registry(), PROMETHEUS_3_TEXT, "gzip")
    assert content_type == "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
    exposition = gzip.decompress(body).decode("utf-8")
    assert '# HELP "rpc.size" Size.\n# TYPE "rpc.size" summary\n' in exposition
    assert '{"rpc.size_count"} 1\n' in exposition
    families = by_name(text_parse(exposition))
    assert (
        families["http.server.duration"][("http.server.duration_sum", (("http.method", "GET"),))]
        == 0.05
    )
    assert families["classic_depth"] == {("classic_depth", (("node.name", "n1"),)): 4}


EXPECTED_ESCAPED = {
    "underscores": {
        "http_server_requests", "http_server_duration", "rpc_size", "classic_depth", "temp__C",
        "say__hi__", "task_state", "plain",
    },
    "dots": {
        "http_dot_server_dot_requests", "http_dot_server_dot_duration", "rpc_dot_size",
        "classic_depth", "temp____C", "say____hi____", "task_dot_state", "plain",
    },
    "values": {
        "U__http_2e_server_2e_requests", "U__http_2e_server_2e_duration", "U__rpc_2e_size",
        "classic_depth", "U__temp_20__b0_C", "U__say_20__22_hi_22__5c_", "U__task_2e_state",
        "plain",
    },
}  # fmt: skip


def escaped_bodies(scheme: str) -> list[tuple[str, str]]:
    registry = utf8_registry()
    out = []
    for accept in (f"text/plain;version=0.0.4;escaping={scheme}",
                   f"application/openmetrics-text;version=1.0.0;escaping={scheme}"):  # fmt: skip
        body, content_type, _ = render_for_request(registry, accept, None)
        out.append((body.decode("utf-8"), content_type))
    return out


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize("scheme", sorted(EXPECTED_ESCAPED))
def test_escaped_output_is_classic(scheme: str) -> None:
    for exposition, content_type in escaped_bodies(scheme):
        assert ('"' + "http") not in exposition  # nothing quoted
        openmetrics_body = content_type.startswith("application/openmetrics-text")
        assert content_type.endswith("" if scheme == "underscores" else f"; escaping={scheme}")
        families = list((om_parse if openmetrics_body else text_parse)(exposition))
        # one name in both formats: a counter's stem is escaped, then "_total" added
        assert {f.name for f in families} == set(EXPECTED_ESCAPED[scheme])
        for family in families:
            for sample in family.samples:
                assert METRIC_NAME_RE.fullmatch(sample.name), sample.name
                assert all(LABEL_NAME_RE.fullmatch(label) for label in sample.labels), sample
        labels = {label for f in families for s in f.samples for label in s.labels}
        assert (
            labels
            == {
                "underscores": {"http_method", "node_name", "task_state", "le"},
                "dots": {"http_dot_method", "node_dot_name", "task_dot_state", "le"},
                "values": {"U__http_2e_method", "U__node_2e_name", "U__task_2e_state", "le"},
            }[scheme]
        )


@pytest.mark.system
@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize("scheme", sorted(EXPECTED_ESCAPED))
def test_escaped_text_passes_promtool(scheme: str) -> None:
    promtool = require_program("promtool")
    [(exposition, _), _] = escaped_bodies(scheme)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True
    )
    assert "parsing error" not in result.stdout + result.stderr
    assert result.returncode in (0, 3), result.stderr  # 3: lint about naming style only


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(("accept", "expected"), [
    (PROTOBUF + ";escaping=allow-utf-8", {"http.server.requests_total", "temp °C", "task.state"}),
    (PROTOBUF, {"http_server_requests_total", "temp__C", "task_state"}),
    # the same name as in the text formats: the stem escaped, then "_total"
    (PROTOBUF + ";escaping=values", {"U__http_2e_server_2e_requests_total", "U__temp_20__b0_C",
                                     "U__task_2e_state"}),
])  # fmt: skip
def test_protobuf_names(accept: str, expected: set[str]) -> None:
    body, _, _ = render_for_request(utf8_registry(), accept, None)
    families = {f.name: f for f in proto_oracle.decode_delimited(body)}
    assert expected <= set(families)
    [state_family] = [families[name] for name in expected if "task" in name]
    assert {pair.name for m in state_family.metric for pair in m.label} == {state_family.name}


# --- Info keys, Enum labels and exemplar labels --------------------------------------------------

TEXT_0_0_4 = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def scrape(registry: CollectorRegistry, accept: str) -> str:
    body, _, _ = render_for_request(registry, accept, None)
    return body.decode("utf-8")


def test_legacy_validation_refuses_utf8_info_keys_and_exemplar_labels() -> None:
    registry = CollectorRegistry()
    build = Info("build", "Build.", registry=registry)
    message = (
        "metric 'build': invalid label name 'service.version': it must match "
        "[a-zA-Z_][a-zA-Z0-9_]* (or set_validation_scheme('utf8')"
    )
    with pytest.raises(LabelValidationException, match=re.escape(message)):
        build.info({"service.version": "1.2"})
    counter = Counter("requests_total", "R.", registry=registry)
    with pytest.raises(
        LabelValidationException,
        match=re.escape("metric 'requests_total': invalid exemplar label name 'trace.id'"),
    ):
        counter.inc(exemplar={"trace.id": "abc"})
    histogram = Histogram("latency_seconds", "L.", buckets=[1], registry=registry)
    with pytest.raises(LabelValidationException, match=r"'latency_seconds'.*exemplar label name"):
        histogram.observe(0.5, exemplar={"trace.id": "abc"})
    assert value_of(registry, "requests_total") == 0  # nothing was recorded
    assert "build_info{" not in scrape(registry, TEXT_0_0_4)


def value_of(registry: CollectorRegistry, name: str) -> float | None:
    for family in text_parse(scrape(registry, TEXT_0_0_4)):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("", "invalid label name '': it must be a non-empty, valid UTF-8 string"),
        ("a\udc80", "valid UTF-8"),
        (7, "invalid label name 7"),
        ("__meta.x", "starts with '__'"),
        ("node.name", "already one of the metric's labels"),
    ],
)
def test_utf8_info_key_rules(key: Any, match: str) -> None:
    build = Info("build.meta", "B.", ["node.name"], registry=CollectorRegistry())
    with pytest.raises(LabelValidationException, match="metric 'build.meta': .*" + match):
        build.labels({"node.name": "n1"}).info({key: "v", "ok": "w"})


def utf8_info_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    build = Info("build.meta", "Build.", ["node.name"], registry=registry)
    build.labels({"node.name": "n1"}).info({"service.version": "1.2", "commit": "abc"})
    Enum("task.state", "State.", states=["idle", "busy"], registry=registry).state("busy")
    return registry


@pytest.mark.usefixtures("utf8")
def test_utf8_info_keys_and_state_labels_quoted() -> None:
    registry = utf8_info_registry()
    exposition = scrape(registry, OPENMETRICS + ";escaping=allow-utf-8")
    assert '# TYPE "build.meta" info\n' in exposition
    assert (
        '{"build.meta_info","node.name"="n1",commit="abc","service.version"="1.2"} 1.0\n'
        in exposition
    )
    assert '{"task.state","task.state"="busy"} 1.0\n' in exposition
    families = {f.name: f for f in om_parse(exposition)}
    assert families["build.meta"].type == "info"
    [info] = families["build.meta"].samples
    assert info.labels == {"node.name": "n1", "service.version": "1.2", "commit": "abc"}
    assert families["task.state"].type == "stateset"
    assert {s.labels["task.state"]: s.value for s in families["task.state"].samples} == {
        "idle": 0,
        "busy": 1,
    }
    text_families = by_name(
        text_parse(scrape(registry, "text/plain;version=1.0.0;escaping=allow-utf-8"))
    )
    assert text_families["build.meta_info"] == {
        (
            "build.meta_info",
            (("commit", "abc"), ("node.name", "n1"), ("service.version", "1.2")),
        ): 1
    }
    assert text_families["task.state"][("task.state", (("task.state", "busy"),))] == 1


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("scheme", "info", "version", "state", "node"),
    [
        ("underscores", "build_meta_info", "service_version", "task_state", "node_name"),
        ("dots", "build_dot_meta_info", "service_dot_version", "task_dot_state", "node_dot_name"),
        ("values", "U__build_2e_meta_info", "U__service_2e_version", "U__task_2e_state",
         "U__node_2e_name"),
    ],
)  # fmt: skip
def test_utf8_info_keys_and_state_labels_escaped(
    scheme: str, info: str, version: str, state: str, node: str
) -> None:
    registry = utf8_info_registry()
    for accept, parse in ((TEXT_0_0_4, text_parse), (OPENMETRICS, om_parse)):
        exposition = scrape(registry, f"{accept};escaping={scheme}")
        assert '"' + "service" not in exposition and '"task' not in exposition
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parse(exposition)
            for s in family.samples
        }
        assert (
            found[(info, tuple(sorted({"commit": "abc", node: "n1", version: "1.2"}.items())))] == 1
        )
        assert found[(state, ((state, "busy"),))] == 1


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("accept", "info", "key", "state"),
    [
        (PROTOBUF + ";escaping=allow-utf-8", "build.meta_info", "service.version", "task.state"),
        (PROTOBUF, "build_meta_info", "service_version", "task_state"),
        (PROTOBUF + ";escaping=dots", "build_dot_meta_info", "service_dot_version",
         "task_dot_state"),
    ],
)  # fmt: skip
def test_utf8_info_keys_and_state_labels_in_protobuf(
    accept: str, info: str, key: str, state: str
) -> None:
    body, _, _ = render_for_request(utf8_info_registry(), accept, None)
    families = {f.name: f for f in proto_oracle.decode_delimited(body)}
    [metric] = families[info].metric
    assert {pair.name: pair.value for pair in metric.label}[key] == "1.2"
    assert metric.gauge.value == 1
    states = {m.label[0].value: m.gauge.value for m in families[state].metric}
    assert states == {"idle": 0, "busy": 1}
    assert {m.label[0].name for m in families[state].metric} == {state}


@pytest.mark.system
@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize("scheme", ["underscores", "dots", "values"])
def test_escaped_info_and_exemplars_pass_promtool(scheme: str) -> None:
    promtool = require_program("promtool")
    registry = utf8_info_registry()
    Counter("traced_total", "T.", registry=registry).inc(exemplar={"trace.id": "abc"})
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape(registry, f"{TEXT_0_0_4};escaping={scheme}"),
        capture_output=True,
        text=True,
    )
    assert "parsing error" not in result.stdout + result.stderr
    assert result.returncode in (0, 3), result.stderr  # 3: lint about naming style only


def utf8_exemplar_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("orders.placed_total", "O.", registry=registry).inc(
        2, exemplar={"trace.id": "abc", "span_id": "s1"}
    )
    Histogram("http.duration", "D.", buckets=[0.1, 1], registry=registry).observe(
        0.5, exemplar={"trace.id": "def"}
    )
    return registry


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("scheme", "trace"),
    [
        ("allow-utf-8", "trace.id"),
        ("underscores", "trace_id"),
        ("dots", "trace_dot_id"),
        ("values", "U__trace_2e_id"),
    ],
)
def test_utf8_exemplar_labels(scheme: str, trace: str) -> None:
    exposition = scrape(utf8_exemplar_registry(), f"{OPENMETRICS};escaping={scheme}")
    written = f'"{trace}"' if scheme == "allow-utf-8" else trace
    assert f'# {{{written}="abc",span_id="s1"}} 2.0 ' in exposition
    exemplars = {
        s.name: s.exemplar for family in om_parse(exposition) for s in family.samples if s.exemplar
    }
    assert len(exemplars) == 2
    for exemplar in exemplars.values():
        assert trace in exemplar.labels
    counter = next(e for name, e in exemplars.items() if "orders" in name)
    assert counter.labels == {trace: "abc", "span_id": "s1"} and counter.value == 2


@pytest.mark.usefixtures("utf8")
@pytest.mark.parametrize(
    ("scheme", "trace"),
    [("allow-utf-8", "trace.id"), ("underscores", "trace_id"), ("values", "U__trace_2e_id")],
)
def test_utf8_exemplar_labels_over_protobuf(scheme: str, trace: str) -> None:
    body, _, _ = render_for_request(utf8_exemplar_registry(), f"{PROTOBUF};escaping={scheme}", None)
    exemplars = {}
    for family in proto_oracle.decode_delimited(body):
        for metric in family.metric:
            if metric.HasField("counter"):
                exemplars[family.name] = metric.counter.exemplar
            for bucket in metric.histogram.bucket:
                if bucket.HasField("exemplar"):
                    exemplars[family.name] = bucket.exemplar
    assert len(exemplars) == 2
    labels = {name: {p.name: p.value for p in e.label} for name, e in exemplars.items()}
    counter = next(found for name, found in labels.items() if "orders" in name)
    histogram = next(found for name, found in labels.items() if "duration" in name)
    assert counter == {trace: "abc", "span_id": "s1"} and histogram == {trace: "def"}


@pytest.mark.usefixtures("utf8")
def test_exemplar_escaped_past_the_limit_is_left_out_of_protobuf() -> None:
    registry = CollectorRegistry()
    Counter("c", "C.", registry=registry).inc(exemplar={"trace.é": "é" * 121})  # 128 characters
    kept, left_out = (
        proto_oracle.decode_delimited(
            render_for_request(registry, f"{PROTOBUF};escaping={scheme}", None)[0]
        )[0]
        .metric[0]
        .counter
        for scheme in ("allow-utf-8", "values")
    )
    assert kept.HasField("exemplar") and kept.value == 1
    assert not left_out.HasField("exemplar") and left_out.value == 1


@pytest.mark.usefixtures("utf8")
def test_exemplar_limit_counts_characters_and_escaping_never_breaks_it() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "C.", registry=registry)
    name = "trace.é"  # 7 characters, 8 bytes in UTF-8
    counter.inc(exemplar={name: "é" * (128 - len(name))})  # 128 characters: allowed
    with pytest.raises(LabelValidationException, match=r"129 characters.*at most 128"):
        counter.inc(exemplar={name: "é" * (129 - len(name))})
    quoted = scrape(registry, f"{OPENMETRICS};escaping=allow-utf-8")
    [sample] = [s for f in om_parse(quoted) for s in f.samples]
    assert sample.exemplar is not None and sample.exemplar.labels == {name: "é" * 121}
    # escaped, the name grows past the limit: the sample stays, its exemplar is left out
    for scheme in ("underscores", "values"):
        escaped = scrape(registry, f"{OPENMETRICS};escaping={scheme}")
        [sample] = [s for f in om_parse(escaped) for s in f.samples]
        if scheme == "underscores":  # same length: kept
            assert sample.exemplar is not None and sample.exemplar.labels == {"trace__": "é" * 121}
        else:
            assert sample.value == 1 and sample.exemplar is None
            assert " # " not in escaped


def test_exemplar_pairs() -> None:
    assert exemplar_pairs({"trace.id": "abc"}, "underscores") == [("trace_id", "abc")]
    assert exemplar_pairs({"trace.id": "abc"}, "allow-utf-8") == [("trace.id", "abc")]
    assert exemplar_pairs({"a.b": "x" * 123}, "values") is None  # U__a_2e_b: 9 + 123 > 128
    assert exemplar_pairs({"a.b": "x" * 119}, "values") == [("U__a_2e_b", "x" * 119)]


@pytest.mark.usefixtures("utf8")
def test_utf8_names_on_every_backend(backend: str) -> None:
    """Names with quotes and backslashes go through each store (Redis finds a gauge's type in
    its JSON description without decoding it, unless the name defeats that)."""
    registry = CollectorRegistry()
    Gauge('say "hi"\\', "G.", multiprocess_mode="max", registry=registry).set(5)
    Info("build.meta", "B.", registry=registry).info({"service.version": "1.2"})
    Enum('task "state"', "S.", states=["idle", "busy"], registry=registry).state("busy")
    Counter("orders.placed_total", "O.", registry=registry).inc(2, exemplar={"trace.id": "abc"})
    exposition = scrape(registry, OPENMETRICS + ";escaping=allow-utf-8")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s
        for f in om_parse(exposition)
        for s in f.samples
    }
    assert found[('say "hi"\\', ())].value == 5
    assert found[("build.meta_info", (("service.version", "1.2"),))].value == 1
    assert found[('task "state"', (('task "state"', "busy"),))].value == 1
    assert found[('task "state"', (('task "state"', "idle"),))].value == 0
    counter = found[("orders.placed_total", ())]
    assert counter.value == 2
    if backend not in PER_VALUE:  # the per-value protocol keeps no exemplars
        assert counter.exemplar is not None and counter.exemplar.labels == {"trace.id": "abc"}


# --- hostile names: nothing raises while rendering, nothing adds a line ---------------------------

# Any code point but lone surrogates (refused at definition, see above), with the characters
# that matter to the formats (escapes, quotes, line ends, separators) drawn often.
HOSTILE = '\\"\n\r\x00\t {}=,#\u2028\u0085\x1c'
HOSTILE_NAMES = st.text(
    st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(HOSTILE)),
    min_size=1,
    max_size=12,
)
SCHEMES = ("allow-utf-8", "underscores", "dots", "values")


def hostile_registries(names: list[str]) -> dict[str, CollectorRegistry]:
    """One registry per kind of metric, every name and value drawn from ``names``."""
    metric, label, key, exemplar = names
    registries = {kind: CollectorRegistry() for kind in ("gauge", "info", "enum", "counter")}
    Gauge(metric, "G.", [label], registry=registries["gauge"]).labels({label: metric}).set(1)
    Info(metric, "I.", registry=registries["info"]).info({key: label})
    Enum(metric, "E.", states=[key, key + "!"], registry=registries["enum"]).state(key)
    Counter(metric, "C.", registry=registries["counter"]).inc(exemplar={exemplar: key})
    return registries


# The lines of each kind's body: # HELP, # TYPE, its samples, and # EOF in OpenMetrics.
TEXT_LINES = {"gauge": 3, "info": 3, "enum": 4, "counter": 3}
OM_LINES = {"gauge": 4, "info": 4, "enum": 5, "counter": 4}


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE_NAMES, min_size=4, max_size=4))
def test_hostile_utf8_names_render_safely_in_every_format(names: list[str]) -> None:
    metric, label, key, exemplar = names
    set_validation_scheme("utf8")
    try:
        if label.startswith("__") or key.startswith("__"):
            with pytest.raises((InvalidMetricNameException, LabelValidationException)):
                hostile_registries(names)
            return
        bodies = {
            (kind, scheme, accept): render_for_request(
                registry, f"{accept};escaping={scheme}", None
            )[0]
            for kind, registry in hostile_registries(names).items()
            for scheme in SCHEMES
            for accept in (TEXT_0_0_4, OPENMETRICS, PROTOBUF)
        }
    finally:
        set_validation_scheme("legacy")
    for (kind, scheme, accept), body in bodies.items():
        if accept == PROTOBUF:
            [family] = proto_oracle.decode_delimited(body)
            if scheme != "allow-utf-8":
                assert METRIC_NAME_RE.fullmatch(family.name)
                assert all(LABEL_NAME_RE.fullmatch(p.name) for m in family.metric for p in m.label)
            continue
        exposition = body.decode("utf-8")
        openmetrics_body = accept == OPENMETRICS
        lines = (OM_LINES if openmetrics_body else TEXT_LINES)[kind]
        assert exposition.count("\n") == lines and exposition.endswith("\n")
        if any(spec_label_name(n, scheme).startswith("__") for n in (label, key, metric, exemplar)):
            # Prometheus's own escapes may start with "__" ("0" -> "__" under dots): Prometheus
            # reads them, prometheus_client's parsers refuse them as reserved
            continue
        if kind == "counter" and openmetrics_body and '"' in key + exemplar:
            # prometheus_client's OpenMetrics parser ends an exemplar's quoted string at \"
            line = exposition.split("\n")[2]  # not splitlines(): \x85 and \u2028 end none
            written = spec_label_name(exemplar, scheme)
            assert f' # {{{written}="{spec_label_value(key)}"}} 1.0 ' in line
            continue
        parse = om_parse if openmetrics_body else text_parse
        found = [s for f in parse(exposition) for s in f.samples]
        assert len(found) == lines - (3 if openmetrics_body else 2)
        for sample in found:
            if scheme == "allow-utf-8":  # every name read back as it was defined
                assert sample.name in {metric, metric + "_info", metric + "_total"}
                expected = {"gauge": {label}, "info": {key}, "enum": {metric}, "counter": set()}
                assert set(sample.labels) == expected[kind]
            else:
                assert METRIC_NAME_RE.fullmatch(sample.name), sample.name
                assert all(LABEL_NAME_RE.fullmatch(n) for n in sample.labels), sample.labels
            assert set(sample.labels.values()) <= {metric, label, key, key + "!"}
            if kind == "counter" and openmetrics_body:
                assert sample.exemplar is not None
                assert list(sample.exemplar.labels.values()) == [key]
                if scheme == "allow-utf-8":
                    assert list(sample.exemplar.labels) == [exemplar]


@pytest.mark.parametrize(
    ("validation", "name", "accept", "written"),
    [
        ("legacy", "task:state", OPENMETRICS, "task_state"),
        ("utf8", "task:state", OPENMETRICS, "task_state"),
        ("utf8", "task:state", OPENMETRICS + ";escaping=allow-utf-8", "task:state"),
        ("utf8", "a.b:c", OPENMETRICS, "a_b_c"),
        ("utf8", "a.b:c", OPENMETRICS + ";escaping=dots", "a_dot_b__c"),
        ("utf8", "a.b:c", OPENMETRICS + ";escaping=allow-utf-8", "a.b:c"),
    ],
)
def test_a_stateset_and_its_state_label_have_the_same_name(
    validation: str, name: str, accept: str, written: str
) -> None:
    """OpenMetrics labels a stateset's samples with the family's name; a label cannot have ':'
    unless quoted, so under escaping the family name is escaped as a label name too."""
    set_validation_scheme(validation)
    try:
        registry = CollectorRegistry()
        Enum(name, "S.", states=["idle", "busy"], registry=registry).state("busy")
        exposition = scrape(registry, accept)
    finally:
        set_validation_scheme("legacy")
    [family] = om_parse(exposition)  # it checks that every sample has the family's label
    assert family.name == written and family.type == "stateset"
    assert {s.labels[written]: s.value for s in family.samples} == {"idle": 0, "busy": 1}


@pytest.mark.parametrize(
    ("validation", "prefix", "accept", "written"),
    [
        ("legacy", "app", OPENMETRICS, "app_task_state"),
        ("utf8", "my.app", OPENMETRICS + ";escaping=allow-utf-8", "my.app_task_state"),
        ("utf8", "my.app", OPENMETRICS, "my_app_task_state"),
    ],
)
def test_a_prefixed_stateset_is_labelled_with_its_prefixed_name(
    validation: str, prefix: str, accept: str, written: str
) -> None:
    set_validation_scheme(validation)
    try:
        registry = CollectorRegistry(prefix=prefix)
        Enum("task_state", "S.", states=["idle", "busy"], registry=registry).state("busy")
        exposition = scrape(registry, accept)
        text_exposition = scrape(registry, TEXT_0_0_4)
    finally:
        set_validation_scheme("legacy")
    [family] = om_parse(exposition)
    assert family.name == written
    assert {s.labels[written]: s.value for s in family.samples} == {"idle": 0, "busy": 1}
    [gauge] = text_parse(text_exposition)
    assert {s.labels[gauge.name]: s.value for s in gauge.samples} == {"idle": 0, "busy": 1}
