"""The OpenMetrics 2.0 exposition, checked by oracles that share no code with the formatter.

- Grammar: every exposition must match the spec's ABNF (``tests/data/openmetrics2.abnf``, the
  spec's block copied verbatim), matched by the abnf package.
- Meaning: a small reader written here from the spec's prose (quoting, escapes, composite
  values, spans) gives back what the test recorded. Native buckets are compared with a
  brute-force reference that places each observed value by the spec's formula
  ``(2**2**-n)**i``, decided exactly with fractions, and with the buckets the official protobuf
  schema decodes from pytheus's protobuf exposition of the same histogram.
- Negotiation: 2.0.0 is served only to a scraper that names that version.

The abnf parser explores every way to split a metric set into families, which grows quickly
with the number of lines, so the expositions here stay small (tens of lines).
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from abnf.parser import ParseError, Rule
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.collection import collect_registry
from pytheus.exceptions import PytheusException
from pytheus.exposition import (
    OPENMETRICS_2_CONTENT_TYPE,
    OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
    openmetrics2,
    protobuf,
    render_for_request,
)
from pytheus.exposition.negotiation import negotiate
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.naming import set_validation_scheme
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
    SeriesValue,
    SummaryData,
)
from tests import proto_oracle
from tests.backends_under_test import PER_VALUE

INF = math.inf
OM2 = OPENMETRICS_2_CONTENT_TYPE
OM1 = OPENMETRICS_CONTENT_TYPE
TEXT = PROMETHEUS_CONTENT_TYPE
ASK_OM2 = "application/openmetrics-text;version=2.0.0"
OM1_ASK = "application/openmetrics-text;version=1.0.0"
GRAMMAR_FILE = Path(__file__).parent / "data" / "openmetrics2.abnf"
DEFAULT_THRESHOLD = 2.0**-128  # the documented default native_zero_threshold

om1_parse: Callable[[str], Iterator[Any]] = openmetrics_parser.text_string_to_metric_families


# --- oracle 1: the spec's grammar ----------------------------------------------------------------


class OpenMetrics2Grammar(Rule):
    """The rules of ``tests/data/openmetrics2.abnf``."""


@functools.cache
def exposition_rule() -> Rule:
    OpenMetrics2Grammar.from_file(GRAMMAR_FILE)
    return OpenMetrics2Grammar("exposition")


def is_grammatical(text: str) -> bool:
    try:
        exposition_rule().parse_all(text)
    except ParseError:
        return False
    return True


def assert_grammatical(text: str) -> None:
    try:
        exposition_rule().parse_all(text)
    except ParseError as error:
        line = text.count("\n", 0, error.start)
        pytest.fail(f"not OpenMetrics 2.0 (line {line + 1}): {text.split(chr(10))[line]!r}\n{text}")


# --- oracle 2: a reader written from the spec's prose --------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
INTEGER = re.compile(r"[0-9]+")
ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}


class Cursor:
    """Reads one line from left to right; every ``take`` asserts what the spec requires."""

    def __init__(self, text: str, position: int = 0) -> None:
        self.text = text
        self.position = position

    def done(self) -> bool:
        return self.position == len(self.text)

    def peek(self) -> str:
        return self.text[self.position : self.position + 1]

    def take(self, literal: str) -> None:
        assert self.text.startswith(literal, self.position), (
            f"expected {literal!r} at {self.position} of {self.text!r}"
        )
        self.position += len(literal)

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.position)
        assert found, f"expected {pattern.pattern} at {self.position} of {self.text!r}"
        self.position = found.end()
        return found.group()

    def token(self) -> str:
        end = self.text.find(" ", self.position)
        end = len(self.text) if end < 0 else end
        token, self.position = self.text[self.position : end], end
        return token

    def rest(self) -> str:
        rest, self.position = self.text[self.position :], len(self.text)
        return rest

    def quoted(self) -> str:
        self.take('"')
        end = self.position
        while self.text[end] != '"':
            end += 2 if self.text[end] == "\\" else 1
        raw, self.position = self.text[self.position : end], end + 1
        return unescape(raw)

    def metric_name(self) -> tuple[str, bool]:
        if self.peek() == '"':
            return self.quoted(), True
        return self.match(METRIC_NAME), False

    def series(self) -> tuple[str, bool, dict[str, str]]:
        """The metric name, whether it was quoted, and the labels."""
        if self.peek() != "{":
            name = self.match(METRIC_NAME)
            return name, False, self.labels() if self.peek() == "{" else {}
        self.take("{")
        name = self.quoted()
        labels: dict[str, str] = {}
        while self.peek() == ",":
            self.take(",")
            self.label(labels)
        self.take("}")
        return name, True, labels

    def labels(self) -> dict[str, str]:
        self.take("{")
        labels: dict[str, str] = {}
        if self.peek() != "}":
            self.label(labels)
            while self.peek() == ",":
                self.take(",")
                self.label(labels)
        self.take("}")
        return labels

    def label(self, labels: dict[str, str]) -> None:
        key = self.quoted() if self.peek() == '"' else self.match(LABEL_NAME)
        self.take("=")
        assert key not in labels, f"label {key!r} twice"
        labels[key] = self.quoted()

    def value(self) -> str:
        if self.peek() != "{":
            return self.token()
        end = self.text.index("}", self.position) + 1
        value, self.position = self.text[self.position : end], end
        return value


def unescape(raw: str) -> str:
    """An escaped string's text: ``\\n``, ``\\"`` and ``\\\\``; ``\\x`` is a backslash and x."""
    out = []
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            following = raw[index + 1]
            out.append(ESCAPES.get(following, "\\" + following))
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


@dataclass
class Sample:
    name: str
    quoted: bool
    labels: dict[str, str]
    value: str
    exemplars: list[tuple[dict[str, str], float, float]]

    @property
    def number(self) -> float:
        assert not self.value.startswith("{"), f"{self.value} is not a number"
        return float(self.value)


@dataclass
class Family:
    name: str
    quoted: bool
    type: str
    unit: str | None = None
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)


