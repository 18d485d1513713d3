"""Quantiles of recent observations for a Summary: a mergeable sketch over a sliding window.

:class:`QuantileSketch` counts observations in logarithmic buckets (the DDSketch mapping):
bucket ``k`` holds the magnitudes in ``(gamma ** (k - 1), gamma ** k]`` with
``gamma = (1 + a) / (1 - a)``, and reports them as ``2 * gamma ** k / (gamma + 1)``, which is
within a relative error ``a`` of every value of the bucket. Hence the error bound:

    For ``n`` observations sorted as ``x[0] <= ... <= x[n - 1]`` and a quantile ``q``,
    the estimate ``v`` satisfies ``|v - x[r]| <= a * |x[r]|`` with ``r = floor(q * (n - 1))``,
    where ``a`` is ``relative_accuracy`` (default 0.01: 1 %).

The bound holds as long as the observations of one sign fall in at most ``max_buckets``
distinct buckets, which is always the case when their magnitudes span less than a factor
``gamma ** max_buckets`` (about 6e17 with the defaults). Beyond that the smallest magnitudes are
merged into one bucket, so memory stays bounded, and only quantiles whose exact value lies among
them lose the bound. Magnitudes below ``sys.float_info.min`` count as 0, infinities as the
largest finite magnitude; NaN is ignored.

Sketches are mergeable: merging two gives exactly the sketch of all their observations (when
no buckets were merged). That is what :class:`SlidingQuantiles` does over its age buckets, and
what the multi-process backends do across processes. The shared-file backend: each process
writes its window whole (``to_floats``), a scrape ranks the buckets of all of them together
(``WindowUnion``; compaction merges them into one window), and ``subtract`` takes a removed
series' earlier state out of a window that goes on. The Redis
backend sums counts by (age slot, bucket id) across processes (``bucket_id``,
``add_bucket_pairs``, ``slot_pairs``, ``window_of_slots``), as it sums a counter.

Example::

    import time
    from pytheus.quantiles import SlidingQuantiles

    window = SlidingQuantiles(quantiles=(0.5, 0.99), max_age_seconds=600, age_buckets=5)
    window.observe(0.25, time.time())
    window.query(time.time())   # ((0.5, 0.249...), (0.99, 0.249...)): 0.25 within 1 %
"""

from __future__ import annotations

import bisect
import contextlib
import math
import sys
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain
from typing import Any

from pytheus.exceptions import MetricDefinitionException

_ceil, _log = math.ceil, math.log
_SMALLEST = sys.float_info.min
_LARGEST = sys.float_info.max
_NO_FLOOR = -(2**53)  # below every bucket key; exact as a float
_FORMAT = 1.0  # first float of a serialised SlidingQuantiles
PENDING_LIMIT = 256  # observations kept aside before they are added to a sketch, in a batch

# a slot of a serialised window: (slot, zeros, positive floor, positive key/count pairs,
# negative floor, negative pairs)
_ParsedSlot = tuple[int, int, int, Sequence[float], int, Sequence[float]]


class _Buckets:
    """Counts by bucket key for magnitudes of one sign, at most ``limit`` keys.

    ``floor`` is the lowest key kept once keys were merged: lower keys are counted there.
    """

    __slots__ = ("counts", "floor", "limit")

    def __init__(self, limit: int) -> None:
        self.counts: dict[int, int] = {}
        self.floor = _NO_FLOOR
        self.limit = limit

    def add(self, key: int, count: int = 1) -> None:
        key = max(key, self.floor)
        counts = self.counts
        counts[key] = counts.get(key, 0) + count
        if len(counts) > self.limit:
            self.raise_floor(sorted(counts)[len(counts) - self.limit])

    def raise_floor(self, floor: int) -> None:
        """Count every key below ``floor`` at ``floor``."""
        if floor <= self.floor:
            return
        self.floor = floor
        low = [key for key in self.counts if key < floor]
        if low:
            moved = sum(self.counts.pop(key) for key in low)
            self.counts[floor] = self.counts.get(floor, 0) + moved

    def merge(self, other: _Buckets) -> None:
        self.raise_floor(other.floor)
        counts = self.counts
        if not counts and other.floor >= self.floor:
            counts.update(other.counts)
            return
        for key, count in other.counts.items():
            if key in counts:
                counts[key] += count
            else:
                self.add(key, count)

    def subtract(self, other: _Buckets) -> None:
        """Take away ``other``'s counts (an earlier state of the same buckets); none below 0."""
        counts = self.counts
        for key, count in other.counts.items():
            key = max(key, self.floor)
            left = counts.get(key, 0) - count
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)

    def add_pairs(self, floor: int, pairs: Sequence[float]) -> None:
        """Add ``key, count, key, count, ...`` counted with lower keys at ``floor``."""
        if floor > self.floor:
            self.raise_floor(floor)
        if not pairs:
            return
        counts = self.counts
        raw_keys = pairs[0::2]
        keys, numbers = map(int, raw_keys), map(int, pairs[1::2])
        if len(counts) + len(raw_keys) > self.limit or (
            self.floor != _NO_FLOOR and min(raw_keys) < self.floor
        ):
            for key, count in zip(keys, numbers):
                self.add(key, count)
            return
        if not counts:
            counts.update(zip(keys, numbers))
            if len(counts) == len(raw_keys):
                return
            counts.clear()  # a key given twice (the pairs of several sketches): sum them
            keys, numbers = map(int, raw_keys), map(int, pairs[1::2])
        get = counts.get
        for key, count in zip(keys, numbers):
            counts[key] = get(key, 0) + count

    def to_floats(self) -> list[float]:
        floats = [float(self.floor), float(len(self.counts))]
        for key, count in sorted(self.counts.items()):
            floats += (float(key), float(count))
        return floats

    def load(self, floats: Sequence[float], start: int) -> int:
        """Read what ``to_floats`` wrote from ``floats[start:]``; return the next position."""
        end = start + 2 + 2 * int(floats[start + 1])
        pairs = floats[start + 2 : end]
        if len(pairs) != end - start - 2:
            raise IndexError("fewer floats than the bucket count says")
        if min(pairs[1::2], default=0) < 0:
            raise ValueError("a negative count")
        self.add_pairs(int(floats[start]), pairs)
        return end


