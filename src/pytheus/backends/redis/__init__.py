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
``username``/``password`` and any other redis-py connection option, or, behind Sentinel,
``sentinels`` (``[[host, port], ...]``), ``service_name`` and ``sentinel_kwargs`` (the
sentinels' own connection options) with the master's connection options, or, on a Redis
Cluster, ``cluster: true`` with the URL of a node, or ``startup_nodes`` (``[[host, port],
...]``); ``namespace``;
``expire_key_time`` (seconds, default 3600); ``flush_interval`` (seconds, default 1; 0 writes
through on every operation); ``max_pending_series`` (default 100000); ``exit_timeout``
(seconds, default 5: how long a process that ends waits for Redis to take its last values).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pytheus.backends.aggregation import (
    PER_PROCESS_MODES,
    Family,
    LabelSets,
    SeriesKey,
    family_of,
    merge_into,
    merge_key,
    series_value,
    with_exemplars,
)
from pytheus.backends.base import BackendConfig, current_store
from pytheus.backends.descriptions import StoredDescription
from pytheus.backends.listing import exported_families
from pytheus.backends.multiprocess import StoreBackend, start_over_after_fork
from pytheus.backends.process_end import at_process_end
from pytheus.backends.redis._config import RedisOptions
from pytheus.backends.redis._descriptions import DescriptionBoard
from pytheus.backends.redis._descriptions import read as read_descriptions
from pytheus.backends.redis._flusher import Flusher
from pytheus.backends.redis._protocol import Row, ScrapeReply, parse_window, scrape_args
from pytheus.backends.redis._scripts import SCRAPE
from pytheus.backends.redis._values import (
    RedisCounter,
    RedisGauge,
    RedisHistogram,
    RedisNativeHistogram,
    RedisQuantileSummary,
    RedisSummary,
    decode_exemplar,
)
from pytheus.backends.store import (
    BaseStore,
    BoundSeries,
    StoredFamily,
    Value,
    empty_native,
    summary_window,
)
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.native import NativeHistogram, decode_cells
from pytheus.quantiles import SlidingQuantiles, window_quantiles
from pytheus.samples import (
    Exemplar,
    HistogramData,
    LabelSet,
    MetricFamily,
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
    client: Any
    try:
        if options.cluster:
            return _ClusterClient(options)
        if options.sentinels:
            from redis.sentinel import Sentinel

            sentinel = Sentinel(
                options.sentinels,
                sentinel_kwargs={**_TIMEOUTS, **options.sentinel_kwargs},
                **options.connection,
            )
            client = sentinel.master_for(options.service_name, **options.connection)
        elif options.url:
            client = redis.Redis.from_url(options.url, **options.connection)
        else:
            client = redis.Redis(**options.connection)
        # redis-py passes the options on to a connection only when it makes one: make one now
        # (it connects on first use, not here), so that a misspelt option is refused at load
        client.connection_pool.make_connection().disconnect()
    except (TypeError, ValueError) as error:
        raise InvalidBackendConfigException(f"Redis backend: {_option_error(error)}") from None
    return client


class _ClusterClient:
    """A ``RedisCluster``, made on first use and again after a failure to make one.

    ``RedisCluster()`` connects at once (to learn the slots), and a backend must load, and
    record, while Redis is down. Attributes are the cluster client's; calls raise as its calls
    do (``RedisClusterException`` while no node answers), and the flusher retries them.
    """

    def __init__(self, options: RedisOptions) -> None:
        import redis

        unknown = set(options.connection) - _cluster_options()
        if unknown:
            raise TypeError(f"__init__() got an unexpected keyword argument '{min(unknown)}'")
        self._options = options
        self._client: Any = None
        self._lock = threading.Lock()
        self._encoder = redis.Redis().get_encoder()  # redis-py's default (no connection made)

    def _make(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        options = self._options
        connection = {k: v for k, v in options.connection.items() if k != "db"}  # 0, checked
        if options.startup_nodes:
            nodes = [ClusterNode(host, port) for host, port in options.startup_nodes]  # type: ignore[no-untyped-call]
            return RedisCluster(startup_nodes=nodes, **connection)
        if options.url:
            return RedisCluster.from_url(options.url, **connection)
        return RedisCluster(**connection)

    def get_encoder(self) -> Any:
        return self._encoder

    def register_script(self, script: str) -> Any:
        from redis.commands.core import Script

        return Script(self, script)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return getattr(client, name)


def _cluster_options() -> frozenset[str]:
    import inspect

    from redis.cluster import REDIS_ALLOWED_KEYS, RedisCluster

    own = inspect.signature(RedisCluster.__init__).parameters
    return frozenset(REDIS_ALLOWED_KEYS) | {name for name in own if name not in ("self", "kwargs")}


# the sentinels' own timeouts, unless sentinel_kwargs says otherwise
_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def _option_error(error: Exception) -> str:
    """An option error as users can act on it: the option named, not redis-py's internals."""
    found = re.search(r"unexpected keyword argument '([^']+)'", str(error))
    if found:
        return (
            f"unknown option {found[1]!r} (neither a pytheus option nor one of redis-py's "
            "connection options)"
        )
    return str(error)


def _certificate_refused(error: Exception) -> bool:
    """Whether a connection failed because this end refused the server's TLS certificate: a
    configuration to fix, not an outage to ride out."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


class RedisStore(BaseStore):
    """Binds series to values that flush to Redis; reads the namespace with one script call.

    ``clock`` is the monotonic clock that native histograms measure ``native_reset_seconds``
    with, ``wall_clock`` the clock of summaries' quantile windows (shared by every process);
    values bound after they are replaced use the new ones (tests move time forward with them).
    """

    def __init__(self, options: RedisOptions) -> None:
        self.clock: Callable[[], float] = time.monotonic
        self.wall_clock: Callable[[], float] = time.time
        self.options = options
        self.client = _client(options)
        self.board = DescriptionBoard(self.client, options.base, options.expire_key_time)
        self.flusher = self._new_flusher()
        self._scrape = self.client.register_script(SCRAPE)
        self._server = ""  # the run_id of the server of the last scrape, and its processes
        self._processes: list[str] = []
        self._label_sets = LabelSets()
        self._descriptions: dict[str, tuple[SeriesKey, Family]] = {}
        # a series id -> its family and label set: what a scrape needs of it, kept (its key's
        # decoded label values are not: the label set may be the metric's own, see read)
        self._series_ids: dict[str, tuple[Family, LabelSet]] = {}
        self._families: dict[Family, Family] = {}  # one copy of each (see _describe)
        self._lock = threading.Lock()
        _stores.add(self)
        at_process_end(_flush_at_process_end)

    def _new_flusher(self) -> Flusher:
        flusher = Flusher(self.client, self.options)
        flusher.on_flushed = self.board.publish
        flusher.on_lost = self.board.lost
        return flusher

    def descriptions(self) -> list[StoredDescription]:
        """The family descriptions of the namespace (for ``pytheus serve``)."""
        return read_descriptions(self.client, self.options.base)

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
        except (redis.ConnectionError, redis.RedisClusterException) as error:
            if isinstance(error.__cause__, socket.gaierror) or "Name or service" in str(error):
                raise InvalidBackendConfigException(
                    f"Redis host of {self.options.address} cannot be resolved: {error}"
                ) from None
            if _certificate_refused(error):
                raise InvalidBackendConfigException(
                    f"Redis at {self.options.address}: its TLS certificate was refused ({error});"
                    " check ssl_ca_certs (the CA that signed it) and the host name"
                ) from None
            self.flusher._failed(error)

    # --- binding ---------------------------------------------------------------------------

    @staticmethod
    def _identify(metric: BoundSeries) -> tuple[str, str]:
        """``(series id, description)`` of a metric's series."""
        assert metric._series is not None
        key = SeriesKey.in_family(family_of(metric._desc), metric._series.values)
        meta = json.dumps(key.to_list(), separators=(",", ":"), ensure_ascii=False)
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
        self.board.add(desc)
        sid, meta = self._identify(metric)
        with self._lock:
            existing = self.flusher.value_of(sid)
            if existing is not None:
                return existing  # type: ignore[return-value]
            value: Any
            queue = self.flusher.queue
            if desc.type is MetricType.HISTOGRAM and desc.option("native"):
                value = RedisNativeHistogram(
                    desc.upper_bounds, queue, self.flusher.process,
                    desc.option("native_schema"),  # type: ignore[arg-type]
                    desc.option("native_zero_threshold"),  # type: ignore[arg-type]
                    desc.option("native_max_buckets"),  # type: ignore[arg-type]
                    desc.option("native_reset_seconds"),  # type: ignore[arg-type]
                    self.clock,
                )  # fmt: skip
            elif desc.type is MetricType.HISTOGRAM:
                value = RedisHistogram(desc.upper_bounds, queue)
            elif desc.type is MetricType.SUMMARY:
                window = summary_window(desc)
                if window is None:
                    value = RedisSummary(queue)
                else:
                    value = RedisQuantileSummary(queue, window, self.wall_clock)
            elif desc.type is MetricType.GAUGE:
                value = RedisGauge(self.flusher.process, queue)
            else:
                value = RedisCounter(queue)
            self.flusher.register(sid, meta, value)
            if isinstance(value, RedisGauge):
                value.publish()
        if self.options.flush_interval == 0:
            return _WriteThrough(value, self.flusher)
        return value  # type: ignore[no-any-return]

    # --- reading ---------------------------------------------------------------------------

    def read(self, families: Sequence[StoredFamily]) -> list[list[Series]]:
        own: list[list[LabelSet]] = []  # each family's series of this process
        for family in families:  # defined here but never used: described all the same
            self.board.add(family.desc)
            own.append([labels for labels, _ in family.local_values()])
            for labels in own[-1]:  # one label set for the metric and the store
                self._label_sets.adopt(labels)
        reading = self._read_namespace()
        return [self._series(family, reading, ours) for family, ours in zip(families, own)]

    def families(self) -> list[MetricFamily]:
        """Everything the namespace holds, from one scrape of it (``pytheus serve``)."""
        reading = self._read_namespace()
        try:
            held = self.descriptions()
        except Exception as error:
            raise BackendUnavailableException(
                f"Redis at {self.options.address} cannot be read: {error}"
            ) from None
        counts = {family: len(series) for family, series in reading.found.items()}
        output = []
        for family in exported_families(counts, held):
            output.append(family.served(self._series(family.storage or family, reading)))
        return output

    def _read_namespace(self) -> _Reading:
        """Flush, then read the whole namespace with one script call, and merge what it holds."""
        self.flusher.flush()
        try:
            reply = ScrapeReply.parse(self._scrape(
                keys=[self.options.key],
                args=scrape_args(self.options.base, self.options.expire_key_time,
                                 self.flusher.heartbeat_ttl, self._server, self._processes),
            ))  # fmt: skip
        except Exception as error:
            raise BackendUnavailableException(
                f"Redis at {self.options.address} cannot be read: {error}"
            ) from None
        # what a server that comes back empty cannot tell: that it did, and whom to wait for
        self._server, self._processes = reply.server, reply.processes
        if reply.recovering:
            raise BackendUnavailableException(
                f"Redis at {self.options.address} lost data, or may have (it restarted, or a "
                "failover promoted a replica); waiting for every process to write its metrics "
                "again"
            )
        reading = _Reading(reply.descriptions, self.wall_clock())
        self._merge_cells(reading, reply.cells, reply.exemplars)
        self._merge_gauges(reading, reply.gauges)
        for (key, family), fields in self._described_rows(reply.natives, reading.metas):
            parts = [decode_cells([float(x) for x in raw.split()]) for raw in fields[1::2]]
            kept = [part for part in parts if part is not None]
            if kept:
                reading.natives[(family, key.label_values)] = kept[0].merge(kept[1:])
        for (key, family), fields in self._described_rows(reply.windows, reading.metas):
            window = parse_window(fields)
            if window is not None:
                reading.windows[(family, key.label_values)] = window
        return reading

    def _merge_cells(
        self, reading: _Reading, cells: dict[str, str], exemplar_fields: dict[str, str]
    ) -> None:
        """The counters, histograms and summaries (one field each: summed by the scripts)."""
        exemplars: dict[str, dict[str, str]] = {}
        for field, raw in exemplar_fields.items():
            sid, _, bucket = field.rpartition(":")
            exemplars.setdefault(sid, {})[bucket] = raw
        found = reading.found
        for sid, raw_cells in cells.items():
            known = self._series_ids.get(sid)  # a series id stands for one description
            if known is None:
                meta = reading.metas.get(sid)
                if meta is None:
                    continue
                key, family = _describe(meta, self._families)  # kept here, not by meta
                own = self.flusher.value_of(sid)  # ours: keyed by the flusher's copy of the id
                sid = own.sid if own is not None and own.sid is not None else sid
                known = self._series_ids[sid] = (family, self._label_sets.get(key))
            family, labels = known
            data = _series_data(family, [float(x) for x in raw_cells.split()], exemplars.get(sid))
            found.setdefault(family, []).append((labels, data))

    def _merge_gauges(self, reading: _Reading, gauge_rows: list[Row]) -> None:
        """The gauges: each process's field merged as the gauge's mode says."""
        gauges: dict[SeriesKey, list[float]] = {}
        for (key, _), fields in self._described_rows(gauge_rows, reading.metas):
            for field, raw in zip(fields[0::2], fields[1::2]):
                pid = None if field == "_a" else field.rsplit(":", 1)[0]
                merge_into(gauges, merge_key(key, pid), [float(x) for x in raw.split(",")])
        for key, gauge_cells in gauges.items():
            data = series_value(MetricType.GAUGE, (), gauge_cells)
            reading.found.setdefault(key.family, []).append((self._label_sets.get(key), data))

    def _described_rows(
        self, rows: list[Row], metas: dict[str, str]
    ) -> Iterator[tuple[tuple[SeriesKey, Family], list[str]]]:
        """The rows of a scrape reply part, each with its series' description; rows of series
        the index does not describe are left out."""
        for sid, fields in rows:
            meta = metas.get(sid)
            if meta is not None:
                yield self._describe(meta), fields

    def _describe(self, meta: str) -> tuple[SeriesKey, Family]:
        known = self._descriptions.get(meta)
        if known is None:
            known = self._descriptions[meta] = _describe(meta, self._families)
        return known

    def _series(
        self, family: StoredFamily, reading: _Reading, own: Sequence[LabelSet] = ()
    ) -> list[Series]:
        """The series of ``family`` in ``reading``, and of ``own`` (this process's series of
        it) those never flushed, at zero."""
        desc = family.desc
        ours = family_of(desc)
        series = reading.found.get(ours, [])
        per_process = desc.option("multiprocess_mode") in PER_PROCESS_MODES
        if not (desc.type is MetricType.GAUGE and per_process):
            seen = {labels.values for labels, _ in series}
            for labels in own:  # never flushed: zero from creation
                if labels.values not in seen:
                    series.append((labels, series_value(desc.type, desc.upper_bounds, [])))
        if desc.option("native"):
            for labels, data in series:
                if isinstance(data, HistogramData):
                    native = reading.natives.get((ours, labels.values))
                    data.native = native or empty_native(desc)
        targets: tuple[float, ...] = desc.option("quantiles") or ()  # type: ignore[assignment]
        if targets:
            for labels, data in series:
                if isinstance(data, SummaryData):
                    window = reading.windows.get((ours, labels.values))
                    data.quantiles = window_quantiles(window, targets, reading.now)
        return series

    def close(self) -> None:
        """Flush once more and stop the background thread (the backend was replaced)."""
        self.flusher.close()

    def after_fork(self) -> None:
        self.client = _client(self.options)
        self.board.client = self.client
        self.board.lost()  # this process's flusher publishes them again
        self.flusher = self._new_flusher()
        self._scrape = self.client.register_script(SCRAPE)
        self._lock = threading.Lock()


class _Reading:
    """One scrape of the namespace: the series of each family, the merged native histograms
    and quantile windows of each series, the index of descriptions it came with."""

    def __init__(self, metas: dict[str, str], now: float) -> None:
        self.metas = metas  # series id -> its description (JSON: SeriesKey.to_list)
        self.now = now
        self.found: dict[Family, list[Series]] = {}
        self.natives: dict[tuple[Family, tuple[str, ...]], NativeHistogram] = {}
        self.windows: dict[tuple[Family, tuple[str, ...]], SlidingQuantiles] = {}


def _describe(meta: str, families: dict[Family, Family]) -> tuple[SeriesKey, Family]:
    """The key and family of a series' description; the parts every series of the family has
    alike come from ``families``, one copy for all (a scrape keeps every key)."""
    key = SeriesKey.from_list(json.loads(meta), families)
    return key, families[key.family]


def _series_data(
    family: Family, cells: list[float], exemplars: dict[str, str] | None
) -> SeriesValue:
    """A counter's, histogram's or summary's packed cells as the sample model wants them."""
    _, kind, _, _, bounds = family  # name, type, mode, label names, bounds (aggregation.Family)
    data = series_value(_TYPES.get(kind, MetricType.UNTYPED), bounds, cells)
    return with_exemplars(data, _decoded_exemplars(exemplars)) if exemplars else data


_TYPES = {metric_type.value: metric_type for metric_type in MetricType}


def _decoded_exemplars(fields: dict[str, str]) -> dict[int, Exemplar | None]:
    """A series' exemplars as the scrape reads them, by bucket number (``"0"`` for a counter)."""
    return {int(bucket): decode_exemplar(raw) for bucket, raw in fields.items() if bucket.isdigit()}


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


def _flush_at_process_end(deadline: float) -> None:
    """However this process ends, what it recorded reaches Redis (see ``process_end``)."""
    for store in list(_stores):
        timeout = store.options.exit_timeout
        store.flusher.close(min(deadline, time.monotonic() + timeout))


start_over_after_fork(_stores)


class MultiProcessRedisBackend(StoreBackend):
    """Load with ``load_backend(MultiProcessRedisBackend, {...})``; see the module docs."""

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
