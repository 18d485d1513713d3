"""The layout of a native histogram's block in a shared-file segment: written by
``_values.FileNativeHistogram``, read by a scrape (:func:`whole_block`, and ``_snapshot.settle``
with the histogram's classic cells) and merged in its table (``_blocks``).

A block's cells, at these offsets from its first::

    HEAD      head version
    PAYLOAD   pytheus.native.encode_cells(histogram): schema, zero threshold, ZERO_COUNT, COUNT,
              SUM, USED (the buckets used), then from PAIRS the (code, count) pairs, in the
              order the buckets appeared, with room for more
    RESTARTS  (from the end) how often the process restarted the histogram
    TAIL      (from the end) tail version

The writer stores the tail version first and the head version last (a seqlock, see
``_snapshot``); a reader takes the head first and the tail last. Here are the block's whole
writer (:func:`write`) and readers (:func:`whole_block`, :func:`decode_used`); the writer's
one-observation fast path, which updates the histogram's classic cells in the same window, is
``FileNativeHistogram.observe``. Blocks the scrape's table and the archive hold have no spare
room.
"""

from __future__ import annotations

import array
import time

from pytheus.native import (
    CELLS_HEADER,
    FULL_RANGE_BUCKETS,
    NativeHistogram,
    decode_cells,
    encode_cells,
)

HEAD = 0
PAYLOAD = 1
ZERO_COUNT = PAYLOAD + 2
COUNT = PAYLOAD + 3
SUM = PAYLOAD + 4
USED = PAYLOAD + 5
PAIRS = PAYLOAD + CELLS_HEADER
RESTARTS = -2
TAIL = -1


def room_for(max_buckets: int) -> int:
    """Buckets a native block has room for: the limit, but never too few for any float."""
    return max(max_buckets or 1024, FULL_RANGE_BUCKETS)


def block_cells(room: int) -> int:
    """Cells of a native block with room for ``room`` buckets."""
    return PAIRS + 2 * room + 2


def restarts(block: list[float]) -> float:
    """How often the process restarted the histogram of ``block`` (a whole block, as read)."""
    return block[RESTARTS]


def histogram_of(block: list[float]) -> NativeHistogram | None:
    """The histogram a whole block holds (None if it holds none)."""
    return decode_cells(block[PAYLOAD:TAIL])


def whole(histogram: NativeHistogram, restarted: float, version: float) -> list[float]:
    """A whole block of ``histogram``, without spare room."""
    return [version, *encode_cells(histogram), restarted, version]


def is_whole(block: list[float]) -> bool:
    """Whether a block as read has matching versions (it was not read while written)."""
    return block[HEAD] == block[TAIL]


def write(
    block: memoryview[float], at: int, tail: int, histogram: NativeHistogram
) -> dict[int, int]:
    """Write ``histogram`` whole into the block at ``at`` whose tail version is at ``tail``,
    under its versions (the writer's lock held); return its bucket codes -> the cell of each
    one's count, for the writer's fast path."""
    version = block[at + HEAD] + 1
    block[tail] = version
    payload = encode_cells(histogram)
    block[at + PAYLOAD : at + PAYLOAD + len(payload)] = array.array("d", payload)
    slots = {int(payload[j]): at + PAYLOAD + j + 1 for j in range(CELLS_HEADER, len(payload), 2)}
    block[at + HEAD] = version
    return slots


def decode_used(block: memoryview[float], at: int, used: int) -> NativeHistogram:
    """The histogram of this process's own block at ``at``, whose ``used`` buckets it knows
    (the writer's lock held)."""
    decoded = decode_cells(block[at + PAYLOAD : at + PAIRS + 2 * used].tolist())
    assert decoded is not None
    return decoded


def used_part(cells: memoryview[float], index: int, count: int) -> list[float]:
    """The native block at ``index`` without the room its histogram does not use.

    A process's block has room for hundreds of buckets and uses a few: the head version, the
    encoded histogram up to its last bucket, the restarts and the tail version are copied, which
    is what readers need (cells after the last bucket are ignored by ``decode_cells``). The head
    is read first and the tail last, one cell at a time in order, as the versions require of a
    reader of a block being written (see :func:`whole_block`).
    """
    head = cells[index + HEAD]
    used = cells[index + USED]
    end = index + PAIRS + 2 * int(used) if 0 <= used < count else index + count
    if end + 2 >= index + count:  # full, or the archive's blocks, which have no spare room
        block: list[float] = cells[index : index + count].tolist()  # type: ignore[assignment]
        return block
    payload: list[float] = cells[index + PAYLOAD : end].tolist()  # type: ignore[assignment]
    return [head, *payload, cells[index + count + RESTARTS], cells[index + count + TAIL]]


def whole_block(cells: memoryview[float], index: int, count: int) -> list[float]:
    """A native block of a living process, read while its writer may be changing it.

    ``cells`` must be the mapped file, read in order (a copy made by ``pread`` is not: the kernel
    may copy a range out of order, so the versions of a copy cannot tell it is torn). The writer
    holds a block for microseconds; a block that stays torn belongs to a process killed while
    writing it, or to one observing without pause: it is taken repaired (:func:`repaired`),
    off by at most the observation in flight.
    """
    block: list[float] = []
    for attempt in range(2000):
        block = used_part(cells, index, count)
        if is_whole(block):
            return block
        time.sleep(0 if attempt < 1000 else 0.0001)
    return repaired(block)


def repaired(block: list[float]) -> list[float]:
    """A torn native block (read while written) made whole: its count is what its buckets hold.

    A torn read holds part of the one observation in flight, so the stored count may be one off
    from the buckets, which Prometheus refuses ("observation count should equal the number of
    observations found in the buckets"). Unless NaN was observed (then the count holds NaNs no
    bucket has), the count is set to the zero bucket plus the buckets; the sum may stay one
    observation off, as a classic histogram's may.
    """
    native = histogram_of(block)
    if native is None:
        return block
    if native.sum == native.sum:
        native.count = (
            native.zero_count + sum(native.positive.values()) + sum(native.negative.values())
        )
    return whole(native, restarts(block), block[TAIL])


