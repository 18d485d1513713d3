"""Value objects of the Redis backend: plain memory on the hot path.

Each value adds to a pending amount under a thread lock, like the single-process backend, and
the first change after a flush puts the value on the flusher's queue, so a flush visits only the
values that changed. ``get`` and ``snapshot`` report this process's own contribution (flushed
and pending).
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from pytheus.backends.memory import striped_lock
from pytheus.backends.redis._protocol import (
    ADD_CELLS,
    CHECK_NATIVE,
    SET_EXEMPLAR,
    SET_GAUGE,
    SET_NATIVE,
    TOUCH,
    Op,
    add_to_window,
    window_settings,
)
from pytheus.native import NativeHistogram, ResetTimer, decode_cells, encode_cells, subtract
from pytheus.quantiles import PENDING_LIMIT, QuantileSketch, SlidingQuantiles
from pytheus.samples import Exemplar, HistogramData, SummaryData


def _num(value: float) -> str:
    return repr(float(value))


def _packed(counts: list[int], total: float) -> str:
    """Cells as the flush script adds them: counts, then the sum, separated by spaces."""
    return " ".join([*map(str, counts), _num(total)])


def encode_exemplar(exemplar: Exemplar) -> str:
    return json.dumps([exemplar.labels, exemplar.value, exemplar.timestamp], ensure_ascii=False)


def decode_exemplar(raw: str) -> Exemplar:
    labels, value, timestamp = json.loads(raw)
    return Exemplar(labels, float(value), timestamp)


class RedisCounter:
    __slots__ = (
        "_lock", "_pending", "_total", "exemplar", "_exemplar_sent", "_queue", "_queued", "sid",
    )  # fmt: skip

    def __init__(self, queue: list[Any]) -> None:
        self._queue = queue
        self._queued = False
        self.sid: str | None = None  # set by the flusher that holds it
        self._lock = striped_lock()
        self._pending = 0.0
        self._total = 0.0  # everything already taken into batches
        self.exemplar: Exemplar | None = None
        self._exemplar_sent: Exemplar | None = None

    def record_exemplar(self, exemplar: Exemplar) -> None:
        with self._lock:
            self.exemplar = exemplar
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def _exemplar_ops(self, always: bool = False) -> list[Op]:
        exemplar = self.exemplar
        if exemplar is None or (exemplar is self._exemplar_sent and not always):
            return []
        self._exemplar_sent = exemplar
        return [(SET_EXEMPLAR, "0", encode_exemplar(exemplar))]

    def inc(self, value: float) -> None:
        with self._lock:
            self._pending += value
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def dec(self, value: float) -> None:
        self.inc(-value)

    def set(self, value: float) -> None:
        with self._lock:
            self._pending = value - self._total
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def get(self) -> float:
        with self._lock:
            return self._total + self._pending

    def refresh(self) -> list[Op]:
        """Keep the series from expiring while this process holds it."""
        return [(TOUCH, "", "")]

    def take(self) -> list[Op]:
        with self._lock:
            self._queued = False
            delta, self._pending = self._pending, 0.0
            self._total += delta
        return ([(ADD_CELLS, "", _num(delta))] if delta else []) + self._exemplar_ops()

    def totals(self) -> list[Op]:
        with self._lock:
            ops = [(ADD_CELLS, "", _num(self._total))] if self._total else []
        return ops + self._exemplar_ops(always=True)


class RedisGauge:
    """This process's own gauge value, written whole (it is one field of the series' hash)."""

    __slots__ = (
        "_lock", "_value", "_written", "_set", "_version", "_flushed", "field", "_queue",
        "_queued", "sid",
    )  # fmt: skip

    def __init__(self, field: str, queue: list[Any]) -> None:
        self._queue = queue
        self._queued = False
        self.sid: str | None = None  # set by the flusher that holds it
        self._lock = striped_lock()
        self._value = 0.0
        self._written = 0.0
        self._set = 0.0
        self._version = 1  # unflushed: a new gauge shows up as 0 everywhere
        self._flushed = 0
        self.field = field

    def inc(self, value: float) -> None:
        now = time.time()
        with self._lock:
            self._value += value
            self._written = now
            self._version += 1
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def dec(self, value: float) -> None:
        self.inc(-value)

    def set(self, value: float) -> None:
        now = time.time()
        with self._lock:
            self._value = value
            self._written = self._set = now
            self._version += 1
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def get(self) -> float:
        with self._lock:
            return self._value

    def publish(self) -> None:
        """Queue the gauge for the next flush even unchanged: a new gauge shows up as 0."""
        with self._lock:
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def _op(self) -> Op:
        value = f"{_num(self._value)},{_num(self._written)},{_num(self._set)}"
        return (SET_GAUGE, self.field, value)

    def refresh(self) -> list[Op]:
        """Write the value again: a gauge held by a living process does not expire."""
        with self._lock:
            return [self._op()]

    def take(self) -> list[Op]:
        with self._lock:
            self._queued = False
            if self._version == self._flushed:
                return []
            self._flushed = self._version
            return [self._op()]

    def totals(self) -> list[Op]:
        with self._lock:
            return [self._op()]


class RedisHistogram:
    __slots__ = (
        "_bounds", "_last", "_lock", "_pending", "_pending_sum", "_total", "_total_sum",
        "_exemplars", "_exemplars_dirty", "_queue", "_queued", "sid",
    )  # fmt: skip

    def __init__(self, upper_bounds: tuple[float, ...], queue: list[Any]) -> None:
        self._queue = queue
        self._queued = False
        self.sid: str | None = None  # set by the flusher that holds it
        self._bounds = upper_bounds
        self._last = len(upper_bounds) - 1
        self._lock = striped_lock()
        self._pending = [0] * len(upper_bounds)
        self._pending_sum = 0.0
        self._total = [0] * len(upper_bounds)
        self._total_sum = 0.0
        self._exemplars: list[Exemplar | None] = [None] * len(upper_bounds)
        self._exemplars_dirty: set[int] = set()

    def record_exemplar(self, exemplar: Exemplar) -> None:
        bucket = bisect_left(self._bounds, exemplar.value)
        if bucket == 0 and exemplar.value != exemplar.value:
            bucket = self._last
        with self._lock:
            self._exemplars[bucket] = exemplar
            self._exemplars_dirty.add(bucket)
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def _exemplar_ops(self, buckets: set[int] | range) -> list[Op]:
        return [
            (SET_EXEMPLAR, str(i), encode_exemplar(exemplar))
            for i in buckets
            if (exemplar := self._exemplars[i]) is not None
        ]

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        if bucket == 0 and value != value:
            bucket = self._last
        with self._lock:
            self._pending[bucket] += 1
            self._pending_sum += value
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def snapshot(self) -> HistogramData:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> HistogramData:
        counts = [t + p for t, p in zip(self._total, self._pending)]
        total = self._total_sum + self._pending_sum
        return HistogramData(self._bounds, counts, total, list(self._exemplars))

    def refresh(self) -> list[Op]:
        """Keep the series from expiring while this process holds it."""
        return [(TOUCH, "", "")]

    def take(self) -> list[Op]:
        with self._lock:
            self._queued = False
            ops = self._check_ops() + self._retraction_ops()
            pending, self._pending = self._pending, [0] * len(self._bounds)
            pending_sum, self._pending_sum = self._pending_sum, 0.0
            for i, count in enumerate(pending):
                self._total[i] += count
            self._total_sum += pending_sum
            dirty, self._exemplars_dirty = self._exemplars_dirty, set()
            if any(pending) or pending_sum:
                ops.append((ADD_CELLS, "", _packed(pending, pending_sum)))
            ops += self._exemplar_ops(dirty)
            ops += self._native_ops(False)
        return ops

    def totals(self) -> list[Op]:
        """This process's whole contribution, for a Redis that lost it; pending included."""
        with self._lock:
            self._retraction_ops()  # dropped: Redis lost what they would take back
            for i, count in enumerate(self._pending):
                self._total[i] += count
            self._total_sum += self._pending_sum
            self._pending = [0] * len(self._bounds)
            self._pending_sum = 0.0
            if not any(self._total):
                return []
            exemplar_ops = self._exemplar_ops(range(len(self._bounds))) + self._native_ops(True)
            return [(ADD_CELLS, "", _packed(self._total, self._total_sum)), *exemplar_ops]

    def _check_ops(self) -> list[Op]:
        """Ops opening an entry, which Redis skips if the series was removed (none here)."""
        return []

    def _retraction_ops(self) -> list[Op]:
        """Ops taking back what a restarted histogram had counted before (none here)."""
        return []

    def _native_ops(self, always: bool) -> list[Op]:
        """Ops for the native part, taken under the lock with the classic part (none here)."""
        return []


