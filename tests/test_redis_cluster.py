"""The Redis backend on a Redis Cluster (issue 21): three masters with a replica each, real
servers on loopback (:mod:`tests.redis_cluster`).

Every key of a namespace is in one hash slot (``{pytheus:<namespace>}:...``), so each script
runs on one master and a scrape costs the same round trips however many series there are;
namespaces spread over the masters. A master killed with SIGKILL while 4 processes of each of 3
namespaces count: the replica promoted in its place lacks the last writes it took; the processes
find the new master through the cluster's slot map, send again what it lacks, and every total
ends exact while the other namespaces go on.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.backends.redis import MultiProcessRedisBackend, RedisStore, wait_for_flush
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from tests.failover import Scrapes, count, counted
from tests.helpers import value
from tests.redis_cluster import ClusterGroup
from tests.redis_server import replication_offset

pytestmark = pytest.mark.system
PROCESSES = 4
INCREMENTS = 6_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterGroup]:
    with ClusterGroup() as started:
        yield started


@pytest.fixture(autouse=True)
def single_process_afterwards() -> Iterator[None]:
    yield
    load_backend(SingleProcessBackend, {})


def config(cluster: ClusterGroup, namespace: str, **extra: Any) -> dict[str, Any]:
    return {"url": cluster.url, "cluster": True, "namespace": namespace, **extra}


def namespaces_on_every_master(cluster: ClusterGroup) -> dict[int, str]:
    """One namespace a master: master port -> a namespace whose keys it holds."""
    found: dict[int, str] = {}
    for number in range(200):
        namespace = f"app{number}"
        found.setdefault(cluster.master_for_key(f"{{pytheus:{namespace}}}:index"), namespace)
        if len(found) == len(cluster.masters):
            return found
    raise AssertionError("no namespace on some master")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cluster": "yes"}, "'cluster' must be true or false"),
        ({"startup_nodes": "127.0.0.1:7000"}, "list of \\[host, port\\] pairs"),
        ({"startup_nodes": [["127.0.0.1", 7000]], "cluster": False}, "leave 'cluster' out"),
        ({"cluster": True, "db": 2}, "database 0 only"),
        ({"cluster": True, "url": "redis://127.0.0.1:7000/3"}, "database 0 only"),
        (
            {"startup_nodes": [["127.0.0.1", 7000]], "url": "redis://127.0.0.1:7000"},
            "'startup_nodes' or its 'url'",
        ),
        (
            {"cluster": True, "sentinels": [["127.0.0.1", 26379]], "service_name": "m"},
            "not behind Sentinel",
        ),
        ({"cluster": True, "socket_timeuot": 1}, "unknown option 'socket_timeuot'"),
    ],
)
def test_cluster_configuration_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidBackendConfigException, match=message):
        load_backend(MultiProcessRedisBackend, settings)


def test_loads_and_records_while_the_cluster_is_down() -> None:
    """A cluster client connects when it is made: the backend makes it at first use, so an
    application starts (and records) while the cluster cannot be reached; a scrape is a 503."""
    load_backend(MultiProcessRedisBackend, {"url": "redis://127.0.0.1:1/0", "cluster": True})
    registry = CollectorRegistry()
    counter = Counter("down_total", "D.", registry=registry)
    counter.inc()
    with pytest.raises(BackendUnavailableException, match="cannot be read"):
        value(registry, "down_total")


def test_startup_nodes(cluster: ClusterGroup) -> None:
    load_backend(MultiProcessRedisBackend, {"startup_nodes": cluster.addresses, "namespace": "s"})
    registry = CollectorRegistry()
    Counter("nodes_total", "N.", registry=registry).inc(3)
    assert value(registry, "nodes_total") == 3
    store = current_store()
    assert isinstance(store, RedisStore)
    assert store.options.cluster and store.options.base == "{pytheus:s}"


def test_every_key_of_a_namespace_is_on_one_master(cluster: ClusterGroup) -> None:
    spread = namespaces_on_every_master(cluster)
    for namespace in spread.values():
        load_backend(MultiProcessRedisBackend, config(cluster, namespace))
        registry = CollectorRegistry()
        counter = Counter("spread_total", "S.", required_labels=["n"], registry=registry)
        for n in range(50):  # series ids that would hash anywhere
            counter.labels(n=str(n)).inc(n)
        Gauge("spread_level", "L.", registry=registry).set(2)  # a key a gauge
        Summary("spread_seconds", "W.", quantiles=[0.5], registry=registry).observe(1)  # a window
        Histogram("spread_size", "N.", native=True, registry=registry).observe(3)  # a native
        assert value(registry, "spread_total", n="49") == 49
        assert value(registry, "spread_seconds", quantile="0.5") == pytest.approx(1, rel=0.01)
        assert wait_for_flush()
        store = current_store()
        assert isinstance(store, RedisStore)
        assert store.options.base == f"{{pytheus:{namespace}}}"
    for namespace in spread.values():
        holders = {}
        for master in cluster.masters:
            with cluster.admin(master) as node:
                holders[master] = node.keys(f"{{pytheus:{namespace}}}:*")
        assert [m for m, keys in holders.items() if keys] == [
            m for m, n in spread.items() if n == namespace
        ], holders
        kinds = {key.split(":")[2] for keys in holders.values() for key in keys}
        assert {"index", "v", "s", "q", "n"} <= kinds, kinds


def commands_processed(cluster: ClusterGroup) -> tuple[int, int]:
    """Commands every master has run (those of scripts, and the INFO that asks, included), and
    how many were script calls (``EVALSHA``)."""
    total = scripts = 0
    for master in cluster.masters:
        with cluster.admin(master) as node:
            stats = node.info("commandstats")
        total += sum(int(stat["calls"]) for stat in stats.values())
        scripts += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return total, scripts


def test_round_trips_per_scrape_do_not_grow_with_series(cluster: ClusterGroup) -> None:
    load_backend(MultiProcessRedisBackend, config(cluster, "trips", flush_interval=3600))
    registry = CollectorRegistry()
    counter = Counter("trips_total", "T.", required_labels=["n"], registry=registry)
    counter.labels(n="0").inc()
    generate_metrics(registry)  # connects, loads the scripts, publishes the description

    def commands_of_a_scrape() -> tuple[int, int]:
        total, scripts = commands_processed(cluster)
        generate_metrics(registry)
        total_after, scripts_after = commands_processed(cluster)
        return total_after - total, scripts_after - scripts

    one = commands_of_a_scrape()
    for n in range(1, 1_100):
        counter.labels(n=str(n)).inc()
    generate_metrics(registry)  # the new series' first flush
    many = commands_of_a_scrape()
    assert value(registry, "trips_total", n="1099") == 1
    assert one[1] == many[1] == 2  # two round trips: the flush script, then the scrape's
    # and inside the scripts no command per series (a branch taken or not aside)
    assert abs(many[0] - one[0]) <= 4, (one, many)


def test_a_master_failover_keeps_exact_totals(cluster: ClusterGroup) -> None:
    spread = namespaces_on_every_master(cluster)
    namespaces = list(spread.values())
    victim = next(master for master, namespace in spread.items() if namespace == namespaces[0])
    context: Any = multiprocessing.get_context("spawn")
    children, started = [], []
    for namespace in namespaces:
        settings = config(cluster, namespace, flush_interval=0.2)
        for _ in range(PROCESSES):
            event = context.Event()
            started.append(event)
            # the run lasts some 3 s: the master dies in the middle of it
            children.append(
                context.Process(target=count, args=(settings, event, INCREMENTS, 0.05))
            )
    for child in children:
        child.start()
    load_backend(MultiProcessRedisBackend, config(cluster, namespaces[0], flush_interval=0.2))
    scrapes = Scrapes(CollectorRegistry())
    counted(scrapes.registry)
    for event in started:
        assert event.wait(60)
    scrapes.for_seconds(0.8)
    cluster.hold_replica(victim, 0.8)
    scrapes.for_seconds(0.4)  # batches the replica never gets
    before = scrapes.seen[-1]
    at_kill = replication_offset(victim, "master_repl_offset")
    cluster.kill_master(victim)
    killed = time.monotonic()
    while any(child.is_alive() for child in children):
        scrapes.scrape()
        time.sleep(0.05)
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    promoted = cluster.wait_for_failover(victim)
    scrapes.until(PROCESSES * INCREMENTS)
    assert cluster.master_for_key(f"{{pytheus:{namespaces[0]}}}:index") == promoted
    assert scrapes.unavailable  # the failover was seen, and answered 503 rather than guessed
    # the promoted replica took over short of the master's last writes: they were lost, and the
    # totals are exact because the processes sent them again
    assert replication_offset(promoted, "second_repl_offset") - 1 < at_kill
    for namespace in namespaces[1:]:  # on the masters that stayed
        load_backend(MultiProcessRedisBackend, config(cluster, namespace))
        other = CollectorRegistry()
        counted(other)
        assert value(other, "ha_total") == PROCESSES * INCREMENTS
    back = next(when for when in scrapes.answered if when > killed)
    print(
        f"\n{len(scrapes.seen)} scrapes with totals, {len(scrapes.unavailable)} answered 503; "
        f"the first total {back - killed:.1f} s after the master's death, the last 503 "
        f"{scrapes.unavailable[-1] - killed:.1f} s after it; {before:.0f} counted when it died"
    )
