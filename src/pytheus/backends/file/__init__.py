"""The shared-file backend: several processes on one machine, no server to run.

Every process writes its own values into memory-mapped files in a directory that all of them
share; a scrape in any process (or in a separate exporter) reads and combines them. Files of
dead processes are merged into one archive, so the directory and the scrape time track the
living processes, not the restart history.

Example::

    from pytheus.backends import load_backend
    from pytheus.backends.file import MultiProcessFileBackend

    load_backend(MultiProcessFileBackend, {"path": "/run/myapp-metrics"})

or, with no code at all, ``PYTHEUS_MULTIPROC_DIR=/run/myapp-metrics`` in the environment of
every process.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytheus.backends import descriptions
from pytheus.backends.aggregation import (
    Family,
    LabelSets,
    family_of,
    series_value,
    with_exemplars,
)
from pytheus.backends.base import BackendConfig, current_store
from pytheus.backends.descriptions import StoredDescription
from pytheus.backends.file import _native_block as native_block
from pytheus.backends.file._blocks import block_union, native_histogram
from pytheus.backends.file._directory import Exemplars, SharedDirectory
from pytheus.backends.file._format import (
    DESCRIPTION,
    EXEMPLAR,
    EXEMPLAR_CELLS,
    NATIVE,
    QUANTILES,
    SeriesKey,
    decode_key,
    description_key,
    description_of,
    encode_key,
    versioned_size,
)
from pytheus.backends.file._process_file import ProcessFile
from pytheus.backends.file._values import (
    GAUGE_CELLS,
    ExemplarBook,
    FileCounter,
    FileGauge,
    FileHistogram,
    FileNativeHistogram,
    FileQuantileSummary,
    FileSummary,
)
from pytheus.backends.listing import count_families, exported_families
from pytheus.backends.multiprocess import StoreBackend, start_over_after_fork
from pytheus.backends.process_end import arm_watchdog, at_process_end, start_without_sigterm
from pytheus.backends.store import (
    BaseStore,
    BoundSeries,
    StoredFamily,
    Value,
    empty_native,
    summary_window,
)
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.native import NativeHistogram
from pytheus.quantiles import window_quantiles
from pytheus.samples import (
    HistogramData,
    MetricFamily,
    MetricType,
    Series,
    SummaryData,
)

if TYPE_CHECKING:
    from pytheus.desc import MetricDesc

__all__ = ["FileStore", "MultiProcessFileBackend", "mark_process_dead"]

_stores: weakref.WeakSet[FileStore] = weakref.WeakSet()
logger = logging.getLogger("pytheus.backends.file")


class FileStore(BaseStore):
    """Binds series to cells of this process's segments; reads the whole directory.

    ``clock`` is the monotonic clock that native histograms measure ``native_reset_seconds``
    with, ``wall_clock`` the clock of summaries' quantile windows (shared by every process);
    values bound after they are replaced use the new ones (tests move time forward with them).
    ``publish_interval``: how often (seconds) a process publishes the windows of its summaries
    with quantiles for other processes' scrapes (its own scrapes publish first).
    """

    def __init__(
        self,
        path: Path,
        clear_stale: bool = True,
        join_run: bool = True,
        publish_interval: float = 1.0,
    ) -> None:
        self.clock: Callable[[], float] = time.monotonic
        self.wall_clock: Callable[[], float] = time.time
        self.publish_interval = publish_interval
        self._windows: dict[bytes, FileQuantileSummary] = {}
        self._publisher: threading.Thread | None = None
        self._publisher_pid = 0
        self._stop = threading.Event()
        self.path = path
        self.directory = SharedDirectory(path)
        # an exporter that only reads must not keep a run alive, nor start one
        self.run_fd = self.directory.claim_run(clear_stale) if join_run else None
        self._file: ProcessFile | None = None
        self._file_lock = threading.Lock()
        self._label_sets = LabelSets()
        self._described: set[str] = set()  # families whose description this process wrote
        self._exemplars = ExemplarBook(self._exemplar_slot)
        _stores.add(self)

    def _process_file(self) -> ProcessFile:
        process_file = self._file
        if process_file is None:
            with self._file_lock:
                if self._file is None:
                    self._file = ProcessFile(self.path)
                process_file = self._file
        return process_file

    @staticmethod
    def _key(metric: BoundSeries) -> SeriesKey:
        assert metric._series is not None
        return SeriesKey.in_family(family_of(metric._desc), metric._series.values)

    def bind(self, metric: BoundSeries) -> Value:
        desc = metric._desc
        if desc.name not in self._described:
            self._describe(desc)
        key = self._key(metric)
        raw = encode_key(key)
        size = versioned_size(key)
        if desc.type is MetricType.HISTOGRAM:
            assert size is not None
            cells, index = self._process_file().allocate(raw, size)
            histogram = FileHistogram(cells, index, desc.upper_bounds)
            if desc.option("native"):
                histogram = self._native(metric, key, cells, index)
            histogram.keep_exemplars(raw, self._exemplars)
            return histogram
        if desc.type is MetricType.SUMMARY:
            assert size is not None
            cells, index = self._process_file().allocate(raw, size)
            if desc.option("quantiles"):  # a window of its own: see _quantile_summary
                return self._quantile_summary(desc, key, raw, cells, index)
            return FileSummary(cells, index)
        if desc.type is MetricType.GAUGE:
            cells, index = self._process_file().allocate(raw, GAUGE_CELLS)
            return FileGauge(cells, index)
        cells, index = self._process_file().allocate(raw, 1)
        counter = FileCounter(cells, index)
        counter.keep_exemplars(raw, self._exemplars)
        return counter

    def _describe(self, desc: MetricDesc) -> None:
        """Keep the family's description in this process's file (one cell, always 0: merged
        into the archive with the rest when the process ends)."""
        key = description_key(desc.name, descriptions.encode(desc))
        self._process_file().allocate(encode_key(key), 1)
        self._described.add(desc.name)

    def descriptions(self, table: Mapping[SeriesKey, object]) -> list[StoredDescription]:
        """The family descriptions among the entries of ``read_all()``'s table."""
        texts = [description_of(key) for key in table if key.type == DESCRIPTION]
        found = (descriptions.decode(text) for text in texts)
        return [d for d in found if d is not None]

    def _native(
        self, metric: BoundSeries, key: SeriesKey, cells: memoryview[float], index: int
    ) -> FileNativeHistogram:
        desc = metric._desc
        max_buckets: int = desc.option("native_max_buckets")  # type: ignore[assignment]
        native_key = key.entry(NATIVE)
        block, at = self._process_file().allocate(
            encode_key(native_key), native_block.block_cells(native_block.room_for(max_buckets))
        )
        return FileNativeHistogram(
            cells, index, desc.upper_bounds, block, at,
            desc.option("native_schema"),  # type: ignore[arg-type]
            desc.option("native_zero_threshold"),  # type: ignore[arg-type]
            max_buckets,
            desc.option("native_reset_seconds"),  # type: ignore[arg-type]
            self.clock,
        )  # fmt: skip

    def _quantile_summary(
        self, desc: MetricDesc, key: SeriesKey, raw: bytes, cells: memoryview[float], index: int
    ) -> FileQuantileSummary:
        """The series' value; after a removal, the same one, going on with the same window and
        block as the cells go on (the tombstone takes away what they held then)."""
        existing = self._windows.get(raw)
        if existing is not None:
            return existing
        window = summary_window(desc)
        assert window is not None  # a summary with quantiles

        def allocate(needed: int) -> tuple[memoryview[float], int, int]:
            room = 64
            while room < needed:
                room *= 2
            block_key = key.entry(QUANTILES, part=room)
            block, at = self._process_file().allocate(encode_key(block_key), room)
            return block, at, room

        value = FileQuantileSummary(cells, index, window, allocate, self.wall_clock)
        with self._file_lock:
            self._windows[raw] = value
        self._start_publisher()
        return value

    def _start_publisher(self) -> None:
        if self._publisher is not None and self._publisher_pid == os.getpid():
            return
        with self._file_lock:
            if self._publisher is not None and self._publisher_pid == os.getpid():
                return
            self._publisher_pid = os.getpid()
            self._publisher = threading.Thread(
                target=self._publish_periodically, name="pytheus-file-publish", daemon=True
            )
            start_without_sigterm(self._publisher)
        # a window to publish at the end: a SIGTERM must run the callbacks, also when it comes
        # while the main thread blocks in C (a pool worker waiting for its task queue's lock)
        at_process_end(_publish_at_process_end)
        arm_watchdog()

    def _publish_periodically(self) -> None:
        stop = self._stop
        while not stop.wait(self.publish_interval):
            try:
                self.publish()
            except Exception:  # never let the thread die
                logger.exception("pytheus: could not publish summary quantiles")

    def close(self) -> None:
        """Publish once more and stop the publishing thread (the backend was replaced)."""
        self._stop.set()
        if self._publisher_pid == os.getpid():
            self.publish()

    def publish(self) -> None:
        """Write the windows of this process's summaries that changed since last written."""
        with self._file_lock:
            values = list(self._windows.values())
        for value in values:
            value.publish()

    def _exemplar_slot(self, raw: bytes, bucket: int) -> tuple[memoryview[float], int]:
        """A new exemplar slot of the series stored under ``raw``, for ``bucket``."""
        key = decode_key(raw)
        slot_key = key.entry(EXEMPLAR, part=bucket)
        return self._process_file().allocate(encode_key(slot_key), EXEMPLAR_CELLS)

    def living_pids(self) -> list[int]:
        """The pids of the processes that write in the directory now, this one included."""
        return [os.getpid(), *self.directory.living_pids()]

    def forget(self, metric: BoundSeries) -> None:
        """``remove()``: a tombstone hides what the series counted so far, in every process."""
        self.forget_many([metric])

    def forget_many(self, metrics: Sequence[BoundSeries]) -> None:
        """``remove()``, ``clear()``: the tombstones of the series from one reading of the
        directory (a native histogram's two parts among them: they stay in step)."""
        keys: list[SeriesKey] = []
        for metric in metrics:
            key = self._key(metric)
            keys.append(key)
            if metric._desc.option("native"):
                keys.append(key.entry(NATIVE))
            if metric._desc.type is MetricType.SUMMARY and metric._desc.option("quantiles"):
                keys.append(key.entry(QUANTILES))
                value = self._windows.get(encode_key(key))
                if value is not None:
                    value.publish()  # what the tombstone takes away must be in the file
        if keys:
            self.directory.remove_series(*keys)

    def read(self, families: Sequence[StoredFamily]) -> list[list[Series]]:
        for family in families:  # every local series exists in our file, zero if never used
            for labels, _ in family.local_values():
                self._label_sets.adopt(labels)
        self.publish()
        table, exemplars = self.directory.read_all()
        by_name = _by_name(table)
        return [
            self._series(family, by_name.get(family.desc.name, []), exemplars)
            for family in families
        ]

    def families(self) -> list[MetricFamily]:
        """Everything the directory holds, from one reading of it (``pytheus serve``)."""
        self.publish()
        try:
            table, exemplars = self.directory.read_all()
        except OSError as error:
            raise BackendUnavailableException(
                f"the metrics directory cannot be read: {error}"
            ) from None
        by_name = _by_name(table)
        output = []
        for family in exported_families(count_families(table), self.descriptions(table)):
            stored = family.storage or family
            entries = by_name.get(stored.desc.name, [])
            output.append(family.served(self._series(stored, entries, exemplars)))
        return output

    def _series(
        self,
        family: StoredFamily,
        entries: list[tuple[SeriesKey, list[float]]],
        exemplars: Exemplars,
    ) -> list[Series]:
        desc = family.desc
        ours = family_of(desc)
        natives = _blocks(entries, ours, NATIVE) if desc.option("native") else None
        windows = _blocks(entries, ours, QUANTILES) if desc.option("quantiles") else None
        now = self.wall_clock()
        series: list[Series] = []
        for key, cells in entries:
            if key.family != ours:
                continue  # another definition of the name (another program version): not ours
            data = series_value(desc.type, desc.upper_bounds, cells)
            if natives is not None and isinstance(data, HistogramData):
                data.native = _native_part(desc, natives.get(key.label_values))
            if windows is not None and isinstance(data, SummaryData):
                data.quantiles = _quantiles(desc, windows.get(key.label_values), now)
            found = exemplars.get(key.untyped)
            if found:
                data = with_exemplars(data, found)
            series.append((self._label_sets.get(key), data))
        return series

    def after_fork(self) -> None:
        if self._file is not None:
            self._file.release_after_fork()
        self._file = None
        self._described = set()  # the child writes a file of its own
        self._windows = {}  # its values are bound again (rebind_all_values)
        self._publisher = None
        self._stop = threading.Event()
        self._exemplars = ExemplarBook(self._exemplar_slot)
        self._file_lock = threading.Lock()
        self.directory.after_fork()


