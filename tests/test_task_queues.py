"""Exact totals from real task queues: a Celery prefork worker and an RQ worker running the
recipes of ``docs/patterns.md`` (``tasks.py``, ``jobs.py``), on both multi-process backends, read
by a separate process once the workers have stopped.

The module starts its own redis-server as the broker (and as the Redis backend's server, in a
namespace per test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from celery import Celery, group

from tests.helpers import backend_environment, flat_samples
from tests.recipes import write_recipes
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e  # real programs end to end: run on the main Python only


@pytest.fixture(params=["file", "redis"])
def env(
    request: pytest.FixtureRequest, module_redis: RedisServer, tmp_path: Path
) -> dict[str, str]:
    """The environment of the workers and of the reader: the backend and the recipes' path."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    write_recipes(recipes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(recipes), str(ROOT)]),
        "CELERY_BROKER_URL": module_redis.url,
        **backend_environment(request.param, metrics, module_redis.url),
    }


def totals(env: dict[str, str], module: str) -> dict[str, float]:
    """What a separate, fresh process that imports ``module`` (defining its metrics) scrapes."""
    code = f"import sys, {module}; from pytheus.exposition import generate_metrics; "
    code += "sys.stdout.write(generate_metrics())"
    text = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    return {
        k: v for k, v in flat_samples(text).items() if not k.startswith(("process_", "python_"))
    }


def expected(
    counter: str, label: tuple[str, str, str], histogram: str, jobs: int
) -> dict[str, float]:
    """The recipes' counter (``label``: its name, then its value for odd and for even numbers)
    and histogram (of ``number % 20``, buckets 1 and 10) after jobs ``0 .. jobs - 1``."""
    name = label[0]
    values = [n % 20 for n in range(jobs)]
    return {
        f'{counter}{{{name}="{label[1]}"}}': float(len(range(1, jobs, 2))),
        f'{counter}{{{name}="{label[2]}"}}': float(len(range(0, jobs, 2))),
        f'{histogram}_bucket{{le="1.0"}}': float(sum(v <= 1 for v in values)),
        f'{histogram}_bucket{{le="10.0"}}': float(sum(v <= 10 for v in values)),
        f'{histogram}_bucket{{le="+Inf"}}': float(jobs),
        f"{histogram}_count": float(jobs),
        f"{histogram}_sum": float(sum(values)),
    }


@pytest.mark.parametrize("max_tasks_per_child", [None, 50])
def test_celery_prefork_worker(
    env: dict[str, str], module_redis: RedisServer, max_tasks_per_child: int | None
) -> None:
    jobs = 2000
    redis.Redis.from_url(module_redis.url).flushdb()  # no task left from another test
    command = [
        sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "prefork",
        "--concurrency", "4", "--loglevel", "warning", "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ]  # fmt: skip
    if max_tasks_per_child:
        command += ["--max-tasks-per-child", str(max_tasks_per_child)]
    # results only tell this test when every task has run; the recipe needs none
    worker = subprocess.Popen(
        command, env={**env, "CELERY_RESULT_BACKEND": module_redis.url},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client = Celery("client", broker=module_redis.url, backend=module_redis.url)
        tasks = group(client.signature("send_email", args=(n,)) for n in range(jobs))
        assert sorted(tasks.apply_async().get(timeout=300)) == list(range(jobs))
    finally:
        worker.send_signal(signal.SIGTERM)  # a warm shutdown: the children finish and leave
        _, log = worker.communicate(timeout=120)
    assert worker.returncode == 0, log
    assert totals(env, "tasks") == expected(
        "emails_sent_total", ("template", "welcome", "invoice"), "email_recipients", jobs
    )


def test_rq_worker(env: dict[str, str], module_redis: RedisServer) -> None:
    from rq import Queue

    jobs = 200
    connection = redis.Redis.from_url(module_redis.url)
    connection.flushdb()
    queue = Queue("pytheus", connection=connection)
    for number in range(jobs):
        queue.enqueue("jobs.make_thumbnail", number)
    # --burst: the worker leaves once the queue is empty. Each job runs in a work horse that the
    # worker forks for it alone and that leaves with os._exit.
    subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", module_redis.url,
         "--logging_level", "WARNING", "pytheus"],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert queue.finished_job_registry.count == jobs
    assert totals(env, "jobs") == expected(
        "thumbnails_made_total", ("kind", "square", "wide"), "thumbnail_pixels", jobs
    )
