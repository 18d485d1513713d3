"""The exposition as Prometheus itself reads it: ``promtool check metrics`` (Go's text parser).

``promtool check metrics`` reads an exposition on stdin, parses it with the same parser as the
Prometheus server, then lints it. Its exit status tells the two apart (promtool 2.42):

- 0: parsed, and no lint problem; nothing is printed;
- 1: the text could not be parsed: ``error while linting: text format parsing error in line N``;
- 3: parsed, but lint problems, one per line on stderr (``x_total no help text``, ``counter
  metrics should have "_total" suffix``, ``use base unit "seconds" instead of ...``).

Lint is about naming style, which is the user's choice, not about the format. So the main test
picks names and help texts that pass lint and asks for exit status 0 and no output at all: any
complaint then comes from the way pytheus writes the text. The test with an empty help, which
lint always flags, asserts there is no parse error and that the only complaint is the help.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pytheus.exceptions import DuplicateMetricException
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, CustomCollector, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from tests.conftest import require_program
from tests.helpers import parse

pytestmark = pytest.mark.system

HOSTILE_HELP = [
    'Help with "double quotes", a \\ backslash and a \\n literal.',
    "Help over\ntwo lines, then a # TYPE x counter\n# TYPE injected counter\ninjected 1",
    "Help ending in a backslash \\",
    "Help ending in a newline\n",
    "Unicode help: é ü 雪 🚀 \u2028 \u00a0 end.",
    "Help with a carriage\rreturn, a tab\tand a NUL \x00 in it.",
    "  Help with leading blanks.",
]

HOSTILE_VALUES = [
    "",
    '"',
    "\\",
    '\\"',
    "\n",
    "\\n",
    'a "quoted" value',
    "back\\slash\\",
    "multi\nline\nvalue\n",
    '} 1\ninjected_total{a="b"} 2\n# HELP x y',
    "unicode é ü 雪 🚀 \u2028",
    "cr\rtab\tnul\x00",
    "a,b=c{d}",
]


def run_promtool(text: str) -> tuple[int, str]:
    promtool = require_program("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    return result.returncode, output


class HostileCollector(CustomCollector):
    """Custom collectors are written by the same scrape: they must be as safe."""

    def collect(self) -> Iterator[Any]:
        gauge = Gauge(
            "custom_temperature_celsius", HOSTILE_HELP[1], required_labels=["sensor"], registry=None
        )
        for index, label_value in enumerate(HOSTILE_VALUES):
            gauge.labels(sensor=label_value).set(index - 3.5)
        yield gauge


def build_hostile_registry(registry: CollectorRegistry) -> None:
    labels = ["first_label", "second_label"]
    counter = Counter(
        "hostile_requests_total", HOSTILE_HELP[0], required_labels=labels, registry=registry
    )
    gauge = Gauge("hostile_queue_depth", HOSTILE_HELP[1], required_labels=labels, registry=registry)
    histogram = Histogram(
        "hostile_request_duration_seconds",
        HOSTILE_HELP[2],
        required_labels=labels,
        buckets=[-math.inf, -1, 0, 1e-300, 0.005, 1, 2.5, 1e20],
        registry=registry,
    )
    summary = Summary(
        "hostile_payload_size_bytes", HOSTILE_HELP[3], required_labels=labels, registry=registry
    )
    for index, value in enumerate(HOSTILE_VALUES):
        other = HOSTILE_VALUES[-1 - index]
        counter.labels(first_label=value, second_label=other).inc(index)
        gauge.labels(first_label=value, second_label=other).set(index * 1.5 - 7)
        histogram.labels(first_label=value, second_label=other).observe(index / 3)
        summary.labels(first_label=value, second_label=other).observe(index * 1000)

    special = Gauge(
        "hostile_special_values", HOSTILE_HELP[4], required_labels=["kind"], registry=registry
    )
    for kind, number in [("inf", math.inf), ("minus_inf", -math.inf), ("nan", math.nan)]:
        special.labels(kind=kind).set(number)
    special.labels(kind="huge").set(1.7976931348623157e308)
    special.labels(kind="tiny").set(5e-324)
    histogram.labels(first_label="nan", second_label="").observe(math.nan)

    # unlabelled, with defaults, and partially labelled (no series)
    Counter("hostile_jobs_total", HOSTILE_HELP[5], registry=registry).inc()
    Gauge(
        "hostile_build_info",
        HOSTILE_HELP[6],
        required_labels=["version", "revision"],
        default_labels={"version": '1.0 "beta"\n', "revision": "\\"},
        registry=registry,
    )
    Histogram("hostile_wait_seconds", HOSTILE_HELP[0], registry=registry).observe(0.3)
    Summary("hostile_response_size_bytes", HOSTILE_HELP[1], registry=registry).observe(10)
    Counter(
        "hostile_partial_total", HOSTILE_HELP[2], required_labels=["a", "b"], registry=registry
    ).labels(a="only a")
    registry.register(HostileCollector())


def test_promtool_accepts_hostile_exposition(registry: CollectorRegistry) -> None:
    build_hostile_registry(registry)
    text = generate_metrics(registry)
    assert len(parse(text)) == 11  # every family made it (a parser oracle before promtool's)

    status, output = run_promtool(text)
    assert output == "", output  # no parse error, no lint complaint
    assert status == 0


def test_promtool_accepts_hostile_exposition_with_prefix(backend: str) -> None:
    registry = CollectorRegistry(prefix="shop")
    build_hostile_registry(registry)
    status, output = run_promtool(generate_metrics(registry))
    assert output == "", output
    assert status == 0


def test_promtool_empty_help_and_empty_label_values(registry: CollectorRegistry) -> None:
    counter = Counter("empty_help_total", "", required_labels=["a", "b"], registry=registry)
    counter.labels(a="", b="").inc()
    Gauge("empty_help_depth", "", registry=registry)
    Histogram("empty_help_seconds", "", required_labels=["a"], registry=registry).labels(a="")
    Summary("empty_help_bytes", "", registry=registry)

    status, output = run_promtool(generate_metrics(registry))
    assert "error" not in output.lower(), output  # parse errors read "error while linting: ..."
    # Status 3 is lint only; an empty help is the one complaint there may be, once per family.
    assert status in (0, 3), output
    complaints = sorted(output.splitlines())
    assert (
        complaints
        == sorted(
            f"{name} no help text"
            for name in (
                "empty_help_total",
                "empty_help_depth",
                "empty_help_seconds",
                "empty_help_bytes",
            )
        )
        or complaints == []
    ), output


def test_promtool_rejects_a_broken_exposition() -> None:
    """The oracle works: an unescaped newline in a label value is a parse error (status 1)."""
    status, output = run_promtool(
        '# HELP broken_total Broken.\n# TYPE broken_total counter\nbroken_total{a="x\ny"} 1\n'
    )
    assert status == 1
    assert "parsing error" in output


CLASHES = [
    # (first metric, second metric): the second one's name is a sample name of the first
    (lambda r: Histogram("clash_seconds", "H.", buckets=[1], registry=r),
     lambda r: Gauge("clash_seconds_count", "G.", registry=r)),
    (lambda r: Histogram("clash_seconds", "H.", buckets=[1], registry=r),
     lambda r: Gauge("clash_seconds_bucket", "G.", registry=r)),
    (lambda r: Summary("clash_bytes", "S.", registry=r),
     lambda r: Gauge("clash_bytes_sum", "G.", registry=r)),
    (lambda r: Gauge("clash_bytes_sum", "G.", registry=r),
     lambda r: Summary("clash_bytes", "S.", registry=r)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make_first", "make_second"),
    CLASHES,
    ids=["histogram_count", "histogram_bucket", "summary_sum", "summary_sum_first"],
)
def test_sample_name_clash_is_refused_or_scrapes(
    registry: CollectorRegistry, make_first: Any, make_second: Any
) -> None:
    """A histogram ``x`` exposes ``x_count``; a gauge ``x_count`` beside it breaks the scrape.

    Prometheus's parser reads ``# HELP x_count`` as a second HELP of family ``x`` and rejects
    the whole scrape. The registry must refuse the second definition (the call that was wrong),
    or else the scrape must still parse.
    """
    make_first(registry)
    try:
        make_second(registry)
    except DuplicateMetricException:
        return
    status, output = run_promtool(generate_metrics(registry))
    assert "error" not in output.lower(), output
    assert status in (0, 3), output
