"""The on-disk layout of the shared-file backend.

A *segment* is a file that one process maps and appends to; nobody else writes it::

    header (32 bytes): magic "PYTHEUSF" | version u32 | file id u32 | used u64 | pid u64
    entries, from byte 32, each 8-byte aligned:
        key length u32 | cell count u32 | key (UTF-8 JSON) | padding to 8 | cells (f64 each)

``used`` is the end of the last complete entry. A writer fills an entry completely before it
stores the new ``used`` (an aligned 8-byte store, never torn), so a reader that reads up to
``used`` never sees half an entry; a file a killed process left behind reads the same way.

An entry's key is ``[name, type, gauge mode, label names, label values, bucket bounds]``
(``SeriesKey.to_list``), with a seventh element for some: the pid of a per-process gauge series
in the archive of dead processes, an exemplar slot's bucket, a summary's window block's size
(``SeriesKey.pid``, ``SeriesKey.part``: the entry's type tells which). A family's description
entry keeps the description where a series keeps its gauge mode (``description_key``).

Values of several cells that change together are *versioned*: a histogram's cells are
``head version | a count per bucket | sum | tail version``, a summary's ``head | count | sum |
tail``. The writer stores the tail version first and the head version last, so a reader that
reads the head first and the tail last (in order, from the mapped file) has one moment of the
value when the two match (a seqlock). Version 1 segments have no version cells; readers tell
the two layouts apart by an entry's cell count.
"""

from __future__ import annotations

import array
import json
import struct
from collections.abc import Iterator
from typing import Any

from pytheus.backends.aggregation import EXEMPLAR as EXEMPLAR
from pytheus.backends.aggregation import NATIVE as NATIVE
from pytheus.backends.aggregation import QUANTILES as QUANTILES
from pytheus.backends.aggregation import SeriesKey as SeriesKey  # the key of an entry

MAGIC = b"PYTHEUSF"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = struct.Struct("<8sIIQQ")
HEADER_SIZE = 32
USED_OFFSET = 16
ENTRY_HEAD = struct.Struct("<II")

ARCHIVE = "archive.db"  # the merged values of processes that ended (a segment without a pid)
TOMBSTONES = "removed.json"  # the removed series (see ``_tombstones``)
# the types of entries that are not a metric's own cells: EXEMPLAR slots, NATIVE histogram
# blocks (``_values.FileNativeHistogram``), a summary's QUANTILES window blocks
# (``FileQuantileSummary``), all three from ``aggregation``; and a family's DESCRIPTION
DESCRIPTION = "description"
# (pid, key, cells) of one source (a living process, or the archive: pid None)
Entries = list[tuple["int | None", SeriesKey, list[float]]]


class CorruptSegment(Exception):
    """The file is not a segment, or not one this version can read."""


def padded(length: int) -> int:
    return (length + 7) & ~7


def entry_size(key_bytes: bytes, cells: int) -> int:
    return ENTRY_HEAD.size + padded(len(key_bytes)) + 8 * cells


def encode_key(key: SeriesKey) -> bytes:
    return json.dumps(key.to_list(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_key(raw: bytes, shared: dict[Any, Any] | None = None) -> SeriesKey:
    """The key an entry stores as ``raw``. With ``shared``, the parts every series of a family
    has alike (name, type, mode, label names, bounds) are taken from it, one copy for all the
    keys decoded with it: a reader keeps thousands of keys of a few families."""
    fields = json.loads(raw)
    if not isinstance(fields, list) or len(fields) not in (6, 7):
        raise CorruptSegment(f"bad entry key {raw[:80]!r}")
    return SeriesKey.from_list(fields, shared)


def description_key(name: str, text: str) -> SeriesKey:
    """The key of the entry keeping the description ``text`` of the family ``name``."""
    return SeriesKey(name, DESCRIPTION, text, (), (), ())


def description_of(key: SeriesKey) -> str:
    """The description a family's description entry (type ``DESCRIPTION``) keeps."""
    return key.mode


def read_header(data: bytes) -> tuple[int, int, int]:
    """``(used, pid, file id)`` of a segment, checking its magic and version.

    The file id tells apart two files that got the same inode number one after the other (the
    archive is rewritten often, and file systems reuse freed inodes).
    """
    if len(data) < HEADER_SIZE:
        raise CorruptSegment("shorter than a header")
    magic, version, file_id, used, pid = HEADER.unpack_from(data)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise CorruptSegment(f"not a pytheus segment (magic {magic!r}, version {version})")
    return used, pid, file_id


def versioned_size(key: SeriesKey) -> int | None:
    """The cell count of ``key``'s value with its two version cells; None if not versioned."""
    if key.type == "histogram":
        return len(key.bounds) + 3
    if key.type == "summary":
        return 4
    return None


def with_versions(key: SeriesKey, cells: list[float]) -> list[float]:
    """``cells`` as an entry of ``key`` holds them: with versions (0) if the type has them."""
    return [0.0, *cells, 0.0] if versioned_size(key) is not None else cells


def iter_entries(
    data: bytes | memoryview, start: int, used: int
) -> Iterator[tuple[bytes, int, int, int]]:
    """``(key bytes, first cell index, cell count, end offset)`` of each entry in [start, used)."""
    offset = start
    while offset < used:
        if offset + ENTRY_HEAD.size > used:
            raise CorruptSegment(f"entry header past the end at {offset}")
        key_length, cells = ENTRY_HEAD.unpack_from(data, offset)
        key_start = offset + ENTRY_HEAD.size
        cells_start = key_start + padded(key_length)
        end = cells_start + 8 * cells
        if end > used:
            raise CorruptSegment(f"entry at {offset} runs past the end")
        yield bytes(data[key_start : key_start + key_length]), cells_start // 8, cells, end
        offset = end


# An exemplar slot: head version | value | timestamp | payload length | payload | tail version.
# The writer stores the tail version first and the head version last; a reader that copied the
# slot takes it only if both versions match, so it never uses a half-written exemplar.
EXEMPLAR_PAYLOAD_CELLS = 80
EXEMPLAR_CELLS = 4 + EXEMPLAR_PAYLOAD_CELLS + 1


def decode_exemplar(cells: list[float]) -> tuple[dict[str, str], float, float] | None:
    """``(labels, value, timestamp)`` of a slot, or None when empty or being written."""
    if len(cells) != EXEMPLAR_CELLS or cells[0] == 0 or cells[0] != cells[-1]:
        return None
    length = int(cells[3])
    payload = array.array("d", cells[4:-1]).tobytes()[:length]
    try:
        labels = json.loads(payload)
    except ValueError:
        return None
    return labels, cells[1], cells[2]
