"""prometheus_client habits in pytheus's own API: what works, and a clear error for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from pytheus.exceptions import LabelValidationException, MetricDefinitionException
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.registry import CollectorRegistry
from tests.helpers import value


def test_positional_labelnames_and_label_values_work_as_in_prometheus_client() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests_total", "Requests.", ["method", "code"], registry=registry)
    requests.labels("GET", "200").inc()
    requests.labels(method="GET", code="200").inc()
    assert value(registry, "requests_total", method="GET", code="200") == 2
    with pytest.raises(LabelValidationException, match=r"'requests_total'.*\['method', 'code'\]"):
        requests.labels("GET")
    with pytest.raises(ValueError):  # what prometheus_client raises, for code that catches it
        requests.labels("GET", "200", "extra")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda r: Counter("c", "C.", labelnames=["a"], registry=r), "required_labels=[...]"),  # type: ignore[call-arg]
        (lambda r: Gauge("g", "G.", namespace="shop", registry=r), "CollectorRegistry(prefix="),  # type: ignore[call-arg]
        (lambda r: Histogram("h", "H.", subsystem="db", registry=r), "write it into the name"),  # type: ignore[call-arg]
        (lambda r: Summary("s", "S.", documentation="x", registry=r), "description"),  # type: ignore[call-arg]
        (lambda r: Counter("c", "C.", buckets=[1], registry=r), "only a Histogram"),  # type: ignore[call-arg]
        (lambda r: Gauge("g", "G.", states=["a"], registry=r), "only an Enum"),  # type: ignore[call-arg]
        (lambda r: Info("i", "I.", multiprocess_mode="max", registry=r), "only a Gauge"),  # type: ignore[call-arg]
        (lambda r: Enum("e", "E.", states=["a"], labelnames=["x"], registry=r), "required_labels"),  # type: ignore[call-arg]
    ],
)
def test_prometheus_client_keywords_say_what_to_write_instead(make: Any, says: str) -> None:
    with pytest.raises(MetricDefinitionException) as raised:
        make(CollectorRegistry())
    message = str(raised.value)
    assert says in message and "patch_client" in message
    assert isinstance(raised.value, ValueError)


def test_an_unknown_keyword_is_still_pythons_own_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        Counter("c", "C.", colour="red", registry=CollectorRegistry())  # type: ignore[call-arg]
