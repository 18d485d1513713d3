"""Runtime collectors: process, GC and platform metrics, read back with prometheus_client's parser.

Process values are checked against what the test does to the process (burn CPU, open a file,
spawn a child) rather than against a second reading of ``/proc``. Tests that need ``/proc``
are skipped where there is none.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics import parser as openmetrics_parser

from pytheus.collection import collect_registry
from pytheus.exposition import generate_metrics, openmetrics
from pytheus.metrics import Gauge
from pytheus.registry import REGISTRY, CollectorRegistry
from pytheus.runtime import (
    RUNTIME_COLLECTORS,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    register_runtime_collectors,
    unregister_runtime_collectors,
)
from tests.conftest import require_program
from tests.helpers import eventually, family_types, parse, value

# prometheus_client's strict OpenMetrics parser (its functions carry no annotations)
parse_openmetrics: Callable[[str], Iterator[Any]] = (
    openmetrics_parser.text_string_to_metric_families
)

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")

PROCESS_GAUGES = {
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
}


@pytest.fixture
def runtime_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    register_runtime_collectors(registry)
    return registry


def process_value(name: str, collector: ProcessCollector | None = None, **labels: str) -> float:
    registry = CollectorRegistry()
    registry.register(collector or ProcessCollector())
    found = value(registry, name, **labels)
    assert found is not None, f"{name} {labels} is not exposed"
    return found


def test_every_family_parses_with_its_type(runtime_registry: CollectorRegistry) -> None:
    types = family_types(generate_metrics(runtime_registry))
    expected = {
        "python_gc_objects_collected": "counter",
        "python_gc_objects_uncollectable": "counter",
        "python_gc_collections": "counter",
        "python_info": "gauge",
    }
    if os.path.isdir("/proc/self"):
        expected["process_cpu_seconds"] = "counter"  # the parser names counters without _total
        expected.update(dict.fromkeys(PROCESS_GAUGES, "gauge"))
    assert types == expected


def test_openmetrics_exposition_parses(runtime_registry: CollectorRegistry) -> None:
    text = openmetrics.render(collect_registry(runtime_registry))
    names = {family.name for family in parse_openmetrics(text)}
    assert {"python_info", "python_gc_collections"} <= names


@needs_proc
def test_cpu_seconds_grow_with_busy_work() -> None:
    before = process_value("process_cpu_seconds_total")
    assert before >= 0
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    after = process_value("process_cpu_seconds_total")
    assert after - before >= 0.05


@needs_proc
def test_memory_is_sane() -> None:
    rss = process_value("process_resident_memory_bytes")
    virtual = process_value("process_virtual_memory_bytes")
    assert 1 << 20 < rss <= virtual


@needs_proc
def test_open_fds_follow_open_and_close(tmp_path: Path) -> None:
    before = process_value("process_open_fds")
    assert before >= 3  # stdin, stdout, stderr
    with open(tmp_path / "file", "w"):
        assert process_value("process_open_fds") == before + 1
    assert process_value("process_open_fds") == before


@needs_proc
def test_max_fds_is_the_soft_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = float("inf") if soft == resource.RLIM_INFINITY else soft
    assert process_value("process_max_fds") == expected


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([require_program("sleep"), "30"])
    yield child
    child.kill()
    child.wait()


@needs_proc
def test_a_fresh_child_seen_from_outside(sleeper: subprocess.Popen[bytes]) -> None:
    spawned = time.time()
    collector = ProcessCollector(pids=lambda: [sleeper.pid])
    labels = {"pid": str(sleeper.pid)}
    # btime has whole seconds, so the start time may read up to a second early
    start = process_value("process_start_time_seconds", collector, **labels)
    assert abs(start - spawned) < 2

    def started() -> None:  # a child is counted from the moment it runs its program (exec)
        assert process_value("process_open_fds", collector, **labels) >= 3
        assert process_value("process_resident_memory_bytes", collector, **labels) > 0

    eventually(started, timeout=10)
    assert process_value("process_cpu_seconds_total", collector, **labels) < 1


@needs_proc
def test_one_series_per_pid_and_gone_pids_left_out(sleeper: subprocess.Popen[bytes]) -> None:
    gone = subprocess.Popen([require_program("sleep"), "0"])
    gone.wait()
    pids = [os.getpid(), sleeper.pid, gone.pid, sleeper.pid]
    registry = CollectorRegistry()
    registry.register(ProcessCollector(pids=lambda: pids))
    families = parse(generate_metrics(registry))
    for name in PROCESS_GAUGES:
        assert [sample.labels for sample in families[name]] == [
            {"pid": str(os.getpid())},
            {"pid": str(sleeper.pid)},
        ]


def test_no_pids_and_no_proc_yield_nothing(tmp_path: Path) -> None:
    assert list(ProcessCollector(pids=list).collect()) == []
    assert list(ProcessCollector(proc_root=str(tmp_path / "missing")).collect()) == []
    registry = CollectorRegistry()
    registry.register(ProcessCollector(proc_root=str(tmp_path / "missing")))
    assert generate_metrics(registry) == ""


def test_reads_a_proc_tree(tmp_path: Path) -> None:
    """A hand-written /proc: a command with spaces and parentheses, an unlimited fd limit."""
    ticks, page_size = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGESIZE")
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    process = tmp_path / "77"
    (process / "fd").mkdir(parents=True)
    for fd in range(5):
        (process / "fd" / str(fd)).touch()
    # fields 3..24 of proc(5): utime=250, stime=150, starttime=12345, vsize=4096000, rss=300
    rest = "S 1 77 77 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 12345 4096000 300 1844"
    (process / "stat").write_text(f"77 (my ) (worker) {rest}\n")
    (process / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            unlimited            unlimited            files\n"
    )
    registry = CollectorRegistry()
    registry.register(ProcessCollector(pids=lambda: [77], proc_root=str(tmp_path)))

    def read(name: str) -> float | None:
        return value(registry, name, pid="77")

    assert read("process_cpu_seconds_total") == pytest.approx(400 / ticks)
    assert read("process_start_time_seconds") == pytest.approx(1700000000 + 12345 / ticks)
    assert read("process_virtual_memory_bytes") == 4096000
    assert read("process_resident_memory_bytes") == 300 * page_size
    assert read("process_open_fds") == 5
    assert read("process_max_fds") == float("inf")


@pytest.fixture
def gc_paused() -> Iterator[None]:
    """No automatic collection between the gc.get_stats() of the test and the scrape's."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


