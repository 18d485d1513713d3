"""This process's own storage: segments it creates, maps and appends entries to."""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path

from pytheus.backends.file._format import (
    ENTRY_HEAD,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    USED_OFFSET,
    VERSION,
    entry_size,
    padded,
)

USED = struct.Struct("<Q")

FIRST_SEGMENT_SIZE = 1 << 20
SEGMENT_PREFIX = "proc-"


def segment_name(token: str, number: int) -> str:
    return f"{SEGMENT_PREFIX}{token}-{number}.db"


class _Segment:
    __slots__ = ("fd", "map", "cells", "size", "used")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.cells: memoryview[float] = memoryview(self.map).cast("d")
        self.used = HEADER_SIZE


class ProcessFile:
    """The segments of one process, named ``proc-<pid>_<random>-<n>.db``.

    The first segment stays open and ``flock``-ed for the life of the process: the kernel drops
    that lock when the process dies, however it dies, which is how scrapes tell the dead from
    the living without trusting pids (which containers reuse).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.token = f"{self.pid}_{os.urandom(6).hex()}"
        self.lock = threading.Lock()
        self.segments: list[_Segment] = []
        self.entries: dict[bytes, tuple[memoryview[float], int]] = {}

    def allocate(self, key: bytes, cells: int) -> tuple[memoryview[float], int]:
        """The cells of ``key`` (zeroed when new): the segment's cell view and the first index."""
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                return found
            size = entry_size(key, cells)
            segment = self.segments[-1] if self.segments else None
            if segment is None or segment.used + size > segment.size:
                segment = self._new_segment(size)
            offset = segment.used
            ENTRY_HEAD.pack_into(segment.map, offset, len(key), cells)
            key_start = offset + ENTRY_HEAD.size
            segment.map[key_start : key_start + len(key)] = key
            index = (key_start + padded(len(key))) // 8
            segment.used = offset + size
            # Publish the entry (one aligned 8-byte store): readers read up to `used`.
            USED.pack_into(segment.map, USED_OFFSET, segment.used)
            found = (segment.cells, index)
            self.entries[key] = found
            return found

    def _new_segment(self, needed: int) -> _Segment:
        previous = self.segments[-1].size if self.segments else FIRST_SEGMENT_SIZE // 2
        size = max(previous * 2, HEADER_SIZE + needed)
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        number = len(self.segments)
        final = self.directory / segment_name(self.token, number)
        temporary = self.directory / f".tmp-{self.token}-{number}"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, size)
            file_id = int.from_bytes(os.urandom(4), "little")
            os.pwrite(fd, HEADER.pack(MAGIC, VERSION, file_id, HEADER_SIZE, self.pid), 0)
            if number == 0:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, final)  # visible to scrapes only once locked
            segment = _Segment(fd, size)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        if number > 0:
            os.close(fd)  # the mapping keeps the file; only the first segment holds the lock
        self.segments.append(segment)
        return segment

    def release_after_fork(self) -> None:
        """In a forked child: let go of the parent's lock without touching its data."""
        if self.segments:
            os.close(self.segments[0].fd)
