"""Quantile sketches over a sliding window, checked against exact quantiles.

The documented bound: for sorted observations ``x`` and a quantile ``q``, the estimate is within
``relative_accuracy * |x[r]|`` of ``x[r]``, ``r = floor(q * (n - 1))``. ``ROUNDING`` allows for
the rounding of the logarithm that picks a bucket.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytheus.exceptions import MetricDefinitionException
from pytheus.quantiles import QuantileSketch, SlidingQuantiles, WindowUnion

ROUNDING = 1e-9
TARGETS = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)


def exact(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def relative_error(estimate: float, truth: float) -> float:
    if truth == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - truth) / abs(truth)


def assert_within_bound(
    sketch: QuantileSketch, values: Sequence[float], qs: Sequence[float]
) -> float:
    """Check the bound for every quantile; return the largest relative error seen."""
    worst = 0.0
    for q, estimate in zip(qs, sketch.quantiles(qs)):
        truth = exact(values, q)
        if abs(truth) < sys.float_info.min:  # documented: counted as 0
            assert estimate == 0
            continue
        error = relative_error(estimate, truth)
        assert error <= sketch.relative_accuracy * (1 + ROUNDING), (q, estimate, truth)
        worst = max(worst, error)
    return worst


def sketch_of(values: Sequence[float], **options: float) -> QuantileSketch:
    sketch = QuantileSketch(**options)  # type: ignore[arg-type]
    for value in values:
        sketch.add(value)
    return sketch


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": lambda rng: rng.uniform(0, 100),
    "exponential": lambda rng: rng.expovariate(3.0),
    "lognormal": lambda rng: rng.lognormvariate(0, 2.5),
    "normal": lambda rng: rng.gauss(1, 5),  # both signs
    "latency_with_zeros": lambda rng: 0.0 if rng.random() < 0.1 else rng.paretovariate(1.2),
}


@pytest.mark.parametrize("accuracy", [0.01, 0.05])
@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_error_bound_on_random_data(distribution: str, accuracy: float) -> None:
    rng = random.Random(f"{distribution}-{accuracy}")
    values = [DISTRIBUTIONS[distribution](rng) for _ in range(10_000)]
    sketch = sketch_of(values, relative_accuracy=accuracy)
    assert sketch.count == len(values)
    worst = assert_within_bound(sketch, values, TARGETS)
    assert worst > accuracy / 4  # the bound is tight enough to be worth checking


FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(FINITE, min_size=1, max_size=100),
    qs=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=5),
    accuracy=st.sampled_from([0.001, 0.01, 0.1, 0.5]),
)
def test_error_bound_on_any_data(values: list[float], qs: list[float], accuracy: float) -> None:
    assert_within_bound(sketch_of(values, relative_accuracy=accuracy), values, qs)


def test_special_values() -> None:
    sketch = sketch_of([math.nan, 0.0, -0.0, 5e-324, math.inf, -math.inf, 2.0])
    assert sketch.count == 6  # NaN ignored
    low, middle, high = sketch.quantiles([0, 0.5, 1])
    assert middle == 0.0
    assert low <= -sys.float_info.max * 0.99 and high >= sys.float_info.max * 0.99
    assert [math.isnan(v) for v in QuantileSketch().quantiles([0, 0.5, 1])] == [True] * 3


def test_collapsing_keeps_memory_and_the_upper_quantiles() -> None:
    rng = random.Random(7)
    values = [math.exp(rng.uniform(-300, 300)) for _ in range(20_000)]
    sketch = sketch_of(values, max_buckets=32)
    assert sketch.bucket_count <= 2 * 32 + 1
    assert sketch.count == len(values)
    # only the smallest magnitudes were merged: the upper quantiles keep the bound
    assert_within_bound(sketch, values, (0.999, 0.9999, 1.0))
    assert sketch.quantile(0.0) > exact(values, 0.0)  # the merged ones read too large


@settings(max_examples=100, deadline=None)
@given(
    first=st.lists(FINITE, max_size=100),
    second=st.lists(FINITE, max_size=100),
    limit=st.sampled_from([4, 2048]),
)
def test_merge_equals_the_sketch_of_all(
    first: list[float], second: list[float], limit: int
) -> None:
    merged = sketch_of(first, max_buckets=limit)
    merged.merge(sketch_of(second, max_buckets=limit))
    together = sketch_of(first + second, max_buckets=limit)
    assert merged.count == together.count
    if limit == 2048:  # with no collapse, merging is exact
        assert merged.to_floats() == together.to_floats()
    restored = QuantileSketch.from_floats(merged.to_floats())
    assert restored.to_floats() == merged.to_floats()
    assert restored.quantiles(TARGETS) == merged.quantiles(TARGETS) or merged.count == 0


def test_merge_refuses_other_accuracy_and_bad_floats() -> None:
    with pytest.raises(ValueError, match="relative accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))
    floats = sketch_of([1.0, 2.0]).to_floats()
    for broken in ([], floats[:-1], [*floats, 1.0], [2.0, *floats[1:]]):
        with pytest.raises(ValueError, match="not a serialised QuantileSketch"):
            QuantileSketch.from_floats(broken)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True), max_size=100))
def test_bucket_ids_rebuild_the_same_sketch(values: list[float]) -> None:
    direct = sketch_of(values)
    rebuilt = QuantileSketch()
    ids = [direct.bucket_id(value) for value in values]
    for bucket in ids:
        if bucket is not None:
            rebuilt.add_bucket(bucket)
    assert rebuilt.to_floats() == direct.to_floats()
    assert [bucket is None for bucket in ids] == [math.isnan(value) for value in values]
    # ids are ordered like the values
    pairs = sorted((value, bucket) for value, bucket in zip(values, ids) if bucket is not None)
    assert [bucket for _, bucket in pairs] == sorted(bucket for _, bucket in pairs)
    with pytest.raises(ValueError, match="negative"):
        rebuilt.add_bucket(1, -1)


# --- the sliding window ---------------------------------------------------------------------


def test_empty_window_is_nan() -> None:
    window = SlidingQuantiles(quantiles=(0.5, 0.99))
    [(q1, v1), (q2, v2)] = window.query(now=1000.0)
    assert (q1, q2) == (0.5, 0.99) and math.isnan(v1) and math.isnan(v2)
    window.observe(math.nan, now=1000.0)
    assert all(math.isnan(v) for _, v in window.query(now=1000.0))


def test_observations_leave_after_max_age() -> None:
    window = SlidingQuantiles(quantiles=(0.5,), max_age_seconds=10, age_buckets=5)  # 2 s slots
    window.observe(100.0, now=1000.5)  # slot 500: [1000, 1002)
    window.observe(1.0, now=1009.0)  # slot 504
    window.observe(1.0, now=1009.5)
    assert window.window(now=1009.9).count == 3
    [(q, median)] = window.query(now=1009.9)
    assert q == 0.5 and median == pytest.approx(1.0, rel=0.01)
    # at 1010.0 slot 500 leaves: 9.5 s after the observation, within (8 s, 10 s]
    assert window.window(now=1010.0).count == 2
    assert window.window(now=1017.9).count == 2
    assert window.window(now=1018.0).count == 0  # slot 504 [1008, 1010) left
    assert math.isnan(window.query(now=1018.0)[0][1])


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=0, max_value=4), min_size=1, max_size=60),
    age_buckets=st.integers(min_value=1, max_value=6),
    later=st.floats(min_value=0, max_value=30),
)
def test_window_lifetime(steps: list[float], age_buckets: int, later: float) -> None:
    """Every observation younger than max_age * (1 - 1/age_buckets) counts, none as old as
    max_age does, and the window is exactly the observations of the live slots."""
    max_age = 12.0
    window = SlidingQuantiles(max_age_seconds=max_age, age_buckets=age_buckets)
    width = max_age / age_buckets
    now = 500.0
    times = []
    for step in steps:
        now += step
        window.observe(1.0, now)
        times.append(now)
    query_time = now + later
    count = window.window(query_time).count
    current = math.floor(query_time / width)
    assert count == sum(1 for t in times if math.floor(t / width) > current - age_buckets)
    assert count >= sum(1 for t in times if query_time - t < max_age - width - 1e-9)
    assert count <= sum(1 for t in times if query_time - t < max_age + 1e-9)


def test_window_quantiles_within_bound() -> None:
    rng = random.Random(3)
    window = SlidingQuantiles(quantiles=TARGETS, max_age_seconds=60, age_buckets=3)
    old = [rng.uniform(1000, 2000) for _ in range(1000)]
    recent = [rng.lognormvariate(0, 1) for _ in range(5000)]
    for value in old:
        window.observe(value, now=100.0)
    for index, value in enumerate(recent):
        window.observe(value, now=150.0 + index * 0.001)
    assert_within_bound(window.window(now=165.0), recent, TARGETS)  # the old ones left
    for q, estimate in window.query(now=165.0):
        assert relative_error(estimate, exact(recent, q)) <= 0.01 * (1 + ROUNDING)


def test_clock_going_back_stays_in_the_latest_slot() -> None:
    window = SlidingQuantiles(max_age_seconds=10, age_buckets=5)
    window.observe(1.0, now=100.0)
    window.observe(2.0, now=50.0)  # counted with the latest slot, not lost nor in a past slot
    assert window.window(now=100.0).count == 2
    assert window.window(now=110.0).count == 0


def test_memory_stays_bounded_for_a_million_observations() -> None:
    rng = random.Random(11)
    pool = [rng.lognormvariate(-3, 3) * rng.choice((1, 1, 1, -1)) for _ in range(4096)]
    window = SlidingQuantiles(max_age_seconds=600, age_buckets=5, max_buckets=256)
    observe = window.observe
    for index in range(1_000_000):
        observe(pool[index & 4095], 0.001 * index)  # 1000 s: the ring turned over
    assert window.stored_buckets <= 5 * (2 * 256 + 1)
    assert window.window(now=1000.0).count == 520_000  # slots of 120 s: [480 s, 1000 s)
    assert len(window.to_floats()) < 8 * window.stored_buckets


def test_windows_merge_slot_by_slot() -> None:
    rng = random.Random(5)
    events = [(1000.0 + index * 0.01, rng.expovariate(1.0)) for index in range(6000)]
    a, b, both = (SlidingQuantiles(max_age_seconds=30, age_buckets=3) for _ in range(3))
    for index, (now, value) in enumerate(events):
        (a if index % 3 else b).observe(value, now)
        both.observe(value, now)
    a.merge(b)
    assert a.query(now=1060.0) == both.query(now=1060.0)
    assert a.to_floats() == both.to_floats()
    # serialised, as a multi-process backend stores each process's window
    restored = SlidingQuantiles.from_floats(both.to_floats())
    assert restored.to_floats() == both.to_floats()
    assert restored.query(now=1060.0) == both.query(now=1060.0)
    # a window whose slots all expired adds nothing
    stale = SlidingQuantiles(max_age_seconds=30, age_buckets=3)
    stale.observe(5.0, now=0.0)
    a.merge(stale)
    assert a.to_floats() == both.to_floats()


def test_windows_rebuild_from_bucket_counts_summed_over_processes() -> None:
    """The layout for backends that increment counters: (slot, bucket id) -> count."""
    rng = random.Random(9)
    both = SlidingQuantiles(max_age_seconds=30, age_buckets=3)
    cells: dict[tuple[int, int], int] = {}  # what every process increments, summed
    for index in range(3000):
        now, value = 1000.0 + index * 0.02, rng.lognormvariate(0, 2)
        both.observe(value, now)
        bucket = both.bucket_id(value)
        assert bucket is not None
        key = (both.slot(now), bucket)
        cells[key] = cells.get(key, 0) + 1
    rebuilt = SlidingQuantiles(max_age_seconds=30, age_buckets=3)
    for (slot, bucket), count in cells.items():
        rebuilt.add_bucket(slot, bucket, count)
    assert rebuilt.to_floats() == both.to_floats()
    assert rebuilt.query(now=1070.0) == both.query(now=1070.0)


@settings(max_examples=150, deadline=None)
@given(
    processes=st.lists(
        st.lists(st.tuples(st.floats(0, 100), FINITE), max_size=40), min_size=1, max_size=6
    ),
    later=st.floats(0, 150),
    limit=st.sampled_from([3, 2048]),
)
def test_a_union_of_windows_answers_as_their_merge(
    processes: list[list[tuple[float, float]]], later: float, limit: int
) -> None:
    """What a scrape asks of every process's window of a series (``WindowUnion``) is what one
    window of all their observations answers: negative values, zeros, several age slots, slots
    that expired, and windows that collapsed their lowest buckets (``limit`` 3) included."""
    windows = []
    for events in processes:
        window = SlidingQuantiles(max_age_seconds=60, age_buckets=3, max_buckets=limit)
        for at, value in sorted(events):
            window.observe(value, 1000.0 + at)
        windows.append(window)
    union = WindowUnion()
    merged = SlidingQuantiles(max_age_seconds=60, age_buckets=3, max_buckets=limit)
    for window in windows:
        union.add_serialised(window.to_floats())
        merged.merge(window)
    rebuilt = union.window()
    assert rebuilt is not None
    assert rebuilt.to_floats() == merged.to_floats()
    now = 1100.0 + later
    targets = (0.0, 0.25, 0.5, 0.9, 0.99, 1.0)
    expected = [value for _, value in merged.quantiles_at(targets, now)]
    answered = [value for _, value in union.quantiles_at(targets, now)]
    assert answered == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_a_union_leaves_out_what_merge_refuses() -> None:
    first, other = SlidingQuantiles(max_age_seconds=60), SlidingQuantiles(max_age_seconds=30)
    first.observe(1.0, now=100.0)
    other.observe(1000.0, now=100.0)
    union = WindowUnion()
    for floats in (first.to_floats(), other.to_floats(), [9.0, 1.0], []):
        union.add_serialised(floats)
    assert union.quantiles_at((0.5, 1.0), now=101.0) == first.quantiles_at((0.5, 1.0), 101.0)
    broken = first.to_floats()
    broken[-1] = -3.0  # a negative count: the whole window is left out
    alone = WindowUnion()
    alone.add_serialised(broken)
    assert math.isnan(alone.quantiles_at((0.5,), now=101.0)[0][1])
    merged = alone.window()
    assert merged is None or merged.count == 0
    alone.add_serialised(first.to_floats())  # beside a readable one: that one alone counts
    assert alone.quantiles_at((0.5, 1.0), now=101.0) == first.quantiles_at((0.5, 1.0), 101.0)


def test_merge_and_from_floats_refuse_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="different"):
        SlidingQuantiles(max_age_seconds=60).merge(SlidingQuantiles(max_age_seconds=30))
    floats = SlidingQuantiles().to_floats()
    for broken in ([], [9.0, *floats[1:]], floats[:-1], [*floats, 0.0]):
        with pytest.raises(ValueError, match="not a serialised SlidingQuantiles"):
            SlidingQuantiles.from_floats(broken)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"quantiles": (0.5, 1.5)}, "a quantile must be a number in [0, 1], got 1.5"),
        ({"quantiles": (math.nan,)}, "a quantile must be a number in [0, 1]"),
        ({"max_age_seconds": 0}, "max_age_seconds must be a positive number"),
        ({"max_age_seconds": math.inf}, "max_age_seconds must be a positive number"),
        ({"age_buckets": 0}, "age_buckets must be an integer >= 1, got 0"),
        ({"relative_accuracy": 0}, "relative_accuracy must be in (0, 1)"),
        ({"relative_accuracy": 1}, "relative_accuracy must be in (0, 1)"),
        ({"max_buckets": 0}, "max_buckets must be an integer >= 1"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], words: str) -> None:
    with pytest.raises(MetricDefinitionException) as raised:
        SlidingQuantiles(**options)  # type: ignore[arg-type]
    assert words in str(raised.value)
