"""Value objects of the shared-file backend: cells in this process's mapped segment.

Only the owning process writes its cells, so the lock is a thread lock: no lock is shared
between processes and no system call is made per operation.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Callable
from threading import Lock

from pytheus.backends.file._format import EXEMPLAR_PAYLOAD_CELLS
from pytheus.samples import Exemplar, HistogramData, SummaryData

# (bucket) -> the cells of a new exemplar slot for that bucket, and the slot's first index
SlotAllocator = Callable[[int], "tuple[memoryview[float], int]"]


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
    __slots__ = ("_cells", "_index", "_lock", "exemplars")

    def __init__(self, cells: memoryview[float], index: int) -> None:
        self._cells = cells
        self._index = index
        self._lock = Lock()
        self.exemplars: ExemplarSlots | None = None

    def record_exemplar(self, exemplar: Exemplar) -> None:
        if self.exemplars is not None:
            self.exemplars.write(0, exemplar)

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
    """Cells: one count per bucket, then the sum."""

    __slots__ = ("_bounds", "_cells", "_index", "_sum_index", "_last", "_lock", "exemplars")

    def __init__(
        self, cells: memoryview[float], index: int, upper_bounds: tuple[float, ...]
    ) -> None:
        self.exemplars: ExemplarSlots | None = None
        self._bounds = upper_bounds
        self._cells = cells
        self._index = index
        self._sum_index = index + len(upper_bounds)
        self._last = len(upper_bounds) - 1
        self._lock = Lock()

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        if bucket == 0 and value != value:
            bucket = self._last
        with self._lock:
            self._cells[self._index + bucket] += 1
            self._cells[self._sum_index] += value

    def record_exemplar(self, exemplar: Exemplar) -> None:
        if self.exemplars is not None:
            bucket = bisect_left(self._bounds, exemplar.value)
            if bucket == 0 and exemplar.value != exemplar.value:
                bucket = self._last
            self.exemplars.write(bucket, exemplar)

    def snapshot(self) -> HistogramData:
        with self._lock:
            counts = self._cells[self._index : self._sum_index].tolist()
            total = self._cells[self._sum_index]
        return HistogramData(self._bounds, counts, total)


class FileSummary:
    """Cells: count, sum."""

    __slots__ = ("_cells", "_index", "_lock")

    def __init__(self, cells: memoryview[float], index: int) -> None:
        self._cells = cells
        self._index = index
        self._lock = Lock()

    def observe(self, value: float) -> None:
        i = self._index
        with self._lock:
            self._cells[i] += 1
            self._cells[i + 1] += value

    def snapshot(self) -> SummaryData:
        with self._lock:
            return SummaryData(self._cells[self._index], self._cells[self._index + 1])