def read(text: str) -> dict[str, Family]:
    """The families of an exposition, in order; asserts the rules the grammar cannot express.

    Families start with ``# TYPE`` (pytheus always writes it) and are not interleaved, metadata
    comes in the order TYPE, UNIT, HELP, and every sample is named as its family.
    """
    assert text.endswith("# EOF\n")
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text[: -len("# EOF\n")].split("\n")[:-1]:
        if line.startswith("# "):
            cursor = Cursor(line, 2)
            keyword = cursor.match(re.compile("TYPE|UNIT|HELP"))
            cursor.take(" ")
            name, quoted = cursor.metric_name()
            cursor.take(" ")
            rest = cursor.rest()
            if keyword == "TYPE":
                assert name not in families, f"family {name!r} twice (or interleaved)"
                current = families[name] = Family(name, quoted, rest)
                continue
            assert current is not None and current.name == name, f"{keyword} of no family"
            assert not current.samples and current.help is None, "metadata out of order"
            if keyword == "UNIT":
                assert current.unit is None
                current.unit = rest
            else:
                current.help = unescape(rest)
            continue
        cursor = Cursor(line)
        name, quoted, labels = cursor.series()
        cursor.take(" ")
        value = cursor.value()
        exemplars = []
        while not cursor.done():
            cursor.take(" # ")
            exemplar_labels = cursor.labels()
            cursor.take(" ")
            exemplar_value = float(cursor.token())
            cursor.take(" ")
            exemplars.append((exemplar_labels, exemplar_value, float(cursor.token())))
        assert current is not None and current.name == name, f"{name!r} is not its family's name"
        assert quoted == current.quoted, "the family and its samples should quote alike"
        current.samples.append(Sample(name, quoted, labels, value, exemplars))
    return families


Fields = list[tuple[str, Any]]


def composite(value: str) -> Fields:
    """The ``key:value`` fields of a composite value, in order; ``[..]`` values as lists."""
    assert value.startswith("{") and value.endswith("}"), value
    cursor = Cursor(value[1:-1])
    fields: Fields = []
    while True:
        key = cursor.match(re.compile("[a-z_]+"))
        cursor.take(":")
        if cursor.peek() == "[":
            end = cursor.text.index("]", cursor.position)
            inner = cursor.text[cursor.position + 1 : end]
            cursor.position = end + 1
            fields.append((key, inner.split(",") if inner else []))
        else:
            fields.append((key, cursor.match(re.compile("[^,]+"))))
        if cursor.done():
            return fields
        cursor.take(",")


def integer(token: str) -> int:
    """A count, which the spec wants written without a decimal point."""
    assert INTEGER.fullmatch(token), f"{token!r} is not written as an integer"
    return int(token)


def expand(spans: list[str], counts: list[str]) -> dict[int, int]:
    """``{index: count}`` from spans and absolute counts, as the spec's prose defines them.

    The first span's offset is the index of the first bucket; each later offset is the number
    of buckets left out after the span before. Zero counts (which may fill short gaps) are
    dropped.
    """
    buckets: dict[int, int] = {}
    remaining = iter(counts)
    index = 0
    total_length = 0
    for number, span in enumerate(spans):
        offset, length = span.split(":")
        index = int(offset) if number == 0 else index + integer(offset)
        for _ in range(integer(length)):
            count = integer(next(remaining))
            if count:
                buckets[index] = count
            index += 1
        total_length += integer(length)
    assert total_length == len(counts), "span lengths must add up to the number of buckets"
    return buckets


@dataclass
class HistogramValue:
    count: int
    sum: float
    schema: int | None = None
    zero_threshold: float | None = None
    zero_count: int | None = None
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    buckets: list[tuple[float, int]] | None = None


def histogram_value(sample: Sample) -> HistogramValue:
    """A histogram sample, with the field order and the classic-bucket rules checked."""
    fields = composite(sample.value)
    values = dict(fields)
    expected = ["count", "sum"]
    if "schema" in values:
        expected += ["schema", "zero_threshold", "zero_count"]
        for sign in ("negative", "positive"):
            if f"{sign}_spans" in values:
                expected += [f"{sign}_spans", f"{sign}_buckets"]
    if "bucket" in values:
        expected.append("bucket")
    assert [key for key, _ in fields] == expected
    assert len(expected) > 2, "a histogram needs native or classic buckets"
    result = HistogramValue(integer(values["count"]), float(values["sum"]))
    if "schema" in values:
        result.schema = int(values["schema"])
        result.zero_threshold = float(values["zero_threshold"])
        result.zero_count = integer(values["zero_count"])
        for sign in ("negative", "positive"):
            if f"{sign}_spans" in values:
                buckets = expand(values[f"{sign}_spans"], values[f"{sign}_buckets"])
                assert buckets, f"{sign}_spans written for no buckets"
                setattr(result, sign, buckets)
    if "bucket" in values:
        pairs = [item.split(":") for item in values["bucket"]]
        result.buckets = [(float(bound), integer(count)) for bound, count in pairs]
        bounds = [bound for bound, _ in result.buckets]
        counts = [count for _, count in result.buckets]
        assert pairs[-1][0] == "+Inf", "the +Inf bucket comes last"
        assert bounds == sorted(set(bounds)), "bounds are increasing"
        assert counts == sorted(counts), "buckets are cumulative"
        assert counts[-1] == result.count, "+Inf counts everything"
    return result


def summary_value(sample: Sample) -> tuple[int, float, list[tuple[float, float]]]:
    fields = composite(sample.value)
    assert [key for key, _ in fields] == ["count", "sum", "quantile"]
    values = dict(fields)
    quantiles = [(float(q), float(v)) for q, v in (item.split(":") for item in values["quantile"])]
    assert quantiles == sorted(quantiles), "quantiles are sorted"
    return integer(values["count"]), float(values["sum"]), quantiles


# --- oracle 3: native buckets by the spec's formula, brute force ---------------------------------


@functools.cache
def at_most(magnitude: float, index: int, schema: int) -> bool:
    """``magnitude <= (2**2**-schema)**index``, decided exactly (raised to ``2**schema``)."""
    power = Fraction(2) ** index if schema >= 0 else Fraction(2) ** (index * 2**-schema)
    raised = Fraction(magnitude) ** (2**schema) if schema >= 0 else Fraction(magnitude)
    return bool(raised <= power)


def spec_index(magnitude: float, schema: int) -> int:
    """The ``i`` with ``(2**2**-n)**(i-1) < magnitude <= (2**2**-n)**i``.

    +Inf goes in the bucket after the one holding the largest float, as the spec says.
    """
    if magnitude == INF:
        return spec_index(sys.float_info.max, schema) + 1
    base = 2**2**-schema
    index = math.ceil(math.log(magnitude) / math.log(base))  # a guess, settled exactly below
    while not at_most(magnitude, index, schema):
        index += 1
    while at_most(magnitude, index - 1, schema):
        index -= 1
    return index


