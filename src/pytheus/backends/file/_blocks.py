"""A scrape's table: every source's cells merged by key, with the native histogram blocks and
summary windows of a series merged once, at the end (``Table.finish``).

Merged blocks keep what they were merged from (``NativeBlock.histogram``, ``WindowBlock.union``),
so the scrape that reads them decodes nothing again; only the archive needs their floats.
"""

from __future__ import annotations

from pytheus.backends.aggregation import merge_into
from pytheus.backends.file._format import NATIVE, QUANTILES, SeriesKey
from pytheus.backends.file._native_block import histogram_of
from pytheus.native import NativeHistogram, encode_cells
from pytheus.quantiles import SlidingQuantiles, WindowUnion


class DecodedBlocks:
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
            found = histogram_of(block)
            if found is None:
                return None
        self._now[content] = found
        return found

    def next_scrape(self) -> None:
        self._last, self._now = self._now, {}


class Table(dict[SeriesKey, list[float]]):
    """Cells merged by key (``merge_into``); native blocks merged once per key at ``finish``.

    A series' native blocks (one per process) are decoded as they come and merged together at
    the lowest schema among them by :meth:`finish`, in one pass: merging them one at a time would
    decode and encode the growing result again for every process.
    """

    def __init__(self, decoded: DecodedBlocks) -> None:
        super().__init__()
        self._decoded = decoded
        self._natives: dict[SeriesKey, list[NativeHistogram]] = {}
        self._windows: dict[SeriesKey, WindowUnion] = {}

    def add(self, key: SeriesKey, cells: list[float]) -> None:
        if key.type == QUANTILES:
            union = self._windows.get(key)
            if union is None:
                union = self._windows[key] = WindowUnion()
            _add_block(union, cells)
            return
        if key.type != NATIVE:
            merge_into(self, key, cells)
            return
        histogram = self._decoded.decode(cells)
        if histogram is not None:
            self._natives.setdefault(key, []).append(histogram)

    def finish(self, serialise: bool = False) -> None:
        """Put the merged native blocks and windows in the table; call once, after the last
        ``add``. ``serialise``: the windows as floats too (for the archive)."""
        for key, (first, *others) in self._natives.items():
            self[key] = native_block(first.merge(others) if others else first.copy())
        self._natives.clear()
        for key, union in self._windows.items():
            if not union.empty:
                self[key] = window_block(union, serialise)
        self._windows.clear()


class NativeBlock(list[float]):
    """A merged native block, holding the histogram it encodes, so readers need not decode it."""

    histogram: NativeHistogram


def native_block(histogram: NativeHistogram) -> NativeBlock:
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


def block_union(block: list[float]) -> WindowUnion:
    """The windows of a summary's block, to query (empty when it holds none readable)."""
    if isinstance(block, WindowBlock):
        return block.union
    union = WindowUnion()
    _add_block(union, block)
    return union


def _add_block(union: WindowUnion, block: list[float]) -> None:
    """Add a summary's block to ``union``: the windows of a merged one (what a tombstone left),
    or the serialised window of one read from a file (nothing if it holds none)."""
    if isinstance(block, WindowBlock):
        window = block.union.window()
        if window is not None:
            union.add_window(window)
        return
    if len(block) >= 3 and block[1]:
        union.add_serialised(block, 2, 2 + int(block[1]))


def block_window(block: list[float]) -> SlidingQuantiles | None:
    """The window of a summary's block (None when it holds none, or not a readable one)."""
    return block_union(block).window()


def native_histogram(block: list[float]) -> NativeHistogram | None:
    """The histogram of a merged native block (None when it holds none)."""
    if isinstance(block, NativeBlock):
        return block.histogram
    return histogram_of(block)
