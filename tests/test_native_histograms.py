"""Native histograms: bucket math against exact arithmetic, re-bucketing, merging, the API."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytheus.backends.base import current_store
from pytheus.backends.memory import MemoryNativeHistogram
from pytheus.collection import collect_registry
from pytheus.exceptions import BucketException
from pytheus.exposition import text
from pytheus.metrics import Histogram
from pytheus.native import (
    DEFAULT_ZERO_THRESHOLD,
    MAX_SCHEMA,
    MIN_SCHEMA,
    NativeHistogram,
    bounds_table,
    bucket_index,
    bucket_upper_bound,
    decode_cells,
    encode_cells,
    reduce_index,
    schema_for_factor,
    spans_and_deltas,
)
from pytheus.registry import CollectorRegistry
from pytheus.samples import HistogramData
from tests.backends_under_test import PER_VALUE
from tests.helpers import samples

SCHEMAS = range(MIN_SCHEMA, MAX_SCHEMA + 1)
MAX_FLOAT = 1.7976931348623157e308


def within(value: Fraction, index: int, schema: int) -> bool:
    """Exactly: ``value <= 2 ** (index * 2**-schema)``, the upper bound of bucket ``index``."""
    if schema <= 0:
        return value <= Fraction(2) ** (index << -schema)
    n = 1 << schema  # value ** n <= 2 ** index, in integers
    power: int = value.numerator**n
    bound: Fraction = (Fraction(2) ** index) * value.denominator**n
    return power <= bound


def reference_index(value: float, schema: int) -> int:
    """The smallest ``i`` with ``|value| <= base**i``: slow, exact, independent of frexp."""
    exact = Fraction(abs(value))
    guess = math.ceil(math.log2(abs(value)) * 2.0**schema)
    while not within(exact, guess, schema):
        guess += 1
    while within(exact, guess - 1, schema):
        guess -= 1
    return guess


def boundary_values(schema: int) -> list[float]:
    """Floats at and next to bucket boundaries across several octaves, tiny and huge."""
    n = 2.0**schema
    values: list[float] = []
    indices = [*range(int(-3 * n) - 2, int(3 * n) + 3)]
    indices += [int(k * n) + d for k in (-1074, -1022, -128, 200, 1023) for d in (-1, 0, 1)]
    for index in indices:
        exponent = index / n
        if not -1074 <= exponent < 1024:
            continue
        bound = 2.0**exponent
        if bound == 0:
            continue
        values += [math.nextafter(bound, 0.0), bound, math.nextafter(bound, math.inf)]
    return [v for v in values if 0 < v <= MAX_FLOAT]


def fast_path_edges(schema: int) -> list[float]:
    """The bounds where the memory backend's fast path starts and ends, every bound of the
    octaves around 1 and of two far ones, and their neighbours."""
    table, first = bounds_table(schema)
    n = 1 << max(schema, 0)
    around = [*range(-4 * n, 4 * n), *range(-50 * n, -48 * n), *range(40 * n, 42 * n)]
    edges = [
        *table[:4],
        *table[-4:],
        *(table[k - first] for k in around if 0 <= k - first < len(table)),
    ]
    return [v for bound in edges for v in (math.nextafter(bound, 0.0), bound,
                                           math.nextafter(bound, math.inf))]  # fmt: skip


def memory_buckets(values: list[float], schema: int) -> dict[int, int]:
    """The positive buckets of the memory backend's native-only histogram (no bucket limit)."""
    histogram = MemoryNativeHistogram((math.inf,), schema, 0.0, 0, 0.0)
    for value in values:
        histogram.observe(value)
    native = histogram.snapshot().native
    assert native is not None
    return native.positive


@pytest.mark.parametrize("schema", SCHEMAS)
def test_memory_fast_path_matches_the_exact_reference(schema: int) -> None:
    """The fast path (``log2`` and a correction) places every value where exact arithmetic does."""
    values = boundary_values(schema) + fast_path_edges(schema)
    expected: dict[int, int] = {}
    for value in values:
        index = reference_index(value, schema)
        expected[index] = expected.get(index, 0) + 1
    assert memory_buckets(values, schema) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=2.0**-70, max_value=2.0**70), min_size=1, max_size=50),
    st.integers(MIN_SCHEMA, MAX_SCHEMA),
)
def test_memory_fast_path_matches_bucket_index(values: list[float], schema: int) -> None:
    expected: dict[int, int] = {}
    for value in values:
        index = bucket_index(value, schema)
        expected[index] = expected.get(index, 0) + 1
    assert memory_buckets(values, schema) == expected