def spec_native(
    values: list[float], schema: int, threshold: float
) -> tuple[int, dict[int, int], dict[int, int]]:
    """Zero count, positive and negative buckets of ``values``; NaN is in no bucket."""
    zero = 0
    positive: Tally[int] = Tally()
    negative: Tally[int] = Tally()
    for value in values:
        if math.isnan(value):
            continue
        if abs(value) <= threshold:
            zero += 1
        else:
            (positive if value > 0 else negative)[spec_index(abs(value), schema)] += 1
    return zero, dict(positive), dict(negative)


def spec_classic(values: list[float], bounds: list[float]) -> list[tuple[float, int]]:
    """Cumulative buckets: values at most each bound; NaN only in +Inf."""
    return [(bound, sum(1 for v in values if v <= bound)) for bound in bounds] + [
        (INF, len(values))
    ]


# --- helpers -------------------------------------------------------------------------------------


def scrape(registry: CollectorRegistry, escaping: str = "underscores") -> dict[str, Family]:
    text = openmetrics2.render(collect_registry(registry), escaping)
    text.encode("utf-8")
    assert_grammatical(text)
    return read(text)


def render_model(*families: MetricFamily) -> str:
    text = openmetrics2.render(list(families))
    assert_grammatical(text)
    return text


def only(family: Family) -> Sample:
    [sample] = family.samples
    return sample


# --- the oracles themselves ----------------------------------------------------------------------

SPEC_EXAMPLE = """\
# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds{path="/api/v1",method="GET"} {count:807283,sum:9036.32,\
quantile:[0.95:2,0.99:20]} st@1605281325.0
# TYPE acme_http_request_seconds histogram
acme_http_request_seconds{path="/api/v1",method="GET"} {count:2,sum:1.2e2,schema:0,\
zero_threshold:1e-4,zero_count:0,positive_spans:[1:2],positive_buckets:[1,1],\
bucket:[0.5:1,1:2,+Inf:2]} st@1605301325.0 # {} 0.054 1520879607.7 # {trace_id="x"} 1.67 15.8
# TYPE "foodb.read.errors" counter
# HELP "foodb.read.errors" The number of errors in the read path for fooDb.
{"foodb.read.errors","service.name"="my_service"} 3482
# EOF
"""
QUOTED_EXAMPLE = r"""{"\"bar\".seconds.count","b\\"="escaping\" example \n "} 0
# EOF
"""


def test_the_grammar_accepts_the_spec_examples() -> None:
    assert is_grammatical(SPEC_EXAMPLE)
    assert is_grammatical(QUOTED_EXAMPLE)
    assert is_grammatical("# EOF\n")
    assert is_grammatical("# EOF")  # the final line feed is optional


@pytest.mark.parametrize(
    "line",
    [
        'foo_total 1.0 # {trace_id="a"} 1.0',  # an exemplar needs a timestamp in 2.0
        "foo {count:1,sum:1.0,bucket:[1.0:1]}",  # no +Inf bucket
        "foo {count:1,sum:1.0,bucket:[+Inf:1],schema:0,zero_threshold:0,zero_count:0}",  # order
        "foo {count:1,sum:1.0,schema:0.0,zero_threshold:0,zero_count:0}",  # schema is an integer
        "foo {count:1,sum:1.0,schema:0,zero_threshold:+Inf,zero_count:0}",  # threshold is real
        "foo {count:1, sum:1.0,bucket:[+Inf:1]}",  # no whitespace in a composite value
        "foo {count:1,sum:1.0}",  # no buckets at all
        "foo {count:1,sum:1.0,quantile:[0.5:1.0]",  # unclosed
        'foo{a="x"y"} 1',  # unescaped double quote
        "foo.bar 1",  # a name that is not classic must be quoted
        '{"foo",a.b="x"} 1',  # so must a label name
        "# TYPE foo counter ",  # trailing space
        "# TYPE foo bogus",
    ],
)
def test_the_grammar_rejects(line: str) -> None:
    assert not is_grammatical(f"{line}\n# EOF\n")


def test_the_reader() -> None:
    families = read(re.sub(" st@[0-9.]+", "", SPEC_EXAMPLE))  # pytheus writes no st@
    assert [(f.name, f.quoted) for f in families.values()] == [
        ("acme_http_router_request_seconds", False),
        ("acme_http_request_seconds", False),
        ("foodb.read.errors", True),
    ]
    router = only(families["acme_http_router_request_seconds"])
    assert router.labels == {"path": "/api/v1", "method": "GET"}
    assert summary_value(router) == (807283, 9036.32, [(0.95, 2), (0.99, 20)])
    sample = only(families["acme_http_request_seconds"])
    value = histogram_value(sample)
    assert (value.schema, value.zero_threshold, value.positive) == (0, 1e-4, {1: 1, 2: 1})
    assert value.buckets == [(0.5, 1), (1.0, 2), (INF, 2)]
    assert sample.exemplars == [({}, 0.054, 1520879607.7), ({"trace_id": "x"}, 1.67, 15.8)]
    assert only(families["foodb.read.errors"]).labels == {"service.name": "my_service"}
    assert expand(["-3:1", "2:2"], ["3", "1", "0"]) == {-3: 3, 0: 1}
    [sample] = read(QUOTED_EXAMPLE.replace("{", '# TYPE "\\"bar\\".seconds.count" gauge\n{', 1))[
        '"bar".seconds.count'
    ].samples
    assert sample.labels == {"b\\": 'escaping" example \n '}


# --- format basics -------------------------------------------------------------------------------


def test_content_type() -> None:
    assert OM2 == "application/openmetrics-text; version=2.0.0; charset=utf-8"


def test_empty_registry_is_only_eof() -> None:
    assert openmetrics2.render([]) == "# EOF\n"


OBSERVED = [-3.0, -0.25, 0.0, 0.05, 0.5, 1.0, 1.5, 3.0, 1e3]