class QuantileSketch:
    """Any quantile of the observations, within a relative error (see the module docs).

    Example::

        sketch = QuantileSketch(relative_accuracy=0.01)
        for value in range(1, 101):
            sketch.add(value)
        sketch.quantile(0.5)   # 49.9...: the exact 50 within 1 %
        other = QuantileSketch.from_floats(sketch.to_floats())
        sketch.merge(other)    # as if every value had been added twice
    """

    __slots__ = ("relative_accuracy", "max_buckets", "_multiplier", "_gamma", "_pos", "_neg",
                 "_zero", "_largest_key", "_lowest_key", "_log_scale")  # fmt: skip

    def __init__(self, relative_accuracy: float = 0.01, max_buckets: int = 2048) -> None:
        _check_sketch_options(relative_accuracy, max_buckets)
        self.relative_accuracy = float(relative_accuracy)
        self.max_buckets = int(max_buckets)
        self._gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        self._multiplier = 1 / math.log(self._gamma)
        self._largest_key = math.ceil(math.log(_LARGEST) * self._multiplier)
        self._lowest_key = math.ceil(math.log(_SMALLEST) * self._multiplier)
        self._log_scale = math.log(2 / (self._gamma + 1))
        self._pos = _Buckets(self.max_buckets)
        self._neg = _Buckets(self.max_buckets)
        self._zero = 0

    def add(self, value: float) -> None:
        """Count one observation; NaN is ignored."""
        buckets = self._pos if value > 0 else self._neg
        magnitude = value if value > 0 else -value
        if _SMALLEST <= magnitude <= _LARGEST:
            key = _ceil(_log(magnitude) * self._multiplier)
            counts = buckets.counts
            if key in counts:  # the fast path: no new bucket, so no limit to check
                counts[key] += 1
            else:
                buckets.add(key)
        elif magnitude > _LARGEST:  # infinity
            buckets.add(self._largest_key)
        elif magnitude == magnitude:  # not NaN
            self._zero += 1

    def add_many(self, values: Iterable[float]) -> None:
        """:meth:`add` each of ``values``; faster for a batch (positive values that fall in a
        bucket already counted take a path of their own)."""
        counts = self._pos.counts
        multiplier = self._multiplier
        add = self.add
        for value in values:
            if _SMALLEST <= value <= _LARGEST:  # positive, normal and finite
                key = _ceil(_log(value) * multiplier)
                if key in counts:
                    counts[key] += 1
                    continue
            add(value)

    def bucket_id(self, value: float) -> int | None:
        """The bucket of ``value`` as one integer (None for NaN), for :meth:`add_bucket`.

        0 is the zero bucket; positive values get ids from 1 up, negative values from -1 down,
        in the order of their magnitudes. A backend may count observations per bucket id
        (summing the counts of all processes) instead of storing sketches.
        """
        magnitude = abs(value)
        if magnitude != magnitude:
            return None
        if magnitude < _SMALLEST:
            return 0
        key = (
            self._largest_key if magnitude > _LARGEST else _ceil(_log(magnitude) * self._multiplier)
        )
        index = key - self._lowest_key + 1
        return index if value > 0 else -index

    def add_bucket(self, bucket_id: int, count: int = 1) -> None:
        """Count ``count`` observations in the bucket ``bucket_id`` names."""
        if count < 0:
            raise ValueError(f"a bucket count cannot be negative, got {count}")
        if bucket_id == 0:
            self._zero += count
        else:
            key = abs(bucket_id) + self._lowest_key - 1
            (self._pos if bucket_id > 0 else self._neg).add(key, count)

    def add_bucket_pairs(self, pairs: Sequence[float]) -> None:
        """:meth:`add_bucket` for ``bucket id, count, bucket id, count, ...`` (ValueError, and
        nothing added, for a negative count)."""
        if min(pairs[1::2], default=0) < 0:
            raise ValueError(f"a bucket count cannot be negative, got {min(pairs[1::2])}")
        offset = self._lowest_key - 1
        positive: list[float] = []
        negative: list[float] = []
        for bucket_id, count in zip(pairs[0::2], pairs[1::2]):
            if bucket_id > 0:
                positive += (bucket_id + offset, count)
            elif bucket_id < 0:
                negative += (offset - bucket_id, count)
            else:
                self._zero += int(count)
        self._pos.add_pairs(self._pos.floor, positive)
        self._neg.add_pairs(self._neg.floor, negative)

    def bucket_pairs(self) -> list[int]:
        """``[bucket id, count, ...]`` of every bucket with a count: :meth:`add_bucket_pairs`
        of them rebuilds the sketch."""
        offset = self._lowest_key - 1
        pairs = [0, self._zero] if self._zero else []
        for key, count in self._pos.counts.items():
            pairs += (key - offset, count)
        for key, count in self._neg.counts.items():
            pairs += (offset - key, count)
        return pairs

    @property
    def empty(self) -> bool:
        """Whether no observation was added."""
        return not (self._zero or self._pos.counts or self._neg.counts)

    @property
    def count(self) -> int:
        """How many observations were added."""
        return self._zero + sum(self._pos.counts.values()) + sum(self._neg.counts.values())

    @property
    def bucket_count(self) -> int:
        """How many buckets are stored: the memory used is proportional to it."""
        return len(self._pos.counts) + len(self._neg.counts) + 1

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1), or NaN when there are no observations."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Several quantiles at once, in the order given."""
        negative = sorted(self._neg.counts, reverse=True)
        positive = sorted(self._pos.counts)
        return self._ranked(
            list(qs),
            negative,
            [self._neg.counts[key] for key in negative],
            self._zero,
            positive,
            [self._pos.counts[key] for key in positive],
        )

    def _ranked(
        self,
        targets: list[float],
        negative: Sequence[float],
        negative_counts: Sequence[float],
        zeros: float,
        positive: Sequence[float],
        positive_counts: Sequence[float],
    ) -> list[float]:
        """The ``targets`` quantiles of buckets given in the order of their values: negative
        keys (largest magnitude first), the zero bucket, positive keys (a key may come twice:
        the buckets of several sketches). Only the buckets the ranks land in become values."""
        for q in targets:
            _check_quantile(q)
        cumulative = list(accumulate(chain(negative_counts, (zeros,), positive_counts)))
        total = cumulative[-1]
        if total == 0:
            return [math.nan] * len(targets)
        result = []
        for q in targets:
            at = bisect.bisect_right(cumulative, math.floor(q * (total - 1)))
            if at < len(negative):
                result.append(-self._value(negative[at]))
            elif at == len(negative):
                result.append(0.0)
            else:
                result.append(self._value(positive[at - len(negative) - 1]))
        return result

    def _value(self, key: float) -> float:
        """The magnitude that bucket ``key`` reports: ``2 * gamma ** key / (gamma + 1)``."""
        try:  # in log space, so the top bucket does not overflow on the way
            return min(math.exp(key / self._multiplier + self._log_scale), _LARGEST)
        except OverflowError:
            return _LARGEST

    def merge(self, other: QuantileSketch) -> None:
        """Add the observations of ``other`` (which must have the same relative accuracy)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                f"cannot merge sketches of relative accuracy {other.relative_accuracy} "
                f"and {self.relative_accuracy}"
            )
        if other is self:
            other = self.copy()
        self._pos.merge(other._pos)
        self._neg.merge(other._neg)
        self._zero += other._zero

    def subtract(self, other: QuantileSketch) -> None:
        """Take away the observations of ``other``, an earlier state of this sketch (what a
        series had counted when it was removed); a count never goes below 0."""
        self._pos.subtract(other._pos)
        self._neg.subtract(other._neg)
        self._zero = max(0, self._zero - other._zero)

    def empty_like(self) -> QuantileSketch:
        """A new empty sketch with this one's settings (without checking them again)."""
        sketch = QuantileSketch.__new__(QuantileSketch)
        sketch.relative_accuracy, sketch.max_buckets = self.relative_accuracy, self.max_buckets
        sketch._gamma, sketch._multiplier = self._gamma, self._multiplier
        sketch._largest_key, sketch._lowest_key = self._largest_key, self._lowest_key
        sketch._log_scale = self._log_scale
        sketch._pos, sketch._neg = _Buckets(self.max_buckets), _Buckets(self.max_buckets)
        sketch._zero = 0
        return sketch

    def copy(self) -> QuantileSketch:
        sketch = QuantileSketch(self.relative_accuracy, self.max_buckets)
        sketch.merge(self)
        return sketch

    def to_floats(self) -> list[float]:
        """The sketch as floats: ``[accuracy, max_buckets, zeros, *positive, *negative]``.

        Each sign is ``[floor, n, key_1, count_1, ... key_n, count_n]``.
        """
        return [
            self.relative_accuracy,
            float(self.max_buckets),
            float(self._zero),
            *self._pos.to_floats(),
            *self._neg.to_floats(),
        ]

    @classmethod
    def from_floats(cls, floats: Sequence[float]) -> QuantileSketch:
        """The sketch that ``to_floats`` wrote; ValueError if ``floats`` is not one."""
        sketch, end = cls._load(floats, 0)
        if end != len(floats):
            raise ValueError("not a serialised QuantileSketch: trailing floats")
        return sketch

    @classmethod
    def _load(cls, floats: Sequence[float], start: int) -> tuple[QuantileSketch, int]:
        try:
            sketch = cls(floats[start], int(floats[start + 1]))
            sketch.add_bucket(0, int(floats[start + 2]))
            position = sketch._pos.load(floats, start + 3)
            position = sketch._neg.load(floats, position)
        except (IndexError, ValueError, OverflowError, MetricDefinitionException) as error:
            raise ValueError(f"not a serialised QuantileSketch: {error}") from None
        return sketch, position