def _by_name(table: dict[SeriesKey, list[float]]) -> dict[str, list[tuple[SeriesKey, list[float]]]]:
    """A scrape's table, its entries grouped by metric name."""
    by_name: dict[str, list[tuple[SeriesKey, list[float]]]] = {}
    for key, cells in table.items():
        by_name.setdefault(key.name, []).append((key, cells))
    return by_name


def _blocks(
    entries: list[tuple[SeriesKey, list[float]]], family: Family, kind: str
) -> dict[tuple[str, ...], list[float]]:
    """The native blocks or summary windows (``kind``) of the series of ``family``, by label
    values."""
    theirs = SeriesKey.in_family(family, ()).entry(kind).family
    return {key.label_values: cells for key, cells in entries if key.family == theirs}


def _native_part(desc: MetricDesc, block: list[float] | None) -> NativeHistogram:
    """The native part of a histogram series: its merged block's, or empty."""
    return (native_histogram(block) if block else None) or empty_native(desc)


def _quantiles(
    desc: MetricDesc, block: list[float] | None, now: float
) -> tuple[tuple[float, float], ...]:
    """The summary's quantiles over the windows of every process (NaN when empty)."""
    targets: tuple[float, ...] = desc.option("quantiles")  # type: ignore[assignment]
    return window_quantiles(block_union(block) if block is not None else None, targets, now)