def test_every_type_on_every_backend(registry: CollectorRegistry, backend: str) -> None:
    before = time.time()
    Counter("orders_total", "Orders.", registry=registry).inc(3, exemplar={"trace_id": "abc"})
    Counter("retries", "Retries, named without _total.", registry=registry).inc()
    queue = Gauge("depth", "Depth.", required_labels=["queue"], registry=registry)
    queue.labels(queue="a").set(-2.5)
    classic = Histogram(
        "classic_seconds", "C.", buckets=[-1, 0.5, 2], unit="seconds", registry=registry
    )
    native = Histogram("native_seconds", "N.", native=True, registry=registry)
    both = Histogram("both_seconds", "B.", buckets=[0.1, 1], native=True, registry=registry)
    for value in OBSERVED:
        classic.observe(value)
        native.observe(value)
        both.observe(value, exemplar={"trace_id": f"t{value}"})
    Summary("size_bytes", "S.", quantiles=[0.5, 0.9], registry=registry).observe(10)
    Summary("plain_bytes", "P.", registry=registry).observe(32)
    Info("build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("phase", "Phase.", states=["init", "ready"], registry=registry).state("ready")

    families = scrape(registry)
    assert {name: family.type for name, family in families.items()} == {
        "both_seconds": "histogram",
        "build_info": "info",
        "classic_seconds": "histogram",
        "depth": "gauge",
        "native_seconds": "histogram",
        "orders_total": "counter",
        "phase": "stateset",
        "plain_bytes": "summary",
        "retries_total": "counter",
        "size_bytes": "summary",
    }
    assert families["orders_total"].help == "Orders."
    assert families["classic_seconds"].unit == "seconds"
    assert only(families["retries_total"]).number == 1
    assert only(families["depth"]).labels == {"queue": "a"}
    assert only(families["depth"]).number == -2.5

    orders = only(families["orders_total"])
    assert orders.number == 3
    if backend not in PER_VALUE:  # the per-value protocol has no place for exemplars
        [(labels, value, timestamp)] = orders.exemplars
        assert (labels, value) == ({"trace_id": "abc"}, 3)
        assert before - 1 <= timestamp <= time.time() + 1

    histogram = histogram_value(only(families["classic_seconds"]))
    assert histogram.count == len(OBSERVED)
    assert histogram.sum == pytest.approx(math.fsum(OBSERVED))
    assert histogram.schema is None
    assert histogram.buckets == spec_classic(OBSERVED, [-1, 0.5, 2])

    histogram = histogram_value(only(families["native_seconds"]))
    assert histogram.count == len(OBSERVED)
    if backend in PER_VALUE:  # keeps classic buckets only: the single +Inf one
        assert (histogram.schema, histogram.buckets) == (None, [(INF, len(OBSERVED))])
    else:
        assert histogram.buckets is None  # native only
        assert (histogram.schema, histogram.zero_threshold) == (3, DEFAULT_THRESHOLD)
        native_part = (histogram.zero_count, histogram.positive, histogram.negative)
        assert native_part == spec_native(OBSERVED, 3, DEFAULT_THRESHOLD)

    sample = only(families["both_seconds"])
    histogram = histogram_value(sample)
    assert histogram.buckets == spec_classic(OBSERVED, [0.1, 1])
    if backend not in PER_VALUE:
        native_part = (histogram.zero_count, histogram.positive, histogram.negative)
        assert native_part == spec_native(OBSERVED, 3, DEFAULT_THRESHOLD)
        # the latest exemplar of each classic bucket: <= 0.1, <= 1, +Inf
        assert [(labels, value) for labels, value, _ in sample.exemplars] == [
            ({"trace_id": "t0.05"}, 0.05),
            ({"trace_id": "t1.0"}, 1.0),
            ({"trace_id": "t1000.0"}, 1000.0),
        ]

    count, total, quantiles = summary_value(only(families["size_bytes"]))
    assert (count, total) == (1, 10)
    if backend == "memory":  # quantiles are kept by the observing process only
        assert [q for q, _ in quantiles] == [0.5, 0.9]
        assert [v for _, v in quantiles] == pytest.approx([10, 10], rel=0.01)  # within 1 %
    assert summary_value(only(families["plain_bytes"])) == (1, 32, [])
    assert only(families["plain_bytes"]).value == "{count:1,sum:32.0,quantile:[]}"

    build = only(families["build_info"])
    assert (build.labels, build.number) == ({"version": "1.2"}, 1)
    assert families["build_info"].unit is None
    assert {s.labels["phase"]: s.number for s in families["phase"].samples} == {
        "init": 0,
        "ready": 1,
    }


def test_metadata_order_and_units() -> None:
    registry = CollectorRegistry()
    Counter("read_bytes_total", "Read.", unit="bytes", registry=registry).inc()
    Gauge("quiet", "", registry=registry).set(1)
    text = openmetrics2.render(collect_registry(registry))
    assert_grammatical(text)
    assert text.split("\n")[:4] == [
        "# TYPE quiet gauge",  # no HELP line for an empty help
        "quiet 1.0",
        "# TYPE read_bytes_total counter",
        "# UNIT read_bytes_total bytes",
    ]
    assert read(text)["read_bytes_total"].help == "Read."


def test_counters_are_named_as_prometheus_stores_them() -> None:
    """``orders`` and ``orders_total`` both give ``orders_total``, as OpenMetrics 1.0 samples."""
    registry = CollectorRegistry()
    Counter("jobs_total", "Jobs.", registry=registry).inc(2)
    Counter("retries", "Retries.", registry=registry).inc()
    families = scrape(registry)
    assert sorted(families) == ["jobs_total", "retries_total"]
    om1 = render_for_request(registry, OM1_ASK, None)[0].decode()
    om1_names = {s.name for family in om1_parse(om1) for s in family.samples}
    assert om1_names == set(families)


def test_info_and_stateset() -> None:
    info = MetricFamily("build_info", MetricType.INFO, "B.", [(LabelSet(("v",), ("1",)), 1.0)])
    other = MetricFamily("host", MetricType.INFO, "H.", [(LabelSet(("h",), ("a",)), 1.0)], "x")
    states: list[tuple[LabelSet, SeriesValue]] = [
        (LabelSet(("mode",), (mode,)), float(mode == "on")) for mode in ("on", "off")
    ]
    stateset = MetricFamily("mode", MetricType.STATESET, "M.", states, "x")
    families = read(render_model(info, other, stateset))
    assert {name: f.type for name, f in families.items()} == {
        "build_info": "info",
        "host_info": "info",
        "mode": "stateset",
    }
    assert families["host_info"].unit is None  # the spec forbids units on info and stateset
    assert families["mode"].unit is None
    assert [(s.labels, s.number) for s in families["mode"].samples] == [
        ({"mode": "on"}, 1),
        ({"mode": "off"}, 0),
    ]


@pytest.mark.parametrize(
    ("validation", "prefix", "name", "escaping", "written"),
    [
        ("legacy", "", "task:state", "underscores", "task_state"),
        ("legacy", "app", "task_state", "underscores", "app_task_state"),
        ("utf8", "", "a.b:c", "underscores", "a_b_c"),
        ("utf8", "", "a.b:c", "dots", "a_dot_b__c"),
        ("utf8", "my.app", "task:state", "allow-utf-8", "my.app_task:state"),
    ],
)
def test_a_stateset_is_labelled_with_its_own_name(
    validation: str, prefix: str, name: str, escaping: str, written: str
) -> None:
    """The spec labels each state with the family's name, so both are escaped alike."""
    set_validation_scheme(validation)
    try:
        registry = CollectorRegistry(prefix=prefix) if prefix else CollectorRegistry()
        Enum(name, "S.", states=["idle", "busy"], registry=registry).state("busy")
        families = scrape(registry, escaping)
    finally:
        set_validation_scheme("legacy")
    assert list(families) == [written] and families[written].type == "stateset"
    samples = families[written].samples
    assert {s.labels[written]: s.number for s in samples} == {"idle": 0, "busy": 1}


def test_prefixed_registry() -> None:
    registry = CollectorRegistry(prefix="shop")
    Counter("orders_total", "Orders.", registry=registry).inc()
    assert list(scrape(registry)) == ["shop_orders_total"]


# --- histograms ----------------------------------------------------------------------------------


def decode_protobuf(families: list[MetricFamily]) -> dict[str, Any]:
    """Family name -> the Histogram message of its one series, as the official schema reads it."""
    decoded = proto_oracle.decode_delimited(protobuf.render(families))
    return {family.name: family.metric[0].histogram for family in decoded}


finite_or_not = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.floats(),  # subnormals, huge values, infinities and NaN
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, -4.0, 2.0**-128, 1e-300]),  # bounds of buckets
)


