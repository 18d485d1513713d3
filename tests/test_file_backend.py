"""The shared-file backend with real processes: fork, spawn, crashes, compaction, stale data."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.file import MultiProcessFileBackend, mark_process_dead
from pytheus.exceptions import InvalidBackendConfigException
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests import multiprocess_workers as workers
from tests.helpers import samples, value

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
OPERATIONS = 2_000


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "metrics"
    path.mkdir()
    load_backend(MultiProcessFileBackend, {"path": str(path)})
    yield path
    load_backend(SingleProcessBackend, {})


def backend_for(directory: Path) -> tuple[type[Any], dict[str, Any]]:
    return MultiProcessFileBackend, {"path": str(directory)}


def check_totals(registry: CollectorRegistry, processes: int, parent_ops: int = 0) -> None:
    total = processes * OPERATIONS + parent_ops
    got = samples(registry)
    assert got[("requests_total", frozenset({("route", "/shared"), ("worker", "any")}))] == total
    own = [v for (name, labels), v in got.items() if ("route", "/own") in labels]
    assert sorted(own) == [OPERATIONS] * processes + ([parent_ops] if parent_ops else [])
    route = frozenset({("route", "/shared")})
    assert got[("latency_seconds_count", route)] == total
    assert got[("latency_seconds_bucket", route | {("le", "+Inf")})] == total
    per_cycle = {"0.1": 1, "1.0": 2, "10.0": 17}  # of every 20 observations 0, 0.6, ... 11.4
    for le, in_cycle in per_cycle.items():
        assert got[("latency_seconds_bucket", route | {("le", le)})] == total // 20 * in_cycle
    assert got[("sizes_bytes_count", frozenset())] == total
    assert got[("sizes_bytes_sum", frozenset())] == 2 * total
    assert got[("in_progress", frozenset())] == 0


def test_fork_children_exact_totals(directory: Path) -> None:
    metrics = workers.Metrics()
    workers.do_work(metrics, OPERATIONS)  # the parent records before forking, like --preload
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=workers.do_work, args=(metrics, OPERATIONS))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    check_totals(metrics.registry, PROCESSES, parent_ops=OPERATIONS)
    # the children wrote files of their own, now compacted: the parent's file and the archive
    files = sorted(p.name for p in directory.iterdir() if p.name.endswith(".db"))
    assert files == ["archive.db", f"proc-{os.getpid()}_{files[1].split('_')[1]}"]


def test_spawn_children_exact_totals(directory: Path) -> None:
    metrics = workers.Metrics()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=workers.work_in_fresh_process, args=(backend_for(directory), OPERATIONS)
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    check_totals(metrics.registry, PROCESSES)


def test_gauge_modes(directory: Path) -> None:
    modes = ["all", "liveall", "sum", "livesum", "min", "livemin", "max", "livemax",
             "mostrecent", "livemostrecent"]  # fmt: skip
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    values = [3.0, 1.0, 2.0]  # set in this order, so 2.0 is the most recent
    children = []
    for v in values:
        ready = context.Event()
        child = context.Process(
            target=workers.set_gauges_and_wait,
            args=(backend_for(directory), modes, v, ready, stop),
        )
        child.start()
        assert ready.wait(60)
        children.append(child)
        time.sleep(0.01)  # distinct timestamps for mostrecent
    registry = CollectorRegistry()
    from pytheus.metrics import Gauge

    for mode in modes:
        Gauge(f"gauge_{mode}", "G.", multiprocess_mode=mode, registry=registry)
    Gauge("gauge_default_set", "G.", registry=registry)
    Gauge("gauge_default_inc", "G.", registry=registry)
    pids = {str(c.pid) for c in children}

    def per_pid(name: str) -> dict[str, float]:
        return {
            dict(labels)["pid"]: v
            for (sample, labels), v in samples(registry).items()
            if sample == name and dict(labels)["pid"] in pids
        }

    expected_alive = {
        "sum": 6, "livesum": 6, "min": 1, "livemin": 1, "max": 3, "livemax": 3,
        "mostrecent": 2, "livemostrecent": 2, "default_set": 2, "default_inc": 6,
    }  # fmt: skip
    for mode, expected in expected_alive.items():
        got = value(registry, f"gauge_{mode}")
        # this process's own zero counts for sum and min
        assert got == (0 if mode in ("min", "livemin") else expected), mode
    assert sorted(per_pid("gauge_all").values()) == values_sorted(values)
    assert sorted(per_pid("gauge_liveall").values()) == values_sorted(values)

    stop.set()
    for child in children:
        child.join()
    after = {mode: value(registry, f"gauge_{mode}") for mode in expected_alive}
    assert after == {
        "sum": 6, "livesum": 0, "min": 0, "livemin": 0, "max": 3, "livemax": 0,
        "mostrecent": 2, "livemostrecent": 0, "default_set": 0, "default_inc": 0,
    }  # fmt: skip
    assert sorted(per_pid("gauge_all").values()) == values_sorted(values)  # dead kept, by pid
    assert per_pid("gauge_liveall") == {}


def values_sorted(values: list[float]) -> list[float]:
    return sorted(values)


def test_compaction_keeps_directory_small(directory: Path) -> None:
    metrics = workers.Metrics()
    context = multiprocessing.get_context("fork")
    shared = ("requests_total", frozenset({("route", "/shared"), ("worker", "any")}))
    for n in range(1, 201):  # 200 short-lived processes, one after another
        child = context.Process(target=workers.do_work, args=(metrics, 10))
        child.start()
        child.join()
        assert child.exitcode == 0
        if n % 10 == 0:  # every scrape compacts and rewrites the archive (inodes get reused)
            assert samples(metrics.registry)[shared] == 10 * n
    mark_process_dead()
    got = samples(metrics.registry)
    assert got[("requests_total", frozenset({("route", "/shared"), ("worker", "any")}))] == 2000
    own = [v for (name, labels), v in got.items() if ("route", "/own") in labels]
    assert own == [10] * 200
    # the scrape reads one archive and the living processes' files, whatever the history
    assert len([p for p in directory.iterdir() if p.name.endswith(".db")]) == 2


def test_sigkill_while_writing_loses_no_completed_operation(directory: Path) -> None:
    context = multiprocessing.get_context("spawn")
    progress = context.Value("q", 0, lock=False)
    child = context.Process(
        target=workers.write_until_killed, args=(backend_for(directory), progress)
    )
    child.start()
    deadline = time.monotonic() + 60
    while progress.value < 20_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    completed = progress.value
    assert completed >= 20_000
    registry = CollectorRegistry()
    counter = Counter("crash_total", "Crash.", required_labels=["n"], registry=registry)
    from pytheus.metrics import Histogram

    Histogram("crash_seconds", "Crash.", registry=registry)
    del counter
    got = samples(registry)
    total = sum(v for (name, _), v in got.items() if name == "crash_total")
    # the operation in flight when the signal came may or may not have landed
    assert completed <= total <= completed + 1
    count = got[("crash_seconds_count", frozenset())]
    assert completed <= count <= completed + 1
    assert got[("crash_seconds_bucket", frozenset({("le", "+Inf")}))] == count


def test_corrupt_and_foreign_files_are_skipped(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "C.", registry=registry)
    counter.inc(3)
    (directory / "proc-999_deadbeef-0.db").write_bytes(b"garbage" * 100)
    (directory / "notes.txt").write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="pytheus.backends.file"):
        assert value(registry, "c_total") == 3
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "proc-999_deadbeef-0.db" in messages and "notes.txt" in messages


def test_bad_directory_is_an_error_at_load_backend(tmp_path: Path) -> None:
    try:
        with pytest.raises(InvalidBackendConfigException, match="not an existing directory"):
            load_backend(MultiProcessFileBackend, {"path": str(tmp_path / "no" / "missing")})
        with pytest.raises(InvalidBackendConfigException, match="not an existing directory"):
            load_backend(
                MultiProcessFileBackend, {"path": str(tmp_path / "missing"), "join_run": False}
            )
        assert not (tmp_path / "missing").exists()  # a reader creates nothing
        with pytest.raises(InvalidBackendConfigException, match="needs 'path'"):
            load_backend(MultiProcessFileBackend, {})
        with pytest.raises(InvalidBackendConfigException, match="cannot write"):
            load_backend(MultiProcessFileBackend, {"path": "/proc"})
        for interval in (0, -1, "1", True, 3601):
            with pytest.raises(InvalidBackendConfigException, match="'publish_interval'"):
                load_backend(
                    MultiProcessFileBackend, {"path": str(tmp_path), "publish_interval": interval}
                )
    finally:
        load_backend(SingleProcessBackend, {})


def run_python(code: str, env: dict[str, str], new_parent: bool = False) -> str:
    """Run ``code`` in a child process (in a session of its own with ``new_parent``)."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if new_parent:  # a new process tree, as a redeployment (a container, a service) starts
        command = ["sh", "-c", 'exec "$0" "$@" & wait', *command]
    result = subprocess.run(
        command,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=new_parent,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_stale_directory_from_an_earlier_run_is_not_added(tmp_path: Path) -> None:
    write = """
        from pytheus.metrics import Counter
        from pytheus.exposition import generate_metrics
        Counter("runs_total", "Runs.").inc(5)
        print(generate_metrics())
    """
    env = {"PYTHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert "runs_total 5.0" in run_python(write, env, new_parent=True)  # only the variable
    second_run = run_python(write, env, new_parent=True)
    assert "runs_total 5.0" in second_run  # not 10: the first run's file was stale
    assert "earlier run" in second_run  # and the removal was logged


def test_unrelated_processes_share_the_directory(directory: Path) -> None:
    registry = CollectorRegistry()
    counter = Counter("shared_total", "Shared.", registry=registry)
    counter.inc()  # this process is alive for the whole run
    code = """
        from pytheus.metrics import Counter
        Counter("shared_total", "Shared.").inc(2)
    """
    for _ in range(3):
        run_python(code, {"PYTHEUS_MULTIPROC_DIR": str(directory)})
    assert value(registry, "shared_total") == 7
    scrape = """
        from pytheus.metrics import Counter
        from pytheus.exposition import generate_metrics
        Counter("shared_total", "Shared.")
        print(generate_metrics())
    """
    assert "shared_total 7.0" in run_python(scrape, {"PYTHEUS_MULTIPROC_DIR": str(directory)})


def test_set_function_on_a_per_process_gauge(directory: Path) -> None:
    from pytheus.metrics import Gauge

    registry = CollectorRegistry()
    gauge = Gauge("queue_depth", "Q.", multiprocess_mode="all", registry=registry)
    gauge.set_function(lambda: 7)
    assert value(registry, "queue_depth", pid=str(os.getpid())) == 7


def test_removed_series_disappear_for_every_process(directory: Path) -> None:
    write = """
        import sys
        from pytheus.metrics import Counter
        from pytheus.exposition import generate_metrics
        Counter("jobs_total", "J.", required_labels=["queue"]).labels(queue="a").inc(3)
        print(generate_metrics())
    """
    env = {"PYTHEUS_MULTIPROC_DIR": str(directory)}
    registry = CollectorRegistry()
    counter = Counter("jobs_total", "J.", required_labels=["queue"], registry=registry)
    counter.labels(queue="a").inc()
    run_python(write, env)  # another process, now dead and compacted
    assert value(registry, "jobs_total", queue="a") == 4
    counter.remove(queue="a")
    assert value(registry, "jobs_total", queue="a") is None
    scrape_elsewhere = """
        from pytheus.metrics import Counter
        from pytheus.exposition import generate_metrics
        Counter("jobs_total", "J.", required_labels=["queue"])
        print(generate_metrics())
    """
    assert 'jobs_total{queue="a"}' not in run_python(scrape_elsewhere, env)
    assert 'jobs_total{queue="a"} 3.0' in run_python(write, env)  # starts again from zero
    assert value(registry, "jobs_total", queue="a") == 3