@pytest.mark.parametrize("schema", SCHEMAS)
def test_bucket_index_exact_at_boundaries(schema: int) -> None:
    for value in boundary_values(schema):
        assert bucket_index(value, schema) == reference_index(value, schema), value
        assert bucket_index(-value, schema) == reference_index(value, schema), -value


@pytest.mark.parametrize("schema", SCHEMAS)
def test_bucket_index_of_every_power_of_two(schema: int) -> None:
    for exponent in range(-1074, 1024):
        value = 2.0**exponent
        # 2**e is the upper bound of bucket e * 2**schema (inclusive) when that is an integer
        expected = exponent << schema if schema >= 0 else -((-exponent) >> -schema)
        assert bucket_index(value, schema) == expected == reference_index(value, schema)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_bucket_index_extremes(schema: int) -> None:
    smallest = 5e-324
    assert bucket_index(smallest, schema) == reference_index(smallest, schema)
    top = reference_index(MAX_FLOAT, schema)
    assert bucket_index(MAX_FLOAT, schema) == top
    assert bucket_index(math.inf, schema) == bucket_index(-math.inf, schema) == top + 1


@settings(max_examples=400, deadline=None)
@given(
    st.floats(min_value=5e-324, max_value=MAX_FLOAT, allow_nan=False, allow_infinity=False),
    st.sampled_from(list(SCHEMAS)),
)
def test_bucket_index_matches_exact_reference(value: float, schema: int) -> None:
    assert bucket_index(value, schema) == reference_index(value, schema)


def golang_schema(factor: float) -> int:
    """client_golang's pickSchema."""
    floor = math.floor(math.log2(math.log2(factor)))
    if floor <= -MAX_SCHEMA:
        return MAX_SCHEMA
    if floor >= -MIN_SCHEMA:
        return MIN_SCHEMA
    return -floor


@pytest.mark.parametrize(
    ("factor", "schema"),
    [(1.1, 3), (2, 0), (2.0**0.5, 1), (1.5, 1), (4, -1), (65536, -4), (1e9, -4), (1.0001, 8),
     (1.0027, 8), (1.003, 8), (1.006, 7), (1.0905, 4), (1.0906, 3)],
)  # fmt: skip
def test_schema_for_factor(factor: float, schema: int) -> None:
    assert schema_for_factor(factor) == schema
    growth = 2.0 ** (2.0**-schema)
    assert growth <= factor or schema == MAX_SCHEMA


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1.0000001, max_value=1e12))
def test_schema_for_factor_agrees_with_client_golang(factor: float) -> None:
    ours, theirs = schema_for_factor(factor), golang_schema(factor)
    if ours != theirs:  # only where log2(log2(factor)) rounds across an integer
        assert abs(math.log2(math.log2(factor)) - round(math.log2(math.log2(factor)))) < 1e-9


@pytest.mark.parametrize("factor", [1, 0.5, -2, math.nan])
def test_schema_for_factor_refuses_factors_not_above_one(factor: float) -> None:
    with pytest.raises(ValueError):
        schema_for_factor(factor)


def test_reduce_index_is_ceil_of_half() -> None:
    for index in range(-100, 101):
        for by in range(5):
            assert reduce_index(index, by) == math.ceil(Fraction(index, 2**by))


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)
values = st.lists(
    st.one_of(finite, st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, -4.0, 1e-40, math.inf])),
    max_size=60,
)


def observed(schema: int, data: list[float], zero_threshold: float = 1e-9) -> NativeHistogram:
    h = NativeHistogram(schema, zero_threshold)
    for value in data:
        h.observe(value)
    return h


