"""Registries: registration, duplicates, prefixes, the default-registry proxy, custom collectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytheus.exceptions import DuplicateMetricException, InvalidMetricNameException
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, CustomCollector, Gauge, Histogram
from pytheus.registry import (
    REGISTRY,
    Collector,
    CollectorRegistry,
    CollectorRegistryProxy,
    Registry,
)
from tests.helpers import family_types, samples, value


def test_metrics_register_in_the_default_registry() -> None:
    counter = Counter("default_registry_test_total", "Test.")
    try:
        assert "default_registry_test_total" in generate_metrics()
    finally:
        REGISTRY.unregister(counter)
    assert "default_registry_test_total" not in generate_metrics()


def test_prefix(registry: CollectorRegistry) -> None:
    prefixed = CollectorRegistry(prefix="shop")
    Counter("orders_total", "Orders.", registry=prefixed).inc()
    assert value(prefixed, "shop_orders_total") == 1
    assert family_types(generate_metrics(prefixed)) == {"shop_orders": "counter"}


def test_invalid_prefix() -> None:
    with pytest.raises(InvalidMetricNameException, match="prefix"):
        CollectorRegistry(prefix="1-shop")


def test_unregistered_metric_registered_later(registry: CollectorRegistry) -> None:
    counter = Counter("late_total", "Late.", registry=None)
    counter.inc(2)
    assert samples(registry) == {}
    registry.register(counter)
    assert value(registry, "late_total") == 2
    registry.unregister(counter)
    assert samples(registry) == {}


def test_one_metric_in_two_registries(registry: CollectorRegistry) -> None:
    other = CollectorRegistry(prefix="other")
    counter = Counter("shared_total", "Shared.", registry=registry)
    other.register(counter)
    counter.inc()
    assert value(registry, "shared_total") == 1
    assert value(other, "other_shared_total") == 1


def test_identical_definition_shares_series(registry: CollectorRegistry) -> None:
    first = Counter("jobs_total", "Jobs.", required_labels=["queue"], registry=registry)
    second = Counter("jobs_total", "Jobs.", required_labels=["queue"], registry=registry)
    first.labels(queue="a").inc()
    second.labels(queue="a").inc(2)
    assert value(registry, "jobs_total", queue="a") == 3
    plain_a = Histogram("h", "H.", buckets=[1], registry=registry)
    plain_b = Histogram("h", "H.", buckets=[1], registry=registry)
    plain_a.observe(0.5)
    plain_b.observe(2)
    assert value(registry, "h_count") == 2


@pytest.mark.parametrize(
    "conflict",
    [
        lambda r: Gauge("jobs_total", "Jobs.", required_labels=["queue"], registry=r),
        lambda r: Counter("jobs_total", "Jobs.", required_labels=["other"], registry=r),
        lambda r: Counter(
            "jobs_total",
            "Jobs.",
            required_labels=["queue"],
            default_labels={"queue": "x"},
            registry=r,
        ),
    ],
)
def test_conflicting_definition_raises(registry: CollectorRegistry, conflict: object) -> None:
    Counter("jobs_total", "Jobs.", required_labels=["queue"], registry=registry)
    with pytest.raises(DuplicateMetricException, match="jobs_total"):
        conflict(registry)  # type: ignore[operator]


def test_conflicting_buckets_raise(registry: CollectorRegistry) -> None:
    Histogram("h", "H.", buckets=[1, 2], registry=registry)
    with pytest.raises(DuplicateMetricException, match=r"'h'.*buckets"):
        Histogram("h", "H.", buckets=[1, 3], registry=registry)


def test_registering_a_used_duplicate_raises(registry: CollectorRegistry) -> None:
    Counter("jobs_total", "Jobs.", registry=registry)
    detached = Counter("jobs_total", "Jobs.", registry=None)
    detached.inc()
    with pytest.raises(DuplicateMetricException, match="jobs_total"):
        registry.register(detached)


def test_registry_proxy_set_registry() -> None:
    proxy = CollectorRegistryProxy()
    assert proxy.prefix is None
    replacement = CollectorRegistry(prefix="svc")
    proxy.set_registry(replacement)
    assert proxy.prefix == "svc"
    Counter("x_total", "X.", registry=proxy).inc()
    assert value(replacement, "svc_x_total") == 1
    assert value(proxy, "svc_x_total") == 1


def test_protocols_are_satisfied() -> None:
    assert isinstance(CollectorRegistry(), Registry)
    assert isinstance(REGISTRY, Registry)
    counter = Counter("p_total", "P.", registry=None)
    assert isinstance(counter._collector, Collector)


class QueueCollector(CustomCollector):
    def __init__(self, depth: float) -> None:
        self.depth = depth

    def collect(self) -> Iterator[Gauge | Counter]:
        gauge = Gauge("queue_depth", "Depth.", required_labels=["queue"], registry=None)
        gauge.labels(queue="emails").set(self.depth)
        yield gauge
        counter = Counter("queue_polls_total", "Polls.", registry=None)
        counter.inc(7)
        yield counter


def test_custom_collector(registry: CollectorRegistry) -> None:
    registry.register(QueueCollector(3))
    for _ in range(3):  # every scrape sees fresh values, nothing accumulates across scrapes
        assert value(registry, "queue_depth", queue="emails") == 3
        assert value(registry, "queue_polls_total") == 7
    assert QueueCollector(1).name == "queuecollector"


def test_custom_collector_conflict_is_refused(registry: CollectorRegistry) -> None:
    Counter("queue_polls_total", "Polls.", registry=registry)
    with pytest.raises(DuplicateMetricException, match="queue_polls_total"):
        registry.register(QueueCollector(1))


class BrokenCollector(CustomCollector):
    """Works when registered (its first call), fails at every scrape after."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def collect(self) -> Iterator[Counter]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("broken at scrape time")
        yield Counter("broken_total", "Broken.", registry=None)


def test_failing_custom_collector_is_left_out(registry: CollectorRegistry) -> None:
    Counter("healthy_total", "Healthy.", registry=registry).inc()
    broken = BrokenCollector()
    registry.register(broken)
    got = samples(registry)
    assert got == {("healthy_total", frozenset()): 1}
    assert broken.calls == 2  # once registered, once scraped (and failing)
