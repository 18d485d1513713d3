"""A series removed with ``remove()`` or ``clear()`` gives its memory back: long-running
services rotate label values (tenants, deploy ids). Growth over many create-and-remove cycles
is bounded (the issue's 100 cycles of 10,000 series, scaled down to keep the suite fast;
``bench/memory.py`` measures bytes per series at full size).

On Redis the flusher keeps its last 64 batches (to send them again if Redis loses them), which
holds the ids of the series they carried: bounded by batches, not by series; here each
operation is flushed at once (``flush_interval`` 0), so those batches are small.

Not yet on the shared-file backend: a removal there is a tombstone kept with a baseline of every
process's cells, and a process's file keeps the entries of the series it ever held, so its
files, its tombstones and the time of a removal grow with every series removed (issue 17). A
per-value backend keeps what its own storage keeps (``remove()`` sets its values to 0).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from pytheus.backends import load_backend
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.conftest import backend_restored
from tests.redis_server import shared_server

CYCLES = 12
SERIES = {"memory": 1_000, "redis": 300}  # Redis: a round trip per operation here


@pytest.fixture(params=["memory", "redis"])
def rotating_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    with backend_restored():
        if request.param == "redis":
            from pytheus.backends.redis import MultiProcessRedisBackend

            config = {"url": shared_server().url, "namespace": "rotation", "flush_interval": 0}
            load_backend(MultiProcessRedisBackend, config)
        else:
            from pytheus.backends.memory import SingleProcessBackend

            load_backend(SingleProcessBackend)
        yield request.param


def test_removed_series_give_their_memory_back(rotating_backend: str) -> None:
    registry = CollectorRegistry()
    counter = Counter("rotated_total", "Rotated.", required_labels=["tenant"], registry=registry)
    tracemalloc.start()
    try:
        used = []
        series = SERIES[rotating_backend]
        for cycle in range(CYCLES):
            names = [f"t{cycle}-{i}" for i in range(series)]
            for name in names:
                counter.labels(name).inc()
            if cycle % 2:
                counter.clear()
            else:
                for name in names:
                    counter.remove(name)
            gc.collect()
            used.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    settled = used[4]  # after the first cycles: caches and tables have grown to their size
    growth = used[-1] - settled
    # what one cycle's series hold while they live: about 450 B each
    assert growth < series * 450, (rotating_backend, [u - settled for u in used[4:]])


def test_a_view_kept_from_before_a_removal_follows_a_new_backend() -> None:
    """A removed series' view, still in a cache (keywords in another order), that records
    again after the series was created anew must be re-bound when the backend changes."""
    from pytheus.backends.memory import SingleProcessBackend
    from tests.helpers import value

    with backend_restored():
        load_backend(SingleProcessBackend)
        registry = CollectorRegistry()
        requests = Counter(
            "requests_total", "R.", required_labels=["method", "code"], registry=registry
        )
        requests.labels(code="200", method="GET").inc()
        requests.remove(method="GET", code="200")
        requests.labels("GET", "200").inc()  # the series anew
        requests.labels(code="200", method="GET").inc()  # the old view, from the cache
        load_backend(SingleProcessBackend)  # what a fork does to the multi-process stores
        for _ in range(5):
            requests.labels(code="200", method="GET").inc()
        assert value(registry, "requests_total", method="GET", code="200") == 5


def test_a_signal_handler_recording_into_a_value_that_shares_its_lock_goes_on() -> None:
    """Values share a pool of locks; a handler that records while its thread holds one of them
    (inside another value's update) must not wait for itself."""
    import signal

    from pytheus.backends.memory import MemoryCounter, SingleProcessBackend, striped_lock
    from pytheus.metrics import Summary

    with backend_restored():
        load_backend(SingleProcessBackend)
        registry = CollectorRegistry()
        counted = Counter("signals_total", "Signals.", registry=registry)
        summary = Summary("waits", "W.", quantiles=[0.5], registry=registry)
        summary.observe(1)
        counted.inc()
        lock = summary._value._lock
        assert isinstance(counted._value, MemoryCounter)
        counted._value._lock = lock  # the same stripe, whatever the pool's turn was
        assert striped_lock() is not None

        def handler(signum: int, frame: object) -> None:
            counted.inc()

        previous = signal.signal(signal.SIGALRM, handler)
        try:
            with lock:  # the main thread holds the stripe, as inside summary.observe()
                signal.raise_signal(signal.SIGALRM)
        finally:
            signal.signal(signal.SIGALRM, previous)
        assert counted._value.get() == 2