def same_buckets(a: NativeHistogram, b: NativeHistogram) -> None:
    assert (a.schema, a.zero_threshold, a.zero_count, a.count) == (
        b.schema,
        b.zero_threshold,
        b.zero_count,
        b.count,
    )
    assert a.positive == b.positive
    assert a.negative == b.negative


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from(list(SCHEMAS)), st.data())
def test_reduce_to_equals_observing_at_the_lower_schema(
    data: list[float], schema: int, draw: st.DataObject
) -> None:
    target = draw.draw(st.integers(MIN_SCHEMA, schema))
    h = observed(schema, data)
    h.reduce_to(target)
    same_buckets(h, observed(target, data))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(values, st.sampled_from(list(SCHEMAS))), min_size=1, max_size=5),
)
def test_merge_equals_observing_everything_at_the_lowest_schema(
    parts: list[tuple[list[float], int]],
) -> None:
    histograms = [observed(schema, data) for data, schema in parts]
    merged = histograms[0].merge(histograms[1:])
    everything = [value for data, _ in parts for value in data]
    expected = observed(min(schema for _, schema in parts), everything)
    same_buckets(merged, expected)
    # the sums add the same values in another order: equal up to rounding of the largest terms
    scale = math.fsum(abs(value) for value in everything if math.isfinite(value))
    assert (
        math.isclose(merged.sum, expected.sum, rel_tol=1e-9, abs_tol=1e-12 * scale)
        or math.isinf(expected.sum)
        or (math.isnan(expected.sum) and math.isnan(merged.sum))
    )
    # merging leaves its inputs alone
    for (data, schema), h in zip(parts, histograms):
        same_buckets(h, observed(schema, data))


@settings(max_examples=200, deadline=None)
@given(values, values, st.sampled_from([0.0, 1e-9, 0.3, 1.0, 5.0]))
def test_merge_with_different_zero_thresholds_keeps_every_observation(
    a: list[float], b: list[float], threshold: float
) -> None:
    merged = observed(2, a, 0.0).merge([observed(0, b, threshold)])
    assert merged.schema == 0
    assert merged.zero_threshold >= threshold
    assert merged.count == len(a) + len(b)
    assert merged.zero_count + sum(merged.positive.values()) + sum(merged.negative.values()) == len(
        a
    ) + len(b)
    # no bucket of the input with the lower threshold reaches into the zero bucket (one of the
    # other input may: its own threshold can fall inside a bucket)
    other = observed(0, b, threshold)
    for sign, buckets in (("positive", merged.positive), ("negative", merged.negative)):
        for index in buckets:
            moved = bucket_upper_bound(index - 1, merged.schema) < merged.zero_threshold
            assert not moved or index in getattr(other, sign), (sign, index)
    # every value within the threshold asked for is in the zero bucket
    assert merged.zero_count >= sum(1 for v in a + b if abs(v) <= threshold)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(), max_size=80), st.sampled_from(list(SCHEMAS)))
def test_count_is_buckets_plus_zero_plus_nan(data: list[float], schema: int) -> None:
    h = observed(schema, data, DEFAULT_ZERO_THRESHOLD)
    nans = sum(1 for v in data if math.isnan(v))
    buckets = sum(h.positive.values()) + sum(h.negative.values())
    assert h.count == len(data) == buckets + h.zero_count + nans
    assert h.zero_count == sum(1 for v in data if abs(v) <= DEFAULT_ZERO_THRESHOLD)
    assert sum(h.negative.values()) == sum(1 for v in data if v < -DEFAULT_ZERO_THRESHOLD)


def test_observe_places_values_as_the_spec_says() -> None:
    h = observed(3, [0.5, 1.0, 3.0, -2.0, 0.0, 1e-10], zero_threshold=1e-9)
    assert h.positive == {-8: 1, 0: 1, 13: 1}
    assert h.negative == {8: 1}
    assert h.zero_count == 2
    assert h.count == 6


def test_invalid_histograms_are_refused() -> None:
    with pytest.raises(ValueError):
        NativeHistogram(9)
    with pytest.raises(ValueError):
        NativeHistogram(-5)
    with pytest.raises(ValueError):
        NativeHistogram(0, -1.0)
    with pytest.raises(ValueError):
        NativeHistogram(0).reduce_to(1)


def test_spans_and_deltas() -> None:
    assert spans_and_deltas({}) == ([], [])
    assert spans_and_deltas({-3: 1, -1: 2, 5: 4, 6: 1}) == ([(-3, 3), (5, 2)], [1, -1, 2, 2, -3])
    # a gap of two buckets is filled, of three starts a span
    assert spans_and_deltas({0: 1, 3: 1}) == ([(0, 4)], [1, -1, 0, 1])
    assert spans_and_deltas({0: 1, 4: 1}) == ([(0, 1), (3, 1)], [1, 0])


