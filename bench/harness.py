"""The timing loop: run each workload on both libraries, alternating, and compare medians.

A workload names two *setups*, one per library. A setup is a context manager factory: given the
number of operations to time, it builds its metrics (untimed), yields a *runner* that performs
exactly that many operations, and tears down whatever it built when the workload is done. Plain
in-memory setups are a few lines with ``@contextmanager``; a setup that needs a server, a
directory or a backend of its own starts it before the ``yield`` and stops it after.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from time import perf_counter_ns

Runner = Callable[[], None]
"""Performs the operations of one timed loop."""

Setup = Callable[[int], AbstractContextManager[Runner]]
"""Given the number of operations per loop, prepares a library and yields its runner."""

OURS = "pytheus"
THEIRS = "prometheus_client"


@dataclass(frozen=True)
class Workload:
    """One comparison: the same job done with pytheus and with prometheus_client."""

    name: str
    """Shown in the table; ``--only`` matches part of it."""
    target: float | None
    """The largest acceptable ratio pytheus time / prometheus_client time (None: no target,
    the row is for information)."""
    ops: int
    """Operations per timed loop in a full run."""
    quick_ops: int
    """Operations per timed loop with ``--quick``."""
    pytheus: Setup
    client: Setup
    unit: str = "op"
    """What one operation is, for the table: ``op``, ``scrape``..."""


@dataclass(frozen=True)
class Result:
    workload: Workload
    ours_ns: float
    """Median time per operation with pytheus, in nanoseconds."""
    theirs_ns: float
    """Median time per operation with prometheus_client, in nanoseconds."""
    round_ratios: tuple[float, ...]
    """Ours / theirs within each round: their spread shows how noisy the machine was."""

    @property
    def ratio(self) -> float:
        return self.ours_ns / self.theirs_ns

    @property
    def met(self) -> bool:
        target = self.workload.target
        return target is None or self.ratio <= target


def time_per_op(runner: Runner, ops: int) -> float:
    """Nanoseconds per operation for one run of ``runner`` (the collector paused, as timeit)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = perf_counter_ns()
        runner()
        elapsed = perf_counter_ns() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed / ops


def measure(workload: Workload, rounds: int, quick: bool) -> Result:
    """Time ``workload`` on both libraries for ``rounds`` rounds, alternating which goes first."""
    ops = workload.quick_ops if quick else workload.ops
    with ExitStack() as stack:
        ours = stack.enter_context(workload.pytheus(ops))
        theirs = stack.enter_context(workload.client(ops))
        ours()  # warm-up: first-use binding, caches, memoised label text
        theirs()
        ours_times: list[float] = []
        theirs_times: list[float] = []
        for round_index in range(rounds):
            if round_index % 2 == 0:
                ours_times.append(time_per_op(ours, ops))
                theirs_times.append(time_per_op(theirs, ops))
            else:
                theirs_times.append(time_per_op(theirs, ops))
                ours_times.append(time_per_op(ours, ops))
    return Result(
        workload=workload,
        ours_ns=statistics.median(ours_times),
        theirs_ns=statistics.median(theirs_times),
        round_ratios=tuple(o / t for o, t in zip(ours_times, theirs_times)),
    )


# --- tables ---------------------------------------------------------------------------------------

HEADERS = ("workload", OURS, THEIRS, "ratio", "per-round ratios", "target", "met")
RIGHT = (False, True, True, True, True, True, False)
"""Which columns are right-aligned (the numbers)."""


def format_time(ns: float, unit: str) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms/{unit}"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs/{unit}"
    return f"{ns:.0f} ns/{unit}"


def _cells(result: Result) -> tuple[str, ...]:
    workload = result.workload
    return (
        workload.name,
        format_time(result.ours_ns, workload.unit),
        format_time(result.theirs_ns, workload.unit),
        f"{result.ratio:.2f}",
        f"{min(result.round_ratios):.2f}-{max(result.round_ratios):.2f}",
        "-" if workload.target is None else f"<= {workload.target:g}",
        "-" if workload.target is None else ("yes" if result.met else "NO"),
    )


def _aligned(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(HEADERS))]
    return [
        [cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(row, widths, RIGHT)]
        for row in rows
    ]


def text_table(results: Sequence[Result]) -> str:
    rows = _aligned([HEADERS, *(_cells(r) for r in results)])
    return "\n".join("  ".join(row).rstrip() for row in rows)


def markdown_table(results: Sequence[Result]) -> str:
    escaped = [tuple(cell.replace("|", "\\|") for cell in _cells(r)) for r in results]
    header, *body = _aligned([HEADERS, *escaped])
    rule = [
        "-" * (len(cell) - 1) + ":" if right else "-" * len(cell)
        for cell, right in zip(header, RIGHT)
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, rule, *body])
