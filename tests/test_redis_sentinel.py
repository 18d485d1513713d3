"""The Redis backend behind Sentinel (issue 21): a master, a replica and three real sentinels.

The master is killed with SIGKILL while 4 processes count, after the replica was held still for
a while: the sentinels promote the replica, which lacks the last writes the master took; the
processes find the new master through the sentinels, and whatever it lacks of theirs they send
again. Every scrape meanwhile answers 503 or totals that never go back; the totals end exact.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.exceptions import InvalidBackendConfigException
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.failover import Scrapes, count, counted
from tests.helpers import value
from tests.redis_sentinel import SERVICE, SentinelGroup
from tests.redis_server import replication_offset

pytestmark = pytest.mark.system
PROCESSES = 4
INCREMENTS = 20_000


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    started = SentinelGroup()
    yield started
    started.stop()


def config(group: SentinelGroup, **extra: Any) -> dict[str, Any]:
    return {"sentinels": group.addresses, "service_name": SERVICE, "namespace": "ha", **extra}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sentinels": [["127.0.0.1", 26379]]}, "needs 'service_name'"),
        ({"sentinels": "127.0.0.1:26379", "service_name": "m"}, "list of \\[host, port\\] pairs"),
        ({"sentinels": [["127.0.0.1", "x"]], "service_name": "m"}, "list of \\[host, port\\]"),
        ({"sentinels": [], "service_name": "m"}, "list of \\[host, port\\] pairs"),
        ({"service_name": "m"}, "need 'sentinels'"),
        (
            {"sentinels": [["127.0.0.1", 26379]], "service_name": "m", "url": "redis://h"},
            "either 'url' or 'sentinels'",
        ),
        (
            {"sentinels": [["127.0.0.1", 26379]], "service_name": "m", "sentinel_kwargs": 1},
            "'sentinel_kwargs' must be a mapping",
        ),
    ],
)
def test_sentinel_configuration_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidBackendConfigException, match=message):
        load_backend(MultiProcessRedisBackend, settings)


def test_the_master_is_found_through_the_sentinels(group: SentinelGroup) -> None:
    load_backend(MultiProcessRedisBackend, config(group))
    try:
        registry = CollectorRegistry()
        Counter("found_total", "F.", registry=registry).inc(3)
        assert value(registry, "found_total") == 3
    finally:
        load_backend(SingleProcessBackend, {})


def test_a_failover_keeps_exact_totals(group: SentinelGroup) -> None:
    settings = config(group, flush_interval=0.2)
    context: Any = multiprocessing.get_context("spawn")
    started = [context.Event() for _ in range(PROCESSES)]
    children = [
        context.Process(target=count, args=(settings, event, INCREMENTS, 0.02))
        for event in started
    ]  # the run lasts some 4 s: the master dies in the middle of it
    for child in children:
        child.start()
    load_backend(MultiProcessRedisBackend, settings)
    try:
        scrapes = Scrapes(CollectorRegistry())
        counted(scrapes.registry)
        for event in started:
            assert event.wait(60)
        scrapes.for_seconds(1.5)
        group.hold_replica(1.5)
        scrapes.for_seconds(0.6)  # batches the replica never gets
        before = scrapes.seen[-1]
        at_kill = replication_offset(group.master.port, "master_repl_offset")
        group.kill_master()
        while any(child.is_alive() for child in children):
            scrapes.scrape()
            time.sleep(0.05)
        for child in children:
            child.join(timeout=120)
            assert child.exitcode == 0
        group.wait_for_failover()
        scrapes.until(PROCESSES * INCREMENTS)
        assert group.master_port() == group.replica.port
        # the promoted replica took over short of the master's last writes: they were lost, and
        # the totals are exact because the processes sent them again
        assert replication_offset(group.replica.port, "second_repl_offset") - 1 < at_kill
        unavailable = scrapes.unavailable
        assert unavailable  # the failover was seen, and answered 503 rather than guessed
        print(
            f"\n{len(scrapes.seen)} scrapes with totals; {len(unavailable)} answered 503, over "
            f"{unavailable[-1] - unavailable[0]:.1f} s from the first; {before:.0f} counted when "
            "the master died"
        )
    finally:
        load_backend(SingleProcessBackend, {})
