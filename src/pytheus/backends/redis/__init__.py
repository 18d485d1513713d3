"""The Redis backend: processes on many machines aggregate through one Redis (or Valkey).

Operations add to memory in the process; a background thread writes them to Redis in one
atomic, idempotent batch every ``flush_interval`` seconds (default 1), at exit, and right before
this process scrapes. A scrape reads the whole namespace with one script call, however many
series there are. If Redis is down, recording goes on in memory and the values are written once
it is back; a scrape raises :class:`BackendUnavailableException` (serve it as HTTP 503).

Example::

    from pytheus.backends import load_backend
    from pytheus.backends.redis import MultiProcessRedisBackend

    load_backend(MultiProcessRedisBackend, {"host": "127.0.0.1", "port": 6379, "namespace": "shop"})

Options: ``url`` (``redis://``, ``rediss://``, ``unix://``) or ``host``/``port``/``db``/
``username``/``password`` and any other redis-py connection option; ``namespace``;
``expire_key_time`` (seconds, default 3600); ``flush_interval`` (seconds, default 1; 0 writes
through on every operation); ``max_pending_series`` (default 100000).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from pytheus.backends.aggregation import Key, merge_into, merge_key
from pytheus.backends.base import BackendConfig, current_store, rebind_all_values
from pytheus.backends.redis._config import RedisOptions
from pytheus.backends.redis._flusher import Flusher
from pytheus.backends.redis._scripts import SCRAPE
from pytheus.backends.redis._values import (
    RedisCounter,
    RedisGauge,
    RedisHistogram,
    RedisSummary,
    decode_exemplar,
)
from pytheus.backends.store import BoundSeries, StoredFamily, Value
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    LabelSet,
    MetricType,
    Series,
    SeriesValue,
    SummaryData,
)

__all__ = ["MultiProcessRedisBackend", "RedisStore"]

_stores: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _client(options: RedisOptions) -> Any:
    try:
        import redis
    except ImportError:
        raise InvalidBackendConfigException(
            "the Redis backend needs redis-py: pip install 'pytheus[redis]'"
        ) from None
    try:
        if options.url:
            return redis.Redis.from_url(options.url, **options.connection)
        return redis.Redis(**options.connection)
    except (TypeError, ValueError) as error:
        raise InvalidBackendConfigException(f"Redis backend: {error}") from None


class RedisStore:
    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.client = _client(options)
        self.flusher = Flusher(self.client, options)
        self._scrape = self.client.register_script(SCRAPE)
        self._labels: dict[tuple[tuple[str, ...], tuple[str, ...], str | None], LabelSet] = {}
        self._lock = threading.Lock()
        _stores.add(self)

    def check_connection(self) -> None:
        """Fail now on a wrong password or unknown host; only warn when Redis is just down."""
        import redis

        try:
            self.client.ping()
        except redis.AuthenticationError as error:
            raise InvalidBackendConfigException(
                f"Redis at {self.options.address} refused the credentials: {error}"
            ) from None
        except redis.ResponseError as error:
            raise InvalidBackendConfigException(
                f"Redis at {self.options.address}: {error}"
            ) from None
        except redis.ConnectionError as error:
            if isinstance(error.__cause__, socket.gaierror) or "Name or service" in str(error):
                raise InvalidBackendConfigException(
                    f"Redis host of {self.options.address} cannot be resolved: {error}"
                ) from None
            self.flusher._failed(error)

    # --- binding ---------------------------------------------------------------------------

    @staticmethod
    def _identify(metric: BoundSeries) -> tuple[str, str]:
        """``(series id, description)`` of a metric's series."""
        desc = metric._desc
        assert metric._series is not None
        mode = str(desc.option("multiprocess_mode") or "")
        meta = json.dumps(
            [desc.name, desc.type.value, mode, list(desc.label_names), list(metric._series.values),
             list(desc.upper_bounds)],
            separators=(",", ":"), ensure_ascii=False,
        )  # fmt: skip
        return hashlib.sha1(meta.encode()).hexdigest()[:20], meta

    def forget(self, metric: BoundSeries) -> None:
        """``remove()``: the series leaves Redis with the next flush (every process sees it)."""
        sid, _ = self._identify(metric)
        with self._lock:
            self.flusher.remove(sid)
        if self.options.flush_interval == 0 and self.flusher.healthy:
            self.flusher.flush()

    def bind(self, metric: BoundSeries) -> Value:
        desc = metric._desc
        sid, meta = self._identify(metric)
        with self._lock:
            existing = self.flusher.value_of(sid)
            if existing is not None:
                return existing  # type: ignore[return-value]
            value: Any
            if desc.type is MetricType.HISTOGRAM:
                value = RedisHistogram(desc.upper_bounds)
            elif desc.type is MetricType.SUMMARY:
                value = RedisSummary()
            elif desc.type is MetricType.GAUGE:
                value = RedisGauge(self.flusher.process)
            else:
                value = RedisCounter()
            self.flusher.register(sid, meta, value)
        if self.options.flush_interval == 0:
            return _WriteThrough(value, self.flusher)
        return value  # type: ignore[no-any-return]

    # --- reading ---------------------------------------------------------------------------

    def read(self, families: Sequence[StoredFamily]) -> list[list[Series]]:
        for family in families:
            for _ in family.local_values():
                pass
        self.flusher.flush()
        try:
            reply = self._scrape(args=[self.options.base])
        except Exception as error:
            raise BackendUnavailableException(
                f"Redis at {self.options.address} cannot be read: {error}"
            ) from None
        table: dict[Key, list[float]] = {}
        exemplars: dict[Key, dict[str, str]] = {}
        for raw_meta, raw_fields in zip(reply[0::2], reply[1::2]):
            self._merge_series(table, exemplars, raw_meta, raw_fields)
        by_name: dict[str, list[tuple[Key, list[float]]]] = {}
        for key, cells in table.items():
            by_name.setdefault(key[0], []).append((key, cells))
        return [self._series(f, by_name.get(f.desc.name, []), exemplars) for f in families]

    def _merge_series(
        self,
        table: dict[Key, list[float]],
        exemplars: dict[Key, dict[str, str]],
        raw_meta: bytes,
        raw_fields: list[bytes],
    ) -> None:
        name, metric_type, mode, names, values, bounds = json.loads(raw_meta)
        key: Key = (name, metric_type, mode, tuple(names), tuple(values), tuple(bounds), None)
        fields = {
            raw_fields[i].decode(): raw_fields[i + 1].decode() for i in range(0, len(raw_fields), 2)
        }
        if metric_type in ("counter", "histogram"):
            found = {f: v for f, v in fields.items() if f.startswith("e")}
            if found:
                exemplars[key] = found
        if metric_type == "gauge":
            for field, raw in fields.items():
                cells = [float(x) for x in raw.split(",")]
                pid = None if field == "_a" else field.rsplit(":", 1)[0]
                merge_into(table, merge_key(key, pid), cells)
        elif metric_type == "histogram":
            cells = [float(fields.get(f"b{i}", 0)) for i in range(len(bounds))]
            merge_into(table, key, [*cells, float(fields.get("sum", 0))])
        elif metric_type == "summary":
            merge_into(table, key, [float(fields.get("count", 0)), float(fields.get("sum", 0))])
        else:
            merge_into(table, key, [float(fields.get("v", 0))])

    def _series(
        self,
        family: StoredFamily,
        entries: list[tuple[Key, list[float]]],
        exemplars: dict[Key, dict[str, str]],
    ) -> list[Series]:
        desc = family.desc
        mode = str(desc.option("multiprocess_mode") or "")
        series: list[Series] = []
        seen: set[tuple[str, ...]] = set()
        for key, cells in entries:
            if key[1] != desc.type.value or key[2] != mode or key[3] != desc.label_names:
                continue
            if key[5] != desc.upper_bounds:
                continue
            seen.add(key[4])
            data = _series_value(desc.type, desc.upper_bounds, cells)
            if key in exemplars:
                data = _with_exemplars(data, exemplars[key])
            series.append((self._label_set(key), data))
        if not (desc.type is MetricType.GAUGE and mode in ("all", "liveall")):
            for labels, _ in family.local_values():  # ours, never flushed: zero from creation
                if labels.values not in seen:
                    series.append((labels, _series_value(desc.type, desc.upper_bounds, [])))
        return series

    def _label_set(self, key: Key) -> LabelSet:
        names, values, pid = key[3], key[4], key[6]
        cache_key = (names, values, pid)
        labels = self._labels.get(cache_key)
        if labels is None:
            if pid is None:
                labels = LabelSet(names, values)
            else:
                labels = LabelSet((*names, "pid"), (*values, str(pid)))
            self._labels[cache_key] = labels
        return labels

    def close(self) -> None:
        """Flush once more and stop the background thread (the backend was replaced)."""
        self.flusher.close()

    def after_fork(self) -> None:
        self.client = _client(self.options)
        self.flusher = Flusher(self.client, self.options)
        self._scrape = self.client.register_script(SCRAPE)
        self._lock = threading.Lock()


