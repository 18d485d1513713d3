"""The shared directory: finding segments, telling live processes from dead ones, reading
everything for a scrape, and compacting dead processes into one archive.

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
import mmap
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytheus.backends.aggregation import LAST_WRITE, kept_after_death, merge_into, merge_key
from pytheus.backends.file._format import (
    ENTRY_HEAD,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    CorruptSegment,
    Key,
    decode_exemplar,
    decode_key,
    encode_key,
    iter_entries,
    padded,
    read_header,
    versioned_size,
    with_versions,
)
from pytheus.backends.file._process_file import SEGMENT_PREFIX
from pytheus.backends.file._run import RUN_LOCK, claim_run
from pytheus.backends.file._values import native_restarts
from pytheus.native import CELLS_HEADER, NativeHistogram, decode_cells, encode_cells, subtract
from pytheus.quantiles import SlidingQuantiles, WindowUnion
from pytheus.samples import Exemplar

logger = logging.getLogger("pytheus.backends.file")

ARCHIVE = "archive.db"
TOMBSTONES = "removed.json"
EXEMPLAR = "exemplar"  # the type of exemplar slot entries
NATIVE = "native"  # the type of native histogram blocks (see _values.FileNativeHistogram)
QUANTILES = "quantiles"  # the type of a summary's window blocks (_values.FileQuantileSummary)
# series (a key without the pid) -> bucket -> the newest exemplar
Exemplars = dict[tuple[Any, ...], dict[int, Exemplar]]
# (pid, key, cells) of one source (a living process, or the archive: pid None)
Entries = list[tuple["int | None", Key, list[float]]]
# a removed series -> (source -> (its restarts then, or None; its cells then), removed at)
Tombstones = dict[tuple[Any, ...], tuple[dict[str, tuple["float | None", list[float]]], float]]
KNOWN_FILES = frozenset({ARCHIVE, TOMBSTONES, ".lock", RUN_LOCK})


class _ParsedSegment:
    """What a scrape already parsed of a segment: entries are append-only, so parse once."""

    __slots__ = ("identity", "parsed_until", "entries", "absorbed")

    def __init__(self, identity: tuple[int, int]) -> None:
        self.identity = identity
        self.parsed_until = HEADER_SIZE
        self.entries: list[tuple[Key, int, int]] = []
        self.absorbed: frozenset[str] = frozenset()


class SharedDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self.writable = True
        self._lock_fd = self._open_lock()
        self._parsed: dict[Path, _ParsedSegment] = {}
        self._warned: set[str] = set()
        self._keys: dict[bytes, Key] = {}
        self._decoded = _DecodedBlocks()
        self._tombstones: tuple[object, Tombstones] = (None, {})

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

    def read_segment(self, path: Path) -> tuple[int, list[tuple[Key, list[float]]]]:
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
            for raw, index, count, end in iter_entries(data, parsed.parsed_until, used):
                if raw.startswith(b"{"):
                    parsed.absorbed = frozenset(json.loads(raw)["absorbed"])
                else:
                    key = self._keys.get(raw)
                    if key is None:  # the same series appear in many files: decode each once
                        key = self._keys[raw] = decode_key(raw)
                    parsed.entries.append((key, index, count))
                parsed.parsed_until = end
            cells: memoryview[float] = memoryview(data).cast("d")
            entries: list[tuple[Key, list[float]]] = []
            # versioned values and native blocks, read below in order from the mapped file:
            # (position in entries, type, first cell, cells)
            versioned: list[tuple[int, str, int, int]] = []
            for key, index, count in parsed.entries:
                if key[1] in (NATIVE, QUANTILES) or count == versioned_size(key):
                    versioned.append((len(entries), key[1], index, count))
                    entries.append((key, []))
                else:
                    entries.append((key, cells[index : index + count].tolist()))  # type: ignore[arg-type]
            if versioned:
                with _mapped(path) as mapped:
                    for at, kind, index, count in versioned:
                        source = mapped if index + count <= len(mapped) else cells
                        read = _READERS.get(kind, _whole_value)
                        entries[at] = (entries[at][0], read(source, index, count))
        except (CorruptSegment, ValueError, KeyError, TypeError) as error:
            self._warn_once(str(path), f"pytheus: skipping corrupt metrics file %s: {error}")
            self._parsed.pop(path, None)
            return 0, []
        finally:
            os.close(fd)
        return pid, entries

    def absorbed(self) -> frozenset[str]:
        self.read_segment(self.path / ARCHIVE)
        parsed = self._parsed.get(self.path / ARCHIVE)
        return parsed.absorbed if parsed is not None else frozenset()

    def read_all(self) -> tuple[dict[Key, list[float]], Exemplars]:
        """Compact the dead, then merge the archive and every living process (under the lock).

        Also returns the newest exemplar of each series and bucket among the living.
        """
        exemplars: Exemplars = {}
        with self.locked():
            return self._read_locked(exemplars), exemplars

    def remove_series(self, *keys: Key) -> None:
        """Record that series were removed: what they had counted until now stops showing.

        No process can change another's files, so a removal is a *tombstone*: each source's
        cells of the series at this moment (each living process's, and the archive's), which
        later scrapes subtract from that source (for gauges: the moment, before which every
        write is ignored). A process that restarts a native histogram afterwards has dropped
        what it had counted then, so its cells are no longer reduced (see ``_since_removals``).
        Several keys (a histogram's classic and native parts) are taken from one reading.
        """
        with self.locked():
            removed = self._load_tombstones()
            archived, living = self._read_sources(removed)
            sources = {ARCHIVE: archived, **living}
            tombstones: Tombstones = {
                series: ({s: b for s, b in baselines.items() if s in sources}, at)
                for series, (baselines, at) in removed.items()
            }  # sources gone were compacted, already reduced: their baselines are done with
            now = time.time()
            for key in keys:
                tombstones[key[:6]] = ({}, now)
            new = {key[:6] for key in keys if key[1] != "gauge"}
            for source, entries in sources.items():
                restarts = _restarts(entries) if source != ARCHIVE else {}
                for _, key, cells in entries:
                    if key[:6] in new:
                        tombstones[key[:6]][0][source] = (restarts.get(_series(key)), cells)
            temporary = self.path / f"removed.{os.getpid()}.tmp"
            rows = [
                [[*k[:3], list(k[3]), list(k[4]), list(k[5])], baselines, at]
                for k, (baselines, at) in tombstones.items()
            ]
            temporary.write_text(json.dumps(rows))
            os.replace(temporary, self.path / TOMBSTONES)

    def _load_tombstones(self) -> Tombstones:
        path = self.path / TOMBSTONES
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._tombstones[0] != signature:
            entries = json.loads(path.read_text())
            loaded: Tombstones = {
                (k[0], k[1], k[2], tuple(k[3]), tuple(k[4]), tuple(k[5])): (
                    {source: (restarts, list(cells)) for source, (restarts, cells) in b.items()}
                    if isinstance(b, dict)
                    else {ARCHIVE: (None, list(b))},  # an earlier version's merged totals
                    float(at),
                )
                for k, b, at in entries
            }
            self._tombstones = (signature, loaded)
        return self._tombstones[1]

    def _read_locked(self, exemplars: Exemplars | None = None) -> dict[Key, list[float]]:
        """Every source, each less its tombstones, merged; removed series with nothing since
        are left out."""
        removed = self._load_tombstones()
        archived, living = self._read_sources(removed)
        table = _Table(self._decoded)
        for source, entries in [(ARCHIVE, archived), *living.items()]:
            for pid, key, cells in _since_removals(source, entries, removed):
                if key[1] == EXEMPLAR:
                    if exemplars is not None:
                        _keep_newest(exemplars, key, cells)
                    continue
                table.add(merge_key(key, pid), cells)
        table.finish()
        self._decoded.next_scrape()
        if removed:
            _drop_emptied(table, removed)
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
        together (:func:`_settle`), so that a scrape never pairs the classic counts of before a
        restart with the native part of after it, or takes half an observation.
        """
        read: Entries = []
        # histograms and native blocks: (position in read, path, first cell, cells)
        located: dict[Key, tuple[int, Path, int, int]] = {}
        unsettled: list[Key] = []
        for path in paths:
            pid, entries = self.read_segment(path)
            parsed = self._parsed.get(path)
            if parsed is None:
                continue
            for (key, cells), (_, index, count) in zip(entries, parsed.entries):
                if key[1] in (NATIVE, "histogram"):
                    located[key] = (len(read), path, index, count)
                    if key[1] == NATIVE and (native_restarts(cells) > 0 or cells[0] != cells[-1]):
                        unsettled.append(key)
                read.append((pid, key, cells))
        for key in unsettled:
            at, path, index, count = located[key]
            classic_key: Key = (key[0], "histogram", "", key[3], key[4], key[5], key[6])
            classic = located.get(classic_key)
            if classic is None:
                continue
            settled = _settle((path, index, count), classic[1:], versioned_size(classic_key))
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
            table = _Table(self._decoded)
            _, archived = self.read_segment(self.path / ARCHIVE)
            for key, cells in archived:
                table.add(key, cells)
            for token, paths in to_merge.items():
                entries = self._read_dead(paths)
                for owner, key, cells in _since_removals(token, entries, removed):
                    table.add(merge_key(key, owner), cells)
            table.finish(serialise=True)
            still_on_disk = (absorbed | to_merge.keys()) & groups.keys()
            self._write_archive(table, still_on_disk)
        for paths in dead.values():
            for path in paths:
                path.unlink(missing_ok=True)
                self._parsed.pop(path, None)

    def _write_archive(
        self, table: dict[Key, list[float]], absorbed: set[str] | frozenset[str]
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


class _DecodedBlocks:
    """Native blocks decoded by this and the last scrape, by their content.

    Most blocks are as the last scrape read them (the archive's always, between compactions;
    many series of living processes too): those are not decoded again. A block's versions change
    with every write, so content is a safe key. Kept: what the last scrape used. The histograms
    are shared, so their users must not change them (``NativeHistogram.merge`` copies).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[float, ...], NativeHistogram] = {}
        self._now: dict[tuple[float, ...], NativeHistogram] = {}

    def decode(self, block: list[float]) -> NativeHistogram | None:
        if isinstance(block, NativeBlock):  # merged here already
            return block.histogram
        content = tuple(block)
        found = self._now.get(content) or self._last.get(content)
        if found is None:
            found = decode_cells(block[1:-1])
            if found is None:
                return None
        self._now[content] = found
        return found

    def next_scrape(self) -> None:
        self._last, self._now = self._now, {}


class _Table(dict[Key, list[float]]):
    """Cells merged by key (``merge_into``); native blocks merged once per key at ``finish``.

    A series' native blocks (one per process) are decoded as they come and merged together at
    the lowest schema among them by :meth:`finish`, in one pass: merging them one at a time would
    decode and encode the growing result again for every process.
    """

    def __init__(self, decoded: _DecodedBlocks) -> None:
        super().__init__()
        self._decoded = decoded
        self._natives: dict[Key, list[NativeHistogram]] = {}
        self._windows: dict[Key, WindowUnion] = {}

    def add(self, key: Key, cells: list[float]) -> None:
        if key[1] == QUANTILES:
            union = self._windows.get(key)
            if union is None:
                union = self._windows[key] = WindowUnion()
            if isinstance(cells, WindowBlock):  # what a tombstone left of a window
                window = cells.union.window()
                if window is not None:
                    union.add_window(window)
            else:
                floats = _window_floats(cells)
                if floats is not None:
                    union.add_serialised(floats)
            return
        if key[1] != NATIVE:
            merge_into(self, key, cells)
            return
        histogram = self._decoded.decode(cells)
        if histogram is not None:
            self._natives.setdefault(key, []).append(histogram)

    def finish(self, serialise: bool = False) -> None:
        """Put the merged native blocks and windows in the table; call once, after the last
        ``add``. ``serialise``: the windows as floats too (for the archive)."""
        for key, (first, *others) in self._natives.items():
            self[key] = _native_block(first.merge(others) if others else first.copy())
        self._natives.clear()
        for key, union in self._windows.items():
            if not union.empty:
                self[key] = window_block(union, serialise)
        self._windows.clear()


class NativeBlock(list[float]):
    """A merged native block, holding the histogram it encodes, so readers need not decode it."""

    histogram: NativeHistogram


def _native_block(histogram: NativeHistogram) -> NativeBlock:
    """A block as merged tables and the archive hold it: versions 1, no spare room."""
    block = NativeBlock([1.0, *encode_cells(histogram), 1.0])
    block.histogram = histogram
    return block


class WindowBlock(list[float]):
    """A summary's merged window block (versions 1, no spare room), holding the windows it
    merges. A scrape's table leaves the floats out (``serialise`` false): only the archive
    needs them, and a scrape asks the union for quantiles without merging it."""

    union: WindowUnion


def window_block(union: WindowUnion, serialise: bool = True) -> WindowBlock:
    block = WindowBlock()
    if serialise:
        window = union.window()
        floats = window.to_floats() if window is not None else []
        block += (1.0, float(len(floats)), *floats, 1.0)
    block.union = union
    return block


def _window_floats(block: list[float]) -> list[float] | None:
    """The serialised window of a block read from a file (None when it holds none)."""
    if len(block) < 3 or not block[1]:
        return None
    return block[2 : 2 + int(block[1])]


def block_union(block: list[float]) -> WindowUnion:
    """The windows of a summary's block, to query (empty when it holds none readable)."""
    if isinstance(block, WindowBlock):
        return block.union
    union = WindowUnion()
    floats = _window_floats(block)
    if floats is not None:
        union.add_serialised(floats)
    return union


def block_window(block: list[float]) -> SlidingQuantiles | None:
    """The window of a summary's block (None when it holds none, or not a readable one)."""
    return block_union(block).window()


def native_histogram(block: list[float]) -> NativeHistogram | None:
    """The histogram of a merged native block (None when it holds none)."""
    if isinstance(block, NativeBlock):
        return block.histogram
    return decode_cells(block[1:-1])


def _native_since(cells: list[float], baseline: list[float]) -> list[float] | None:
    """A native block minus its tombstone's baseline; None when nothing was counted since."""
    now = decode_cells(cells[1:-1])
    before = decode_cells(baseline[1:-1]) if len(baseline) > 2 else None
    if now is None:
        return None
    rest = now if before is None else subtract(now, before)
    return _native_block(rest) if rest.count > 0 else None


def _series(key: Key) -> tuple[Any, ...]:
    """The histogram a classic or native key belongs to (both parts share its restarts)."""
    return (key[0], "histogram", "", key[3], key[4], key[5])


def _restarts(entries: Entries) -> dict[tuple[Any, ...], float]:
    """How often a living or dead process restarted each of its native histograms."""
    return {_series(key): native_restarts(cells) for _, key, cells in entries if key[1] == NATIVE}


def _since_removals(source: str, entries: Entries, removed: Tombstones) -> Entries:
    """``entries`` of one source less what it had counted when their series were removed.

    A gauge written before its removal is left out. Other cells lose the source's baseline,
    unless the source restarted the histogram since (its restarts differ from the tombstone's):
    a restart dropped everything counted before it, the baseline with it, so the cells hold
    only what came after. A native block with nothing left is left out.
    """
    if not removed:
        return entries
    names = {series[0] for series in removed}
    restarts: dict[tuple[Any, ...], float] | None = None
    kept: Entries = []
    for pid, key, cells in entries:
        found = removed.get(key[:6]) if key[0] in names else None
        if found is None:
            kept.append((pid, key, cells))
            continue
        baselines, removed_at = found
        if key[1] == "gauge":
            if cells[LAST_WRITE] > removed_at:
                kept.append((pid, key, cells))
            continue
        baseline = baselines.get(source)
        if baseline is not None:
            restarts_then, before = baseline
            if restarts_then is not None and restarts is None:
                restarts = _restarts(entries)
            if restarts_then is None or restarts_then == (restarts or {}).get(_series(key)):
                if key[1] == QUANTILES:
                    since = _window_since(cells, before)
                    if since is None:
                        continue
                    cells = since
                elif key[1] == NATIVE:
                    since = _native_since(cells, before)
                    if since is None:
                        continue
                    cells = since
                elif len(before) == len(cells):
                    cells = [
                        0.0 if abs(c - b) <= 1e-9 * abs(b) else c - b for c, b in zip(cells, before)
                    ]
        kept.append((pid, key, cells))
    return kept


def _window_since(cells: list[float], baseline: list[float]) -> list[float] | None:
    """A window block minus its tombstone's baseline; None when nothing was observed since."""
    now = block_window(cells)
    if now is None:
        return None
    before = block_window(baseline)
    if before is not None:
        now = now.copy()
        now.subtract(before)
    if now.count == 0:
        return None
    union = WindowUnion()
    union.add_window(now)
    return window_block(union, serialise=False)


def _drop_emptied(table: dict[Key, list[float]], removed: Tombstones) -> None:
    """Leave out the removed series that counted nothing since (they stay out of scrapes)."""
    for key in [k for k in table if k[:6] in removed and k[1] != "gauge"]:
        cells = table[key]
        if key[1] == NATIVE:
            histogram = native_histogram(cells)
            empty = histogram is None or histogram.count == 0
        elif key[1] == QUANTILES:
            window = block_window(cells)
            empty = window is None or window.count == 0
        elif key[1] == "summary":
            empty = not cells[0]
        elif key[1] == "histogram":
            empty = not any(cells[:-1])
        else:
            empty = not any(cells)
        if empty:
            del table[key]


def _used_part(cells: memoryview[float], index: int, count: int) -> list[float]:
    """The native block at ``index`` without the room its histogram does not use.

    A process's block has room for hundreds of buckets and uses a few: the head version, the
    encoded histogram up to its last bucket, the restarts and the tail version are copied, which
    is what readers need (cells after the last bucket are ignored by ``decode_cells``). The head
    is read first and the tail last, one cell at a time in order, as the versions require of a
    reader of a block being written (see :func:`_whole_block`).
    """
    head = cells[index]
    used = cells[index + CELLS_HEADER]
    end = index + 1 + CELLS_HEADER + 2 * int(used) if 0 <= used < count else index + count
    if end + 2 >= index + count:  # full, or the archive's blocks, which have no spare room
        block: list[float] = cells[index : index + count].tolist()  # type: ignore[assignment]
        return block
    payload: list[float] = cells[index + 1 : end].tolist()  # type: ignore[assignment]
    return [head, *payload, cells[index + count - 2], cells[index + count - 1]]


def _whole_value(cells: memoryview[float], index: int, count: int) -> list[float]:
    """The cells of a versioned value (a histogram, a summary), without its versions, as of one
    moment: read head first and tail last, again until the two match (see ``_format``).

    ``cells`` must be read in order, as for :func:`_whole_block`. A value whose versions stay
    apart belongs to a process killed in the middle of an observation: it is taken as it is.
    """
    body: list[float] = []
    for attempt in range(2000):
        head = cells[index]
        body = cells[index + 1 : index + count - 1].tolist()  # type: ignore[assignment]
        if cells[index + count - 1] == head:
            return body
        time.sleep(0 if attempt < 1000 else 0.0001)
    return body


def _whole_block(cells: memoryview[float], index: int, count: int) -> list[float]:
    """A native block of a living process, read while its writer may be changing it.

    ``cells`` must be the mapped file, read in order (a copy made by ``pread`` is not: the kernel
    may copy a range out of order, so the versions of a copy cannot tell it is torn). The writer
    holds a block for microseconds; a block that stays torn belongs to a process killed while
    writing it, or to one observing without pause: it is taken repaired (:func:`_repaired`),
    off by at most the observation in flight.
    """
    block: list[float] = []
    for attempt in range(2000):
        block = _used_part(cells, index, count)
        if block[0] == block[-1]:
            return block
        time.sleep(0 if attempt < 1000 else 0.0001)
    return _repaired(block)


def _whole_window(cells: memoryview[float], index: int, count: int) -> list[float]:
    """A summary's window block (see ``_values.FileQuantileSummary``) as of one moment: head
    version, length, the window's floats and tail version, without the room it does not use.

    Read in order from the mapped file, again until the versions match, as :func:`_whole_value`;
    one whose versions stay apart (its writer was killed while publishing) reads as empty.
    """
    for attempt in range(2000):
        head = cells[index]
        length = int(cells[index + 1])
        if not 0 <= length <= count - 3:
            length = 0
        body: list[float] = cells[index + 2 : index + 2 + length].tolist()  # type: ignore[assignment]
        if cells[index + count - 1] == head:
            return [head, float(length), *body, head]
        time.sleep(0 if attempt < 1000 else 0.0001)
    return [0.0, 0.0, 0.0]


_READERS = {NATIVE: _whole_block, QUANTILES: _whole_window}


def _repaired(block: list[float]) -> list[float]:
    """A torn native block (read while written) made whole: its count is what its buckets hold.

    A torn read holds part of the one observation in flight, so the stored count may be one off
    from the buckets, which Prometheus refuses ("observation count should equal the number of
    observations found in the buckets"). Unless NaN was observed (then the count holds NaNs no
    bucket has), the count is set to the zero bucket plus the buckets; the sum may stay one
    observation off, as a classic histogram's may.
    """
    native = decode_cells(block[1:-1])
    if native is None:
        return block
    if native.sum == native.sum:
        native.count = (
            native.zero_count + sum(native.positive.values()) + sum(native.negative.values())
        )
    version = block[-1]
    return [version, *encode_cells(native), native_restarts(block), version]


SETTLE_SECONDS = 1.0
"""How long a scrape waits for a living process to finish writing a native block."""


def _settle(
    native: tuple[Path, int, int], classic: tuple[Path, int, int], versioned: int | None
) -> tuple[list[float], list[float]] | None:
    """A native block and its classic cells, read as one moment (None: the files are gone).

    ``versioned`` is the cell count of a classic value with versions (they are left out).

    The writer stores the block's tail version, then the classic cells and the block, then the
    head version; reading the head first, then the classic cells, then the block with its tail,
    the three match only when no write overlapped the reads (a seqlock). The files are mapped,
    so a try copies memory without a system call and fits between two observations of a process
    that observes without pause. The writer holds the block for microseconds, unless the machine
    is busy and it was descheduled: keep trying for up to :data:`SETTLE_SECONDS`, then take the
    last read with the block repaired (:func:`_repaired`).
    """
    (path, index, count), (classic_path, classic_index, classic_count) = native, classic
    try:
        with _mapped(path) as cells_of_native, _mapped(classic_path) as cells_of_classic:
            if len(cells_of_native) < index + count or (
                len(cells_of_classic) < classic_index + classic_count
            ):
                return None
            deadline = time.monotonic() + SETTLE_SECONDS
            attempt = 0
            skip = 1 if classic_count == versioned else 0  # the classic value's versions
            while True:
                head = cells_of_native[index]
                cells: list[float] = cells_of_classic[  # type: ignore[assignment]
                    classic_index + skip : classic_index + classic_count - skip
                ].tolist()
                block = _used_part(cells_of_native, index, count)
                if head == block[0] == block[-1]:
                    return block, cells
                if time.monotonic() > deadline:
                    return _repaired(block), cells
                attempt += 1
                time.sleep(0 if attempt < 1000 else 0.0001)
    except (OSError, ValueError):
        return None


@contextmanager
def _mapped(path: Path) -> Iterator[memoryview[float]]:
    """The cells of a segment, mapped read-only (released on exit)."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        usable = len(view) - len(view) % 8
        cells: memoryview[float] = view[:usable].cast("d")
        try:
            yield cells
        finally:
            cells.release()
            view.release()


def _keep_newest(exemplars: Exemplars, key: Key, cells: list[float]) -> None:
    decoded = decode_exemplar(cells)
    if decoded is None:
        return
    labels, value, timestamp = decoded
    buckets = exemplars.setdefault((*key[:1], "", "", *key[3:6]), {})
    bucket = int(key[6] or 0)
    current = buckets.get(bucket)
    if current is None or (current.timestamp or 0) < timestamp:
        buckets[bucket] = Exemplar(labels, value, timestamp)


def _doubles(cells: list[float]) -> bytes:
    return array.array("d", cells).tobytes()