class SlidingQuantiles:
    """Quantiles of the observations of the last ``max_age_seconds``, for a Summary.

    The window is a ring of ``age_buckets`` sketches, each covering ``max_age_seconds /
    age_buckets`` seconds of a clock shared by every process (slot ``floor(now / width)``), as in
    client_golang: an observation counts for at least ``max_age_seconds * (1 - 1 /
    age_buckets)`` seconds and never after ``max_age_seconds``. Each target quantile is within
    the relative error bound of the module docs over the observations the window holds.
    Memory: at most ``age_buckets * (2 * max_buckets + 1)`` buckets. Not thread-safe: the caller
    holds a lock. Pass the same clock to every call (``time.time()``, which lets processes merge).

    Example::

        window = SlidingQuantiles(quantiles=(0.5, 0.9), max_age_seconds=60, age_buckets=3)
        window.observe(3.0, now=100.0)
        window.observe(5.0, now=101.0)
        window.query(now=102.0)   # ((0.5, 2.97...), (0.9, 2.97...)): rank floor(q * (n - 1))
        window.query(now=200.0)   # ((0.5, nan), (0.9, nan)): both observations left the window
    """

    __slots__ = ("targets", "max_age_seconds", "age_buckets", "relative_accuracy",
                 "max_buckets", "_width", "_latest", "_slots", "_sketches", "_head", "_pending",
                 "_pending_end")  # fmt: skip

    def __init__(
        self,
        quantiles: Sequence[float] = (0.5, 0.9, 0.99),
        max_age_seconds: float = 600.0,
        age_buckets: int = 5,
        relative_accuracy: float = 0.01,
        max_buckets: int = 2048,
    ) -> None:
        for q in quantiles:
            _check_quantile(q)
        if not (isinstance(max_age_seconds, (int, float)) and 0 < max_age_seconds < math.inf):
            raise MetricDefinitionException(
                f"max_age_seconds must be a positive number of seconds, got {max_age_seconds!r}"
            )
        _check_positive_int("age_buckets", age_buckets)
        _check_sketch_options(relative_accuracy, max_buckets)
        self.targets = tuple(float(q) for q in quantiles)
        self.max_age_seconds = float(max_age_seconds)
        self.age_buckets = age_buckets
        self.relative_accuracy = float(relative_accuracy)
        self.max_buckets = int(max_buckets)
        self._width = self.max_age_seconds / age_buckets
        self._latest = _NO_FLOOR
        self._slots = [_NO_FLOOR] * age_buckets
        # the slots not used yet share one empty sketch, never written: a slot gets a sketch of
        # its own (``_sketch_at``) before anything is added to it (a scrape makes thousands)
        self._sketches = [QuantileSketch(self.relative_accuracy, self.max_buckets)] * age_buckets
        self._head = self._sketches[self._latest % age_buckets]  # the sketch of the latest slot
        # observations of the latest slot not yet added to its sketch: adding them in batches
        # costs half as much per value; any read adds them first
        self._pending: list[float] = []
        self._pending_end = -math.inf  # when the latest slot ends: pending values go before

    def empty_like(self) -> SlidingQuantiles:
        """A new empty window with this one's settings (without checking them again)."""
        window = SlidingQuantiles.__new__(SlidingQuantiles)
        window.targets, window.max_age_seconds = self.targets, self.max_age_seconds
        window.age_buckets, window.relative_accuracy = self.age_buckets, self.relative_accuracy
        window.max_buckets, window._width = self.max_buckets, self._width
        window._latest = _NO_FLOOR
        window._slots = [_NO_FLOOR] * self.age_buckets
        window._sketches = [self._sketches[0].empty_like()] * self.age_buckets  # see __init__
        window._head = window._sketches[window._latest % self.age_buckets]
        window._pending, window._pending_end = [], -math.inf
        return window

    def copy(self) -> SlidingQuantiles:
        """A window holding what this one holds, changed independently of it."""
        copied = self.empty_like()
        copied.merge(self)
        return copied

    def new_sketch(self) -> QuantileSketch:
        """An empty sketch of this window's accuracy and size."""
        return self._sketches[0].empty_like()

    def _slot(self, now: float) -> int:
        """The slot of ``now``; a clock going back stays in the latest slot."""
        return self._advance(self.slot(now))

    def _advance(self, slot: int) -> int:
        """Make ``slot`` the latest unless a later one is; return the latest."""
        if slot > self._latest:
            self._latest = slot
            head = self._sketch_at(slot)
            assert head is not None  # the latest slot is never older than a stored one
            self._head = head
        return self._latest

    def _live_sketch(self, slot: int) -> QuantileSketch | None:
        """The sketch to add observations of ``slot`` to (None when the slot left the window),
        after the observations set aside."""
        self._add_pending()
        self._advance(slot)
        return self._sketch_at(slot) if slot > self._latest - self.age_buckets else None

    def _sketch_at(self, slot: int) -> QuantileSketch | None:
        """The sketch of ``slot``, replacing an older one at its place; None if that is newer."""
        index = slot % self.age_buckets
        if self._slots[index] < slot:
            self._slots[index] = slot
            self._sketches[index] = self.new_sketch()
        return self._sketches[index] if self._slots[index] == slot else None

    def observe(self, value: float, now: float) -> None:
        """Record ``value`` observed at time ``now`` (seconds); NaN is ignored."""
        pending = self._pending
        if now >= self._pending_end or len(pending) >= PENDING_LIMIT:
            self._add_pending()
            if now >= self._pending_end:
                latest, self._pending_end = self.slot_from(now, self._latest)
                self._advance(latest)
        pending.append(value)

    def _add_pending(self) -> None:
        if self._pending:
            self._head.add_many(self._pending)
            self._pending.clear()

    def slot(self, now: float) -> int:
        """The age slot of time ``now``: ``floor(now / (max_age_seconds / age_buckets))``."""
        return math.floor(now / self._width)

    def slot_from(self, now: float, current: int) -> tuple[int, float]:
        """The slot to record in at ``now``, ``current`` or a later one (never an earlier one:
        the clock may go back), and when that slot ends."""
        slot = max(math.floor(now / self._width), current)
        return slot, max((slot + 1) * self._width, now)

    def bucket_id(self, value: float) -> int | None:
        """The sketch bucket of ``value``: see :meth:`QuantileSketch.bucket_id`."""
        return self._head.bucket_id(value)

    def add_bucket(self, slot: int, bucket_id: int, count: int = 1) -> None:
        """Count ``count`` observations of bucket ``bucket_id`` in ``slot``; expired slots are
        ignored. Rebuilds a window from per-(slot, bucket) counts summed over processes."""
        sketch = self._live_sketch(slot)
        if sketch is not None:
            sketch.add_bucket(bucket_id, count)

    def add_bucket_pairs(self, slot: int, pairs: Sequence[float]) -> None:
        """:meth:`add_bucket` for ``bucket id, count, ...`` of one slot (ValueError for a
        negative count)."""
        sketch = self._live_sketch(slot)
        if sketch is not None:
            sketch.add_bucket_pairs(pairs)

    def slot_pairs(self) -> dict[int, list[int]]:
        """Slot -> ``[bucket id, count, ...]`` of every slot the window holds, for a backend
        that sums counts by (slot, bucket) across processes."""
        self._add_pending()
        return {
            slot: sketch.bucket_pairs()
            for slot, sketch in zip(self._slots, self._sketches)
            if slot > self._latest - self.age_buckets and sketch.count
        }

    def window(self, now: float, copy: bool = True) -> QuantileSketch:
        """One sketch of every observation the window holds at ``now``; without ``copy``, it
        may be the sketch of a slot, which the caller must then not change."""
        self._add_pending()
        current = self._slot(now)
        live = [
            sketch
            for slot, sketch in zip(self._slots, self._sketches)
            if current - self.age_buckets < slot and not sketch.empty
        ]
        if len(live) == 1 and not copy:
            return live[0]
        merged = self.new_sketch()
        for sketch in live:
            merged.merge(sketch)
        return merged

    def query(self, now: float) -> tuple[tuple[float, float], ...]:
        """``((q, value), ...)`` for the target quantiles; values are NaN for an empty window."""
        return tuple(zip(self.targets, self.window(now).quantiles(self.targets)))

    def quantiles_at(
        self, targets: Sequence[float], now: float
    ) -> tuple[tuple[float, float], ...]:
        """``((q, value), ...)`` of ``targets`` over the window at ``now`` (NaN when empty)."""
        return tuple(zip(targets, self.window(now, copy=False).quantiles(targets)))

    @property
    def stored_buckets(self) -> int:
        """How many buckets the ring holds: the memory used is proportional to it."""
        self._add_pending()
        return sum(sketch.bucket_count for sketch in self._sketches)

    def merge(self, other: SlidingQuantiles) -> None:
        """Add the observations of ``other``, slot by slot (same window and accuracy needed)."""
        if (other.max_age_seconds, other.age_buckets, other.relative_accuracy) != (
            self.max_age_seconds,
            self.age_buckets,
            self.relative_accuracy,
        ):
            raise ValueError("cannot merge windows of different max_age, age_buckets or accuracy")
        self._add_pending()
        other._add_pending()
        self._advance(other._latest)
        for slot, sketch in zip(other._slots, other._sketches):
            if slot > self._latest - self.age_buckets:
                mine = self._sketch_at(slot)
                if mine is not None:
                    mine.merge(sketch)

    def subtract(self, other: SlidingQuantiles) -> None:
        """Take away ``other``, an earlier state of this window, slot by slot (a slot ``other``
        holds that this window has replaced since was already dropped)."""
        self._add_pending()
        other._add_pending()
        for slot, sketch in zip(other._slots, other._sketches):
            index = slot % self.age_buckets
            if self._slots[index] == slot:
                self._sketches[index].subtract(sketch)

    @property
    def empty_after(self) -> float:
        """When (by the clock of ``observe``) the latest slot leaves the window: from then on
        the window holds nothing of what it holds now."""
        return (self._latest + self.age_buckets) * self._width

    @property
    def count(self) -> int:
        """How many observations the stored slots hold (some may have left the window)."""
        self._add_pending()
        return sum(
            sketch.count
            for slot, sketch in zip(self._slots, self._sketches)
            if slot > self._latest - self.age_buckets
        )

    def to_floats(self) -> list[float]:
        """The state as floats, for a multi-process backend to store.

        Layout: ``[1.0, max_age, age_buckets, accuracy, max_buckets, n_q, *quantiles, latest,
        n_slots, (slot, length, *QuantileSketch.to_floats()) * n_slots]``; only live, non-empty
        slots are written.
        """
        self._add_pending()
        floats = [_FORMAT, self.max_age_seconds, float(self.age_buckets), self.relative_accuracy,
                  float(self.max_buckets), float(len(self.targets)), *self.targets,
                  float(self._latest)]  # fmt: skip
        live = [
            (slot, sketch.to_floats())
            for slot, sketch in zip(self._slots, self._sketches)
            if slot > self._latest - self.age_buckets and sketch.count
        ]
        floats.append(float(len(live)))
        for slot, sketch_floats in live:
            floats += (float(slot), float(len(sketch_floats)), *sketch_floats)
        return floats

    def merge_floats(self, floats: Sequence[float]) -> None:
        """``merge(SlidingQuantiles.from_floats(floats))`` without building that window.
        ValueError (and nothing merged) if ``floats`` is not a window of the same
        ``max_age_seconds``, ``age_buckets`` and accuracy."""
        slots: list[_UnionSlot] = []
        latest = _read_slots(floats, 0, len(floats), slots)
        if any(map(_negative_in, slots)):
            raise ValueError("not a serialised SlidingQuantiles: a negative count")
        if not _same_settings(floats, self):
            raise ValueError("cannot merge windows of different max_age, age_buckets or accuracy")
        self.merge_parsed(latest, map(_interleaved, slots))

    def merge_parsed(self, latest: int, slots: Iterable[_ParsedSlot]) -> None:
        """Add the slots of serialised windows of this one's settings (``_read_slots``, keys and
        counts in pairs; the slots of several windows may be given at once, in any order)."""
        self._add_pending()
        self._advance(latest)
        # slot -> [zeros, positive floor, positive pairs, negative floor, negative pairs]
        by_slot: dict[int, list[Any]] = {}
        for slot, zeros, positive_floor, positive, negative_floor, negative in slots:
            summed = by_slot.get(slot)
            if summed is None:
                by_slot[slot] = [zeros, positive_floor, [*positive], negative_floor, [*negative]]
            else:
                summed[0] += zeros
                summed[1] = max(summed[1], positive_floor)
                summed[2] += positive
                summed[3] = max(summed[3], negative_floor)
                summed[4] += negative
        for slot, (zeros, positive_floor, positive, negative_floor, negative) in by_slot.items():
            sketch = self._live_sketch(slot)
            if sketch is not None:
                sketch._zero += zeros
                sketch._pos.add_pairs(positive_floor, positive)
                sketch._neg.add_pairs(negative_floor, negative)

    @classmethod
    def from_floats(cls, floats: Sequence[float]) -> SlidingQuantiles:
        """The window that ``to_floats`` wrote; ValueError if ``floats`` is not one."""
        window = empty_window_like(floats)
        window.merge_floats(floats)
        return window


