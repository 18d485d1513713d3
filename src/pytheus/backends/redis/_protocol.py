"""What the Redis backend and its two Lua scripts (``_scripts``) say to each other.

A flush sends batches of entries, each a series with its operations ``(op, field, value)``; a
scrape gets one reply of nine parts (:class:`ScrapeReply`). The layout of the keys in Redis, and
what the scripts do with each operation, is in ``_scripts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# The operations of a flush entry, and what ``field`` and ``value`` are for each.
ADD_CELLS = "p"  # add ``value`` (numbers separated by spaces) to the series' cells
SET_EXEMPLAR = "x"  # field: the bucket; value: the latest exemplar of it (JSON)
SET_GAUGE = "s"  # field: this process; value: ``"value,last write,last set"``
TOUCH = "t"  # keep the series from expiring
SET_NATIVE = "n"  # field: this process; value: its whole native histogram
ADD_TO_WINDOW = "w"  # field: an age slot; value: ``"<empty after> <settings> <id> <count> ..."``
CHECK_NATIVE = "c"  # skip the entry unless this process's native field is still there

Op = tuple[str, str, str]
"""One operation of a flush entry: ``(op, field, value)``."""

UNIT = "\x1f"  # between the parts of a list in a reply part (never in JSON text or numbers)
RECORD = "\x1e"  # between the rows of a reply part

Row = tuple[str, list[str]]
"""A series id with its hash's fields and values (``field, value, field, value, ...``)."""


class ScrapeReply(NamedTuple):
    """The scrape script's reply, parsed."""

    descriptions: dict[str, str]  # series id -> its description (JSON)
    cells: dict[str, str]  # series id -> a counter's, histogram's or summary's cells
    exemplars: dict[str, str]  # "<series id>:<bucket>" -> the latest exemplar (JSON)
    gauges: list[Row]  # a gauge's fields: one per process, "_a" for the dead folded together
    recovering: bool  # Redis lost data, or may have: the scrape must not answer
    natives: list[Row]  # a native histogram's fields, as the gauges'
    windows: list[Row]  # a summary's window: one field per age slot
    server: str  # the run_id of the server that answered
    processes: list[str]  # the processes that flush to the namespace

    @classmethod
    def parse(cls, reply: Sequence[bytes | str]) -> ScrapeReply:
        """ValueError (or IndexError) if ``reply`` is not the scrape script's."""
        parts = [part.decode() if isinstance(part, bytes) else part for part in reply]
        if len(parts) != len(cls._fields):
            raise ValueError(f"a scrape reply of {len(parts)} parts, not {len(cls._fields)}")
        descriptions, cells, exemplars, gauges, recovering, natives, windows, server, procs = (
            parts
        )
        return cls(
            pairs(descriptions), pairs(cells), pairs(exemplars), rows(gauges),
            recovering == "1", rows(natives), rows(windows), server,
            procs.split(UNIT) if procs else [],
        )  # fmt: skip


def scrape_args(
    base: str, expire_seconds: float, heartbeat_seconds: float, server: str, processes: list[str]
) -> list[object]:
    """The scrape script's ``ARGV``: the namespace's base key, how long a series lives unwritten,
    how long to wait for a process, and the server and processes of this scraper's last reply."""
    return [base, expire_seconds, heartbeat_seconds, server, *processes]


def pairs(flat: str) -> dict[str, str]:
    """``"k1␟v1␟k2␟v2"`` (a hash as the scrape script returns it) as a dict."""
    if not flat:
        return {}
    parts = flat.split(UNIT)
    return dict(zip(parts[0::2], parts[1::2]))


def rows(flat: str) -> list[Row]:
    """``"sid␟f1␟v1␞sid␟..."`` as ``[(sid, [f1, v1, ...]), ...]``."""
    found: list[Row] = []
    for row in flat.split(RECORD) if flat else ():
        sid, *fields = row.split(UNIT)
        found.append((sid, fields))
    return found
