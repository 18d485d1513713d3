"""Value objects of the shared-file backend: cells in this process's mapped segment.

Only the owning process writes its cells, so the lock is a thread lock: no lock is shared
between processes and no system call is made per operation.
"""

from __future__ import annotations

import array
import json
import time
from bisect import bisect_left
from collections.abc import Callable
from threading import Lock

from pytheus.backends.file import _native_block as native_block
from pytheus.backends.file._format import EXEMPLAR_PAYLOAD_CELLS
from pytheus.backends.file._native_block import COUNT, PAIRS, PAYLOAD, SUM, USED, ZERO_COUNT
from pytheus.backends.memory import striped_lock
from pytheus.native import (
    NativeHistogram,
    ResetTimer,
    bucket_index,
    decode_cells,
)
from pytheus.quantiles import SlidingQuantiles
from pytheus.samples import Exemplar, HistogramData, SummaryData

# (bucket) -> the cells of a new exemplar slot for that bucket, and the slot's first index
SlotAllocator = Callable[[int], "tuple[memoryview[float], int]"]
# (series key as stored, bucket) -> the same, for any series
SeriesSlotAllocator = Callable[[bytes, int], "tuple[memoryview[float], int]"]


class ExemplarBook:
    """The exemplar slots of a process's series, made for a series at its first exemplar.

    One per store: a series that never records an exemplar costs nothing here (a value holds
    its stored key, which the process file keeps anyway, and this book).
    """

    __slots__ = ("_allocate", "_series", "_lock")

    def __init__(self, allocate: SeriesSlotAllocator) -> None:
        self._allocate = allocate
        self._series: dict[bytes, ExemplarSlots] = {}
        self._lock = Lock()

    def write(self, raw: bytes, bucket: int, exemplar: Exemplar) -> None:
        slots = self._series.get(raw)
        if slots is None:
            with self._lock:
                slots = self._series.get(raw)
                if slots is None:
                    slots = ExemplarSlots(lambda b: self._allocate(raw, b))
                    self._series[raw] = slots
        slots.write(bucket, exemplar)


class ExemplarSlots:
    """The latest exemplar per bucket, in slots of this process's file allocated on first use."""

    __slots__ = ("_allocate", "_slots", "_lock")

    def __init__(self, allocate: SlotAllocator) -> None:
        self._allocate = allocate
        self._slots: dict[int, tuple[memoryview[float], int]] = {}
        self._lock = Lock()

    def write(self, bucket: int, exemplar: Exemplar) -> None:
        payload = json.dumps(dict(exemplar.labels), ensure_ascii=False).encode()
        if len(payload) > 8 * EXEMPLAR_PAYLOAD_CELLS:
            return  # cannot happen within OpenMetrics' 128-character limit
        with self._lock:
            slot = self._slots.get(bucket)
            if slot is None:
                slot = self._slots[bucket] = self._allocate(bucket)
            cells, i = slot
            version = cells[i] + 1
            cells[i + 4 + EXEMPLAR_PAYLOAD_CELLS] = version  # tail first
            cells[i + 1] = exemplar.value
            cells[i + 2] = exemplar.timestamp or time.time()
            cells[i + 3] = len(payload)
            start = (i + 4) * 8
            cells.cast("B")[start : start + len(payload)] = payload
            cells[i] = version  # head last: the slot is whole again


# A gauge keeps three cells: value, time of the last write, time of the last set() (0: never).
GAUGE_CELLS = 3


class FileCounter:
    __slots__ = ("_cells", "_index", "_lock", "_raw", "_book")

    def __init__(self, cells: memoryview[float], index: int) -> None:
        self._cells = cells
        self._index = index
        self._lock = striped_lock()
        self._raw = b""  # the stored key: where the book files this series' exemplars
        self._book: ExemplarBook | None = None

    def keep_exemplars(self, raw: bytes, book: ExemplarBook) -> None:
        self._raw, self._book = raw, book

    def record_exemplar(self, exemplar: Exemplar) -> None:
        if self._book is not None:
            self._book.write(self._raw, 0, exemplar)

    def inc(self, value: float) -> None:
        with self._lock:
            self._cells[self._index] += value

    def dec(self, value: float) -> None:
        with self._lock:
            self._cells[self._index] -= value

    def set(self, value: float) -> None:
        with self._lock:
            self._cells[self._index] = value

    def get(self) -> float:
        value: float = self._cells[self._index]
        return value


class FileGauge(FileCounter):
    __slots__ = ()

    def inc(self, value: float) -> None:
        i = self._index
        with self._lock:
            self._cells[i] += value
            self._cells[i + 1] = time.time()

    def dec(self, value: float) -> None:
        i = self._index
        with self._lock:
            self._cells[i] -= value
            self._cells[i + 1] = time.time()

    def set(self, value: float) -> None:
        i = self._index
        now = time.time()
        with self._lock:
            self._cells[i] = value
            self._cells[i + 1] = now
            self._cells[i + 2] = now