_prototypes: dict[tuple[object, ...], SlidingQuantiles] = {}


def _prototype(
    targets: Sequence[float], max_age: float, age_buckets: int, accuracy: float, max_buckets: int
) -> SlidingQuantiles:
    """The shared empty window of these settings (MetricDefinitionException when they are not
    valid), never to be changed: a scrape needs thousands of empty windows of a few settings."""
    key = (tuple(targets), max_age, age_buckets, accuracy, max_buckets)
    prototype = _prototypes.get(key)
    if prototype is None:
        prototype = SlidingQuantiles(targets, max_age, age_buckets, accuracy, max_buckets)
        if len(_prototypes) > 64:
            _prototypes.clear()
        _prototypes[key] = prototype
    return prototype


def _empty_window(
    targets: Sequence[float], max_age: float, age_buckets: int, accuracy: float, max_buckets: int
) -> SlidingQuantiles:
    """A new empty window of these settings (MetricDefinitionException when they are not
    valid), made from their prototype."""
    return _prototype(targets, max_age, age_buckets, accuracy, max_buckets).empty_like()


def _prototype_like(floats: Sequence[float]) -> SlidingQuantiles:
    """The shared empty window (not to be changed) with the settings of the serialised window
    ``floats`` (ValueError if they are not a window's)."""
    try:
        return _prototype(
            floats[6 : 6 + int(floats[5])], floats[1], int(floats[2]), floats[3], int(floats[4])
        )
    except (IndexError, OverflowError, MetricDefinitionException) as error:
        raise ValueError(f"not a serialised SlidingQuantiles: {error}") from None


