"""Value objects of the Redis backend: plain memory on the hot path.

Each value adds to a pending amount under a thread lock, like the single-process backend; the
flusher takes the pending amounts and writes them to Redis in batches. ``get`` and ``snapshot``
report this process's own contribution (flushed and pending).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from threading import Lock

from pytheus.samples import Exemplar, HistogramData, SummaryData

Op = tuple[str, str, str]  # ("i" increment | "s" set, field, value)


def _num(value: float) -> str:
    return repr(float(value))


def encode_exemplar(exemplar: Exemplar) -> str:
    return json.dumps([exemplar.labels, exemplar.value, exemplar.timestamp], ensure_ascii=False)


def decode_exemplar(raw: str) -> Exemplar:
    labels, value, timestamp = json.loads(raw)
    return Exemplar(labels, float(value), timestamp)


class RedisCounter:
    __slots__ = ("_lock", "_pending", "_total", "exemplar", "_exemplar_sent")

    def __init__(self) -> None:
        self._lock = Lock()
        self._pending = 0.0
        self._total = 0.0  # everything already taken into batches
        self.exemplar: Exemplar | None = None
        self._exemplar_sent: Exemplar | None = None

    def record_exemplar(self, exemplar: Exemplar) -> None:
        self.exemplar = exemplar

    def _exemplar_ops(self, always: bool = False) -> list[Op]:
        exemplar = self.exemplar
        if exemplar is None or (exemplar is self._exemplar_sent and not always):
            return []
        self._exemplar_sent = exemplar
        return [("s", "e", encode_exemplar(exemplar))]

    def inc(self, value: float) -> None:
        with self._lock:
            self._pending += value

    def dec(self, value: float) -> None:
        with self._lock:
            self._pending -= value

    def set(self, value: float) -> None:
        with self._lock:
            self._pending = value - self._total

    def get(self) -> float:
        with self._lock:
            return self._total + self._pending

    def take(self) -> list[Op]:
        with self._lock:
            delta, self._pending = self._pending, 0.0
            self._total += delta
        return ([("i", "v", _num(delta))] if delta else []) + self._exemplar_ops()

    def totals(self) -> list[Op]:
        with self._lock:
            ops = [("i", "v", _num(self._total))] if self._total else []
        return ops + self._exemplar_ops(always=True)


class RedisGauge:
    """This process's own gauge value, written whole (it is one field of the series' hash)."""

    __slots__ = ("_lock", "_value", "_written", "_set", "_version", "_flushed", "field")

    def __init__(self, field: str) -> None:
        self._lock = Lock()
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

    def dec(self, value: float) -> None:
        self.inc(-value)

    def set(self, value: float) -> None:
        now = time.time()
        with self._lock:
            self._value = value
            self._written = self._set = now
            self._version += 1

    def get(self) -> float:
        with self._lock:
            return self._value

    def _op(self) -> Op:
        return ("s", self.field, f"{_num(self._value)},{_num(self._written)},{_num(self._set)}")

    def take(self) -> list[Op]:
        with self._lock:
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
        "_exemplars", "_exemplars_dirty",
    )  # fmt: skip

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        self._bounds = upper_bounds
        self._last = len(upper_bounds) - 1
        self._lock = Lock()
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

    def _exemplar_ops(self, buckets: set[int] | range) -> list[Op]:
        return [
            ("s", f"e{i}", encode_exemplar(exemplar))
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

    def snapshot(self) -> HistogramData:
        with self._lock:
            counts = [t + p for t, p in zip(self._total, self._pending)]
            total = self._total_sum + self._pending_sum
            return HistogramData(self._bounds, counts, total, list(self._exemplars))

    def take(self) -> list[Op]:
        with self._lock:
            pending, self._pending = self._pending, [0] * len(self._bounds)
            pending_sum, self._pending_sum = self._pending_sum, 0.0
            for i, count in enumerate(pending):
                self._total[i] += count
            self._total_sum += pending_sum
            dirty, self._exemplars_dirty = self._exemplars_dirty, set()
            exemplar_ops = self._exemplar_ops(dirty)
        ops = [("i", f"b{i}", str(count)) for i, count in enumerate(pending) if count]
        if ops or pending_sum:
            ops.append(("i", "sum", _num(pending_sum)))
        return ops + exemplar_ops

    def totals(self) -> list[Op]:
        with self._lock:
            ops = [("i", f"b{i}", str(count)) for i, count in enumerate(self._total) if count]
            if not ops:
                return []
            exemplar_ops = self._exemplar_ops(range(len(self._bounds)))
            return [*ops, ("i", "sum", _num(self._total_sum)), *exemplar_ops]


class RedisSummary:
    __slots__ = ("_lock", "_pending_count", "_pending_sum", "_count", "_sum")

    def __init__(self) -> None:
        self._lock = Lock()
        self._pending_count = 0
        self._pending_sum = 0.0
        self._count = 0
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._pending_count += 1
            self._pending_sum += value

    def snapshot(self) -> SummaryData:
        with self._lock:
            return SummaryData(self._count + self._pending_count, self._sum + self._pending_sum)

    def take(self) -> list[Op]:
        with self._lock:
            count, self._pending_count = self._pending_count, 0
            total, self._pending_sum = self._pending_sum, 0.0
            self._count += count
            self._sum += total
        return [("i", "count", str(count)), ("i", "sum", _num(total))] if count else []

    def totals(self) -> list[Op]:
        with self._lock:
            if not self._count:
                return []
            return [("i", "count", str(self._count)), ("i", "sum", _num(self._sum))]