def _publish_at_process_end(deadline: float) -> None:
    """However this process ends, its summaries' windows reach its file (``process_end``)."""
    for store in list(_stores):
        if store._publisher is not None and store._publisher_pid == os.getpid():
            store.publish()


start_over_after_fork(_stores)  # the child records into a file of its own


class MultiProcessFileBackend(StoreBackend):
    """Configuration: ``path`` (required: a writable directory, created if only its parent
    exists), ``clear_stale``
    (default true: the first process of a run removes files an earlier run left behind),
    ``join_run`` (default true; false for a process that only reads, such as an exporter) and
    ``publish_interval`` (default 1 second: how often a process publishes the quantile windows
    of its summaries for the scrapes of other processes; counts and sums need no publishing).
    """

    @classmethod
    def _initialize(cls, config: BackendConfig) -> None:
        _directory_from(config)
        _publish_interval(config)

    @classmethod
    def _make_store(cls, config: BackendConfig) -> FileStore:
        return FileStore(
            _directory_from(config),
            clear_stale=bool(config.get("clear_stale", True)),
            join_run=bool(config.get("join_run", True)),
            publish_interval=_publish_interval(config),
        )


def _publish_interval(config: BackendConfig) -> float:
    raw = config.get("publish_interval", 1.0)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw <= 3600:
        raise InvalidBackendConfigException(
            "MultiProcessFileBackend: 'publish_interval' must be a number of seconds in "
            f"(0, 3600], got {raw!r}"
        )
    return float(raw)