@pytest.mark.usefixtures("gc_paused")
def test_gc_counts_match_get_stats_and_grow() -> None:
    registry = CollectorRegistry()
    registry.register(GCCollector())
    stats = gc.get_stats()
    for generation, expected in enumerate(stats):
        labels = {"generation": str(generation)}
        assert value(registry, "python_gc_collections_total", **labels) == expected["collections"]
        assert (
            value(registry, "python_gc_objects_collected_total", **labels) == expected["collected"]
        )
        assert (
            value(registry, "python_gc_objects_uncollectable_total", **labels)
            == expected["uncollectable"]
        )

    oldest = str(len(stats) - 1)
    collections = value(registry, "python_gc_collections_total", generation=oldest)
    collected = value(registry, "python_gc_objects_collected_total", generation=oldest)
    assert collections is not None and collected is not None
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    gc.collect()
    assert value(registry, "python_gc_collections_total", generation=oldest) == collections + 1
    after = value(registry, "python_gc_objects_collected_total", generation=oldest)
    assert after is not None and after >= collected + 1


def test_python_info() -> None:
    registry = CollectorRegistry()
    registry.register(PlatformCollector())
    [sample] = parse(generate_metrics(registry))["python_info"]
    assert sample.value == 1
    assert sample.labels == {
        "implementation": platform.python_implementation(),
        "major": str(sys.version_info.major),
        "minor": str(sys.version_info.minor),
        "patchlevel": str(sys.version_info.micro),
        "version": platform.python_version(),
    }


def test_register_is_idempotent_and_unregister_opts_out() -> None:
    registry = CollectorRegistry(prefix="app")
    added = register_runtime_collectors(registry)
    assert [type(collector) for collector in added] == list(RUNTIME_COLLECTORS)
    assert register_runtime_collectors(registry) == []
    Gauge("queue_depth", "Jobs waiting.", registry=registry).set(3)
    names = set(parse(generate_metrics(registry)))
    assert {"app_python_info", "app_queue_depth"} <= names

    unregister_runtime_collectors(registry)
    assert set(parse(generate_metrics(registry))) == {"app_queue_depth"}
    assert len(register_runtime_collectors(registry)) == len(RUNTIME_COLLECTORS)


def test_default_registry_is_the_default_argument() -> None:
    previous = REGISTRY.registry
    REGISTRY.set_registry(CollectorRegistry())
    try:
        register_runtime_collectors()
        assert "python_info" in parse(generate_metrics(REGISTRY))
        unregister_runtime_collectors()
        assert generate_metrics(REGISTRY) == ""
    finally:
        REGISTRY.set_registry(previous)


def run_promtool(text: str) -> tuple[int, str]:
    result = subprocess.run(
        [require_program("promtool"), "check", "metrics"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", errors="replace")


@pytest.mark.system
def test_promtool_accepts_and_lints_clean(
    runtime_registry: CollectorRegistry, sleeper: subprocess.Popen[bytes]
) -> None:
    assert run_promtool(generate_metrics(runtime_registry)) == (0, "")
    workers = CollectorRegistry()
    workers.register(ProcessCollector(pids=lambda: [os.getpid(), sleeper.pid]))
    assert run_promtool(generate_metrics(workers)) == (0, "")
