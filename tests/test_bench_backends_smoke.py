"""The backends benchmark suite runs end to end (``bench/run.py --suite backends --quick``).

It forks writer processes, uses prometheus_client's multiprocess mode in worker processes and
starts a redis-server of its own; only that it works is checked here, never the timings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.backends import BACKEND_WORKLOADS
from bench.workloads import WORKLOADS

from tests.conftest import require_program

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"

pytestmark = pytest.mark.system

ISSUE_WORKLOADS = {
    "file: Counter.inc()": 0.7,
    "file: scrape 8 procs x 1,100 series": 0.5,
    "file: same + 100 dead procs": 0.2,
    "redis: Counter.inc()": 1.5,
    "redis: scrape 1,100 series of 8 procs": 3.0,
}


def test_the_issue_workloads_and_targets_are_benchmarked() -> None:
    assert {w.name: w.target for w in BACKEND_WORKLOADS} == ISSUE_WORKLOADS


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
    assert len(headings) == 2, output  # one table per comparison
    assert "prometheus_client mp" in headings[0] and "pytheus memory" in headings[1]
    assert "first scrape after the deaths" in output
    assert "Redis commands per scrape" in output