@settings(max_examples=120, deadline=None)
@given(
    values=st.lists(finite_or_not, max_size=30),
    schema=st.integers(MIN_SCHEMA, MAX_SCHEMA),
    threshold=st.sampled_from([0.0, DEFAULT_THRESHOLD, 1e-3, 1.0]),
    classic=st.booleans(),
)
def test_native_buckets_match_the_spec_and_protobuf(
    values: list[float], schema: int, threshold: float, classic: bool
) -> None:
    observed = NativeHistogram(schema, threshold)
    for value in values:
        observed.observe(value)
    bounds: tuple[float, ...] = (-1.0, 0.0, 1.0, INF) if classic else (INF,)
    counts = [row[1] for row in spec_classic(values, list(bounds[:-1]))]
    per_bucket = [b - a for a, b in zip([0, *counts], counts)]
    data = HistogramData(bounds, per_bucket, observed.sum, None, observed)
    family = MetricFamily("h", MetricType.HISTOGRAM, "H.", [(EMPTY_LABELS, data)])

    histogram = histogram_value(only(read(render_model(family))["h"]))
    assert histogram.count == len(values)
    assert histogram.sum == observed.sum or (math.isnan(histogram.sum) and math.isnan(observed.sum))
    assert (histogram.schema, histogram.zero_threshold) == (schema, threshold)
    spec = spec_native(values, schema, threshold)
    assert (histogram.zero_count, histogram.positive, histogram.negative) == spec
    assert histogram.buckets == (spec_classic(values, [-1.0, 0.0, 1.0]) if classic else None)

    decoded = decode_protobuf([family])["h"]
    positive = proto_oracle.native_buckets(decoded.positive_span, decoded.positive_delta)
    negative = proto_oracle.native_buckets(decoded.negative_span, decoded.negative_delta)
    assert (decoded.schema, decoded.zero_threshold) == (schema, threshold)
    assert (decoded.zero_count, positive, negative) == spec


def test_spans_keep_short_gaps_and_split_long_ones() -> None:
    native = NativeHistogram(0, 0.0)
    for value in (0.75, 3.0, 3.5, 100.0, -0.3):  # indices 0, 2, 2, 7 and -1 (negative)
        native.observe(value)
    data = HistogramData((INF,), [5], native.sum, None, native)
    sample = only(read(render_model(MetricFamily("h", MetricType.HISTOGRAM, "", [
        (EMPTY_LABELS, data)
    ])))["h"])  # fmt: skip
    assert sample.value == (
        "{count:5,sum:106.95,schema:0,zero_threshold:0.0,zero_count:0,"
        "negative_spans:[-1:1],negative_buckets:[1],"
        "positive_spans:[0:3,4:1],positive_buckets:[1,0,2,1]}"
    )


def test_empty_native_histogram() -> None:
    registry = CollectorRegistry()
    Histogram("idle_seconds", "Idle.", native=True, registry=registry)
    sample = only(scrape(registry)["idle_seconds"])
    assert sample.value == (
        "{count:0,sum:0.0,schema:3,zero_threshold:2.938735877055719e-39,zero_count:0}"
    )


def test_infinite_and_nan_observations() -> None:
    """Count includes NaN; +-Inf go in the overflow buckets; the sum may be NaN or infinite."""
    registry = CollectorRegistry()
    values = [INF, -INF, math.nan, 1.0]
    both = Histogram("odd_seconds", "O.", buckets=[1], native=True, registry=registry)
    for value in values:
        both.observe(value)
    histogram = histogram_value(only(scrape(registry)["odd_seconds"]))
    assert histogram.count == 4 and math.isnan(histogram.sum)
    assert (histogram.zero_count, histogram.positive, histogram.negative) == spec_native(
        values, 3, DEFAULT_THRESHOLD
    )
    assert histogram.buckets == [(1.0, 2), (INF, 4)]  # -Inf and 1; NaN only in +Inf


def test_negative_sums_and_bounds_are_kept() -> None:
    """OpenMetrics 1.0 drops _count and _sum then; 2.0 allows negative sums and bounds."""
    registry = CollectorRegistry()
    histogram = Histogram("offset_seconds", "O.", buckets=[-2, 0], registry=registry)
    for value in (-3.0, -1.0, 0.5):
        histogram.observe(value)
    read_back = histogram_value(only(scrape(registry)["offset_seconds"]))
    assert (read_back.count, read_back.sum) == (3, -3.5)
    assert read_back.buckets == [(-2.0, 1), (0.0, 2), (INF, 3)]


