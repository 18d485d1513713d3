"""The shared directory: finding segments, telling live processes from dead ones, reading
everything for a scrape, and compacting dead processes into one archive.

What it leans on, one concern a module: the on-disk layout (``_format``), the run rule
(``_run``), reading a value while its writer writes it (``_snapshot``), merging native blocks
and summary windows in a scrape's table (``_blocks``), and removed series (``_tombstones``).

Files: ``proc-<token>-<n>.db`` (segments of living or dead processes), ``archive.db`` (the merged
values of dead processes), ``.lock`` (held while scraping or compacting), ``run.lock`` (held,
shared, by every process using the directory; see ``claim_run``).
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytheus.backends.aggregation import kept_after_death, merge_key
from pytheus.backends.file._blocks import DecodedBlocks, Table
from pytheus.backends.file._format import (
    ARCHIVE,
    ENTRY_HEAD,
    EXEMPLAR,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    NATIVE,
    QUANTILES,
    TOMBSTONES,
    VERSION,
    CorruptSegment,
    Entries,
    SeriesKey,
    decode_exemplar,
    decode_key,
    encode_key,
    iter_entries,
    padded,
    read_header,
    versioned_size,
    with_versions,
)
from pytheus.backends.file._native_block import is_whole
from pytheus.backends.file._native_block import restarts as native_restarts
from pytheus.backends.file._process_file import SEGMENT_PREFIX
from pytheus.backends.file._run import RUN_LOCK, claim_run
from pytheus.backends.file._snapshot import READERS, Reader, mapped_cells, settle, whole_value
from pytheus.backends.file._tombstones import (
    TombstoneFile,
    Tombstones,
    drop_emptied,
    since_removals,
    with_removals,
)
from pytheus.samples import Exemplar

logger = logging.getLogger("pytheus.backends.file")

# series (a key without the pid) -> bucket -> the newest exemplar
Exemplars = dict[tuple[Any, ...], dict[int, Exemplar]]
KNOWN_FILES = frozenset({ARCHIVE, TOMBSTONES, ".lock", RUN_LOCK})


class _ParsedSegment:
    """What a scrape already parsed of a segment: entries are append-only, so parse once."""

    __slots__ = ("identity", "parsed_until", "entries", "absorbed")

    def __init__(self, identity: tuple[int, int]) -> None:
        self.identity = identity
        self.parsed_until = HEADER_SIZE
        # (key, first cell, cells, the reader of a versioned value or block, else None)
        self.entries: list[tuple[SeriesKey, int, int, Reader | None]] = []
        self.absorbed: frozenset[str] = frozenset()


class SharedDirectory:
    """One process's view of the directory: it reads (scrapes), compacts and removes.

    Locks: ``locked()`` takes ``_thread_lock`` (the threads of this process), then ``.lock``
    (``flock``, every process: scrapers, compactors, removers). Under both: every file but the
    process files (``archive.db``, ``removed.json``, the deletion of dead processes' files),
    and this object's reading caches, ``_parsed``, ``_keys``, ``_decoded`` and ``_tombstones``.
    Process files need no lock to read: their writers only append entries and change values
    under versions (see ``_snapshot``). ``living_pids`` reads headers only, without the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self.writable = True
        self._lock_fd = self._open_lock()
        # the reading caches (guarded by ``locked()``)
        self._parsed: dict[Path, _ParsedSegment] = {}
        self._keys: dict[bytes, SeriesKey] = {}  # raw key -> decoded: the same series in many files
        self._families: dict[Any, Any] = {}  # what the keys of a family share (decode_key)
        self._decoded = DecodedBlocks()
        self._tombstones = TombstoneFile(path / TOMBSTONES)
        self._warned: set[str] = set()  # corrupt files warned about once

    def _open_lock(self) -> int | None:
        """The descriptor of ``.lock``. In a directory this process cannot write (a read-only
        mount beside the writers), ``writable`` turns false: scrapes read without compacting."""
        try:
            return os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
        self.writable = False
        try:
            return os.open(self.path / ".lock", os.O_RDONLY)  # flock needs no write access
        except FileNotFoundError:
            return None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the directory among scrapers and compactors, in any process."""
        with self._thread_lock:
            if self._lock_fd is None:
                yield
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def after_fork(self) -> None:
        """In a forked child: a lock of its own (an inherited descriptor shares the parent's)."""
        self._thread_lock = threading.Lock()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = self._open_lock()

    def claim_run(self, clear_stale: bool) -> int:
        """Join the current run, or start a new one (see ``_run``); return the descriptor
        holding ``run.lock``."""
        with self.locked():
            return claim_run(self.path / RUN_LOCK, clear_stale, self._remove_stale_files)

    def _remove_stale_files(self) -> None:
        stale = [p for p in self.path.iterdir() if p.name.startswith(SEGMENT_PREFIX)]
        stale += [p for p in (self.path / ARCHIVE, self.path / TOMBSTONES) if p.exists()]
        if stale:
            logger.warning(
                "pytheus: %d file(s) in %s are from an earlier run (none of its processes is "
                "alive); removing them so they do not add to this run's metrics",
                len(stale),
                self.path,
            )
            for stale_file in stale:
                stale_file.unlink(missing_ok=True)

    # --- reading ------------------------------------------------------------------------------

    def groups(self) -> dict[str, list[Path]]:
        """Segments by process token, in segment order; warns once about foreign files."""
        groups: dict[str, list[tuple[int, Path]]] = {}
        for entry in os.scandir(self.path):
            name = entry.name
            if name.startswith(SEGMENT_PREFIX) and name.endswith(".db"):
                token, _, number = name[len(SEGMENT_PREFIX) : -3].rpartition("-")
                if token and number.isdigit():
                    groups.setdefault(token, []).append((int(number), Path(entry.path)))
                    continue
            if name in KNOWN_FILES or name.startswith((".tmp-", "archive.", "removed.")):
                continue
            self._warn_once(name, "pytheus: ignoring foreign file %s in the metrics directory")
        return {token: [p for _, p in sorted(paths)] for token, paths in groups.items()}

    def is_alive(self, first_segment: Path) -> bool:
        try:
            fd = os.open(first_segment, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)  # closing also drops the lock if we got it
        return False

    def living_pids(self) -> list[int]:
        """Pids of the processes whose files are in use (from their first segment's header)."""
        pids = []
        for paths in self.groups().values():
            if self.is_alive(paths[0]):
                try:
                    with open(paths[0], "rb") as first:
                        pids.append(read_header(first.read(HEADER_SIZE))[1])
                except (OSError, CorruptSegment):
                    continue
        return pids

    def read_segment(self, path: Path) -> tuple[int, list[tuple[SeriesKey, list[float]]]]:
        """``(pid, [(key, cells)])`` of a segment; a corrupt one reads as empty (and warns)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0, []
        try:
            inode = os.fstat(fd).st_ino
            used, pid, file_id = read_header(os.pread(fd, HEADER_SIZE, 0))
            data = os.pread(fd, used, 0)
            if len(data) != used:
                raise CorruptSegment(f"{len(data)} bytes where the header says {used}")
            parsed = self._parsed.get(path)
            identity = (inode, file_id)
            if parsed is None or parsed.identity != identity or parsed.parsed_until > used:
                parsed = self._parsed[path] = _ParsedSegment(identity)
            self._parse_new_entries(parsed, data, used)
            entries = list(zip([entry[0] for entry in parsed.entries], _values(path, parsed, data)))
        except (CorruptSegment, ValueError, KeyError, TypeError) as error:
            self._warn_once(str(path), f"pytheus: skipping corrupt metrics file %s: {error}")
            self._parsed.pop(path, None)
            return 0, []
        finally:
            os.close(fd)
        return pid, entries

    def _parse_new_entries(self, parsed: _ParsedSegment, data: bytes, used: int) -> None:
        """Parse the entries appended to a segment since it was last read (each key decoded
        once for every file it appears in)."""
        for raw, index, count, end in iter_entries(data, parsed.parsed_until, used):
            if raw.startswith(b"{"):
                parsed.absorbed = frozenset(json.loads(raw)["absorbed"])
            else:
                key = self._keys.get(raw)
                if key is None:  # the same series appear in many files: decode each once
                    key = self._keys[raw] = decode_key(raw, self._families)
                whole = key.type in (NATIVE, QUANTILES) or count == versioned_size(key)
                reader = READERS.get(key.type, whole_value) if whole else None
                parsed.entries.append((key, index, count, reader))
            parsed.parsed_until = end

    def absorbed(self) -> frozenset[str]:
        self.read_segment(self.path / ARCHIVE)
        parsed = self._parsed.get(self.path / ARCHIVE)
        return parsed.absorbed if parsed is not None else frozenset()

    def read_all(self) -> tuple[dict[SeriesKey, list[float]], Exemplars]:
        """Compact the dead, then merge the archive and every living process (under the lock).

        Also returns the newest exemplar of each series and bucket among the living.
        """
        exemplars: Exemplars = {}
        with self.locked():
            return self._read_locked(exemplars), exemplars

    def remove_series(self, *keys: SeriesKey) -> None:
        """Record that series were removed: what they had counted until now stops showing.

        No process can change another's files, so a removal is a *tombstone*: each source's
        cells of the series at this moment (each living process's, and the archive's), which
        later scrapes subtract from that source (for gauges: the moment, before which every
        write is ignored). A process that restarts a native histogram afterwards has dropped
        what it had counted then, so its cells are no longer reduced (see ``since_removals``).
        Several keys (a histogram's classic and native parts) are taken from one reading.
        """
        with self.locked():
            removed = self._tombstones.read()
            archived, living = self._read_sources(removed)
            sources = {ARCHIVE: archived, **living}
            self._tombstones.write(with_removals(removed, sources, keys, time.time()))

    def _read_locked(self, exemplars: Exemplars | None = None) -> dict[SeriesKey, list[float]]:
        """Every source, each less its tombstones, merged; removed series with nothing since
        are left out."""
        removed = self._tombstones.read()
        archived, living = self._read_sources(removed)
        table = Table(self._decoded)
        for source, entries in [(ARCHIVE, archived), *living.items()]:
            for pid, key, cells in since_removals(source, entries, removed):
                if key.type == EXEMPLAR:
                    if exemplars is not None:
                        _keep_newest(exemplars, key, cells)
                    continue
                table.add(merge_key(key, pid), cells)
        table.finish()
        self._decoded.next_scrape()
        if removed:
            drop_emptied(table, removed)
        return table

    def _read_sources(self, removed: Tombstones) -> tuple[Entries, dict[str, Entries]]:
        """Compact the dead, then read the archive and each living process (by its token)."""
        groups = self.groups()
        living = {t: paths for t, paths in groups.items() if self.is_alive(paths[0])}
        dead = {t: paths for t, paths in groups.items() if t not in living}
        if dead and self.writable:
            self._compact(dead, groups, removed)
        sources = {token: self._read_process(paths) for token, paths in living.items()}
        if dead and not self.writable:  # the dead are read as they are, as compaction would
            absorbed = self.absorbed()
            sources.update(
                (token, self._read_dead(paths))
                for token, paths in dead.items()
                if token not in absorbed
            )
        _, archived = self.read_segment(self.path / ARCHIVE)
        return [(None, key, cells) for key, cells in archived], sources

    def _read_dead(self, paths: list[Path]) -> Entries:
        """``(pid, key, cells)`` of what an ended process leaves (see ``kept_after_death``)."""
        entries: Entries = []
        for path in paths:
            pid, read = self.read_segment(path)
            entries += [(pid, key, cells) for key, cells in read if kept_after_death(key)]
        return entries

    def _read_process(self, paths: list[Path]) -> Entries:
        """``(pid, key, cells)`` of every entry of a living process's segments.

        A native block and its histogram's classic cells are two entries, copied at two
        moments. That is fine while the process only adds (they differ by the observations in
        between, as any two series do); once it has restarted a histogram (see
        ``FileNativeHistogram``), or when the block was being written, the two are read again
        together (:func:`settle`), so that a scrape never pairs the classic counts of before a
        restart with the native part of after it, or takes half an observation.
        """
        read: Entries = []
        # histograms and native blocks: (position in read, path, first cell, cells)
        located: dict[SeriesKey, tuple[int, Path, int, int]] = {}
        unsettled: list[SeriesKey] = []
        for path in paths:
            pid, entries = self.read_segment(path)
            parsed = self._parsed.get(path)
            if parsed is None:
                continue
            for (key, cells), (_, index, count, _) in zip(entries, parsed.entries):
                if key.type in (NATIVE, "histogram"):
                    located[key] = (len(read), path, index, count)
                    if key.type == NATIVE and (native_restarts(cells) > 0 or not is_whole(cells)):
                        unsettled.append(key)
                read.append((pid, key, cells))
        for key in unsettled:
            at, path, index, count = located[key]
            classic_key = key.entry("histogram")
            classic = located.get(classic_key)
            if classic is None:
                continue
            settled = settle((path, index, count), classic[1:], versioned_size(classic_key))
            if settled is not None:
                owner = read[at][0]
                read[at] = (owner, key, settled[0])
                read[classic[0]] = (owner, classic_key, settled[1])
        return read

    # --- compaction ---------------------------------------------------------------------------

    def _compact(
        self, dead: dict[str, list[Path]], groups: dict[str, list[Path]], removed: Tombstones
    ) -> None:
        """Merge dead processes into a new archive, rename it in place, then delete them.

        The archive lists the processes it absorbed, so a crash between the rename and the
        deletions cannot count a process twice. A process goes in less its tombstones, as a
        scrape would have read it: the archive's own baselines stay as they were taken.
        """
        absorbed = self.absorbed()
        to_merge = {t: paths for t, paths in dead.items() if t not in absorbed}
        if to_merge:
            table = Table(self._decoded)
            _, archived = self.read_segment(self.path / ARCHIVE)
            for key, cells in archived:
                table.add(key, cells)
            for token, paths in to_merge.items():
                entries = self._read_dead(paths)
                for owner, key, cells in since_removals(token, entries, removed):
                    table.add(merge_key(key, owner), cells)
            table.finish(serialise=True)
            still_on_disk = (absorbed | to_merge.keys()) & groups.keys()
            self._write_archive(table, still_on_disk)
        for paths in dead.values():
            for path in paths:
                path.unlink(missing_ok=True)
                self._parsed.pop(path, None)

    def _write_archive(
        self, table: dict[SeriesKey, list[float]], absorbed: set[str] | frozenset[str]
    ) -> None:
        chunks: list[bytes] = [b""]
        for raw, cells in [(json.dumps({"absorbed": sorted(absorbed)}).encode(), [])] + [
            (encode_key(key), with_versions(key, cells)) for key, cells in table.items()
        ]:
            chunks.append(ENTRY_HEAD.pack(len(raw), len(cells)))
            chunks.append(raw + b"\0" * (padded(len(raw)) - len(raw)))
            chunks.append(memoryview(_doubles(cells)).tobytes())
        body = b"".join(chunks)
        used = HEADER_SIZE + len(body)
        temporary = self.path / f"archive.{os.getpid()}.tmp"
        with open(temporary, "wb") as out:
            file_id = int.from_bytes(os.urandom(4), "little")
            out.write(HEADER.pack(MAGIC, VERSION, file_id, used, 0) + body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path / ARCHIVE)
        directory_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message, what)


def _values(path: Path, parsed: _ParsedSegment, data: bytes) -> list[Any]:
    """The cells of each parsed entry of the segment ``data`` was read from. Versioned values
    and native blocks are read after the others, in order, from the mapped file (``_snapshot``).
    A scrape reads thousands: no more objects an entry than its cells."""
    cells: memoryview[float] = memoryview(data).cast("d")
    values: list[Any] = []
    versioned: list[int] = []  # their positions
    for _, index, count, reader in parsed.entries:
        if reader is not None:
            versioned.append(len(values))
            values.append(None)
        else:
            values.append(cells[index : index + count].tolist())
    if versioned:
        with mapped_cells(path) as mapped:
            size = len(mapped)
            for at in versioned:
                _, index, count, reader = parsed.entries[at]
                assert reader is not None
                source = mapped if index + count <= size else cells
                values[at] = reader(source, index, count)  # a window block: an array
    return values


def _keep_newest(exemplars: Exemplars, key: SeriesKey, cells: list[float]) -> None:
    decoded = decode_exemplar(cells)
    if decoded is None:
        return
    labels, value, timestamp = decoded
    buckets = exemplars.setdefault(key.untyped, {})
    bucket = key.bucket
    current = buckets.get(bucket)
    if current is None or (current.timestamp or 0) < timestamp:
        buckets[bucket] = Exemplar(labels, value, timestamp)


def _doubles(cells: list[float]) -> bytes:
    return array.array("d", cells).tobytes()
