"""Native histograms on the multi-process backends (shared files, Redis), with real processes.

Each process records at its own schema (one observes a wide range, so it lowers its schema);
a scrape merges them at the lowest schema, which must equal observing every value in one
histogram at that schema: re-bucketing is exact.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.base import current_store
from pytheus.collection import collect_registry
from pytheus.exposition import protobuf
from pytheus.metrics import Histogram
from pytheus.native import NativeHistogram, decode_cells, encode_cells, subtract
from pytheus.registry import CollectorRegistry
from pytheus.samples import HistogramData
from tests import proto_oracle
from tests.backends_under_test import PER_VALUE
from tests.helpers import run_to_the_end, samples

MAX_BUCKETS = 40
PROCESSES = 4


def values_of(process: int) -> list[float]:
    """Known values per process: negatives, zeros; process 0 spans many orders of magnitude."""
    rng = random.Random(process)
    spread = 12.0 if process == 0 else 0.3 + 0.2 * process
    values = [rng.choice((-1.0, 1.0)) * rng.lognormvariate(process, spread) for _ in range(600)]
    return values + [0.0] * (process + 1) + [-(2.0**-200), 1.0, -1.0]  # tiny: the zero bucket


def own_histogram(values: list[float]) -> NativeHistogram:
    """What one process keeps (as the memory backend does: lowered past MAX_BUCKETS)."""
    histogram = NativeHistogram(3)
    for value in values:
        histogram.observe(value)
        if histogram.bucket_count > MAX_BUCKETS:
            histogram.limit_buckets(MAX_BUCKETS)
    return histogram


def expected() -> NativeHistogram:
    schemas = [own_histogram(values_of(p)).schema for p in range(PROCESSES)]
    assert len(set(schemas)) > 1, "the processes must end at different schemas"
    everything = NativeHistogram(min(schemas))
    for process in range(PROCESSES):
        for value in values_of(process):
            everything.observe(value)
    return everything


def define(registry: CollectorRegistry | None) -> Histogram:
    return Histogram(
        "mixed_seconds", "Mixed.", registry=registry, buckets=[-1, 0, 1, 10], native=True,
        native_max_buckets=MAX_BUCKETS,
    )  # fmt: skip


def observe(histogram: Histogram, process: int) -> None:
    for value in values_of(process):
        histogram.observe(value)
    flush()


def flush() -> None:
    from pytheus.backends.redis import RedisStore, wait_for_flush

    if isinstance(current_store(), RedisStore):
        assert wait_for_flush(30)


def work_in_fresh_process(backend: tuple[type[Any], dict[str, Any]], process: int) -> None:
    """For spawn: load the backend and define the histogram in a new interpreter."""
    load_backend(*backend)
    observe(define(CollectorRegistry()), process)


def redis_config() -> dict[str, Any]:
    from tests.redis_server import shared_server

    return {"url": shared_server().url, "namespace": uuid.uuid4().hex[:12]}


@pytest.fixture(params=["file", "redis"])
def multiprocess_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[type[Any], dict[str, Any]]]:
    backend: tuple[type[Any], dict[str, Any]]
    if request.param == "file":
        from pytheus.backends.file import MultiProcessFileBackend

        backend = (MultiProcessFileBackend, {"path": str(tmp_path)})
    else:
        from pytheus.backends.redis import MultiProcessRedisBackend

        backend = (MultiProcessRedisBackend, redis_config())
    load_backend(*backend)
    yield backend
    load_backend(SingleProcessBackend, {})


def scraped(registry: CollectorRegistry) -> HistogramData:
    [family] = collect_registry(registry)
    [(_, data)] = family.series
    assert isinstance(data, HistogramData)
    return data


def same_native(got: NativeHistogram, want: NativeHistogram) -> None:
    assert (got.schema, got.zero_threshold) == (want.schema, want.zero_threshold)
    assert (got.count, got.zero_count) == (want.count, want.zero_count)
    assert got.positive == want.positive
    assert got.negative == want.negative
    assert math.isclose(got.sum, want.sum, rel_tol=1e-9)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_processes_merge_at_the_lowest_schema(
    multiprocess_backend: tuple[type[Any], dict[str, Any]], start_method: str
) -> None:
    registry = CollectorRegistry()
    histogram = define(registry)
    context: Any = multiprocessing.get_context(start_method)
    if start_method == "fork":
        children = [context.Process(target=observe, args=(histogram, p)) for p in range(PROCESSES)]
    else:
        children = [
            context.Process(target=work_in_fresh_process, args=(multiprocess_backend, p))
            for p in range(PROCESSES)
        ]
    run_to_the_end(children)
    want = expected()
    data = scraped(registry)
    assert data.native is not None
    same_native(data.native, want)
    assert data.count == want.count  # _count: the classic buckets agree
    assert math.isclose(data.sum, want.sum, rel_tol=1e-9)
    got = samples(registry)
    assert got[("mixed_seconds_count", frozenset())] == want.count
    assert got[("mixed_seconds_bucket", frozenset({("le", "0.0")}))] == sum(
        1 for p in range(PROCESSES) for v in values_of(p) if v <= 0
    )

    [family] = proto_oracle.decode_delimited(protobuf.render(collect_registry(registry)))
    message = family.metric[0].histogram
    assert message.sample_count == want.count
    assert math.isclose(message.sample_sum, want.sum, rel_tol=1e-9)
    assert (message.schema, message.zero_threshold) == (want.schema, want.zero_threshold)
    assert message.zero_count == want.zero_count
    positive = proto_oracle.native_buckets(message.positive_span, message.positive_delta)
    negative = proto_oracle.native_buckets(message.negative_span, message.negative_delta)
    assert (positive, negative) == (want.positive, want.negative)
    every = [v for p in range(PROCESSES) for v in values_of(p)]
    assert [(b.upper_bound, b.cumulative_count) for b in message.bucket] == [
        (bound, sum(1 for v in every if v <= bound)) for bound in (-1, 0, 1, 10)
    ]


def test_the_parent_and_a_dead_child_add_up(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """A dead process's native histogram still counts (compacted into the file archive)."""
    registry = CollectorRegistry()
    histogram = define(registry)
    observe(histogram, 1)
    child = multiprocessing.get_context("fork").Process(target=observe, args=(histogram, 0))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    for _ in range(2):  # the second scrape reads the archive the first one wrote
        data = scraped(registry)
        assert data.native is not None
        want = own_histogram(values_of(0))
        for value in values_of(1):
            want.observe(value)
        same_native(data.native, want)


