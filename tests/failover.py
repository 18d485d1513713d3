"""What the failover tests (Sentinel, Cluster) share: processes that count through a failover,
a log of the scrapes made meanwhile, and waiting for a server to reach a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend, wait_for_flush
from pytheus.exceptions import BackendUnavailableException
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.helpers import value

NAME = "ha_total"


def counted(registry: CollectorRegistry | None = None) -> Counter:
    """The counter every process of a failover test counts with."""
    return Counter(NAME, "Counted through a failover.", registry=registry or CollectorRegistry())


def count(settings: dict[str, Any], started: Any, increments: int, pause: float) -> None:
    """A process (spawned) that counts ``increments``, 100 at a time with a ``pause`` between,
    so that the master dies in the middle; it ends once the new master has it all."""
    load_backend(MultiProcessRedisBackend, settings)
    counter = counted()
    started.set()
    for _ in range(increments // 100):
        for _ in range(100):
            counter.inc()
        time.sleep(pause)
    assert wait_for_flush(90)


class Scrapes:
    """Scrapes of the counter during a failover: each a 503, or a total that never goes back."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.seen: list[float] = []  # the totals scrapes answered
        self.answered: list[float] = []  # when (time.monotonic())
        self.unavailable: list[float] = []  # when scrapes answered 503

    def scrape(self) -> None:
        try:
            total = value(self.registry, NAME) or 0.0
        except BackendUnavailableException:
            self.unavailable.append(time.monotonic())
            return
        seen = self.seen
        assert not seen or total >= seen[-1], f"a scrape went back: {seen[-1]} -> {total}"
        seen.append(total)
        self.answered.append(time.monotonic())

    def for_seconds(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.scrape()

    def until(self, total: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen or self.seen[-1] != total:
            assert time.monotonic() < deadline, (self.seen[-5:], len(self.unavailable))
            self.scrape()
            time.sleep(0.1)


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = 30, interval: float = 0.05
) -> None:
    """Until ``condition()`` holds (a Redis error counts as not yet); RuntimeError(what) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(interval)
