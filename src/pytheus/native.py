"""Native (exponential, sparse) histograms: bucket math and a mergeable data model.

A native histogram of schema ``s`` has buckets whose boundaries are powers of
``base = 2 ** (2 ** -s)``: bucket ``i`` holds the values ``v`` with ``base**(i-1) < v <= base**i``
(and ``-base**i <= v < -base**(i-1)`` for the negative buckets). Values with ``|v|`` at most the
zero threshold fall in the zero bucket. Schemas run from -4 (base 65536) to 8 (base ~1.0027).

Only buckets that have counts are stored (dicts keyed by index), so a histogram covers any range
of values. Lowering the schema by one merges buckets pairwise, exactly: bucket ``k`` of schema
``s - 1`` is the union of buckets ``2k - 1`` and ``2k`` of schema ``s``. That makes histograms of
different schemas mergeable exactly at the lowest of their schemas (:meth:`NativeHistogram.merge`).

Example::

    from pytheus.native import NativeHistogram

    h = NativeHistogram(schema=3)
    for value in (0.5, 1.0, 3.0, -2.0, 0.0):
        h.observe(value)
    h.count, h.zero_count, h.positive  # (5, 1, {-8: 1, 0: 1, 13: 1})
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

MIN_SCHEMA = -4
MAX_SCHEMA = 8
DEFAULT_BUCKET_FACTOR = 1.1
DEFAULT_MAX_BUCKETS = 160
DEFAULT_ZERO_THRESHOLD = 2.0**-128
"""client_golang's ``DefNativeHistogramZeroThreshold``."""


@cache
def _frac_bounds() -> tuple[float, ...]:
    """For schema 8: bound ``j`` is the largest float <= ``2 ** (j/256 - 1)``, j in 0..255.

    Rounding *down* makes ``frac <= bound`` exact for every float ``frac`` (the true boundaries
    are irrational except for j = 0): decided with integers, ``m**256 <= 2**(53*256 + j - 256)``
    for ``frac = m / 2**53``.
    """
    n = 1 << MAX_SCHEMA
    bounds = []
    for j in range(n):
        candidate = 2.0 ** (j / n - 1)
        limit = 1 << (53 * n + j - n)
        while not _fits(candidate, n, limit):
            candidate = math.nextafter(candidate, 0.0)
        while _fits(up := math.nextafter(candidate, 1.0), n, limit):
            candidate = up
        bounds.append(candidate)
    return tuple(bounds)


def _fits(frac: float, n: int, limit: int) -> bool:
    power: int = int(frac * 2**53) ** n
    return power <= limit


@cache
def _bounds(schema: int) -> tuple[float, ...]:
    """The fractions bounding the buckets of one octave at ``schema`` (1..8), computed on first
    use rather than at import (the exact search takes tens of milliseconds)."""
    return _frac_bounds()[:: 1 << (MAX_SCHEMA - schema)]


TABLE_OCTAVES = 64
""":func:`bounds_table` covers the values from ``2 ** -TABLE_OCTAVES`` to ``2 ** TABLE_OCTAVES``."""


