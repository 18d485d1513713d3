"""The benchmark harness runs end to end (``bench/run.py --quick``); no timing is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.workloads import WORKLOADS

from tests.conftest import require_program

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e  # the benchmark program, on the main Python

ISSUE_WORKLOADS = {
    "Counter.inc()",
    "labels(a, b).inc()",
    "Histogram.observe()",
    "scrape 10k counters + 1k histograms",
}


def run_program(name: str, *args: str) -> str:
    """The output of ``bench/NAME ARGS``, which must succeed."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def run_bench(*args: str) -> str:
    return run_program("run.py", "--quick", *args)


def test_the_issue_workloads_are_benchmarked() -> None:
    assert ISSUE_WORKLOADS.issubset(workload.name for workload in WORKLOADS)


def test_quick_run_prints_a_row_per_workload() -> None:
    output = run_bench("--markdown")
    lines = output.splitlines()
    for workload in WORKLOADS:
        rows = [line for line in lines if line.startswith("| " + workload.name + " ")]
        assert len(rows) == 1, f"no row for {workload.name!r} in:\n{output}"
        assert rows[0].rstrip(" |").endswith(("yes", "NO")), rows[0]


def test_only_selects_workloads_and_prints_a_text_table() -> None:
    output = run_bench("--only", "histogram.observe")
    [row] = [line for line in output.splitlines() if line.startswith("Histogram.observe() ")]
    assert row.rstrip().endswith(("yes", "NO")), row
    assert "Counter.inc()" not in output


def test_the_memory_benchmark_runs() -> None:
    """``bench/memory.py`` measures every case (figures at this size are not worth reading)."""
    output = run_program("memory.py", "--quick", "--series", "300", "--scale", "3000")
    rows = [line.split(",")[0] for line in output.splitlines() if " B" in line]
    assert rows == ["counter", "histogram", "counter", "counter"], output
    assert "redis-server not found" not in output
    scale = output.split("3,000 counter series")[1]
    for row in ("creating them", "scrape", "response body", "extra peak memory", "gzip"):
        assert row in scale, output


def test_the_redis_sizing_benchmark_runs() -> None:
    """``bench/redis_sizing.py`` measures a namespace (figures this small say nothing)."""
    require_program("redis-server")
    output = run_program("redis_sizing.py", "--series", "200", "300", "--processes", "2")
    rows = [line.split()[:2] for line in output.splitlines()[1:]]
    assert rows == [["200", "2"], ["300", "2"]], output