def _directory_from(config: BackendConfig) -> Path:
    """The directory of ``config``: writable for a process that records (``join_run``), and
    at least readable for one that only reads (an exporter on a read-only mount). A recording
    process creates it (mode 0755, less the umask) when its parent directory exists."""
    raw = config.get("path")
    if not raw:
        raise InvalidBackendConfigException(
            "MultiProcessFileBackend needs 'path': the directory the processes share"
        )
    path = Path(raw)
    writer = bool(config.get("join_run", True))
    if writer and not path.exists() and path.parent.is_dir():
        try:  # gunicorn's workers may all be first: exist_ok
            path.mkdir(mode=0o755, exist_ok=True)
        except OSError as error:
            raise InvalidBackendConfigException(
                f"MultiProcessFileBackend: cannot create the directory {str(path)!r}: {error}"
            ) from error
    if not path.is_dir():
        raise InvalidBackendConfigException(
            f"MultiProcessFileBackend: {str(path)!r} is not an existing directory"
            + ("" if path.parent.is_dir() else " (nor is its parent, so it is not created)")
        )
    if not writer:
        if not os.access(path, os.R_OK | os.X_OK):
            raise InvalidBackendConfigException(
                f"MultiProcessFileBackend: cannot read the directory {str(path)!r}"
            )
        return path.resolve()
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise InvalidBackendConfigException(
            f"MultiProcessFileBackend: cannot write in {str(path)!r}: {error}"
        ) from error
    return path.resolve()


def mark_process_dead(pid: int | None = None) -> None:
    """Merge the files of processes that have exited into the archive now.

    Dead processes are found at every scrape anyway (by their released file locks, not their
    pid), so calling this from gunicorn's ``child_exit`` hook only makes it happen earlier.
    The ``pid`` argument is accepted for compatibility and not needed.
    """
    store = current_store()
    if isinstance(store, FileStore):
        store.directory.read_all()
