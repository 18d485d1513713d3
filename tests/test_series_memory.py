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

CYCLES = 24
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