# --- exemplars -----------------------------------------------------------------------------------


def test_exemplars_without_a_timestamp_are_left_out() -> None:
    timed = Exemplar({"trace_id": "a"}, 0.5, 1700000000.25)
    untimed = Exemplar({"trace_id": "b"}, 2.0)
    odd = Exemplar({}, 3.0, INF)
    histogram = HistogramData((1.0, INF), [1, 2], 6.5, [timed, untimed])
    counter = CounterData(2.0, untimed)
    histograms = read(render_model(
        MetricFamily("h", MetricType.HISTOGRAM, "", [(EMPTY_LABELS, histogram)]),
        MetricFamily("c", MetricType.COUNTER, "", [(EMPTY_LABELS, counter)]),
        MetricFamily("d", MetricType.COUNTER, "", [(EMPTY_LABELS, CounterData(1.0, odd))]),
        MetricFamily("e", MetricType.COUNTER, "", [
            (EMPTY_LABELS, CounterData(1.0, Exemplar({}, math.nan, -5.0)))
        ]),
    ))  # fmt: skip
    assert only(histograms["h"]).exemplars == [({"trace_id": "a"}, 0.5, 1700000000.25)]
    assert only(histograms["c_total"]).exemplars == []
    assert only(histograms["d_total"]).exemplars == []
    [(labels, value, timestamp)] = only(histograms["e_total"]).exemplars
    assert (labels, math.isnan(value), timestamp) == ({}, True, -5.0)  # "{}" for no labels


# --- values the spec forbids ---------------------------------------------------------------------


def h(bounds: tuple[float, ...], counts: list[float], total: float = 1.0) -> HistogramData:
    return HistogramData(bounds, counts, total)


CASES: list[tuple[MetricType, SeriesValue, bool]] = [
    (MetricType.COUNTER, -1.0, False),
    (MetricType.COUNTER, math.nan, False),
    (MetricType.COUNTER, CounterData(-0.5), False),
    (MetricType.COUNTER, 0.0, True),
    (MetricType.COUNTER, INF, True),
    (MetricType.GAUGE, math.nan, True),
    (MetricType.GAUGE, -INF, True),
    (MetricType.HISTOGRAM, h((1.0, INF), [1, math.nan]), False),
    (MetricType.HISTOGRAM, h((1.0, INF), [-1, 2]), False),
    (MetricType.HISTOGRAM, h((2.0, 1.0, INF), [1, 1, 1]), False),  # not increasing
    (MetricType.HISTOGRAM, h((1.0, 1.0, INF), [1, 1, 1]), False),
    (MetricType.HISTOGRAM, h((math.nan, INF), [1, 1]), False),
    (MetricType.HISTOGRAM, h((1.0, INF, INF), [1, 1, 1]), False),
    (MetricType.HISTOGRAM, h((-INF, 0.0, INF), [1, 1, 1]), True),  # -Inf may come first
    (MetricType.HISTOGRAM, h((1.0, 2.0), [1, 1]), True),  # +Inf added
    (MetricType.HISTOGRAM, h((), []), True),  # only +Inf:0
    (MetricType.HISTOGRAM, h((1.0, INF), [1, 1], -5.0), True),
    (MetricType.HISTOGRAM, h((1.0, INF), [1, 1], math.nan), True),
    (MetricType.HISTOGRAM, h((1.0, INF), [1.0, 2.0], 3.0), True),  # float counts, integral
    (MetricType.SUMMARY, SummaryData(math.nan, 1.0), False),
    (MetricType.SUMMARY, SummaryData(-1, 1.0), False),
    (MetricType.SUMMARY, SummaryData(2.5, 1.0), False),  # count must be an integer
    (MetricType.SUMMARY, SummaryData(INF, 1.0), False),
    (MetricType.SUMMARY, SummaryData(1, -1.0), False),
    (MetricType.SUMMARY, SummaryData(1, math.nan), False),
    (MetricType.SUMMARY, SummaryData(3.0, INF), True),
    (MetricType.UNTYPED, 7.0, True),
    (MetricType.UNTYPED, h((1.0, INF), [1, 1]), True),  # unknown may have a composite value
]


def test_values_the_spec_forbids_leave_out_their_series_only() -> None:
    families = [
        MetricFamily(f"case_{index}", kind, "", [(LabelSet(("n",), (str(index),)), value)])
        for index, (kind, value, _) in enumerate(CASES)
    ]
    parsed = read(render_model(*families))
    kept = {family.name.split("_")[1]: bool(family.samples) for family in parsed.values()}
    assert kept == {str(index): keep for index, (_, _, keep) in enumerate(CASES)}
    assert parsed["case_26"].type == "unknown"
    value = histogram_value(only(parsed["case_14"]))
    assert value.buckets == [(1.0, 1), (2.0, 2), (INF, 2)]
    assert histogram_value(only(parsed["case_15"])).buckets == [(INF, 0)]
    assert only(parsed["case_18"]).value == "{count:3,sum:3.0,bucket:[1.0:1,+Inf:3]}"


def native_of_one(**changes: Any) -> NativeHistogram:
    """Schema 0 after observing 1.0 (bucket 0), with ``changes`` forced in."""
    native = NativeHistogram(0, 0.0)
    native.observe(1.0)
    for key, value in changes.items():
        object.__setattr__(native, key, value)
    return native


NATIVE_ONE = "schema:0,zero_threshold:0.0,zero_count:0,positive_spans:[0:1],positive_buckets:[1]"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # an invalid native part: the classic buckets alone
        (HistogramData((INF,), [1], 1.0, None, native_of_one(zero_threshold=INF)), "+Inf:1"),
        (HistogramData((INF,), [1], 1.0, None, native_of_one(zero_count=-1)), "+Inf:1"),
        (HistogramData((INF,), [1], 1.0, None, native_of_one(positive={0: -1})), "+Inf:1"),
        (HistogramData((INF,), [1], 1.0, None, native_of_one(count=0)), "+Inf:1"),
        (HistogramData((INF,), [1], 1.0, None, native_of_one(count=math.nan)), "+Inf:1"),
        # classic buckets that total another count than the native part: the native part alone
        (HistogramData((1.0, INF), [1, 1], 2.0, None, native_of_one()), "native"),
        # both valid, NaN observed: in the count and +Inf, in no native bucket
        (HistogramData((1.0, INF), [1, 1], math.nan, None, native_of_one(count=2)), "both"),
        # neither valid: no line
        (HistogramData((1.0, INF), [1, -1], 1.0, None, native_of_one(count=-1)), None),
    ],
)
def test_each_part_of_a_histogram_is_written_when_valid(
    data: HistogramData, expected: str | None
) -> None:
    family = MetricFamily("h", MetricType.HISTOGRAM, "", [(EMPTY_LABELS, data)])
    samples = read(render_model(family))["h"].samples
    if expected is None:
        assert samples == []
    elif expected == "native":
        assert only_value(samples) == f"{{count:1,sum:2.0,{NATIVE_ONE}}}"
    elif expected == "both":
        assert only_value(samples) == f"{{count:2,sum:NaN,{NATIVE_ONE},bucket:[1.0:1,+Inf:2]}}"
    else:
        assert only_value(samples) == f"{{count:1,sum:1.0,bucket:[{expected}]}}"


