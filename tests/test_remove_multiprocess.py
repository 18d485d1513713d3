"""``remove()`` while other processes keep recording the series (shared files, Redis).

The processes are real (forked) and stay alive between steps: a parent sends each one commands
through a pipe and waits until it has recorded (and, on Redis, flushed) them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from pytheus.metrics import Counter, Histogram
from pytheus.registry import CollectorRegistry
from tests import helpers
from tests.test_native_multiprocess import flush, multiprocess_backend

__all__ = ["multiprocess_backend"]  # the fixture, for pytest


def serve(connection: Any, metrics: tuple[Any, ...]) -> None:
    """In a child: run what the parent sends on ``metrics``, flush, answer; until None."""
    while True:
        command = connection.recv()
        if command is None:
            break
        function, args = command
        function(*metrics, *args)
        flush()
        connection.send("done")


class Worker:
    """A forked child that records into ``metrics`` on command and stays alive in between."""

    def __init__(self, *metrics: Any) -> None:
        context: Any = multiprocessing.get_context("fork")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs, metrics))
        self.process.start()

    def run(self, function: Callable[..., None], *args: Any) -> None:
        self.connection.send((function, args))
        assert self.connection.recv() == "done"

    def exit(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=60)
        assert self.process.exitcode == 0


def record(counter: Counter, classic: Histogram, times: int) -> None:
    for _ in range(times):
        counter.labels(route="/a").inc()
        classic.labels(route="/a").observe(0.5)


def shows_recorded(registry: CollectorRegistry, times: int) -> None:
    assert helpers.value(registry, "removed_total", route="/a") == times
    assert helpers.value(registry, "removed_classic_seconds_count", route="/a") == times
    assert helpers.value(registry, "removed_classic_seconds_bucket", route="/a", le="1.0") == times
    assert helpers.value(registry, "removed_classic_seconds_bucket", route="/a", le="+Inf") == times
    assert helpers.value(registry, "removed_classic_seconds_sum", route="/a") == 0.5 * times


def test_without_native_histograms_others_count_on_from_zero(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """A counter and a classic histogram removed while two children keep recording them: the
    series show what the processes recorded since the removal (2 + 3 + 1). Removed again by
    this process, which has not recorded since, they show what the children recorded since
    (4 + 2), while they live and once they exited (archived, on the shared-file backend)."""
    registry = CollectorRegistry()
    counter = Counter("removed_total", "R.", required_labels=["route"], registry=registry)
    classic = Histogram(
        "removed_classic_seconds", "R.", required_labels=["route"], buckets=[1], registry=registry
    )
    workers = [Worker(counter, classic), Worker(counter, classic)]
    try:
        workers[0].run(record, 5)
        workers[1].run(record, 4)
        record(counter, classic, 1)
        flush()
        shows_recorded(registry, 10)
        counter.remove(route="/a")
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        assert helpers.value(registry, "removed_classic_seconds_count", route="/a") is None
        workers[0].run(record, 2)
        workers[1].run(record, 3)
        record(counter, classic, 1)
        flush()
        shows_recorded(registry, 6)
        counter.remove(route="/a")
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        workers[0].run(record, 4)
        workers[1].run(record, 2)
        shows_recorded(registry, 6)
        counter.remove(route="/a")  # this process has not recorded since its last removal
        classic.remove(route="/a")
        flush()
        assert helpers.value(registry, "removed_total", route="/a") is None
        workers[0].run(record, 1)
        workers[1].run(record, 2)
        shows_recorded(registry, 3)
    finally:
        for worker in workers:
            worker.exit()
    for _ in range(2):
        shows_recorded(registry, 3)