class FileHistogram:
    """Cells (from ``index``): head version, one count per bucket, the sum, tail version.

    The versions make a seqlock for readers in other processes (see ``_format``); this
    process's threads are kept apart by the lock.
    """

    __slots__ = (
        "_bounds", "_cells", "_head", "_index", "_sum_index", "_tail", "_last", "_lock",
        "_raw", "_book",
    )  # fmt: skip

    def __init__(
        self, cells: memoryview[float], index: int, upper_bounds: tuple[float, ...]
    ) -> None:
        self._raw = b""
        self._book: ExemplarBook | None = None
        self._bounds = upper_bounds
        self._cells = cells
        self._head = index
        self._index = index + 1
        self._sum_index = self._index + len(upper_bounds)
        self._tail = self._sum_index + 1
        self._last = len(upper_bounds) - 1
        self._lock = striped_lock()

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        if bucket == 0 and value != value:
            bucket = self._last
        cells = self._cells
        with self._lock:
            version = cells[self._head] + 1
            cells[self._tail] = version  # tail first, head last: a seqlock for readers
            cells[self._index + bucket] += 1
            cells[self._sum_index] += value
            cells[self._head] = version

    def keep_exemplars(self, raw: bytes, book: ExemplarBook) -> None:
        self._raw, self._book = raw, book

    def record_exemplar(self, exemplar: Exemplar) -> None:
        if self._book is not None:
            bucket = bisect_left(self._bounds, exemplar.value)
            if bucket == 0 and exemplar.value != exemplar.value:
                bucket = self._last
            self._book.write(self._raw, bucket, exemplar)

    def snapshot(self) -> HistogramData:
        with self._lock:
            counts = self._cells[self._index : self._sum_index].tolist()
            total = self._cells[self._sum_index]
        return HistogramData(self._bounds, counts, total)