def test_limit_buckets_lowers_the_schema_exactly() -> None:
    data = [1.01**k for k in range(300)]
    h = observed(8, data)
    h.limit_buckets(20)
    assert h.bucket_count <= 20
    assert h.schema < 8
    same_buckets(h, observed(h.schema, data))
    coarse = observed(MIN_SCHEMA, [1e-8, 1.0, 1e300])
    coarse.limit_buckets(1)  # cannot go below schema -4
    assert coarse.schema == MIN_SCHEMA and coarse.bucket_count == 3


# --- the Histogram API and the memory backend --------------------------------------------------


def snapshot(registry: CollectorRegistry) -> HistogramData:
    [family] = collect_registry(registry)
    [(_, data)] = family.series
    assert isinstance(data, HistogramData)
    return data


def test_native_only_histogram() -> None:
    registry = CollectorRegistry()
    h = Histogram("latency_seconds", "Latency.", registry=registry, native=True)
    assert h._upper_bounds == (math.inf,)
    for value in (0.1, 0.2, 3.0, 0.0):
        h.observe(value)
    data = snapshot(registry)
    assert data.native is not None
    assert data.native.schema == 3  # native_bucket_factor 1.1
    assert data.native.zero_threshold == DEFAULT_ZERO_THRESHOLD
    assert data.native.count == data.count == 4
    assert data.native.sum == data.sum == pytest.approx(3.3)
    same_buckets(data.native, observed(3, [0.1, 0.2, 3.0, 0.0], DEFAULT_ZERO_THRESHOLD))
    exposition = text.render(collect_registry(registry))
    assert 'latency_seconds_bucket{le="+Inf"} 4\n' in exposition
    assert "latency_seconds_count 4\n" in exposition


def test_native_with_explicit_buckets_keeps_classic_buckets() -> None:
    registry = CollectorRegistry()
    h = Histogram(
        "size_bytes", "Sizes.", registry=registry, buckets=[10, 100], native=True,
        native_bucket_factor=2, native_zero_threshold=1.0,
    )  # fmt: skip
    for value in (0.5, 5, 50, 500, -3):
        h.observe(value)
    data = snapshot(registry)
    assert data.upper_bounds == (10.0, 100.0, math.inf)
    assert list(data.bucket_counts) == [3, 1, 1]
    assert data.native is not None
    same_buckets(data.native, observed(0, [0.5, 5, 50, 500, -3], 1.0))


def test_classic_histogram_has_no_native_part() -> None:
    registry = CollectorRegistry()
    Histogram("plain_seconds", "Plain.", registry=registry).observe(1)
    data = snapshot(registry)
    assert data.native is None
    assert len(data.upper_bounds) == len(Histogram.DEFAULT_BUCKETS) + 1


def test_max_buckets_lowers_the_schema() -> None:
    registry = CollectorRegistry()
    h = Histogram("wide", "Wide.", registry=registry, native=True, native_max_buckets=10)
    data_values = [1.5**k for k in range(-40, 40)]
    for value in data_values:
        h.observe(value)
    data = snapshot(registry)
    assert data.native is not None
    assert data.native.bucket_count <= 10
    same_buckets(data.native, observed(data.native.schema, data_values, DEFAULT_ZERO_THRESHOLD))


def test_reset_instead_of_lowering_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    value = MemoryNativeHistogram((1.0, math.inf), 3, DEFAULT_ZERO_THRESHOLD, 2, 60.0)
    for v in (1.0, 2.0):
        value.observe(v)
    value.observe(4.0)  # 3 buckets, but not 60 s yet: the schema goes down
    first = value.snapshot()
    assert first.native is not None and first.native.schema < 3 and first.native.count == 3
    clock[0] += 61
    schema_before = first.native.schema
    for v in (100.0, 1000.0, 10000.0, 1e6, 1e9):
        value.observe(v)  # over the limit after 60 s: start again from the latest value
    data = value.snapshot()
    assert data.native is not None
    assert data.count == data.native.count
    assert data.native.count < 8
    assert data.native.schema <= 3
    assert schema_before < 3
    assert sum(data.bucket_counts) == data.native.count
    assert data.sum <= 1e9 + 1e6 + 1e4 + 1e3 + 100


