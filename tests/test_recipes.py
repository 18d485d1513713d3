"""The recipes of ``docs/patterns.md``, run as the page shows them, with exact totals.

Pools and executors run on both multi-process backends; the batch job pushes to a real
Pushgateway; the web recipes run under real gunicorn and uvicorn with 4 workers on the
shared-file backend. The task-queue recipes are in ``test_task_queues.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import backend_environment, flat_samples
from tests.recipes import recipes, write_recipes
from tests.redis_server import RedisServer
from tests.test_push import free_port, read_group, run_gateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e  # real programs end to end: run on the main Python only


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A directory holding every recipe, where the programs run."""
    directory = tmp_path / "recipes"
    directory.mkdir()
    return write_recipes(directory)


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


def run_recipe(here: Path, name: str, extra: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, name], cwd=here, env=environment(extra), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_page_has_every_recipe() -> None:
    assert set(recipes()) == {
        "pool_job.py", "executor_job.py", "nightly_report.py", "tasks.py", "jobs.py", "web.py",
        "gunicorn.conf.py", "service.py",
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_pool_recipe(here: Path, tmp_path: Path, module_redis: RedisServer, backend: str) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    out = run_recipe(here, "pool_job.py", backend_environment(backend, metrics, module_redis.url))
    assert flat_samples(out, "image") == {
        'images_resized_total{format="png"}': 50.0,
        'images_resized_total{format="jpeg"}': 50.0,
        'image_size_bytes_bucket{le="1000.0"}': 3.0,  # 0, 500, 1000
        'image_size_bytes_bucket{le="10000.0"}': 21.0,  # 0 .. 10000
        'image_size_bytes_bucket{le="+Inf"}': 100.0,
        "image_size_bytes_count": 100.0,
        "image_size_bytes_sum": 500.0 * sum(range(100)),
    }


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_executor_recipe(
    here: Path, tmp_path: Path, module_redis: RedisServer, backend: str
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    out = run_recipe(
        here, "executor_job.py", backend_environment(backend, metrics, module_redis.url)
    )
    assert flat_samples(out, "page") == {
        "pages_crawled_total": 100.0,
        "page_bytes_count": 100.0,
        "page_bytes_sum": 100.0 * 1000 + sum(range(100)),
    }


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_batch_job_recipe_pushes_exact_totals(
    here: Path, tmp_path: Path, module_redis: RedisServer, backend: str
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    with run_gateway(tmp_path) as gateway:
        run_recipe(
            here, "nightly_report.py",
            {"PUSHGATEWAY": gateway, **backend_environment(backend, metrics, module_redis.url)},
        )  # fmt: skip
        pushed = read_group(gateway, "nightly-report")
    rows = {
        dict(labels)["table"]: value
        for (name, labels), value in pushed.items()
        if name == "report_rows_total"
    }
    assert rows == {"orders": 10000.0, "refunds": 10000.0}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body.decode()


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            get(url)
            return
        except OSError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


@pytest.fixture
def metrics_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"  # gunicorn.conf.py creates it
    return directory


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_web_recipes_count_every_request(here: Path, metrics_directory: Path, server: str) -> None:
    port = free_port()
    if server == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "web:app",
                   "--bind", f"127.0.0.1:{port}"]  # fmt: skip
        path, counter = "/order", "orders_total"
    else:
        metrics_directory.mkdir()
        command = [sys.executable, "-m", "uvicorn", "service:app", "--workers", "4",
                   "--port", str(port), "--log-level", "warning"]  # fmt: skip
        path, counter = "/call", "calls_total"
    process = subprocess.Popen(
        command, cwd=here, env=environment({"PYTHEUS_MULTIPROC_DIR": str(metrics_directory)}),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/metrics", process)
        for _ in range(200):  # gunicorn's workers are replaced every 50 +- 10 requests
            assert get(base + path) == "ok"
        assert flat_samples(get(base + "/metrics"), counter) == {counter: 200.0}
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_uvicorn_workers_on_redis_lose_nothing_when_stopped(
    here: Path, tmp_path: Path, module_redis: RedisServer
) -> None:
    """uvicorn's workers put the default SIGTERM disposition back when they stop, then raise
    SIGTERM again: what they recorded since their last flush must still reach Redis."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    backend = backend_environment("redis", metrics, module_redis.url)
    config = json.loads(Path(backend["PYTHEUS_BACKEND_CONFIG"]).read_text())
    Path(backend["PYTHEUS_BACKEND_CONFIG"]).write_text(json.dumps({**config, "flush_interval": 60}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service:app", "--workers", "2", "--port", str(port),
         "--log-level", "warning"],
        cwd=here, env=environment(backend),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/metrics", process)
        for _ in range(20):
            assert get(base + "/call") == "ok"
    finally:
        process.terminate()
        process.wait(timeout=30)
    scrape = "import sys, service; from pytheus.exposition import generate_metrics; "
    scrape += "sys.stdout.write(generate_metrics())"
    result = subprocess.run(
        [sys.executable, "-c", scrape], cwd=here, env=environment(backend), capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    assert flat_samples(result.stdout, "calls_total") == {"calls_total": 20.0}