@cache
def bounds_table(schema: int) -> tuple[tuple[float, ...], int]:
    """The upper bounds of consecutive positive buckets at ``schema``, and the first one's index.

    The bounds are those :func:`bucket_index` decides with (exact powers of two times the
    schema-8 fractions), from ``2 ** -TABLE_OCTAVES`` to ``2 ** TABLE_OCTAVES``. So for a value
    ``v`` with ``r = bisect_left(table, v)`` and ``0 < r < len(table)``, ``first + r`` is
    ``bucket_index(v, schema)``: one bisection, which hot paths inline; outside, they call
    :func:`bucket_index`.
    """
    if schema > 0:
        bounds = _bounds(schema)
        n = len(bounds)
        first = -TABLE_OCTAVES * n
        keys = range(first, TABLE_OCTAVES * n + 1)
        return tuple(bounds[k % n] * 2.0 ** (k // n + 1) for k in keys), first
    step = 1 << -schema
    first = -(TABLE_OCTAVES // step)
    return tuple(2.0 ** (k * step) for k in range(first, TABLE_OCTAVES // step + 1)), first


def schema_for_factor(factor: float) -> int:
    """The schema client_golang picks for ``NativeHistogramBucketFactor``.

    That is the lowest (coarsest) schema whose growth factor ``2 ** (2 ** -schema)`` is at most
    ``factor``, within -4..8: 1.1 gives 3 (growth ~1.0905), 2 gives 0, 1.0001 gives 8.
    """
    if not factor > 1:
        raise ValueError(f"native_bucket_factor must be greater than 1, got {factor!r}")
    for schema in range(MIN_SCHEMA, MAX_SCHEMA + 1):
        if 2.0 ** (2.0**-schema) <= factor:
            return schema
    return MAX_SCHEMA


def bucket_index(value: float, schema: int) -> int:
    """The index of the bucket of ``|value|`` (not zero, not NaN) at ``schema``.

    ``+-Inf`` take the index after the one of the largest float, as client_golang does.
    """
    magnitude = abs(value)
    infinite = magnitude == math.inf
    if infinite:
        magnitude = 1.7976931348623157e308
    frac, exp = math.frexp(magnitude)  # magnitude = frac * 2**exp, 0.5 <= frac < 1
    if schema > 0:
        bounds = _bounds(schema)
        key = bisect_left(bounds, frac) + (exp - 1) * len(bounds)
    else:
        key = exp - 1 if frac == 0.5 else exp
        shift = -schema
        key = (key + (1 << shift) - 1) >> shift
    return key + 1 if infinite else key


def bucket_upper_bound(index: int, schema: int) -> float:
    """``base ** index``, the (inclusive) upper bound of positive bucket ``index``."""
    try:
        return float(2.0 ** (index * 2.0**-schema))
    except OverflowError:
        return math.inf


def reduce_index(index: int, by: int) -> int:
    """The index at ``schema - by`` of bucket ``index`` of ``schema``: ``ceil(index / 2**by)``."""
    return (index + (1 << by) - 1) >> by


def _reduce(buckets: dict[int, int], by: int) -> dict[int, int]:
    if by == 0:
        return dict(buckets)
    out: dict[int, int] = {}
    for index, count in buckets.items():
        key = (index + (1 << by) - 1) >> by
        out[key] = out.get(key, 0) + count
    return out


def _add(into: dict[int, int], buckets: dict[int, int]) -> None:
    for index, count in buckets.items():
        into[index] = into.get(index, 0) + count


@dataclass(slots=True)
class NativeHistogram:
    """One native histogram: sparse bucket counts, zero bucket, count and sum.

    ``count`` includes NaN observations, which (as in client_golang) fall in no bucket; otherwise
    ``count == zero_count + sum(positive.values()) + sum(negative.values())``.
    """

    schema: int
    zero_threshold: float = DEFAULT_ZERO_THRESHOLD
    zero_count: int = 0
    count: int = 0
    sum: float = 0.0
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not MIN_SCHEMA <= self.schema <= MAX_SCHEMA:
            raise ValueError(f"schema must be in {MIN_SCHEMA}..{MAX_SCHEMA}, got {self.schema}")
        if not self.zero_threshold >= 0:
            raise ValueError(f"zero_threshold must be >= 0, got {self.zero_threshold!r}")

    @property
    def bucket_count(self) -> int:
        """How many (non-zero) buckets are stored."""
        return len(self.positive) + len(self.negative)

    def observe(self, value: float) -> None:
        """Count one observation (not thread-safe: the caller holds the lock)."""
        self.count += 1
        self.sum += value
        if value != value:  # NaN: in count and sum only
            return
        if value > self.zero_threshold:
            buckets = self.positive
        elif value < -self.zero_threshold:
            buckets = self.negative
        else:
            self.zero_count += 1
            return
        key = bucket_index(value, self.schema)
        buckets[key] = buckets.get(key, 0) + 1

    def limit_buckets(self, max_buckets: int) -> None:
        """Lower the schema (merging buckets pairwise) until at most ``max_buckets`` remain."""
        while self.bucket_count > max_buckets and self.schema > MIN_SCHEMA:
            self.reduce_to(self.schema - 1)

    def reduce_to(self, schema: int) -> None:
        """Re-bucket, in place, at a ``schema`` not above the current one; exact."""
        if not MIN_SCHEMA <= schema <= self.schema:
            raise ValueError(f"cannot reduce schema {self.schema} to {schema}")
        by = self.schema - schema
        self.positive = _reduce(self.positive, by)
        self.negative = _reduce(self.negative, by)
        self.schema = schema

    def reset(self) -> None:
        self.zero_count = self.count = 0
        self.sum = 0.0
        self.positive = {}
        self.negative = {}

    def copy(self) -> NativeHistogram:
        return NativeHistogram(
            self.schema,
            self.zero_threshold,
            self.zero_count,
            self.count,
            self.sum,
            dict(self.positive),
            dict(self.negative),
        )

    def widen_zero_bucket(self, threshold: float) -> None:
        """Raise the zero threshold to at least ``threshold``, moving the buckets it reaches.

        A bucket reaching below the new threshold moves into the zero bucket whole, and the
        threshold grows to that bucket's upper bound, as Prometheus does when it merges.
        """
        while True:
            self.zero_threshold = max(self.zero_threshold, threshold)
            moved = False
            for buckets in (self.positive, self.negative):
                for index in [i for i in buckets if self._lower(i) < self.zero_threshold]:
                    self.zero_count += buckets.pop(index)
                    threshold = max(threshold, bucket_upper_bound(index, self.schema))
                    moved = True
            if not moved or threshold <= self.zero_threshold:
                return

    def _lower(self, index: int) -> float:
        return bucket_upper_bound(index - 1, self.schema)

    def merge(self, others: Iterable[NativeHistogram]) -> NativeHistogram:
        """A new histogram holding this one and ``others``, at the lowest of their schemas.

        With equal zero thresholds the result is exactly what observing every value at that
        schema would give; otherwise the widest threshold is used (see ``widen_zero_bucket``).
        """
        parts = [self, *others]
        schema = min(part.schema for part in parts)
        threshold = max(part.zero_threshold for part in parts)
        merged = NativeHistogram(schema, threshold)
        for part in parts:
            piece = part.copy()
            piece.reduce_to(schema)
            if piece.zero_threshold < threshold:
                piece.widen_zero_bucket(threshold)
                merged.zero_threshold = max(merged.zero_threshold, piece.zero_threshold)
            merged.count += piece.count
            merged.sum += piece.sum
            merged.zero_count += piece.zero_count
            _add(merged.positive, piece.positive)
            _add(merged.negative, piece.negative)
        if merged.zero_threshold != threshold:
            merged.widen_zero_bucket(merged.zero_threshold)
        return merged


class ResetTimer:
    """When a native histogram past its bucket limit may restart rather than lower its schema.

    ``native_reset_seconds`` (client_golang's ``NativeHistogramMinResetDuration``): a restart
    may happen once ``seconds`` (> 0; 0 never) have passed by ``clock`` since the last one, or
    since the timer was made. Every backend's native histogram asks it when it overflows.

    Example::

        timer = ResetTimer(60.0, time.monotonic)
        timer.due()  # False for the first minute; then True once, and the minute starts again
    """

    __slots__ = ("_seconds", "_clock", "_since")

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._since = clock()

    def due(self) -> bool:
        """Whether a restart may happen now; if so, the next period starts now."""
        if self._seconds <= 0:
            return False
        now = self._clock()
        if now - self._since < self._seconds:
            return False
        self._since = now
        return True


def spans_and_counts(buckets: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The ``(offset, length)`` spans and absolute counts of sparse ``buckets``, by index.

    The first span's offset is its first index, each later one's is the gap from the end of the
    span before. Gaps of up to two empty buckets are filled with zero counts rather than starting
    a new span, as client_golang does. OpenMetrics 2.0 writes these counts as they are.

    Example::

        spans_and_counts({-2: 1, 0: 3, 9: 2})  # ([(-2, 3), (8, 1)], [1, 0, 3, 2])
    """
    spans: list[tuple[int, int]] = []
    counts: list[int] = []
    next_index: int | None = None
    for index in sorted(buckets):
        if next_index is None:
            spans.append((index, 1))
        else:
            gap = index - next_index
            if gap <= 2:
                counts.extend([0] * gap)
                offset, length = spans[-1]
                spans[-1] = (offset, length + gap + 1)
            else:
                spans.append((gap, 1))
        counts.append(buckets[index])
        next_index = index + 1
    return spans, counts


def spans_and_deltas(buckets: dict[int, int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The spans of :func:`spans_and_counts` and the counts delta-encoded, as protobuf has them.

    Each delta is a bucket's count minus the one of the bucket before it (0 before the first).
    """
    spans, counts = spans_and_counts(buckets)
    return spans, [count - previous for previous, count in zip([0, *counts], counts)]


# --- a flat encoding, for backends that store numbers (shared files, Redis) ---------------------

CELLS_HEADER = 6
"""Cells before the buckets in :func:`encode_cells`: schema, zero threshold, zero count, count,
sum, number of buckets."""

FULL_RANGE_BUCKETS = 266
"""Buckets that every finite and infinite float can fill at schema -4 (133 per sign): room for
this many always suffices once the schema is lowered far enough."""


def encode_cells(histogram: NativeHistogram) -> list[float]:
    """``histogram`` as numbers: the :data:`CELLS_HEADER` cells, then ``(code, count)`` pairs.

    A bucket's code is ``2 * index`` for a positive bucket and ``2 * index + 1`` for a negative
    one; every number is a float that round-trips exactly (indices and counts stay far below
    ``2**53``). :func:`decode_cells` reads it back.
    """
    cells: list[float] = [
        float(histogram.schema),
        histogram.zero_threshold,
        float(histogram.zero_count),
        float(histogram.count),
        histogram.sum,
        float(histogram.bucket_count),
    ]
    for index, count in histogram.positive.items():
        cells += (float(2 * index), float(count))
    for index, count in histogram.negative.items():
        cells += (float(2 * index + 1), float(count))
    return cells


def decode_cells(cells: Sequence[float]) -> NativeHistogram | None:
    """The histogram :func:`encode_cells` wrote, or None when ``cells`` do not hold a valid one.

    Cells after the last bucket are ignored, so a fixed-size block may hold a smaller histogram.
    """
    if len(cells) < CELLS_HEADER:
        return None
    schema, threshold, zero_count, count, total, used = cells[:CELLS_HEADER]
    n = int(used) if used == used and 0 <= used < 2**31 else -1
    if (
        schema != schema
        or not MIN_SCHEMA <= schema <= MAX_SCHEMA
        or schema != int(schema)
        or not threshold >= 0
        or not 0 <= zero_count < 2**62
        or not 0 <= count < 2**62
        or n != used
        or CELLS_HEADER + 2 * n > len(cells)
    ):
        return None
    positive: dict[int, int] = {}
    negative: dict[int, int] = {}
    for at in range(CELLS_HEADER, CELLS_HEADER + 2 * n, 2):
        code, bucket_count = cells[at], cells[at + 1]
        if not (abs(code) < 2**53 and abs(bucket_count) < 2**62):  # also false for NaN
            return None
        key = int(code)
        buckets = negative if key & 1 else positive
        index = key >> 1
        buckets[index] = buckets.get(index, 0) + int(bucket_count)
    return NativeHistogram(
        int(schema), threshold, int(zero_count), int(count), total, positive, negative
    )


def subtract(histogram: NativeHistogram, baseline: NativeHistogram) -> NativeHistogram:
    """What ``histogram`` counted since it was ``baseline`` (an earlier state of the same one).

    Both are taken to the lower schema (and the wider zero threshold); buckets that end at zero
    or below are dropped.
    """
    schema = min(histogram.schema, baseline.schema)
    later, earlier = histogram.copy(), baseline.copy()
    later.reduce_to(schema)
    earlier.reduce_to(schema)
    threshold = max(later.zero_threshold, earlier.zero_threshold)
    later.widen_zero_bucket(threshold)
    earlier.widen_zero_bucket(later.zero_threshold)
    out = NativeHistogram(
        schema,
        later.zero_threshold,
        max(later.zero_count - earlier.zero_count, 0),
        max(later.count - earlier.count, 0),
        later.sum - earlier.sum,
    )
    for name in ("positive", "negative"):
        before: dict[int, int] = getattr(earlier, name)
        kept = {
            index: count - before.get(index, 0)
            for index, count in getattr(later, name).items()
            if count > before.get(index, 0)
        }
        setattr(out, name, kept)
    return out
