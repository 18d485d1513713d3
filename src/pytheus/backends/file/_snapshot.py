"""Reading a living process's cells as of one moment, while it may be writing them.

The writer of a versioned value or block stores its tail version first and its head version
last (see ``_format``); a reader takes the head first and the tail last, in order, from the
*mapped* file (a copy made by ``pread`` may be copied out of order), and reads again until the
two match: a seqlock. Here are the readers of each kind of entry (``READERS``; a native
block's is in ``_native_block``, with its layout), and the joint read of a native block with
its histogram's classic cells.
"""

from __future__ import annotations

import array
import mmap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytheus.backends.file._format import NATIVE, QUANTILES
from pytheus.backends.file._native_block import HEAD, is_whole, repaired, used_part, whole_block


def whole_value(cells: memoryview[float], index: int, count: int) -> list[float]:
    """The cells of a versioned value (a histogram, a summary), without its versions, as of one
    moment: read head first and tail last, again until the two match (see ``_format``).

    ``cells`` must be read in order, as for :func:`whole_block`. A value whose versions stay
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


def whole_window(cells: memoryview[float], index: int, count: int) -> array.array[float]:
    """A summary's window block (see ``_values.FileQuantileSummary``) as of one moment: head
    version, length, the window's floats and tail version, without the room it does not use.

    Read as :func:`whole_value` reads (the head first, the tail last, again until the two
    match); the cells between are copied at once, which needs no order of its own: a write
    changes the tail before them. One whose versions stay apart (its writer was killed while
    publishing) reads as empty. An array, not a list: a scrape reads thousands, and an array of
    floats is one object, which the garbage collector does not walk.
    """
    for attempt in range(2000):
        head = cells[index]
        length = int(cells[index + 1])
        if not 0 <= length <= count - 3:
            length = 0
        block = array.array("d")
        block.frombytes(cells[index : index + 2 + length].cast("B"))
        block.append(cells[index + count - 1])
        if block[-1] == head:
            block[1] = float(length)
            return block
        time.sleep(0 if attempt < 1000 else 0.0001)
    return array.array("d", (0.0, 0.0, 0.0))


Reader = Callable[["memoryview[float]", int, int], Any]
"""Reads the versioned value or block of ``count`` cells at ``index`` as of one moment."""
READERS: dict[str, Reader] = {NATIVE: whole_block, QUANTILES: whole_window}


SETTLE_SECONDS = 1.0
"""How long a scrape waits for a living process to finish writing a native block."""


def settle(
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
    last read with the block repaired (:func:`repaired`).
    """
    (path, index, count), (classic_path, classic_index, classic_count) = native, classic
    try:
        with mapped_cells(path) as cells_of_native, mapped_cells(classic_path) as cells_of_classic:
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
                block = used_part(cells_of_native, index, count)
                if head == block[HEAD] and is_whole(block):
                    return block, cells
                if time.monotonic() > deadline:
                    return repaired(block), cells
                attempt += 1
                time.sleep(0 if attempt < 1000 else 0.0001)
    except (OSError, ValueError):
        return None


@contextmanager
def mapped_cells(path: Path) -> Iterator[memoryview[float]]:
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
