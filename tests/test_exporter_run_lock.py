"""``pytheus serve`` over a shared directory takes no part in the directory's run.

Every process that records holds ``run.lock`` shared for its lifetime and writes its lineage
into it; a new process tree that finds it free and finds none of its own lineage there starts a
new run, removing what the earlier run left (see ``pytheus.backends.file._run``). The exporter
loads the backend with ``join_run`` false, so it must neither hold ``run.lock`` nor be recorded
in it, and a redeployment started while it runs must still start from zero.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pytheus.backends.file._run import RUN_LOCK

ROOT = Path(__file__).resolve().parent.parent

# One deployment of the application: records ``deploys_total`` (its argument) and exits.
DEPLOYMENT = """
import sys
from pytheus.metrics import Counter
Counter("deploys_total", "What one deployment recorded.").inc(float(sys.argv[1]))
"""


def environment(directory: Path) -> dict[str, str]:
    """This environment without pytheus's variables, plus the shared directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    return {**env, "PYTHEUS_MULTIPROC_DIR": str(directory)}


def deploy(directory: Path, value: int) -> None:
    """A deployment: a new process tree (a session of its own), which records and exits."""
    subprocess.run(
        [sys.executable, "-c", DEPLOYMENT, str(value)],
        cwd=ROOT,
        env=environment(directory),
        start_new_session=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def exporter(directory: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``pytheus serve --dir DIRECTORY`` on a free port: the process and its metrics URL, once
    it answers a scrape; stopped afterwards."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytheus", "serve", "--dir", str(directory), "--port", "0"],
            cwd=ROOT,
            env=environment(directory),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield process, served_url(process, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def served_url(process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> str:
    """The URL the exporter logs once it serves; AssertionError if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"serving .* on (http://\S+/metrics)", log.read_text())
        if found:
            return found.group(1)
        assert process.poll() is None, f"the exporter exited: {log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"the exporter did not start: {log.read_text()}")


def deploys_total(url: str) -> float:
    """The ``deploys_total`` the exporter serves (a scrape)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "deploys_total"
    ]
    assert len(found) == 1, text
    return found[0]


def held_by_someone(lock: Path) -> bool:
    """Whether a process holds ``lock`` (shared or exclusive): an exclusive try fails."""
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if it was taken
    return False


def recorded_pids(lock: Path) -> set[int]:
    """The pids of the lineages recorded in ``run.lock`` (lines ``pid:start time``)."""
    lines = lock.read_text().split()
    return {int(line.split(":")[0]) for line in lines if line.split(":")[0].isdigit()}


def test_the_exporter_does_not_hold_the_run(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    deploy(metrics, 5)
    lock = metrics / RUN_LOCK
    assert lock.exists()  # the deployment's run
    assert not held_by_someone(lock)  # it has ended

    with exporter(metrics, tmp_path / "exporter.log") as (process, url):
        assert deploys_total(url) == 5
        assert not held_by_someone(lock), "the exporter holds run.lock"
        assert process.pid not in recorded_pids(lock), "the exporter is recorded in run.lock"

        deploy(metrics, 7)  # a redeployment starts a new run: the earlier files are removed
        assert deploys_total(url) == 7
        assert process.poll() is None
    assert process.returncode == 0, (tmp_path / "exporter.log").read_text()  # stops cleanly


def test_the_oracle_sees_a_process_that_holds_the_run(tmp_path: Path) -> None:
    """The test above could pass by looking in the wrong place: a living process that records
    is seen holding run.lock, and is recorded in it."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    living = subprocess.Popen(
        [sys.executable, "-c", DEPLOYMENT + "print('ready', flush=True)\nsys.stdin.read()\n", "1"],
        cwd=ROOT,
        env=environment(metrics),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert living.stdout is not None
        assert living.stdout.readline().strip() == "ready"
        lock = metrics / RUN_LOCK
        assert held_by_someone(lock)
        assert living.pid in recorded_pids(lock)
    finally:
        living.kill()
        living.wait(timeout=10)