def only_value(samples: list[Sample]) -> str:
    [sample] = samples
    histogram_value(sample)  # its meaning holds too
    return sample.value


numbers = st.one_of(st.floats(), st.integers(-3, 3))


@settings(max_examples=150, deadline=None)
@given(
    scalars=st.lists(numbers, min_size=2, max_size=2),
    bounds=st.lists(st.floats(), max_size=4),
    counts=st.lists(numbers, max_size=5),
    total=st.floats(),
    summary=st.tuples(
        numbers, st.floats(), st.lists(st.tuples(st.floats(), st.floats()), max_size=3)
    ),
    timestamp=st.one_of(st.none(), st.floats()),
    native=st.one_of(
        st.none(),
        st.tuples(st.floats(min_value=0), st.lists(st.floats(), max_size=5)),
    ),
)
def test_any_model_values_render_grammatically(
    scalars: list[float],
    bounds: list[float],
    counts: list[float],
    total: float,
    summary: tuple[float, float, list[tuple[float, float]]],
    timestamp: float | None,
    native: tuple[float, list[float]] | None,
) -> None:
    """Whatever numbers a custom collector puts in the model, the output stays grammatical."""
    exemplar = Exemplar({"trace_id": "t"}, scalars[0], timestamp)
    observed = None
    if native is not None:
        observed = NativeHistogram(0, native[0])
        for value in native[1]:
            observed.observe(value)
    histogram = HistogramData(tuple(bounds), counts, total, [exemplar] * len(counts), observed)
    count, summary_sum, quantiles = summary
    counter = CounterData(scalars[0], exemplar)
    families = [
        MetricFamily("c", MetricType.COUNTER, "", [(EMPTY_LABELS, counter)]),
        MetricFamily("g", MetricType.GAUGE, "", [(EMPTY_LABELS, scalars[1])]),
        MetricFamily("h", MetricType.HISTOGRAM, "", [(EMPTY_LABELS, histogram)]),
        MetricFamily("s", MetricType.SUMMARY, "", [
            (EMPTY_LABELS, SummaryData(count, summary_sum, tuple(quantiles)))
        ]),
    ]  # fmt: skip
    parsed = read(render_model(*families))
    samples = parsed["h"].samples
    integral = all(isinstance(c, int) or c.is_integer() for c in counts)
    if samples and integral and (observed is None or len(bounds) != 1 or bounds[0] != INF):
        histogram_value(only(parsed["h"]))  # and its meaning holds
    if parsed["s"].samples:
        summary_value(only(parsed["s"]))


def test_summary_quantiles_are_sorted_and_checked() -> None:
    quantiles = ((0.9, 1.0), (0.5, -2.0), (1.5, 3.0), (0.1, math.nan), (0.0, 0.0), (0.9, 7.0))
    family = MetricFamily("s", MetricType.SUMMARY, "", [
        (EMPTY_LABELS, SummaryData(3, 1.5, quantiles))
    ])  # fmt: skip
    count, total, kept = summary_value(only(read(render_model(family))["s"]))
    assert (count, total) == (3, 1.5)
    assert [q for q, _ in kept] == [0.0, 0.1, 0.9]  # no negative value, no q outside 0..1
    assert math.isnan(kept[1][1]) and kept[2][1] == 1.0


def test_non_integral_counts_are_floats() -> None:
    family = MetricFamily("h", MetricType.HISTOGRAM, "", [(EMPTY_LABELS, h((INF,), [2.5]))])
    assert only(read(render_model(family))["h"]).value == "{count:2.5,sum:1.0,bucket:[+Inf:2.5]}"


def test_label_rendering_is_memoised_per_name() -> None:
    """A LabelSet shared by families (EMPTY_LABELS) is written with each family's own name."""
    labels = LabelSet(("a",), ("1",))
    families = [
        MetricFamily(name, MetricType.GAUGE, "", [(labels, 1.0), (EMPTY_LABELS, 2.0)])
        for name in ("first", "second")
    ]
    for _ in range(2):
        parsed = read(render_model(*families))
        assert [(s.name, s.labels) for f in parsed.values() for s in f.samples] == [
            ("first", {"a": "1"}),
            ("first", {}),
            ("second", {"a": "1"}),
            ("second", {}),
        ]
    assert "om2" in labels.rendered


# --- awkward text --------------------------------------------------------------------------------

HOSTILE_CHARS = '\\"\n\r\x00\t {}=,#:[]\u2028\u0085\U0001f680é'
texts = st.text(
    st.one_of(
        st.characters(codec="utf-8"),  # lone surrogates are refused at definition
        st.sampled_from(HOSTILE_CHARS),
    ),
    max_size=20,
)
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(first=texts, second=texts, help_text=texts)
def test_label_values_and_help_round_trip(first: str, second: str, help_text: str) -> None:
    registry = CollectorRegistry()
    names = ["first", "second"]
    labels = {"first": first, "second": second}
    counter = Counter("c_total", help_text, names, registry=registry)
    counter.labels(labels).inc(exemplar={"trace_id": second[:20]})
    histogram = Histogram("h", help_text, names, native=True, registry=registry)
    histogram.labels(labels).observe(1.5, exemplar={"span_id": first[:20]})
    Summary("s", help_text, names, registry=registry).labels(labels).observe(2)
    families = scrape(registry)
    assert list(families) == ["c_total", "h", "s"]
    for family in families.values():
        assert family.help == (help_text or None)
        assert only(family).labels == labels
    assert only(families["c_total"]).exemplars[0][0] == {"trace_id": second[:20]}
    assert only(families["h"]).exemplars[0][0] == {"span_id": first[:20]}