class RedisNativeHistogram(RedisHistogram):
    """A histogram with a native part: this process's whole native histogram, in memory.

    The classic part flushes deltas; the native part is written absolutely, as this process's
    field of the series' native hash (its schema may have changed since the last flush, which
    a delta cannot express), in the same batch and from the same moment as the classic delta.

    Past ``max_buckets`` the histogram restarts from that observation if ``reset_seconds``
    (> 0) have passed by ``clock`` since the last restart (or since it was created), else the
    schema is lowered, as the memory backend does. A restart starts this process's contribution
    again: what earlier batches added to the shared classic cells is *retracted* (sent negated,
    in the same batch as the new native histogram, so a scrape sees both or neither), and only
    the observation that overflowed is counted. Exemplars stay: the series' exemplars in Redis
    are the latest of every process.

    Another process may remove the series meanwhile, which deletes it from Redis, this
    process's native field with it. So once that field is in Redis, each entry of this value
    starts with a check (``CHECK_NATIVE``): if the field is gone, the flush script skips the
    entry and reports it, and :meth:`rebase` makes this value count again from the entry
    before, which Redis had applied before the removal. So a retraction never takes back more
    than Redis holds, and the native part never brings back what the removal took away.
    """

    __slots__ = (
        "_native", "_max_buckets", "_native_dirty", "_native_taken", "field", "_initial_schema",
        "_reset", "_retract", "_retract_sum", "_restarts",
        "_restarts_taken", "_checked",
    )  # fmt: skip

    def __init__(
        self,
        upper_bounds: tuple[float, ...],
        queue: list[Any],
        field: str,
        schema: int,
        zero_threshold: float,
        max_buckets: int,
        reset_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(upper_bounds, queue)
        self._native = NativeHistogram(schema, zero_threshold)
        self._initial_schema = schema
        self._max_buckets = max_buckets
        self._reset = ResetTimer(reset_seconds, clock)
        self._native_dirty = False
        self._native_taken: str | None = None  # the native histogram as the last batch has it
        self._retract = [0] * len(upper_bounds)  # counted by earlier batches, to take back
        self._retract_sum = 0.0
        self._restarts = 0
        self._restarts_taken = 0  # _restarts when a batch last took the native part
        # before the last checked entry: _total, _total_sum, the native part Redis had,
        # _restarts, the exemplars the entry took (see rebase)
        self._checked: tuple[list[int], float, str | None, int, set[int]] | None = None
        self.field = field

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        if bucket == 0 and value != value:
            bucket = self._last
        with self._lock:
            self._pending[bucket] += 1
            self._pending_sum += value
            native = self._native
            native.observe(value)
            if native.bucket_count > self._max_buckets > 0:
                self._shrink(bucket, value)
            self._native_dirty = True
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def _shrink(self, bucket: int, value: float) -> None:
        """Restart from ``value``, or lower the schema (the lock is held)."""
        if self._reset.due():
            self._restart(bucket, value)
            return
        self._native.limit_buckets(self._max_buckets)

    def _restart(self, bucket: int, value: float) -> None:
        self._restarts += 1
        for i, count in enumerate(self._total):
            self._retract[i] += count
        self._retract_sum += self._total_sum
        self._total = [0] * len(self._bounds)
        self._total_sum = 0.0
        self._pending = [0] * len(self._bounds)
        self._pending[bucket] = 1
        self._pending_sum = value
        self._native.reset()
        self._native.schema = self._initial_schema
        self._native.observe(value)

    def snapshot(self) -> HistogramData:
        with self._lock:  # one moment of both parts
            data = self._snapshot_locked()
            data.native = self._native.copy()
            return data

    def _check_ops(self) -> list[Op]:
        if self._native_taken is None:
            return []  # Redis has nothing of this value yet: no removal can take it away
        return [self._check(set(self._exemplars_dirty))]

    def _check(self, exemplars: set[int]) -> Op:
        """The op opening a checked entry; remembers what Redis holds before it (see rebase)."""
        native = self._native_taken if self._restarts == self._restarts_taken else None
        self._checked = (list(self._total), self._total_sum, native, self._restarts, exemplars)
        return (CHECK_NATIVE, self.field, "")

    def rebase(self) -> None:
        """Redis skipped the last checked entry: the series was removed (or expired) before.

        Redis holds nothing this process counted before that entry; what the entry carried,
        and what came after, is counted again: the classic part goes back to pending, the
        native part drops what the batches before had sent. After a restart since the entry,
        everything this value holds came after it. Nothing is left to take back.
        """
        with self._lock:
            checked, self._checked = self._checked, None
            if checked is None:
                return
            total, total_sum, native, restarts, exemplars = checked
            if restarts == self._restarts:
                for i, count in enumerate(self._total):
                    self._pending[i] += count - total[i]
                self._pending_sum += self._total_sum - total_sum
                before = decode_cells([float(x) for x in native.split()]) if native else None
                if before is not None:
                    self._native = subtract(self._native, before)
                self._exemplars_dirty |= exemplars
            self._total = [0] * len(self._bounds)
            self._total_sum = 0.0
            self._retract = [0] * len(self._bounds)
            self._retract_sum = 0.0
            self._native_taken = None
            if self._native.count or any(self._pending) or self._pending_sum:
                self._native_dirty = True
                if not self._queued:
                    self._queued = True
                    self._queue.append(self)

    def _retraction_ops(self) -> list[Op]:
        if not any(self._retract) and not self._retract_sum:
            return []
        retract, self._retract = self._retract, [0] * len(self._bounds)
        retract_sum, self._retract_sum = self._retract_sum, 0.0
        return [(ADD_CELLS, "", _packed([-count for count in retract], -retract_sum))]

    def _native_ops(self, always: bool) -> list[Op]:
        if not (always or self._native_dirty):
            return []
        self._native_dirty = False
        self._restarts_taken = self._restarts
        self._native_taken = " ".join(map(_num, encode_cells(self._native)))
        return [(SET_NATIVE, self.field, self._native_taken)]

    def refresh(self) -> list[Op]:
        """Keep the series from expiring, the native part too (as the last batch had it)."""
        with self._lock:
            if self._native_taken is None:
                return [(TOUCH, "", "")]
            taken = self._native_taken
            return [self._check(set()), (TOUCH, "", ""), (SET_NATIVE, self.field, taken)]


class RedisSummary:
    __slots__ = (
        "_lock", "_pending_count", "_pending_sum", "_count", "_sum", "_queue", "_queued", "sid",
    )  # fmt: skip

    def __init__(self, queue: list[Any]) -> None:
        self._queue = queue
        self._queued = False
        self.sid: str | None = None  # set by the flusher that holds it
        self._lock = striped_lock()
        self._pending_count = 0
        self._pending_sum = 0.0
        self._count = 0
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._pending_count += 1
            self._pending_sum += value
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def snapshot(self) -> SummaryData:
        with self._lock:
            return SummaryData(self._count + self._pending_count, self._sum + self._pending_sum)

    def refresh(self) -> list[Op]:
        """Keep the series from expiring while this process holds it."""
        return [(TOUCH, "", "")]

    def take(self) -> list[Op]:
        with self._lock:
            return self._take_locked()

    def _take_locked(self) -> list[Op]:
        self._queued = False
        count, self._pending_count = self._pending_count, 0
        total, self._pending_sum = self._pending_sum, 0.0
        self._count += count
        self._sum += total
        return [(ADD_CELLS, "", _packed([count], total))] if count else []

    def totals(self) -> list[Op]:
        with self._lock:
            return self._totals_locked()

    def _totals_locked(self) -> list[Op]:
        return [(ADD_CELLS, "", _packed([self._count], self._sum))] if self._count else []


class RedisQuantileSummary(RedisSummary):
    """A summary with quantiles: count and sum flush as deltas (as :class:`RedisSummary`), and
    so does the sliding window: each batch adds this process's new observations, counted by
    (age slot, sketch bucket), to the series' counts in Redis, which sum those of every process
    (see :meth:`pytheus.quantiles.SlidingQuantiles.add_bucket`). A scrape reads one window per
    series, however many processes wrote it, and a removal or a retried batch needs nothing
    more than for a counter.

    The hot path only keeps the observation aside (and its count and sum); the flusher thread
    counts them by bucket. ``_window`` holds what this process has sent, for a Redis that lost
    it (:meth:`totals`) and for :meth:`snapshot`.
    """

    __slots__ = ("_window", "_clock", "_width", "_unsent", "_unsent_slot", "_slot_end",
                 "_slot_counts", "_settings")  # fmt: skip

    def __init__(
        self, queue: list[Any], window: SlidingQuantiles, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(queue)
        self._window = window
        self._clock = clock
        self._width = window.max_age_seconds / window.age_buckets
        self._unsent: list[float] = []  # observations of slot _unsent_slot, not counted yet
        self._unsent_slot = 0
        self._slot_end = -math.inf  # when _unsent_slot ends
        self._slot_counts: dict[int, QuantileSketch] = {}  # slot -> what was not sent of it
        self._settings = window_settings(window)

    def observe(self, value: float) -> None:
        now = self._clock()
        with self._lock:
            self._pending_count += 1
            self._pending_sum += value
            unsent = self._unsent
            if now >= self._slot_end or len(unsent) >= PENDING_LIMIT:
                self._count_unsent(now)
            unsent.append(value)
            if not self._queued:
                self._queued = True
                self._queue.append(self)

    def _count_unsent(self, now: float | None) -> None:
        """Count the observations set aside by bucket; past the slot's end (``now``), go on in
        the slot of ``now`` (never an earlier one: the clock may go back)."""
        if self._unsent:
            sketch = self._slot_counts.get(self._unsent_slot)
            if sketch is None:
                sketch = self._slot_counts[self._unsent_slot] = self._window.new_sketch()
            sketch.add_many(self._unsent)  # NaN: in count and sum only
            self._unsent.clear()
        if now is not None and now >= self._slot_end:
            self._unsent_slot, self._slot_end = self._window.slot_from(now, self._unsent_slot)

    def snapshot(self) -> SummaryData:
        with self._lock:
            self._count_unsent(None)
            window = self._window.copy()
            for slot, sketch in self._slot_counts.items():
                window.add_bucket_pairs(slot, sketch.bucket_pairs())
            return SummaryData(
                self._count + self._pending_count,
                self._sum + self._pending_sum,
                window.query(self._clock()),
            )

    def take(self) -> list[Op]:
        with self._lock:
            ops = super()._take_locked()
            self._count_unsent(None)
            slots, self._slot_counts = self._slot_counts, {}
            for slot, sketch in sorted(slots.items()):
                pairs = sketch.bucket_pairs()
                if pairs:
                    self._window.add_bucket_pairs(slot, pairs)
                    ops.append(self._slot_op(slot, pairs))
        return ops

    def _slot_op(self, slot: int, pairs: list[int]) -> Op:
        """Add ``pairs`` (bucket id, count, ...) to the series' counts of ``slot`` in Redis;
        with when the slot leaves the window and the window's settings."""
        empty_after = (slot + self._window.age_buckets) * self._width
        return add_to_window(slot, empty_after, self._settings, pairs)

    def totals(self) -> list[Op]:
        """This process's whole contribution, for a Redis that lost it: its window too (what
        was not taken yet goes with the next batch, as the pending count)."""
        with self._lock:
            ops = super()._totals_locked()
            for slot, pairs in sorted(self._window.slot_pairs().items()):
                ops.append(self._slot_op(slot, pairs))
        return ops