def test_classic_and_native_together_on_every_backend(
    registry: CollectorRegistry, backend: str
) -> None:
    histogram = Histogram(
        "both_seconds", "Both.", required_labels=["route"], registry=registry,
        buckets=[0.1, 1], native=True,
    )  # fmt: skip
    values = (0.05, 0.5, 5.0, -3.0, 0.0)
    for value in values:
        histogram.labels(route="/a").observe(value)
    histogram.labels(route="/b")  # a series never observed: an empty native part
    flush()
    want = NativeHistogram(3)
    for value in values:
        want.observe(value)
    [family] = collect_registry(registry)
    by_route = {labels.as_dict()["route"]: data for labels, data in family.series}
    data = by_route["/a"]
    assert isinstance(data, HistogramData)
    assert list(data.bucket_counts) == [3, 1, 1] and data.sum == 2.55
    if backend in PER_VALUE:  # stores per-bucket numbers only: no native part
        return
    assert data.native is not None
    same_native(data.native, want)
    empty = by_route["/b"]
    assert isinstance(empty, HistogramData) and empty.native is not None
    assert (empty.native.count, empty.native.schema) == (0, 3)


def test_removed_native_series_forget_their_buckets(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    registry = CollectorRegistry()
    histogram = Histogram(
        "gone_seconds", "Gone.", required_labels=["route"], registry=registry, native=True
    )
    histogram.labels(route="/a").observe(2.0)
    flush()
    histogram.remove(route="/a")
    flush()
    assert collect_registry(registry)[0].series == []
    histogram.labels(route="/a").observe(-4.0)
    flush()
    [(_, data)] = collect_registry(registry)[0].series
    assert isinstance(data, HistogramData) and data.native is not None
    want = NativeHistogram(3)
    want.observe(-4.0)
    same_native(data.native, want)


def test_cells_round_trip_and_subtract() -> None:
    histogram = own_histogram(values_of(0))
    assert decode_cells(encode_cells(histogram)) == histogram
    assert decode_cells(encode_cells(histogram) + [0.0] * 10) == histogram  # spare room
    assert decode_cells([3.0, 0.0, 0.0, 1.0, 1.0, 5.0]) is None  # more buckets than cells
    assert decode_cells([9.0, 0.0, 0.0, 0.0, 0.0, 0.0]) is None  # no such schema
    before = histogram.copy()
    for value in (1.0, -1.0, 0.0, 1e6):
        histogram.observe(value)
    histogram.reduce_to(histogram.schema - 1)
    since = subtract(histogram, before)
    want = NativeHistogram(histogram.schema, histogram.zero_threshold)
    for value in (1.0, -1.0, 0.0, 1e6):
        want.observe(value)
    same_native(since, want)


def observe_until(histogram: Histogram, started: Any, stop: Any) -> None:
    rng = random.Random(7)
    started.set()
    while not stop.is_set():
        for _ in range(100):
            histogram.observe(rng.choice((-1.0, 1.0)) * rng.lognormvariate(0, 2 + rng.random()))


def test_scrapes_never_see_a_torn_native_block(tmp_path: Path) -> None:
    """A file-backend scrape while another process writes: every copy is one whole moment."""
    from pytheus.backends.file import MultiProcessFileBackend

    load_backend(MultiProcessFileBackend, {"path": str(tmp_path)})
    try:
        registry = CollectorRegistry()
        histogram = define(registry)
        context: Any = multiprocessing.get_context("fork")
        started, stop = context.Event(), context.Event()
        child = context.Process(target=observe_until, args=(histogram, started, stop))
        child.start()
        try:  # a failure must stop the child too, or pytest waits for it at exit
            assert started.wait(30)
            for _ in range(300):
                native = scraped(registry).native
                assert native is not None
                buckets = sum(native.positive.values()) + sum(native.negative.values())
                assert native.count == native.zero_count + buckets
        finally:
            stop.set()
            child.join(timeout=30)
        assert child.exitcode == 0
    finally:
        load_backend(SingleProcessBackend, {})


# --- native_reset_seconds: a process restarts its own contribution ---------------------------

RESET_BUCKETS = 8
SHIFT = [0.0]
"""Seconds added to the clock of native histograms; a forked child moves its own copy."""

BEFORE = [1.5**k for k in range(RESET_BUCKETS - 1)] + [-2.0, 0.0, 1.0, 0.0]  # 8 buckets: full
AFTER = [1000.0, 3.0, -0.25, 0.0, 1000.0]  # 1000.0 is a 9th bucket: overflow
PARENT = [0.5, 2.0, 20.0, -3.0, 0.0]


def shifted_clock() -> float:
    return time.monotonic() + SHIFT[0]


def define_restarting(registry: CollectorRegistry | None, reset_seconds: float) -> Histogram:
    return Histogram(
        "restarting_seconds", "Restarting.", registry=registry, buckets=[0, 1, 10], native=True,
        native_max_buckets=RESET_BUCKETS, native_reset_seconds=reset_seconds,
    )  # fmt: skip


def overflow_later(histogram: Histogram, advance: float) -> None:
    """In a child: fill the buckets, let ``advance`` seconds pass, then overflow."""
    for value in BEFORE:
        histogram.observe(value)
    flush()
    SHIFT[0] += advance
    for value in AFTER:
        histogram.observe(value)
    flush()


def histogram_of(values: list[float], max_buckets: int = 0) -> NativeHistogram:
    histogram = NativeHistogram(3)
    for value in values:
        histogram.observe(value)
        if histogram.bucket_count > max_buckets > 0:
            histogram.limit_buckets(max_buckets)
    return histogram


def run_forked(target: Any, *args: Any) -> None:
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0


def check_consistent(
    registry: CollectorRegistry, values: list[float], want: NativeHistogram
) -> None:
    """The scrape shows ``values`` exactly: classic buckets, count, sum, native part."""
    data = scraped(registry)
    assert data.native is not None
    same_native(data.native, want)
    assert data.count == data.native.count == want.count == len(values)
    assert list(data.bucket_counts) == [
        sum(1 for v in values if v <= 0),
        sum(1 for v in values if 0 < v <= 1),
        sum(1 for v in values if 1 < v <= 10),
        sum(1 for v in values if v > 10),
    ]
    got = samples(registry)
    assert got[("restarting_seconds_count", frozenset())] == want.count
    assert got[("restarting_seconds_bucket", frozenset({("le", "+Inf")}))] == want.count
    [family] = proto_oracle.decode_delimited(protobuf.render(collect_registry(registry)))
    assert family.metric[0].histogram.sample_count == want.count


@pytest.mark.parametrize(("reset_seconds", "advance"), [(0.05, 1.0), (3600.0, 0.0)])
def test_a_process_restarts_its_contribution(
    multiprocess_backend: tuple[type[Any], dict[str, Any]], reset_seconds: float, advance: float
) -> None:
    """Past reset_seconds a child's overflow restarts its part; before, its schema goes down."""
    current_store().clock = shifted_clock  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    histogram = define_restarting(registry, reset_seconds)
    for value in PARENT:
        histogram.observe(value)
    flush()
    run_forked(overflow_later, histogram, advance)
    if advance > reset_seconds:  # the child kept only what it observed from the overflow on
        values = PARENT + AFTER
        want = histogram_of(values)
        assert want.schema == 3
    else:  # the child lowered its schema and kept everything
        values = PARENT + BEFORE + AFTER
        child = histogram_of(BEFORE + AFTER, RESET_BUCKETS)
        assert child.schema < 3
        want = histogram_of(PARENT).merge([child])
    for _ in range(2):  # the file backend's second scrape reads the child from the archive
        check_consistent(registry, values, want)


def restart_until(histogram: Histogram, started: Any, stop: Any) -> None:
    """In a child: wide values, restarting at (nearly) every overflow, until stopped."""
    rng = random.Random(11)
    started.set()
    while not stop.is_set():
        for _ in range(50):
            histogram.observe(rng.choice((-1.0, 1.0)) * rng.lognormvariate(0, 6))
        flush()


def test_scrapes_never_see_a_half_restarted_histogram(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """Classic counts, sum and native part of a restarting process drop together."""
    registry = CollectorRegistry()
    histogram = define_restarting(registry, 1e-9)
    context: Any = multiprocessing.get_context("fork")
    started, stop = context.Event(), context.Event()
    child = context.Process(target=restart_until, args=(histogram, started, stop))
    child.start()
    try:
        assert started.wait(30)
        counts = []
        for _ in range(200):
            data = scraped(registry)
            native = data.native
            assert native is not None
            buckets = sum(native.positive.values()) + sum(native.negative.values())
            assert data.count == native.count == native.zero_count + buckets
            assert math.isclose(data.sum, native.sum, rel_tol=1e-9, abs_tol=1e-9)
            counts.append(native.count)
        assert any(later < earlier for earlier, later in zip(counts, counts[1:])), counts
    finally:
        stop.set()
        child.join(timeout=30)
    assert child.exitcode == 0


def test_decoded_blocks_are_reused_by_content_only() -> None:
    """A scrape decodes a block again only when its content changed; unused ones are dropped."""
    from pytheus.backends.file._blocks import DecodedBlocks

    histogram = NativeHistogram(3)
    histogram.observe(0.5)
    block = [1.0, *encode_cells(histogram), 0.0, 1.0]
    decoded = DecodedBlocks()
    first = decoded.decode(block)
    assert first == histogram and decoded.decode(list(block)) is first
    decoded.next_scrape()
    assert decoded.decode(block) is first  # the next scrape reuses it
    histogram.observe(2.0)
    changed = decoded.decode([2.0, *encode_cells(histogram), 0.0, 2.0])
    assert changed == histogram and changed is not first
    decoded.next_scrape()
    decoded.next_scrape()  # a scrape that did not read the block: it is forgotten
    assert decoded.decode(block) is not first
    assert decoded.decode([1.0, 99.0, 0.0, 1.0]) is None  # not a histogram


def test_a_block_torn_for_good_is_taken_repaired() -> None:
    """The last resort of a scrape that never finds a writer's native block whole (a process
    killed mid-write, or one that observes without pause): the count is what the buckets hold,
    as Prometheus requires, unless NaN was observed."""
    from pytheus.backends.file._native_block import repaired

    observed = NativeHistogram(3)
    for value in (0.5, 2.0, -3.0, 0.0):
        observed.observe(value)
    for stored_count in (3, 5):  # the count was stored before (5) or after (3) the bucket
        torn = observed.copy()
        torn.count = stored_count
        block = [7.0, *encode_cells(torn), 2.0, 8.0]
        made_whole = repaired(block)
        assert made_whole[0] == made_whole[-1] and made_whole[-2] == 2.0  # whole; restarts kept
        fixed = decode_cells(made_whole[1:-1])
        assert fixed is not None and fixed.count == 4
        assert (fixed.positive, fixed.negative, fixed.zero_count) == (
            observed.positive, observed.negative, 1,
        )  # fmt: skip
    observed.observe(math.nan)  # NaN is in the count and in no bucket: the count is kept
    fixed = decode_cells(repaired([1.0, *encode_cells(observed), 0.0, 2.0])[1:-1])
    assert fixed is not None and fixed.count == 5


def observe_values(histogram: Histogram, values: list[float]) -> None:
    for value in values:
        histogram.observe(value)
    flush()


def test_a_restart_leaves_exited_processes_alone(
    multiprocess_backend: tuple[type[Any], dict[str, Any]],
) -> None:
    """A child exits (archived, or folded on Redis); later this process restarts: the child's
    part stays, this process's starts again."""
    current_store().clock = shifted_clock  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    histogram = define_restarting(registry, 0.05)
    for value in BEFORE:
        histogram.observe(value)
    run_forked(observe_values, histogram, PARENT)
    check_consistent(registry, PARENT + BEFORE, histogram_of(PARENT + BEFORE))  # child archived
    SHIFT[0] += 1.0
    try:
        for value in AFTER:
            histogram.observe(value)
        flush()
    finally:
        SHIFT[0] = 0.0
    for _ in range(2):
        check_consistent(registry, PARENT + AFTER, histogram_of(PARENT + AFTER))