class FileNativeHistogram(FileHistogram):
    """A histogram with a native part, kept in a block of its own in this process's file.

    The block's layout is ``_native_block``'s. The writer stores the tail version first, then
    the classic cells and the block, and the head version last; a reader takes a copy only when
    both versions match (``_snapshot`` re-reads otherwise). A new bucket is appended; past
    ``max_buckets`` the histogram restarts from that observation (classic counts, sum and native
    part, counting one more restart) if ``reset_seconds`` (> 0) have passed by ``clock`` since the
    last restart or since it was created, else the schema is lowered and the block rewritten, as
    the memory backend does. Past the room of the block (with no limit) the schema is lowered.
    Exemplars are this process's latest ones and stay.
    """

    __slots__ = (
        "_block", "_at", "_block_tail", "_slots", "_schema", "_threshold", "_limit", "_initial",
        "_reset",
    )  # fmt: skip

    def __init__(
        self,
        cells: memoryview[float],
        index: int,
        upper_bounds: tuple[float, ...],
        block: memoryview[float],
        at: int,
        schema: int,
        zero_threshold: float,
        max_buckets: int,
        reset_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(cells, index, upper_bounds)
        room = native_block.room_for(max_buckets)
        self._block = block
        self._at = at
        self._block_tail = at + native_block.block_cells(room) + native_block.TAIL
        self._limit = max_buckets or room
        self._slots: dict[int, int] = {}  # bucket code -> the cell of its count
        self._schema = schema
        self._threshold = zero_threshold
        self._initial = (schema, zero_threshold)
        # with no bucket limit the histogram never overflows, so it never restarts
        self._reset = ResetTimer(reset_seconds if max_buckets else 0.0, clock)
        existing = None
        if block[at]:  # a block this process wrote before: the series is bound again
            existing = decode_cells(block[at + PAYLOAD : self._block_tail].tolist())
        with self._lock:
            self._write(existing or NativeHistogram(schema, zero_threshold))

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        if bucket == 0 and value != value:
            bucket = self._last
        with self._lock:
            block, at = self._block, self._at
            version = block[at] + 1
            block[self._block_tail] = version  # tail first: the classic cells are in the window
            cells = self._cells
            classic = cells[self._head] + 1
            cells[self._tail] = classic
            cells[self._index + bucket] += 1
            cells[self._sum_index] += value
            cells[self._head] = classic
            block[at + COUNT] += 1
            block[at + SUM] += value
            if value > self._threshold:
                code = 2 * bucket_index(value, self._schema)
            elif value < -self._threshold:
                code = 2 * bucket_index(value, self._schema) + 1
            else:
                if value == value:  # NaN: in count and sum only
                    block[at + ZERO_COUNT] += 1
                block[at] = version
                return
            slot = self._slots.get(code)
            if slot is not None:
                block[slot] += 1
            else:
                self._new_bucket(code, bucket, value)
            block[at] = version  # head last: the block is whole again

    def _new_bucket(self, code: int, bucket: int, value: float) -> None:
        """Count ``value`` in a bucket the block does not hold yet (the lock is held)."""
        used = len(self._slots)
        if used < self._limit:
            pair = self._at + PAIRS + 2 * used
            self._block[pair] = code
            self._block[pair + 1] = 1
            self._slots[code] = pair + 1
            self._block[self._at + USED] = used + 1
            return
        if self._reset.due():
            self._restart(bucket, value)
            return
        histogram = self._decode()  # count and sum already include this observation
        buckets = histogram.negative if code & 1 else histogram.positive
        buckets[code >> 1] = buckets.get(code >> 1, 0) + 1
        histogram.limit_buckets(self._limit)
        self._write(histogram)

    def _restart(self, bucket: int, value: float) -> None:
        """Start this process's histogram again from ``value`` alone (in ``observe``'s window)."""
        # before any head store: a scrape that sees restarts re-reads (_directory._read_process)
        self._block[self._block_tail + 1 + native_block.RESTARTS] += 1
        cells, first = self._cells, self._index
        classic = cells[self._head] + 1
        cells[self._tail] = classic
        cells[first : self._sum_index] = array.array("d", bytes(8 * (self._sum_index - first)))
        cells[first + bucket] = 1
        cells[self._sum_index] = value
        cells[self._head] = classic
        histogram = NativeHistogram(*self._initial)
        histogram.observe(value)
        self._write(histogram)

    def _decode(self) -> NativeHistogram:
        return native_block.decode_used(self._block, self._at, len(self._slots))

    def _write(self, histogram: NativeHistogram) -> None:
        """Rewrite the whole block (under the lock) with ``histogram``."""
        self._slots = native_block.write(self._block, self._at, self._block_tail, histogram)
        self._schema = histogram.schema
        self._threshold = histogram.zero_threshold

    def snapshot(self) -> HistogramData:
        with self._lock:
            counts = self._cells[self._index : self._sum_index].tolist()
            total = self._cells[self._sum_index]
            native = self._decode()
        return HistogramData(self._bounds, counts, total, None, native)


class FileSummary:
    """Cells (from ``index``): head version, count, sum, tail version (see FileHistogram)."""

    __slots__ = ("_cells", "_index", "_lock")

    def __init__(self, cells: memoryview[float], index: int) -> None:
        self._cells = cells
        self._index = index
        self._lock = striped_lock()

    def observe(self, value: float) -> None:
        i = self._index
        cells = self._cells
        with self._lock:
            version = cells[i] + 1
            cells[i + 3] = version
            cells[i + 1] += 1
            cells[i + 2] += value
            cells[i] = version

    def snapshot(self) -> SummaryData:
        with self._lock:
            return SummaryData(self._cells[self._index + 1], self._cells[self._index + 2])


# (cells needed) -> the cells of a block with room for at least that many, and its first index
BlockAllocator = Callable[[int], "tuple[memoryview[float], int, int]"]


class FileQuantileSummary(FileSummary):
    """A summary with quantiles: count and sum in cells (exact at every moment, as
    :class:`FileSummary`), and this process's sliding window of observations, kept in memory
    and published to a block of this process's file by :meth:`publish` (the store's publisher
    thread calls it every ``publish_interval``, a scrape in this process and the end of the
    process too), where every process's scrape merges the windows of all.

    Block cells (from ``at``, ``room`` of them): head version | length | the window's
    ``SlidingQuantiles.to_floats()`` | ... | tail version. The writer stores the tail version
    first and the head version last, as for every versioned value. A window that outgrows its
    block moves to a new block twice as large (``allocate``); the old one is left empty.
    """

    __slots__ = ("_window", "_published", "_allocate", "_block", "_at", "_room", "_clock")

    def __init__(
        self,
        cells: memoryview[float],
        index: int,
        window: SlidingQuantiles,
        allocate: BlockAllocator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(cells, index)
        self._window = window
        self._published = -1.0  # the count cell when the window was last written
        self._allocate = allocate
        self._block: memoryview[float] | None = None
        self._at = 0
        self._room = 0
        self._clock = clock

    def observe(self, value: float) -> None:
        i = self._index
        cells = self._cells
        now = self._clock()
        with self._lock:
            version = cells[i] + 1
            cells[i + 3] = version
            cells[i + 1] += 1
            cells[i + 2] += value
            cells[i] = version
            self._window.observe(value, now)  # the window's clock never goes back

    def publish(self) -> None:
        """Write the window to this process's file if it changed since it was last written."""
        with self._lock:
            count = self._cells[self._index + 1]
            if count == self._published:
                return
            self._published = count
            floats = self._window.to_floats()
            if self._block is None or len(floats) + 3 > self._room:
                self._move(len(floats) + 3)
            block, at = self._block, self._at
            assert block is not None
            tail = at + self._room - 1
            version = block[at] + 1
            block[tail] = version
            block[at + 1] = len(floats)
            block[at + 2 : at + 2 + len(floats)] = array.array("d", floats)
            block[at] = version

    def _move(self, needed: int) -> None:
        """A block with room for ``needed`` cells; the old one, if any, left empty."""
        old, old_at, old_room = self._block, self._at, self._room
        self._block, self._at, self._room = self._allocate(needed)
        if old is not None:
            version = old[old_at] + 1
            old[old_at + old_room - 1] = version
            old[old_at + 1] = 0
            old[old_at] = version
