"""The multiprocessing code users write, as a program: ``python -m tests.multiprocessing_patterns
PATTERN WHEN`` runs 8 tasks with PATTERN and prints the parent's scrape (text format) after it.

The backend comes from the environment (``PYTHEUS_MULTIPROC_DIR``, or ``PYTHEUS_BACKEND_CLASS``
and ``PYTHEUS_BACKEND_CONFIG``), as it would in an application, so that every child, however it
starts, uses it. WHEN is ``before`` (the parent loads the backend before starting the children)
or ``after`` (its first use of pytheus is the scrape, once the children have ended).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from pytheus.backends import load_backend
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Histogram, Summary
from pytheus.registry import CollectorRegistry

TASKS = 8
PER_TASK = 50  # operations of each kind per task

registry = CollectorRegistry()
tasks_total = Counter("tasks_total", "Tasks.", required_labels=["kind"], registry=registry)
task_seconds = Histogram(
    "task_seconds", "Task time.", required_labels=["kind"], buckets=[0.1, 1], registry=registry
)
task_bytes = Summary("task_bytes", "Task sizes.", registry=registry)
pool_wait = Summary("pool_wait_seconds", "Waits.", quantiles=[0.5, 0.99], registry=registry)


def task(number: int) -> int:
    kind = str(number % 2)
    for _ in range(PER_TASK):
        tasks_total.labels(kind=kind).inc()
        task_seconds.labels(kind=kind).observe(0.5)
        task_bytes.observe(2)
    for i in range(PER_TASK):
        pool_wait.observe(wait_of(number, i))
    return number


def wait_of(number: int, i: int) -> float:
    """The ``i``-th wait task ``number`` observes: every one different, 0.001 to 0.4."""
    return (number * PER_TASK + i + 1) / 1000


def expected() -> dict[str, float]:
    """The samples every pattern must produce, exactly."""
    per_kind = float(TASKS // 2 * PER_TASK)
    samples = {}
    for kind in ("0", "1"):
        samples[f'tasks_total{{kind="{kind}"}}'] = per_kind
        samples[f'task_seconds_bucket{{kind="{kind}",le="0.1"}}'] = 0.0
        samples[f'task_seconds_bucket{{kind="{kind}",le="1.0"}}'] = per_kind
        samples[f'task_seconds_bucket{{kind="{kind}",le="+Inf"}}'] = per_kind
        samples[f'task_seconds_count{{kind="{kind}"}}'] = per_kind
        samples[f'task_seconds_sum{{kind="{kind}"}}'] = per_kind * 0.5
    samples["task_bytes_count"] = float(TASKS * PER_TASK)
    samples["task_bytes_sum"] = float(TASKS * PER_TASK * 2)
    return samples


def expected_waits() -> dict[str, float]:
    """The samples of the summary with quantiles: count and sum exact, each quantile the exact
    one of every task's observations (a scrape's is within 1 % of it)."""
    waits = sorted(wait_of(n, i) for n in range(TASKS) for i in range(PER_TASK))
    samples = {"pool_wait_seconds_count": float(len(waits)), "pool_wait_seconds_sum": sum(waits)}
    for q in (0.5, 0.99):
        samples[f'pool_wait_seconds{{quantile="{q}"}}'] = waits[math.floor(q * (len(waits) - 1))]
    return samples


def _two_tasks_then_wait(first: int, ready: Any) -> None:
    task(first)
    task(first + TASKS // 2)
    ready.set()
    signal.pause() if hasattr(signal, "pause") else None


def _two_tasks_then_os_exit(first: int) -> None:
    task(first)
    task(first + TASKS // 2)
    os._exit(0)


def with_pool(method: str | None, **options: Any) -> Callable[[], None]:
    def run() -> None:
        context = multiprocessing.get_context(method)
        with context.Pool(4, **options) as pool:
            pool.map(task, range(TASKS))

    return run


def with_executor(method: str, **options: Any) -> Callable[[], None]:
    def run() -> None:
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(4, mp_context=context, **options) as pool:
            list(pool.map(task, range(TASKS)))

    return run


def terminated(method: str) -> Callable[[], None]:
    """Four processes record two tasks each, then are stopped with ``Process.terminate()``."""

    def run() -> None:
        context: Any = multiprocessing.get_context(method)
        started = []
        for first in range(TASKS // 2):
            ready = context.Event()
            process = context.Process(target=_two_tasks_then_wait, args=(first, ready))
            process.start()
            started.append((process, ready))
        for process, ready in started:
            assert ready.wait(60), "a child did not record in time"
            process.terminate()
        for process, _ in started:
            process.join(60)
            assert process.exitcode == -signal.SIGTERM, process.exitcode

    return run


def os_exit(method: str) -> Callable[[], None]:
    """Four processes record two tasks each and leave with ``os._exit(0)``."""

    def run() -> None:
        context: Any = multiprocessing.get_context(method)
        started = [
            context.Process(target=_two_tasks_then_os_exit, args=(first,))
            for first in range(TASKS // 2)
        ]
        for process in started:
            process.start()
        for process in started:
            process.join(60)
            assert process.exitcode == 0, process.exitcode

    return run


METHODS = ("fork", "spawn", "forkserver")
PATTERNS: dict[str, Callable[[], None]] = {
    **{f"pool-{m}": with_pool(m) for m in METHODS},
    "pool-maxtasksperchild": with_pool(None, maxtasksperchild=1),
    **{f"executor-{m}": with_executor(m) for m in ("spawn", "forkserver")},
    **{f"terminate-{m}": terminated(m) for m in METHODS},
    **{f"os_exit-{m}": os_exit(m) for m in METHODS},
}
if sys.version_info >= (3, 11):
    PATTERNS["executor-max_tasks_per_child"] = with_executor("spawn", max_tasks_per_child=1)


def main(pattern: str, when: str) -> None:
    if when == "before":
        load_backend()  # from the environment, as the children do
    PATTERNS[pattern]()
    sys.stdout.write(generate_metrics(registry))


if __name__ == "__main__":
    main(*sys.argv[1:3])