def empty_window_like(floats: Sequence[float]) -> SlidingQuantiles:
    """An empty window with the settings of the serialised window ``floats`` (ValueError if
    they are not a window's)."""
    return _prototype_like(floats).empty_like()


def window_of_slots(
    settings: tuple[float, float, float, float], slots: Iterable[tuple[int, Sequence[float]]]
) -> SlidingQuantiles:
    """A window from ``(slot, [bucket id, count, ...])`` summed across processes, of the
    settings ``(max_age_seconds, age_buckets, relative_accuracy, max_buckets)`` (ValueError if
    they are not valid ones, or a count is negative)."""
    max_age, age_buckets, accuracy, max_buckets = settings
    try:
        window = _empty_window((), max_age, int(age_buckets), accuracy, int(max_buckets))
    except (MetricDefinitionException, OverflowError) as error:
        raise ValueError(f"not a window's settings: {error}") from None
    for slot, pairs in slots:
        window.add_bucket_pairs(slot, pairs)
    return window


class WindowUnion:
    """The windows of one summary series from several processes, queried together.

    A scrape reads each process's serialised window (``SlidingQuantiles.to_floats``) and wants
    a few quantiles of their union: :meth:`quantiles_at` ranks the buckets of every process
    together (one sort of their keys, no window built), which costs a third of merging them
    into one window first. :meth:`window` merges them, for what needs a window (the archive, a
    tombstone). The first window added sets the settings: one of another ``max_age_seconds``,
    ``age_buckets`` or accuracy (another program version) is left out, as :meth:`merge` would.

    Example::

        union = WindowUnion()
        union.add_serialised(window_of_process_1.to_floats())
        union.add_serialised(window_of_process_2.to_floats())
        union.quantiles_at((0.5, 0.99), now=time.time())
    """

    __slots__ = ("_empty", "_settings", "_latest", "_slots", "_added", "_windows")

    def __init__(self) -> None:
        # an empty window of the settings: shared (a prototype), never changed
        self._empty: SlidingQuantiles | None = None
        # as serialised: format, max_age, age_buckets, accuracy
        self._settings: tuple[float, ...] = ()
        self._latest = _NO_FLOOR
        self._slots: list[_UnionSlot] = []  # of the serialised windows
        # where each serialised window's slots start in ``_slots``: their counts are checked
        # when the union is queried, once for all (a window with a negative count is left out)
        self._added: list[int] = []
        self._windows: list[SlidingQuantiles] = []  # added as windows

    def add_serialised(
        self, floats: Sequence[float], start: int = 0, stop: int | None = None
    ) -> None:
        """Add a serialised window, ``floats[start:stop]`` (left out if it is not one, or of
        other settings); a scrape gives the block it read whole, without slicing it.

        A scrape adds one per process and series: counts are checked when the union is
        queried, for all windows at once."""
        stop = len(floats) if stop is None else stop
        if self._empty is None:
            try:
                self._empty = _prototype_like(floats[start:stop])
            except ValueError:
                return
            self._settings = (_FORMAT, *floats[start + 1 : start + 4])
        if tuple(floats[start : start + 4]) != self._settings:  # another format, other settings
            return
        slots = self._slots
        first = len(slots)
        try:
            latest = _read_slots(floats, start, stop, slots)
        except ValueError:
            del slots[first:]  # not a window: left out
            return
        self._latest = max(self._latest, latest)
        self._added.append(first)

    def add_window(self, window: SlidingQuantiles) -> None:
        """Add a window (left out if it is not of the settings of the first added)."""
        if self._empty is None:
            self._empty = window.empty_like()
        self._windows.append(window)

    @property
    def empty(self) -> bool:
        """Whether nothing readable was added (counts are checked when the union is queried:
        a window with a negative count is left out then, and may leave the union empty)."""
        return self._empty is None

    def window(self) -> SlidingQuantiles | None:
        """Everything added merged into one window (None when nothing readable was added)."""
        if self._empty is None:
            return None
        self._leave_out_negative()
        merged = self._empty.empty_like()
        for window in self._windows:
            with contextlib.suppress(ValueError):  # another definition: left out
                merged.merge(window)
        if self._slots:
            merged.merge_parsed(self._latest, map(_interleaved, self._slots))
        return merged

    def quantiles_at(
        self, targets: Sequence[float], now: float
    ) -> tuple[tuple[float, float], ...]:
        """``((q, value), ...)`` of ``targets`` over the union at ``now`` (NaN when empty):
        what :meth:`window` would answer, the same buckets ranked the same way."""
        empty = self._empty
        if empty is None:
            return tuple((q, math.nan) for q in targets)
        oldest = max(self._latest, empty.slot(now)) - empty.age_buckets
        positive: list[float] = []
        positive_counts: list[float] = []
        negative: list[float] = []
        negative_counts: list[float] = []
        zeros = 0
        collapsed = False  # a window's lowest buckets were merged (it held too many)
        for union_slot in self._slots:
            slot, slot_zeros, positive_floor, negative_floor, floats, first, middle, end = (
                union_slot
            )
            if slot > oldest:
                collapsed = collapsed or positive_floor != _NO_FLOOR or negative_floor != _NO_FLOOR
                zeros += slot_zeros
                positive += floats[first:middle:2]
                positive_counts += floats[first + 1 : middle : 2]
                negative += floats[middle + 2 : end : 2]
                negative_counts += floats[middle + 3 : end : 2]
            elif _negative_in(union_slot):
                collapsed = True  # a window to leave out: the merged window does
        if min(positive_counts, default=0) < 0 or min(negative_counts, default=0) < 0:
            collapsed = True
        sketch = empty._head
        if (
            collapsed or zeros < 0 or self._windows
            or len(positive) + len(negative) > sketch.max_buckets
        ):  # fmt: skip
            # buckets collapsed, or the union may need to, or a window is to be left out:
            # one merged window says how
            window = self.window()
            assert window is not None
            return window.quantiles_at(targets, now)
        values = sketch._ranked(
            list(targets),
            *_in_order(negative, negative_counts, reverse=True),
            zeros,
            *_in_order(positive, positive_counts),
        )
        return tuple(zip(targets, values))

    def _leave_out_negative(self) -> None:
        """Leave out the serialised windows holding a negative count, as merge refuses them."""
        slots, starts = self._slots, self._added
        if not any(map(_negative_in, slots)):
            return
        kept: list[_UnionSlot] = []
        added: list[int] = []
        for start, end in zip(starts, [*starts[1:], len(slots)]):
            if not any(map(_negative_in, slots[start:end])):
                added.append(len(kept))
                kept += slots[start:end]
        self._slots, self._added = kept, added