utf8_names = st.text(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from('."\\\n{}=, #')),
    min_size=1,
    max_size=12,
)


@FUZZ
@given(metric=utf8_names, label=utf8_names, value=texts)
def test_utf8_names_are_quoted_and_round_trip(
    utf8: None, metric: str, label: str, value: str
) -> None:
    registry = CollectorRegistry()
    try:
        gauge = Gauge(metric, "G.", [label], registry=registry)
        histogram = Histogram(
            metric + ".h", "H.", [label], buckets=[1], native=True, registry=registry
        )
    except PytheusException:
        assume(False)
        return
    gauge.labels({label: value}).set(1)
    histogram.labels({label: value}).observe(0.5)
    families = scrape(registry, "allow-utf-8")
    assert list(families) == [metric, metric + ".h"]
    family = families[metric]
    assert family.quoted == (METRIC_NAME.fullmatch(metric) is None)
    assert only(family).labels == {label: value}
    assert only(families[metric + ".h"]).labels == {label: value}
    for scheme in ("underscores", "dots", "values"):  # escaped names are classic
        for name in scrape(registry, scheme):
            assert METRIC_NAME.fullmatch(name)


def test_utf8_names_as_prometheus_3_would_ask(utf8: None) -> None:
    registry = CollectorRegistry()
    requests = Counter("http.server.requests", "R.", ["http.method"], registry=registry)
    requests.labels({"http.method": "GET"}).inc()
    duration = Histogram("db.query.duration", "D.", ["db.system"], native=True, registry=registry)
    duration.labels({"db.system": "pg"}).observe(0.25)
    accept = ASK_OM2 + ";escaping=allow-utf-8"
    body, content_type, _ = render_for_request(registry, accept, None)
    assert content_type == OM2 + "; escaping=allow-utf-8"
    text = body.decode()
    assert_grammatical(text)
    assert '# TYPE "http.server.requests_total" counter\n' in text
    assert '{"http.server.requests_total","http.method"="GET"} 1.0\n' in text
    families = read(text)
    assert only(families["db.query.duration"]).labels == {"db.system": "pg"}

    body, content_type, _ = render_for_request(registry, ASK_OM2, None)
    assert content_type == OM2
    assert list(read(body.decode())) == ["db_query_duration", "http_server_requests_total"]


# --- negotiation ---------------------------------------------------------------------------------

PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (ASK_OM2, OM2),
        ("Application/OpenMetrics-Text; Version=2.0.0", OM2),
        ('application/openmetrics-text; version="2.0.0"', OM2),
        (ASK_OM2 + ", */*;q=0.1", OM2),
        (ASK_OM2 + ";q=0.5,application/openmetrics-text;version=1.0.0;q=0.4", OM2),
        ("application/openmetrics-text;version=1.0.0;q=0.5," + ASK_OM2 + ";q=0.4", OM1),
        ("application/openmetrics-text;version=1.0.0;q=0.5," + ASK_OM2, OM2),
        # equal q: the range listed first wins, and a named version beats none
        ("application/openmetrics-text;version=1.0.0," + ASK_OM2, OM1),
        (ASK_OM2 + ",application/openmetrics-text;version=1.0.0", OM2),
        ("application/openmetrics-text," + ASK_OM2, OM2),
        (ASK_OM2 + ";q=0.2,text/plain;q=0.3", TEXT),
        (ASK_OM2 + ";q=0", TEXT),
        # not asked for by version: the spec wants the oldest version
        ("application/openmetrics-text", OM1),
        ("application/openmetrics-text;version=1.0.0", OM1),
        ("application/openmetrics-text;version=0.0.1", OM1),
        ("application/*", OM1),
        ("*/*", TEXT),
        (None, TEXT),
        (PROMETHEUS_3, OM1),
        ("application/openmetrics-text;version=2.0", TEXT),  # a version pytheus cannot write
        ("application/openmetrics-text;version=3.0.0", TEXT),
    ],
)
def test_negotiation(accept: str | None, expected: str) -> None:
    registry = CollectorRegistry()
    Counter("orders_total", "Orders.", registry=registry).inc(3)
    Histogram("wait_seconds", "W.", buckets=[1], native=True, registry=registry).observe(0.5)
    body, content_type, _ = render_for_request(registry, accept, None)
    assert content_type == expected
    text = body.decode()
    if expected == OM2:
        assert_grammatical(text)
        families = read(text)
        assert only(families["orders_total"]).number == 3
        assert histogram_value(only(families["wait_seconds"])).schema == 3
    elif expected == OM1:
        assert {f.name for f in om1_parse(text)} == {"orders", "wait_seconds"}
    else:
        assert {f.name for f in text_parse(text)} == {"orders", "wait_seconds"}


@pytest.mark.parametrize(
    ("accept", "escaping", "content_type"),
    [
        (ASK_OM2 + ";escaping=allow-utf-8", "allow-utf-8", OM2 + "; escaping=allow-utf-8"),
        (ASK_OM2 + ";escaping=dots", "dots", OM2 + "; escaping=dots"),
        (ASK_OM2 + ";escaping=underscores", "underscores", OM2),
        (ASK_OM2 + ";escaping=bogus", "underscores", OM2),
        # the escaping of the range that chose the format
        (
            ASK_OM2 + ",application/openmetrics-text;version=1.0.0;escaping=dots;q=0.1",
            "underscores",
            OM2,
        ),
    ],
)
def test_negotiated_escaping(utf8: None, accept: str, escaping: str, content_type: str) -> None:
    negotiated = negotiate(accept)
    assert (negotiated.escaping, negotiated.content_type) == (escaping, content_type)


def test_legacy_validation_ignores_escaping() -> None:
    negotiated = negotiate(ASK_OM2 + ";escaping=allow-utf-8")
    assert (negotiated.escaping, negotiated.content_type) == ("underscores", OM2)


def test_gzip_and_name_filter() -> None:
    import gzip

    registry = CollectorRegistry()
    Counter("orders_total", "Orders.", registry=registry).inc()
    Gauge("depth", "Depth.", registry=registry).set(2)
    body, content_type, encoding = render_for_request(registry, ASK_OM2, "gzip", ["orders"])
    assert (content_type, encoding) == (OM2, "gzip")
    text = gzip.decompress(body).decode()
    assert_grammatical(text)
    assert list(read(text)) == ["orders_total"]
