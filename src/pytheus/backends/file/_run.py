"""Runs: telling the files of the program running now from those an earlier start left behind.

A *run* is the processes that use the directory together. Each of them holds ``run.lock`` shared
for its lifetime and writes its *lineage* into it: itself and its ancestors up to the first
process group leader above it (the shell's job, gunicorn's master), each as ``pid:start time``,
so that a reused pid never matches. A session leader (a service's main process, a container's
first process, anything started with ``setsid``) begins a process tree of its own: its lineage
is itself alone.

A process that finds ``run.lock`` held by another joins the run. One that finds it free joins
the run when a process of its own lineage (itself, its parent, ...) is recorded there: the
process tree that wrote the files is still alive and may read them (a parent that reads after
its pool, a report it starts next, a master restarting its workers, a forkserver's children).
Otherwise the process starts a new run and the earlier run's files are removed: a new process
tree (a redeployment) starts from zero.

Entries of processes that have ended are dropped whenever a process joins, so the file holds
the lineages of living processes only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable

RUN_LOCK = "run.lock"
_MAX_DEPTH = 64


def lineage(pid: int | None = None) -> list[str]:
    """``pid:start`` of a process and its ancestors, up to the first group leader above it.

    The process itself is always in it, and so is its parent unless the process leads a
    session (a task queue's work horse often leads a process group of its own, and its parent
    is the worker that started it).
    """
    pid = os.getpid() if pid is None else pid
    found: list[str] = []
    for depth in range(_MAX_DEPTH):
        stat = _stat(pid)
        if stat is None:
            if depth == 0:
                found.append(f"{pid}:?")
            break
        parent, group, session, start = stat
        found.append(f"{pid}:{start}")
        leads = session == pid if depth == 0 else group == pid
        if leads or parent <= 0 or pid == 1:
            break
        pid = parent
    return found


def identity(pid: int) -> str:
    """``pid:start time``: a pid alone is reused (containers restart with the same pids)."""
    stat = _stat(pid)
    return f"{pid}:{stat[3]}" if stat is not None else f"{pid}:?"


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(parent pid, process group, session, start time in clock ticks) from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(entry: str) -> bool:
    pid, _, start = entry.partition(":")
    if not pid.isdigit():
        return False
    if start == "?":
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    return identity(int(pid)) == entry


def claim_run(
    lock_path: os.PathLike[str] | str,
    clear_stale: bool,
    remove_stale_files: Callable[[], None],
    mine: Iterable[str] | None = None,
) -> int:
    """Join the current run or start a new one; return the descriptor that holds the run.

    Call with the directory's exclusive lock held (two processes must not both start a run).
    ``remove_stale_files`` is called when a new run starts and ``clear_stale`` is true.
    """
    own = list(lineage() if mine is None else mine)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        nobody_else = True
    except BlockingIOError:
        nobody_else = False
    recorded = _read(fd)
    if nobody_else and not set(own) & set(recorded):
        if clear_stale:
            remove_stale_files()
        recorded = []
    members = [entry for entry in recorded if _alive(entry)]
    members += [entry for entry in own if entry not in members]
    text = "".join(f"{entry}\n" for entry in members).encode("ascii")
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _read(fd: int) -> list[str]:
    size = os.fstat(fd).st_size
    text = os.pread(fd, size, 0).decode("ascii", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()]