# a slot of a window in a union: (slot, zeros, positive floor, negative floor, the serialised
# window, where its positive key/count pairs start, where they end, where its negative pairs
# end); the negative pairs start two floats (their floor and count) after the positive ones
# end. Offsets, not slices: a scrape holds a union of every summary series at once.
_UnionSlot = tuple[int, int, int, int, Sequence[float], int, int, int]


def _negative_in(slot: _UnionSlot) -> bool:
    """Whether a slot holds a negative count (a damaged window's)."""
    _, zeros, _, _, floats, first, middle, end = slot
    counts = chain(floats[first + 1 : middle : 2], floats[middle + 3 : end : 2])
    return zeros < 0 or min(counts, default=0) < 0


def _interleaved(slot: _UnionSlot) -> _ParsedSlot:
    """A union's slot as ``merge_parsed`` takes it."""
    number, zeros, positive_floor, negative_floor, floats, first, middle, end = slot
    return (number, zeros, positive_floor, floats[first:middle], negative_floor,
            floats[middle + 2 : end])  # fmt: skip


def _in_order(
    keys: list[float], counts: list[float], reverse: bool = False
) -> tuple[list[float], list[float]]:
    """``keys`` sorted (each with its count), by one sort of their positions."""
    if not keys:
        return keys, counts
    order = sorted(range(len(keys)), key=keys.__getitem__, reverse=reverse)
    return list(map(keys.__getitem__, order)), list(map(counts.__getitem__, order))


