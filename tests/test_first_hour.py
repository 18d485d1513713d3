"""What a new user meets first: configuration from the environment, and the errors on the way.

Each test runs a fresh interpreter, as an application starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
        env={**clean, "PYTHONPATH": str(ROOT / "src"), **env}, timeout=60,
    )  # fmt: skip


RECORD = """
from pytheus.metrics import Counter
Counter("jobs_total", "Jobs.").inc()
print("recorded")
"""


def test_a_missing_directory_is_created_when_its_parent_exists(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    result = run(RECORD, PYTHEUS_MULTIPROC_DIR=str(directory))
    assert result.returncode == 0, result.stderr
    assert directory.is_dir() and any(p.name.startswith("proc-") for p in directory.iterdir())
    assert directory.stat().st_mode & 0o777 == 0o755 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_a_directory_that_cannot_be_created_names_the_variable(tmp_path: Path) -> None:
    directory = tmp_path / "no" / "metrics"
    result = run(RECORD, PYTHEUS_MULTIPROC_DIR=str(directory))
    assert result.returncode == 1
    assert "InvalidBackendConfigException" in result.stderr
    assert f"(configured by PYTHEUS_MULTIPROC_DIR={directory})" in result.stderr
    assert not directory.exists()


def test_an_empty_directory_variable_is_said_to_mean_one_process() -> None:
    result = run(RECORD, PYTHEUS_MULTIPROC_DIR="")
    assert result.returncode == 0, result.stderr
    assert "PYTHEUS_MULTIPROC_DIR is set but empty" in result.stderr
    assert "single-process backend" in result.stderr


def test_a_bad_environment_does_not_stop_an_app_that_loads_its_backend(tmp_path: Path) -> None:
    """Metrics are defined at import; the backend is resolved at first use, so an application
    that calls load_backend itself never meets a wrong variable."""
    code = """
        from pytheus.metrics import Counter, Histogram
        jobs = Counter("jobs_total", "Jobs.")
        latency = Histogram("latency_seconds", "Latency.")   # defined, as at import

        from pytheus.backends import SingleProcessBackend, load_backend
        from pytheus.exposition import generate_metrics
        load_backend(SingleProcessBackend, {})               # the app factory chooses
        jobs.inc()
        latency.observe(0.2)
        assert "jobs_total 1.0" in generate_metrics()
        print("ok")
    """
    for variable, value in (
        ("PYTHEUS_BACKEND_CLASS", "no_such_module.Backend"),
        ("PYTHEUS_MULTIPROC_DIR", str(tmp_path / "no" / "such")),
        ("PYTHEUS_BACKEND_CONFIG", str(tmp_path / "missing.json")),
    ):
        result = run(code, **{variable: value})
        assert result.returncode == 0, (variable, result.stderr)
        assert result.stdout.strip() == "ok"
