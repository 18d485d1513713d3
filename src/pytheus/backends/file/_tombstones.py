"""Removed series on the shared-file backend: tombstones, and cells read less them.

No process can change another's files, so ``remove()`` and ``clear()`` write a *tombstone* per
series (``SharedDirectory.remove_series``): each source's cells of the series at that moment,
which later scrapes subtract from that source (for gauges: the moment, before which every write
is ignored). ``since_removals`` applies them to one source's entries; ``drop_emptied`` leaves
out the removed series that counted nothing since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pytheus.backends.aggregation import LAST_WRITE
from pytheus.backends.file import _native_block as block_layout
from pytheus.backends.file._blocks import (
    block_window,
    native_block,
    native_histogram,
    window_block,
)
from pytheus.backends.file._format import ARCHIVE, NATIVE, QUANTILES, Entries, SeriesKey
from pytheus.native import subtract
from pytheus.quantiles import WindowUnion

# a removed series -> (source -> (its restarts then, or None; its cells then), removed at)
Tombstones = dict[tuple[Any, ...], tuple[dict[str, tuple["float | None", list[float]]], float]]


class TombstoneFile:
    """``removed.json``: every tombstone, rewritten whole at each removal (under the directory's
    lock), and read again by a scrape only when it changed (inode, mtime, size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: tuple[object, Tombstones] = (None, {})

    def read(self) -> Tombstones:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._loaded[0] != signature:
            entries = json.loads(self.path.read_text())
            loaded: Tombstones = {
                SeriesKey.from_list(series).series: (
                    {source: (restarts, list(cells)) for source, (restarts, cells) in b.items()}
                    if isinstance(b, dict)
                    else {ARCHIVE: (None, list(b))},  # an earlier version's merged totals
                    float(at),
                )
                for series, b, at in entries
            }
            self._loaded = (signature, loaded)
        return self._loaded[1]

    def write(self, tombstones: Tombstones) -> None:
        temporary = self.path.with_name(f"removed.{os.getpid()}.tmp")
        # a series as a key stores it (tuples are JSON arrays): SeriesKey.to_list, no pid
        rows = [[series, baselines, at] for series, (baselines, at) in tombstones.items()]
        temporary.write_text(json.dumps(rows))
        os.replace(temporary, self.path)


def with_removals(
    removed: Tombstones, sources: dict[str, Entries], keys: tuple[SeriesKey, ...], now: float
) -> Tombstones:
    """``removed`` with the tombstones of ``keys`` (removed at ``now``) added: the cells each
    source (a living process, the archive) holds of them, and the restarts of its native
    histograms. The baselines of sources gone since were compacted, already reduced: dropped."""
    tombstones: Tombstones = {
        series: ({s: b for s, b in baselines.items() if s in sources}, at)
        for series, (baselines, at) in removed.items()
    }
    for key in keys:
        tombstones[key.series] = ({}, now)
    new = {key.series for key in keys if key.type != "gauge"}
    for source, entries in sources.items():
        restarts = restarts_of(entries) if source != ARCHIVE else {}
        for _, key, cells in entries:
            if key.series in new:
                tombstones[key.series][0][source] = (restarts.get(histogram_of(key)), list(cells))
    return tombstones


def _native_since(cells: list[float], baseline: list[float]) -> list[float] | None:
    """A native block minus its tombstone's baseline; None when nothing was counted since."""
    now = block_layout.histogram_of(cells)
    before = block_layout.histogram_of(baseline) if len(baseline) > 2 else None
    if now is None:
        return None
    rest = now if before is None else subtract(now, before)
    return native_block(rest) if rest.count > 0 else None


def histogram_of(key: SeriesKey) -> tuple[Any, ...]:
    """The histogram a classic or native key belongs to (both parts share its restarts)."""
    return key.entry("histogram").series


def restarts_of(entries: Entries) -> dict[tuple[Any, ...], float]:
    """How often a living or dead process restarted each of its native histograms."""
    return {
        histogram_of(key): block_layout.restarts(cells)
        for _, key, cells in entries
        if key.type == NATIVE
    }


def since_removals(source: str, entries: Entries, removed: Tombstones) -> Entries:
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
        found = removed.get(key.series) if key.name in names else None
        if found is None:
            kept.append((pid, key, cells))
            continue
        baselines, removed_at = found
        if key.type == "gauge":
            if cells[LAST_WRITE] > removed_at:
                kept.append((pid, key, cells))
            continue
        baseline = baselines.get(source)
        if baseline is not None:
            restarts_then, before = baseline
            if restarts_then is not None and restarts is None:
                restarts = restarts_of(entries)
            if restarts_then is None or restarts_then == (restarts or {}).get(histogram_of(key)):
                since = _cells_since(key, cells, before)
                if since is None:
                    continue
                cells = since
        kept.append((pid, key, cells))
    return kept


def _cells_since(key: SeriesKey, cells: list[float], before: list[float]) -> list[float] | None:
    """What ``cells`` counted since they were ``before``; None for a native block or window
    that counted nothing since (left out)."""
    if key.type == QUANTILES:
        return _window_since(cells, before)
    if key.type == NATIVE:
        return _native_since(cells, before)
    if len(before) != len(cells):  # another definition: left as it is
        return cells
    return [0.0 if abs(c - b) <= 1e-9 * abs(b) else c - b for c, b in zip(cells, before)]


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


def drop_emptied(table: dict[SeriesKey, list[float]], removed: Tombstones) -> None:
    """Leave out the removed series that counted nothing since (they stay out of scrapes)."""
    for key in [k for k in table if k.series in removed and k.type != "gauge"]:
        cells = table[key]
        if key.type == NATIVE:
            histogram = native_histogram(cells)
            empty = histogram is None or histogram.count == 0
        elif key.type == QUANTILES:
            window = block_window(cells)
            empty = window is None or window.count == 0
        elif key.type == "summary":
            empty = not cells[0]
        elif key.type == "histogram":
            empty = not any(cells[:-1])
        else:
            empty = not any(cells)
        if empty:
            del table[key]