def window_quantiles(
    window: SlidingQuantiles | WindowUnion | None, targets: Sequence[float], now: float
) -> tuple[tuple[float, float], ...]:
    """``((q, value), ...)`` of ``window`` at ``now``; NaN values when there is no window."""
    if window is None:
        return tuple((q, math.nan) for q in targets)
    return window.quantiles_at(targets, now)


def _same_settings(floats: Sequence[float], window: SlidingQuantiles) -> bool:
    """Whether the serialised window ``floats`` can merge into ``window``: the same
    ``max_age_seconds``, ``age_buckets`` and accuracy."""
    return (floats[1], int(floats[2]), floats[3]) == (
        window.max_age_seconds, window.age_buckets, window.relative_accuracy,
    )  # fmt: skip


def _read_slots(floats: Sequence[float], start: int, stop: int, into: list[_UnionSlot]) -> int:
    """Append the slots of the serialised window ``floats[start:stop]``
    (``SlidingQuantiles.to_floats``, settings checked by the caller) to ``into``; return its
    latest slot. ValueError if it is not a window (some slots may have been appended). Counts
    are not checked (see ``_negative_in``). A scrape reads one per process and series: lean."""
    try:
        if floats[start] != _FORMAT or stop > len(floats):
            raise ValueError(f"unknown format {floats[start]!r}")
        position = start + 8 + int(floats[start + 5])
        latest, n_slots = int(floats[position - 2]), int(floats[position - 1])
        for _ in range(n_slots):
            # slot, length, accuracy, max_buckets, zeros, (floor, n, pairs) positive, negative
            end = position + 2 + int(floats[position + 1])
            at = position + 5
            middle = at + 2 + 2 * int(floats[at + 1])
            if middle + 2 + 2 * int(floats[middle + 1]) != end or end > stop:
                raise ValueError("a slot's length does not match its sketch")
            into.append((int(floats[position]), int(floats[position + 4]), int(floats[at]),
                         int(floats[middle]), floats, at + 2, middle, end))  # fmt: skip
            position = end
        if position != stop:
            raise ValueError("trailing floats")
    except (IndexError, ValueError, OverflowError, TypeError) as error:
        raise ValueError(f"not a serialised SlidingQuantiles: {error}") from None
    return latest


def _check_quantile(q: float) -> None:
    if not (isinstance(q, (int, float)) and 0 <= q <= 1):
        raise MetricDefinitionException(f"a quantile must be a number in [0, 1], got {q!r}")


def _check_sketch_options(relative_accuracy: float, max_buckets: int) -> None:
    if not (isinstance(relative_accuracy, (int, float)) and 0 < relative_accuracy < 1):
        raise MetricDefinitionException(
            f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}"
        )
    _check_positive_int("max_buckets", max_buckets)


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MetricDefinitionException(f"{name} must be an integer >= 1, got {value!r}")
