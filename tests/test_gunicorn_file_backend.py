"""gunicorn with restarting workers on the shared-file backend: the count is exact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import parse
from tests.test_example import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e  # real programs end to end: run on the main Python only
REQUESTS = 400


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.fixture(params=["preload", "no-preload"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    directory = tmp_path / "metrics"
    directory.mkdir()
    command = [
        sys.executable, "-m", "gunicorn", "tests.apps.wsgi_counter:app",
        "--bind", f"127.0.0.1:{port}", "--workers", "4", "--worker-class", "sync",
        "--max-requests", "25", "--max-requests-jitter", "10", "--log-level", "warning",
    ]  # fmt: skip
    if request.param == "preload":
        command.append("--preload")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(base + "/metrics")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def scraped_count(base: str) -> float:
    families = parse(get(base + "/metrics"))
    found = [s.value for s in families.get("app_requests", []) if s.labels == {"path": "/"}]
    return found[0] if found else 0.0


def test_restarting_workers_count_exactly(server: str) -> None:
    seen: list[float] = []
    for i in range(REQUESTS):
        assert get(server + "/") == "ok"
        if i % 20 == 0:
            seen.append(scraped_count(server))
    final = scraped_count(server)
    seen.append(final)
    print(f"{REQUESTS} requests, scraped values {seen}")
    assert final == REQUESTS
    assert seen == sorted(seen)  # never decreased, though workers restarted every ~25 requests
