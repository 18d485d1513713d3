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


def test_a_counter_has_one_name_in_every_format() -> None:
    """``Counter("jobs")`` is ``jobs_total`` in text, OpenMetrics and protobuf alike, read back
    with prometheus_client's parsers and the official protobuf schema."""
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_parse,
    )
    from prometheus_client.parser import text_string_to_metric_families as text_parse

    from pytheus.exposition import render_for_request
    from pytheus.metrics import Counter
    from pytheus.registry import CollectorRegistry
    from tests import proto_oracle

    registry = CollectorRegistry()
    Counter("jobs", "Jobs.", registry=registry).inc(3)
    Counter("orders_total", "Orders.", registry=registry).inc(2)

    def rendered(accept: str) -> bytes:
        return render_for_request(registry, accept, None)[0]

    text = rendered("text/plain;version=0.0.4").decode()
    assert "# TYPE jobs_total counter" in text
    samples = {s.name: s.value for f in text_parse(text) for s in f.samples}
    assert samples == {"jobs_total": 3.0, "orders_total": 2.0}
    openmetrics = rendered("application/openmetrics-text;version=1.0.0").decode()
    families = list(openmetrics_parse(openmetrics))  # type: ignore[no-untyped-call]
    assert {s.name: s.value for f in families for s in f.samples} == samples
    protobuf = rendered(proto_oracle.CONTENT_TYPE)
    decoded = {f.name: f.metric[0].counter.value for f in proto_oracle.decode_delimited(protobuf)}
    assert decoded == samples


def test_the_readme_labels_example_exposes_the_series_it_says() -> None:
    import re

    from prometheus_client.parser import text_string_to_metric_families as text_parse

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Labels are declared with the metric") :]
    found = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert found is not None
    code = found.group(1) + "from pytheus.exposition import generate_metrics\n"
    code += "print(generate_metrics())\n"
    result = run(code)
    assert result.returncode == 0, result.stderr
    series = {
        (s.labels["system"], s.labels["origin"]): s.value
        for f in text_parse(result.stdout)
        for s in f.samples
        if s.name == "cache_hits_total"
    }
    assert series == {("a", "internal"): 1.0, ("b", "api"): 2.0, ("b", "internal"): 0.0}


def test_gunicorn_workers_create_the_missing_directory(tmp_path: Path) -> None:
    """PYTHEUS_MULTIPROC_DIR naming a directory that does not exist yet stopped every gunicorn
    worker at import; now the first to record creates it, and the four count together."""
    import time
    import urllib.request

    from tests.test_example import free_port

    port = free_port()
    directory = tmp_path / "metrics"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHEUS_MULTIPROC_DIR": str(directory)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.apps.wsgi_counter:app", "--workers", "4",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get("/metrics")
                break
            except OSError:
                assert server.poll() is None, "gunicorn stopped"
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.1)
        for _ in range(20):
            assert get("/") == "ok"
        assert 'app_requests_total{path="/"} 20.0' in get("/metrics")
        assert directory.is_dir()
    finally:
        server.terminate()
        server.wait(timeout=30)