def _series_value(
    metric_type: MetricType, bounds: tuple[float, ...], cells: list[float]
) -> SeriesValue:
    if metric_type is MetricType.HISTOGRAM:
        cells = cells or [0.0] * (len(bounds) + 1)
        return HistogramData(bounds, cells[:-1], cells[-1])
    if metric_type is MetricType.SUMMARY:
        cells = cells or [0.0, 0.0]
        return SummaryData(cells[0], cells[1])
    return cells[0] if cells else 0.0


def _with_exemplars(data: SeriesValue, fields: dict[str, str]) -> SeriesValue:
    if isinstance(data, HistogramData):
        found: list[Exemplar | None] = [None] * len(data.upper_bounds)
        for field, raw in fields.items():
            index = int(field[1:])
            if index < len(found):
                found[index] = decode_exemplar(raw)
        data.exemplars = found
        return data
    if isinstance(data, float) and "e" in fields:
        return CounterData(data, decode_exemplar(fields["e"]))
    return data


class _WriteThrough:
    """``flush_interval=0``: every operation is written before it returns (while Redis is up)."""

    __slots__ = ("_value", "_flusher")

    def __init__(self, value: Any, flusher: Flusher) -> None:
        self._value = value
        self._flusher = flusher

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._value, name)
        if name not in ("inc", "dec", "set", "observe"):
            return attribute

        def write_through(amount: float) -> None:
            attribute(amount)
            if self._flusher.healthy:  # when Redis is down, the background thread retries
                self._flusher.flush()

        return write_through


def _after_fork_in_child() -> None:
    for store in list(_stores):
        store.after_fork()
    rebind_all_values()


os.register_at_fork(after_in_child=_after_fork_in_child)


class MultiProcessRedisBackend:
    """Load with ``load_backend(MultiProcessRedisBackend, {...})``; see the module docs."""

    def __init__(self, config: BackendConfig, metric: Any, histogram_bucket: str | None = None):
        raise TypeError("MultiProcessRedisBackend stores whole series; load it with load_backend")

    @classmethod
    def _initialize(cls, config: BackendConfig) -> None:
        RedisOptions.from_config(config)

    @classmethod
    def _make_store(cls, config: BackendConfig) -> RedisStore:
        store = RedisStore(RedisOptions.from_config(config))
        store.check_connection()
        return store


def wait_for_flush(timeout: float = 5.0) -> bool:
    """Flush the Redis backend in force now, retrying until ``timeout``; True once acknowledged.

    Handy at the end of a batch job, or in tests.
    """
    store = current_store()
    if not isinstance(store, RedisStore):
        return True
    deadline = time.monotonic() + timeout
    while not store.flusher.flush():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
