"""What the Redis backend and its two Lua scripts (``_scripts``) say to each other.

A flush sends ten named arguments (:class:`FlushArgs`) and a batch of entries, each a series
with its operations ``(op, field, value)`` (:func:`batch_args`), and gets a reply of two or
three parts (:class:`FlushReply`); a scrape sends :func:`scrape_args` and gets one reply of nine
parts (:class:`ScrapeReply`). A summary's window travels as one field per age slot
(:data:`WINDOW_SETTINGS`, :func:`parse_window`). The layout of the keys in Redis, and what the
scripts do with each operation, is in ``_scripts``; each script names its ``ARGV`` positions in
a comment at its top, with the names used here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pytheus.quantiles import SlidingQuantiles, window_of_slots

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

Entry = tuple[str, str, tuple[Op, ...]]
"""One entry of a flush batch: ``(series id, description (JSON), operations)``."""


class FlushArgs(NamedTuple):
    """The flush script's ``ARGV[1]`` to ``ARGV[10]``, in order; the batch follows them
    (:meth:`argv`). The script's opening comment names the positions with these names."""

    base: str  # the namespace's base key
    process: str  # this process's id (a field of gauges and native histograms)
    seq: int  # the batch's sequence number (the last acknowledged one for a heartbeat)
    expected: int  # the last batch Redis acknowledged: a gap if Redis has another
    expire_seconds: float  # how long a series lives unwritten
    heartbeat_seconds: int  # how long the process counts as alive without flushing
    now: str  # this process's wall clock (``repr(time.time())``): when the series were seen
    resync: bool  # the batch is the process's totals, after Redis lost its batches
    recovering_ms: int  # after a gap, how long scrapes wait for every process to re-send
    bye: bool  # the process's last flush: it counts as dead from now on

    def argv(self, batch: list[str]) -> list[str | float]:
        """The script's whole ``ARGV``: these, then ``batch`` (:func:`batch_args`)."""
        return [
            self.base, self.process, self.seq, self.expected, self.expire_seconds,
            self.heartbeat_seconds, self.now, "1" if self.resync else "0", self.recovering_ms,
            "1" if self.bye else "0", *batch,
        ]  # fmt: skip


def batch_args(removals: Sequence[str], entries: Iterable[Entry]) -> list[str]:
    """A batch as the flush script reads it after :class:`FlushArgs`: the number of removals,
    the removed series ids, then each entry: series id, description, number of operations, and
    each operation's ``op, field, value``."""
    flat: list[str] = [str(len(removals)), *removals]
    for sid, meta, ops in entries:
        flat += [sid, meta, str(len(ops))]
        for op in ops:
            flat += op
    return flat


# The flush script's statuses.
OK = "ok"  # the batch is applied
DUPLICATE = "dup"  # the batch was applied before (its reply was lost): not applied again
GAP = "gap"  # Redis lacks batches before this one (it lost data): not applied
BYE = "bye"  # the goodbye is taken (if Redis had every batch)
STATUSES = frozenset((OK, DUPLICATE, GAP, BYE))


class FlushReply(NamedTuple):
    """The flush script's reply, parsed: ``{status, last}`` or ``{status, last, skipped}``."""

    status: str  # one of STATUSES
    last: int  # the last batch Redis has from this process (-1: none)
    skipped: list[str]  # the removed series whose entries the batch skipped (``c`` op)

    @classmethod
    def parse(cls, reply: Sequence[bytes | str]) -> FlushReply:
        """ValueError if ``reply`` is not the flush script's (the flusher keeps the batch and
        tries again, as when Redis cannot be reached)."""
        if not isinstance(reply, (list, tuple)):
            raise ValueError(f"a flush reply of {type(reply).__name__}, not a list: {reply!r:.80}")
        parts = [part.decode() if isinstance(part, bytes) else str(part) for part in reply]
        if not 2 <= len(parts) <= 3 or parts[0] not in STATUSES:
            raise ValueError(f"not a flush reply: {parts!r:.200}")
        status, last, *skipped = parts
        try:
            number = int(last)
        except ValueError:
            raise ValueError(f"a flush reply whose last batch is {last!r:.80}") from None
        return cls(status, number, skipped[0].split() if skipped else [])


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
        descriptions, cells, exemplars, gauges, recovering, natives, windows, server, procs = parts
        return cls(
            pairs(descriptions), pairs(cells), pairs(exemplars), rows(gauges),
            recovering == "1", rows(natives), rows(windows), server,
            procs.split(UNIT) if procs else [],
        )  # fmt: skip


def scrape_args(
    base: str, expire_seconds: float, heartbeat_seconds: float, server: str, processes: list[str]
) -> list[object]:
    """The scrape script's ``ARGV``: the namespace's base key, how long a series lives unwritten,
    how long to wait for a process, and the server and processes of this scraper's last reply.
    The script's opening comment names the positions with these parameters' names."""
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


# A summary's window in Redis (``<base>:q:<series id>``): one field per age slot, the slot's
# number, whose value is numbers separated by spaces: ``"<empty after> <max age> <age buckets>
# <accuracy> <max buckets> <bucket id> <count> ..."``, counts summed over every process. The
# flush script adds a batch's counts to a slot (``ADD_TO_WINDOW``); the scrape script deletes
# a slot once its ``empty after`` (the writers' wall clock) is past, and returns the rest
# (``ScrapeReply.windows``).
WINDOW_SETTINGS = slice(1, 5)  # max_age_seconds, age_buckets, relative_accuracy, max_buckets
WINDOW_PAIRS = 5  # where the (bucket id, count) pairs start


def window_settings(window: SlidingQuantiles) -> str:
    """The settings part of a window slot's value (``WINDOW_SETTINGS``), made once a series."""
    settings = (window.max_age_seconds, window.age_buckets, window.relative_accuracy,
                window.max_buckets)  # fmt: skip
    return " ".join(repr(float(number)) for number in settings)


def add_to_window(slot: int, empty_after: float, settings: str, pairs: Sequence[int]) -> Op:
    """The flush operation adding ``pairs`` (bucket id, count, ...) to a window's ``slot``,
    which leaves the window at ``empty_after``, for a window of ``settings``
    (:func:`window_settings`)."""
    value = f"{float(empty_after)!r} {settings} {' '.join(map(str, pairs))}"
    return (ADD_TO_WINDOW, str(slot), value)


def parse_window(fields: list[str]) -> SlidingQuantiles | None:
    """A summary's window from the fields of its window hash (``slot, value, slot, value,
    ...``), summed over every process; None when unreadable (another version's, damaged)."""
    try:
        slots = [(int(slot), list(map(float, raw.split()))) for slot, raw in zip(
            fields[0::2], fields[1::2]
        )]  # fmt: skip
        if not slots:
            return None
        max_age, age_buckets, accuracy, max_buckets = slots[0][1][WINDOW_SETTINGS]
        return window_of_slots(
            (max_age, age_buckets, accuracy, max_buckets),
            ((slot, numbers[WINDOW_PAIRS:]) for slot, numbers in slots),
        )
    except (ValueError, IndexError):
        return None
