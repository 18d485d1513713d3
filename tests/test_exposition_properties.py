"""Properties of the text exposition, read back with prometheus_client's parser.

Whatever a user passes (label values, help texts, names, numbers), pytheus either refuses it with
a pytheus exception at the call that was wrong, or exposes it so that the parser gives back
exactly what was passed. A scrape never raises and its output is always valid UTF-8.

Each example uses a fresh registry and a fresh metric name (the per-value test backend keeps its
values by name across registries), on the backend the ``backend`` fixture loaded for the test.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pytheus.exceptions import (
    InvalidMetricNameException,
    LabelValidationException,
    PytheusException,
)
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# Any code point, lone surrogates included, with the characters that matter to the format
# (escapes, quotes, line ends, separators) drawn often.
HOSTILE_CHARS = '\\"\n\r\x00\t {}=,#\u2028\u0085\x1c\ud800\udfff'
characters = st.one_of(
    st.characters(exclude_categories=()),  # every category, surrogates (Cs) included
    st.sampled_from(HOSTILE_CHARS),
)
texts = st.one_of(
    st.text(characters),
    st.text(),
    st.sampled_from(["", "\\", "\\n", '"', '\\"', "\n", "\r\n", " ", "\ud800", "a\udc80b"]),
)

_names = itertools.count()


def fresh_name(stem: str) -> str:
    return f"{stem}_{next(_names)}"


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scrape(registry: CollectorRegistry) -> list[Any]:
    text = generate_metrics(registry)
    text.encode("utf-8")  # what is served must be valid UTF-8
    return list(text_string_to_metric_families(text))


def only_sample(registry: CollectorRegistry, sample_name: str) -> Any:
    found = [s for family in scrape(registry) for s in family.samples if s.name == sample_name]
    assert len(found) == 1, found
    return found[0]


def carried_help(help_text: str) -> str:
    """What a HELP line can carry of ``help_text``.

    Escaping makes a help text one line, but a line cannot keep blanks at its start (the blanks
    after the name separate it from the text: parsers skip them all) nor whitespace at its end
    (parsers strip line ends). The newline is escaped, so it survives at either end. Everything
    else must come back exactly.
    """
    start, end = 0, len(help_text)
    while start < end and help_text[start] in " \t\r\x0b\x0c":
        start += 1
    while end > start and help_text[end - 1].isspace() and help_text[end - 1] != "\n":
        end -= 1
    return help_text[start:end]


def same_float(got: float, expected: float) -> bool:
    if math.isnan(expected):
        return math.isnan(got)
    return got == expected and math.copysign(1, got) == math.copysign(1, expected)


# --- label values and help texts ---------------------------------------------------------------


@SETTINGS
@given(first=texts, second=texts)
def test_label_values_round_trip_or_are_refused(backend: str, first: str, second: str) -> None:
    registry = CollectorRegistry()
    name = fresh_name("labelled")
    counter = Counter(
        f"{name}_total", "Labelled.", required_labels=["zeta", "alpha"], registry=registry
    )
    try:
        child = counter.labels(zeta=first).labels({"alpha": second})
    except PytheusException as error:
        assert not (encodable(first) and encodable(second)), error
        assert name in str(error)  # the message names the metric
        assert all(not family.samples for family in scrape(registry))
        return
    assert encodable(first) and encodable(second)
    child.inc(3)
    sample = only_sample(registry, f"{name}_total")
    assert sample.labels == {"zeta": first, "alpha": second}
    assert list(sample.labels) == ["zeta", "alpha"]
    assert sample.value == 3


@SETTINGS
@given(label_value=texts, bound=st.floats(allow_nan=False))
def test_histogram_label_values_round_trip_or_are_refused(
    backend: str, label_value: str, bound: float
) -> None:
    registry = CollectorRegistry()
    name = fresh_name("histogram")
    histogram = Histogram(name, "H.", required_labels=["path"], buckets=[bound], registry=registry)
    try:
        child = histogram.labels(path=label_value)
    except PytheusException:
        assert not encodable(label_value)
        return
    child.observe(bound)
    [family] = scrape(registry)
    for sample in family.samples:
        assert sample.labels["path"] == label_value
        assert next(iter(sample.labels)) == "path"
    assert {s.labels["le"] for s in family.samples if s.name.endswith("_bucket")} >= {"+Inf"}


@SETTINGS
@given(default=texts, help_text=texts)
def test_default_labels_and_help_round_trip_or_are_refused(
    backend: str, default: str, help_text: str
) -> None:
    registry = CollectorRegistry()
    name = fresh_name("defaults")
    try:
        Gauge(
            name, help_text, required_labels=["d"], default_labels={"d": default}, registry=registry
        )
    except PytheusException as error:
        assert not (encodable(default) and encodable(help_text)), error
        assert name in str(error)
        assert scrape(registry) == []  # nothing was registered
        return
    assert encodable(default) and encodable(help_text)
    [family] = scrape(registry)
    assert family.documentation == carried_help(help_text)
    [sample] = family.samples
    assert sample.labels == {"d": default}
    assert sample.value == 0


@SETTINGS
@given(help_text=texts, metric_class=st.sampled_from([Counter, Gauge, Histogram, Summary]))
def test_help_round_trips_or_is_refused(
    backend: str, help_text: str, metric_class: type[Any]
) -> None:
    registry = CollectorRegistry()
    name = fresh_name("helped")
    try:
        metric_class(name, help_text, registry=registry)
    except PytheusException as error:
        assert not encodable(help_text), error
        assert name in str(error)
        return
    assert encodable(help_text)
    families = scrape(registry)
    assert [f.documentation for f in families] == [carried_help(help_text)]
    # the help cannot smuggle in a line: one HELP, one TYPE and the type's samples only
    buckets = len(Histogram.DEFAULT_BUCKETS) + (Histogram.DEFAULT_BUCKETS[-1] != math.inf)
    expected_lines = {Counter: 1, Gauge: 1, Summary: 2}.get(metric_class, buckets + 2)
    assert generate_metrics(registry).count("\n") == 2 + expected_lines


def test_carried_help_oracle() -> None:
    """The oracle itself, on cases worked out by hand from the format."""
    assert carried_help("  text  ") == "text"
    assert carried_help("\ttext\r") == "text"
    assert carried_help("\ntext\n") == "\ntext\n"
    assert carried_help(" \n ") == "\n"
    assert carried_help("\u2028text\u2028") == "\u2028text"
    assert carried_help("a  b") == "a  b"


# --- names -------------------------------------------------------------------------------------

metric_names = st.one_of(
    st.from_regex(METRIC_NAME, fullmatch=True),
    st.text(characters, max_size=12),
    st.text(alphabet="aZ_:0-é ", max_size=6),
)
label_names = st.one_of(
    st.from_regex(LABEL_NAME, fullmatch=True),
    st.text(characters, max_size=12),
    st.text(alphabet="aZ_:0-é ", max_size=6),
)


@SETTINGS
@given(name=metric_names)
def test_metric_names(backend: str, name: str) -> None:
    registry = CollectorRegistry()
    valid = METRIC_NAME.fullmatch(name) is not None
    try:
        Gauge(name, "Named.", registry=registry).set(1)
    except InvalidMetricNameException as error:
        assert not valid, error
        assert repr(name) in str(error)
        return
    assert valid
    assert [f.name for f in scrape(registry)] == [name]


@SETTINGS
@given(prefix=metric_names)
def test_registry_prefixes(backend: str, prefix: str) -> None:
    valid = METRIC_NAME.fullmatch(prefix) is not None
    try:
        registry = CollectorRegistry(prefix=prefix)
    except InvalidMetricNameException:
        assert not valid
        return
    assert valid
    name = fresh_name("prefixed")
    Gauge(name, "Prefixed.", registry=registry).set(2)
    assert only_sample(registry, f"{prefix}_{name}").value == 2


@SETTINGS
@given(
    label=label_names,
    metric_class=st.sampled_from([Counter, Gauge, Histogram, Summary]),
)
def test_label_names(backend: str, label: str, metric_class: type[Any]) -> None:
    registry = CollectorRegistry()
    name = fresh_name("label_named")
    reserved = {Histogram: "le", Summary: "quantile"}.get(metric_class)
    valid = LABEL_NAME.fullmatch(label) is not None and not label.startswith("__")
    try:
        metric = metric_class(name, "N.", required_labels=[label], registry=registry)
    except LabelValidationException as error:
        assert not valid or label == reserved, error
        assert name in str(error)
        return
    assert valid and label != reserved
    metric.labels({label: "v"})._require_observable()
    for family in scrape(registry):
        for sample in family.samples:
            assert sample.labels[label] == "v"


# --- numbers -----------------------------------------------------------------------------------


@SETTINGS
@given(number=st.floats())
def test_gauge_values_round_trip(backend: str, number: float) -> None:
    registry = CollectorRegistry()
    name = fresh_name("gauge")
    Gauge(name, "G.", registry=registry).set(number)
    assert same_float(only_sample(registry, name).value, number)


@SETTINGS
@given(number=st.floats(min_value=0))
def test_counter_values_round_trip(backend: str, number: float) -> None:
    registry = CollectorRegistry()
    name = fresh_name("counter")
    Counter(f"{name}_total", "C.", registry=registry).inc(number)
    assert same_float(only_sample(registry, f"{name}_total").value, number)


@SETTINGS
@given(number=st.floats(), metric_class=st.sampled_from([Histogram, Summary]))
def test_observed_sum_round_trips(backend: str, number: float, metric_class: type[Any]) -> None:
    registry = CollectorRegistry()
    name = fresh_name("observed")
    metric_class(name, "O.", registry=registry).observe(number)
    # a sum starts at 0.0, and 0.0 + -0.0 is 0.0
    assert same_float(only_sample(registry, f"{name}_sum").value, 0.0 + number)
    assert only_sample(registry, f"{name}_count").value == 1


def cumulative_count(observations: list[float], bound: float) -> int:
    """How many observations are <= bound (NaN is <= nothing, so only +Inf holds it)."""
    if bound == math.inf:
        return len(observations)
    return sum(1 for x in observations if x <= bound)


@SETTINGS
@given(
    bounds=st.lists(st.floats(allow_nan=False), min_size=1, max_size=6, unique=True).map(sorted),
    observations=st.lists(st.floats(), max_size=10),
)
def test_histogram_buckets(backend: str, bounds: list[float], observations: list[float]) -> None:
    assume(all(a < b for a, b in zip(bounds, bounds[1:])))  # -0.0 and 0.0 are one bound
    registry = CollectorRegistry()
    name = fresh_name("histogram")
    histogram = Histogram(name, "H.", buckets=bounds, registry=registry)
    for observation in observations:
        histogram.observe(observation)

    [family] = scrape(registry)
    buckets = [s for s in family.samples if s.name == f"{name}_bucket"]
    expected_bounds = bounds if bounds[-1] == math.inf else [*bounds, math.inf]
    les = [float(s.labels["le"]) for s in buckets]
    assert les == expected_bounds  # every bound round-trips exactly, in order
    assert all(
        not math.isinf(b) or s.labels["le"] in ("+Inf", "-Inf") for b, s in zip(les, buckets)
    )
    assert [s.value for s in buckets] == [cumulative_count(observations, b) for b in les]
    [count] = [s for s in family.samples if s.name == f"{name}_count"]
    assert count.value == len(observations) == buckets[-1].value


# --- a scrape never raises ---------------------------------------------------------------------


@SETTINGS
@given(values=st.lists(st.tuples(texts, st.floats()), max_size=5), help_text=texts)
def test_scrape_never_raises(backend: str, values: list[tuple[str, float]], help_text: str) -> None:
    registry = CollectorRegistry()
    name = fresh_name("mixed")
    try:
        gauge = Gauge(name, help_text, required_labels=["k"], registry=registry)
    except PytheusException:
        gauge = Gauge(name, "fallback", required_labels=["k"], registry=registry)
    accepted: dict[str, float] = {}
    for label_value, number in values:
        try:
            child = gauge.labels(k=label_value)
        except PytheusException:
            continue
        child.set(number)
        accepted[label_value] = number
    families = scrape(registry)
    got = {s.labels["k"]: s.value for f in families for s in f.samples}
    assert got.keys() == accepted.keys()
    assert all(same_float(got[k], v) for k, v in accepted.items())
