"""How the values of several processes combine into one series (shared by the file and
Redis backends).

Counters, histograms and summaries add up, cell by cell. Gauges follow their
``multiprocess_mode``; the ``live`` modes and the default mode forget a process once it is dead.
Every rule is associative, so the archive of dead processes is just one more contributor.
"""

from __future__ import annotations

from typing import Any

from pytheus.samples import LabelSet

# A key's element 1 is the metric type and element 2 the gauge mode; element 6, when present,
# the pid of a per-process gauge series.
Key = tuple[Any, ...]

# Gauge cells: value, time of the last write, time of the last set() (0 when never set).
VALUE, LAST_WRITE, LAST_SET = 0, 1, 2

PER_PROCESS_MODES = frozenset({"all", "liveall"})
KEPT_AFTER_DEATH = frozenset({"all", "sum", "min", "max", "mostrecent"})


def merge_key(key: Key, pid: int | str | None) -> Key:
    """The key a contribution merges under: per-process gauge modes keep the pid apart."""
    if key[1] == "gauge" and key[2] in PER_PROCESS_MODES:
        return (*key[:6], key[6] if key[6] is not None else pid)
    return (*key[:6], None)


def kept_after_death(key: Key) -> bool:
    if key[1] == "exemplar":  # exemplars are samples of recent activity: the dead have none
        return False
    return key[1] != "gauge" or key[2] in KEPT_AFTER_DEATH


def merge_into(table: dict[Key, list[float]], key: Key, cells: list[float]) -> None:
    current = table.get(key)
    if current is None:
        table[key] = list(cells)
        return
    if len(current) != len(cells):
        return  # a definition changed between versions of the program: keep the first
    if key[1] != "gauge":
        for i, cell in enumerate(cells):
            current[i] += cell
        return
    mode = key[2]
    if mode in ("sum", "livesum"):
        current[VALUE] += cells[VALUE]
    elif mode in ("min", "livemin"):
        current[VALUE] = min(current[VALUE], cells[VALUE])
    elif mode in ("max", "livemax"):
        current[VALUE] = max(current[VALUE], cells[VALUE])
    elif mode in ("mostrecent", "livemostrecent") or current[LAST_SET] or cells[LAST_SET]:
        # the default mode: once any process set() the gauge, the latest write wins
        if cells[LAST_WRITE] > current[LAST_WRITE]:
            current[VALUE] = cells[VALUE]
    else:  # the default mode with inc/dec only: in-progress style counts add up
        current[VALUE] += cells[VALUE]
    current[LAST_WRITE] = max(current[LAST_WRITE], cells[LAST_WRITE])
    current[LAST_SET] = max(current[LAST_SET], cells[LAST_SET])


class LabelSets:
    """The label set of each merged series, made once: formatters memoise renderings on it.

    A per-process gauge series (``all``, ``liveall``) gets a ``pid`` label as well.
    """

    def __init__(self) -> None:
        self._made: dict[tuple[Any, Any, Any], LabelSet] = {}

    def get(self, key: Key) -> LabelSet:
        names, values, pid = key[3], key[4], key[6]
        labels = self._made.get((names, values, pid))
        if labels is None:
            if pid is None:
                labels = LabelSet(names, values)
            else:
                labels = LabelSet((*names, "pid"), (*values, str(pid)))
            self._made[(names, values, pid)] = labels
        return labels
