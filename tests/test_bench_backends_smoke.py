"""The backends benchmark suite runs end to end (``bench/run.py --suite backends --quick``).

It forks writer processes, uses prometheus_client's multiprocess mode in worker processes and
starts a redis-server of its own; only that it works is checked here, never the timings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench.backends import BACKEND_WORKLOADS
from bench.workloads import WORKLOADS

from tests.conftest import require_program

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"

pytestmark = [pytest.mark.system, pytest.mark.e2e]  # the benchmark programs, on the main Python

PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"
# a row of the page's workload tables: | `name` | what it measures | <= target |
TARGET_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \|.*\| <= (?P<target>[0-9.]+) \|$", re.M)


def test_the_benchmark_checks_the_targets_the_docs_promise() -> None:
    promised = {
        row["name"]: float(row["target"])
        for row in TARGET_ROW.finditer(PERFORMANCE_PAGE.read_text(encoding="utf-8"))
    }
    for workload in (*WORKLOADS, *BACKEND_WORKLOADS):
        assert promised.get(workload.name) == workload.target, workload.name


def test_quick_run_prints_a_row_per_workload_and_the_notes() -> None:
    require_program("redis-server")
    completed = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--suite", "backends"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout
    lines = output.splitlines()
    for workload in BACKEND_WORKLOADS:
        rows = [line for line in lines if line.startswith(workload.name + " ")]
        assert len(rows) == 1, f"no row for {workload.name!r} in:\n{output}"
        assert rows[0].rstrip().endswith(("yes", "NO")), rows[0]
    for core in WORKLOADS:  # the core suite was not run
        assert not any(line.startswith(core.name + " ") for line in lines), output
    headings = [line for line in lines if line.startswith("workload ")]
    assert len(headings) == 4, output  # one table per comparison
    assert "prometheus_client mp" in headings[0] and "in the application" in headings[1]
    assert "Histogram, same backend" in headings[2] and "pytheus memory" in headings[3]
    assert "first scrape after the deaths" in output
    assert "Redis commands per scrape" in output