def test_reset_keeps_only_the_latest_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    value = MemoryNativeHistogram((math.inf,), 0, DEFAULT_ZERO_THRESHOLD, 1, 10.0)
    value.observe(1.0)
    clock[0] = 11.0
    value.observe(1000.0)  # two buckets > 1, and 11 s have passed: restart
    data = value.snapshot()
    assert data.native is not None
    assert (data.native.count, data.native.sum, data.native.positive) == (1, 1000.0, {10: 1})
    assert list(data.bucket_counts) == [1] and data.sum == 1000.0


@pytest.mark.parametrize(
    "options",
    [
        {"native_bucket_factor": 1.0},
        {"native_bucket_factor": "big"},
        {"native_max_buckets": -1},
        {"native_max_buckets": 1.5},
        {"native_zero_threshold": -1.0},
        {"native_zero_threshold": math.inf},
        {"native_reset_seconds": -1},
        {"native_reset_seconds": math.nan},
    ],
)
def test_invalid_native_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(BucketException):
        Histogram("bad", "Bad.", registry=None, native=True, **options)  # type: ignore[arg-type]


def test_native_options_are_part_of_the_definition() -> None:
    a = Histogram("a", "A.", registry=None, native=True)
    b = Histogram("a", "A.", registry=None, native=True, native_bucket_factor=2)
    c = Histogram("a", "A.", registry=None)
    assert not a._desc.same_definition(b._desc)
    assert not a._desc.same_definition(c._desc)
    assert a._desc.option("native_schema") == 3
    assert b._desc.option("native_schema") == 0


def test_native_histograms_work_on_every_backend(registry: CollectorRegistry, backend: str) -> None:
    """Every built-in backend keeps the native part; a per-value backend the classic part only."""
    h = Histogram("any_backend", "Any.", registry=registry, native=True)
    for value in (0.5, 2.0, 0.0):
        h.observe(value)
    data = snapshot(registry)
    assert data.count == 3 and data.sum == 2.5
    if backend in PER_VALUE:
        assert data.native is None
    else:
        assert data.native is not None and data.native.count == 3
        assert data.native.zero_count == 1


def test_reset_seconds_on_every_backend(registry: CollectorRegistry, backend: str) -> None:
    """Past native_max_buckets the schema goes down until native_reset_seconds have passed;
    then the whole histogram restarts from the observation that overflowed."""
    now = [0.0]
    store = current_store()
    if hasattr(store, "clock"):  # a per-value backend keeps no native part to restart
        store.clock = lambda: now[0]
    h = Histogram(
        "restarting", "R.", registry=registry, buckets=[10], native=True, native_max_buckets=4,
        native_reset_seconds=0.05,
    )  # fmt: skip
    first = [1.0, 2.0, 4.0, 8.0, 16.0]  # 5 buckets at schema 3 (3 at schema -1)
    for value in first:
        h.observe(value)
    data = snapshot(registry)
    assert (data.count, data.sum, list(data.bucket_counts)) == (5, 31.0, [4, 1])
    if backend in PER_VALUE:
        assert data.native is None
        return
    assert data.native is not None
    same_buckets(data.native, observed(-1, first, DEFAULT_ZERO_THRESHOLD))
    now[0] = 0.05
    for value in (1e6, 1e12):  # the 4th bucket fits; the 5th restarts the histogram
        h.observe(value)
    data = snapshot(registry)
    assert (data.count, data.sum, list(data.bucket_counts)) == (1, 1e12, [0, 1])
    assert data.native is not None and data.native.sum == 1e12
    same_buckets(data.native, observed(3, [1e12], DEFAULT_ZERO_THRESHOLD))
    got = samples(registry)
    assert got[("restarting_count", frozenset())] == 1
    assert got[("restarting_bucket", frozenset({("le", "+Inf")}))] == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2.0**70, -1.0])
def test_decode_cells_never_raises_on_damaged_cells(bad: float) -> None:
    """A damaged block (a foreign or corrupt file) decodes to None or a histogram, never raises."""
    histogram = NativeHistogram(3)
    for value in (0.5, -2.0, 0.0, 7.0):
        histogram.observe(value)
    cells = encode_cells(histogram)
    for at in range(len(cells)):
        damaged = list(cells)
        damaged[at] = bad
        decoded = decode_cells(damaged)
        assert decoded is None or isinstance(decoded, NativeHistogram)
