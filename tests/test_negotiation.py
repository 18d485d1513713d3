"""Content negotiation: the Accept headers real scrapers send, q-values, gzip and name filters.

Each body is read back with the parser of the format its content type names (prometheus_client's
text parser or its strict OpenMetrics parser), so a wrong content type fails the parse.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
    generate_metrics,
    render_for_request,
)
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry

om_parse: Callable[[str], Iterator[Any]] = openmetrics_parser.text_string_to_metric_families

OM = OPENMETRICS_CONTENT_TYPE
TEXT = PROMETHEUS_CONTENT_TYPE

PROMETHEUS_2 = (  # what Prometheus 2.x sends by default
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (  # Prometheus 3 default scrape_protocols
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_TEXT_ONLY = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"  # scrape_protocols: text only


def parse_body(body: bytes, content_type: str) -> dict[str, list[Any]]:
    """Family name -> samples, with the parser the content type names."""
    text = body.decode("utf-8")
    parse = om_parse if content_type == OM else text_parse
    return {family.name: list(family.samples) for family in parse(text)}


def fill(registry: CollectorRegistry) -> CollectorRegistry:
    Counter("requests_total", "Requests.", required_labels=["code"], registry=registry).labels(
        code="200"
    ).inc(3)
    Counter("plain", "A counter named without _total.", registry=registry).inc()
    Histogram("latency_seconds", "Latency.", buckets=[1], registry=registry).observe(0.5)
    Summary("size_bytes", "Size.", registry=registry).observe(7)
    Gauge("depth", "Depth.", registry=registry).set(4)
    Gauge("depth_count", "A gauge whose name ends in _count.", registry=registry).set(9)
    return registry


@pytest.fixture
def filled() -> CollectorRegistry:
    """Negotiation does not depend on the backend: the default one is enough."""
    return fill(CollectorRegistry())


@pytest.mark.parametrize("accept", [None, PROMETHEUS_2])
def test_every_backend(registry: CollectorRegistry, accept: str | None) -> None:
    fill(registry)
    body, content_type, encoding = render_for_request(registry, accept, "gzip", ["requests"])
    assert encoding == "gzip"
    parsed = parse_body(gzip.decompress(body), content_type)
    assert {name: [s.value for s in samples] for name, samples in parsed.items()} == {
        "requests": [3]
    }


# --- format --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT),
        ("", TEXT),
        ("*/*", TEXT),
        ("text/plain", TEXT),
        ("text/plain;version=0.0.4", TEXT),
        ("text/*", TEXT),
        ("application/json", TEXT),  # nothing supported: the default, not 406
        (",,;;,", TEXT),
        (PROMETHEUS_2, OM),
        (PROMETHEUS_3, OM),
        (PROMETHEUS_TEXT_ONLY, TEXT),
        ("application/openmetrics-text", OM),
        ("application/openmetrics-text; version=0.0.1", OM),
        ("APPLICATION/OpenMetrics-Text; Version=1.0.0", OM),
        ('application/openmetrics-text; version="1.0.0"', OM),
        ("application/*", OM),
        ("application/openmetrics-text;version=3.0.0", TEXT),  # a version pytheus cannot write
        ("application/openmetrics-text;q=0", TEXT),
        ("application/openmetrics-text;q=0, */*", TEXT),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.9", OM),
        ("application/openmetrics-text;q=0.3, text/plain;q=0.9", TEXT),
        ("application/openmetrics-text, */*", OM),  # explicit beats wildcard at equal q
        ("*/*;q=0.5, application/openmetrics-text;q=0.4", TEXT),
        ("application/openmetrics-text;q=abc, text/plain;q=0.1", TEXT),  # a broken q counts as 0
        ("text/plain;q=0, application/openmetrics-text;q=0", TEXT),
    ],
)
def test_accept_header_chooses_the_format(
    filled: CollectorRegistry, accept: str | None, expected: str
) -> None:
    body, content_type, encoding = render_for_request(filled, accept, None)
    assert content_type == expected
    assert encoding is None
    parsed = parse_body(body, content_type)
    assert [s.value for s in parsed["requests"]] == [3]  # both parsers drop _total


def test_text_body_is_generate_metrics(filled: CollectorRegistry) -> None:
    body, _, _ = render_for_request(filled, "text/plain", None)
    assert body == generate_metrics(filled).encode("utf-8")


def test_openmetrics_body_ends_with_eof(filled: CollectorRegistry) -> None:
    body, _, _ = render_for_request(filled, PROMETHEUS_2, None)
    assert body.endswith(b"\n# EOF\n")


# --- gzip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("x-gzip", True),
        ("*", True),
        ("identity", False),
        ("deflate", False),
        ("gzip;q=0", False),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
    ],
)
@pytest.mark.parametrize("accept", [None, PROMETHEUS_2])
def test_gzip(
    filled: CollectorRegistry, accept: str | None, accept_encoding: str | None, gzipped: bool
) -> None:
    plain, _, _ = render_for_request(filled, accept, None)
    body, content_type, encoding = render_for_request(filled, accept, accept_encoding)
    if gzipped:
        assert encoding == "gzip"
        body = gzip.decompress(body)
    else:
        assert encoding is None
    assert body == plain
    assert "depth" in parse_body(body, content_type)


# --- name filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["requests_total"], {"requests"}),  # parsers name counter families without _total
        (["requests"], {"requests"}),  # the OpenMetrics family name
        (["plain"], {"plain"}),
        (["plain_total"], {"plain"}),  # its sample name
        (["latency_seconds"], {"latency_seconds"}),
        (["latency_seconds_bucket"], {"latency_seconds"}),
        (["latency_seconds_count"], {"latency_seconds"}),
        (["latency_seconds_sum"], {"latency_seconds"}),
        (["size_bytes_sum"], {"size_bytes"}),
        (["depth"], {"depth"}),  # a gauge matches by its own name only
        (["depth_count"], {"depth_count"}),
        (["depth_total"], set()),
        (["depth", "size_bytes", "nothing"], {"depth", "size_bytes"}),
        (["nothing"], set()),
        ([], set()),
    ],
)
def test_name_filter(filled: CollectorRegistry, names: list[str], expected: set[str]) -> None:
    body, content_type, _ = render_for_request(filled, None, None, names)
    parsed = parse_body(body, content_type)  # family name -> samples
    assert set(parsed) == expected
    if "latency_seconds" in expected:  # whole families, not single samples
        assert {s.name for s in parsed["latency_seconds"]} == {
            "latency_seconds_bucket",
            "latency_seconds_count",
            "latency_seconds_sum",
        }

    om_body, om_type, _ = render_for_request(filled, PROMETHEUS_2, "gzip", names)
    om_parsed = parse_body(gzip.decompress(om_body), om_type)
    assert len(om_parsed) == len(expected)


def test_name_filter_without_filter_returns_everything(filled: CollectorRegistry) -> None:
    body, content_type, _ = render_for_request(filled, None, None, None)
    assert len(parse_body(body, content_type)) == 6


def test_name_filter_sees_prefixed_names(backend: str) -> None:
    registry = CollectorRegistry(prefix="shop")
    Counter("orders_total", "Orders.", registry=registry).inc()
    Gauge("stock", "Stock.", registry=registry).set(2)
    body, content_type, _ = render_for_request(registry, PROMETHEUS_2, None, ["shop_orders_total"])
    assert set(parse_body(body, content_type)) == {"shop_orders"}
    body, content_type, _ = render_for_request(registry, None, None, ["orders_total"])
    assert parse_body(body, content_type) == {}
