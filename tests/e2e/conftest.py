"""Reusable pieces of the end-to-end tests: real servers in their own process groups.

* :class:`Processes` starts programs in new sessions and, at teardown, stops each whole group
  (SIGTERM, then SIGKILL): no gunicorn or uvicorn worker, and no Prometheus, outlives a test.
* :func:`gunicorn_command`, :func:`uvicorn_command`: serve an app on a free loopback port.
* :class:`Prometheus`: a real Prometheus (``prometheus`` on the PATH, 2.42 from Debian here) with
  a generated configuration, its storage in a temporary directory, listening on loopback, and a
  small client of its HTTP API (``/api/v1/query``).
* :func:`require_prometheus2`, :func:`require_prometheus3` (both in :data:`REQUIRE_PROMETHEUS`):
  a Prometheus 2 binary (``prometheus`` on the PATH) or a Prometheus 3 binary
  (``$PROMETHEUS3_BIN``, the PATH, or the copy ``scripts/prometheus3.sh`` unpacks into
  ``.cache/prometheus3/``), for :func:`start_prometheus`'s ``binary``.

Everything listens on 127.0.0.1 and on ports picked free by the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing, require_program

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Started:
    """A program started by :class:`Processes`; its output goes to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Processes:
    """Programs started in their own sessions, each stopped as a whole group by ``stop_all``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Started] = []

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Started:
        log = self.directory / f"{name}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                list(command),
                cwd=ROOT,
                env={**inherited_environment(), "PYTHONPATH": str(ROOT), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers die with it
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def stop_all(self) -> None:
        for started in reversed(self.started):
            stop_group(started.process)
        self.started.clear()


def inherited_environment() -> dict[str, str]:
    """This process's environment without pytheus's variables: each server gets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process's group, wait, then SIGKILL whatever of the group is left."""
    group = process.pid  # start_new_session: the group id is the leader's pid
    _signal_group(group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    _signal_group(group, signal.SIGKILL)  # the leader if it hung; workers it left behind
    process.wait(timeout=grace)


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """Start programs for the module; all are stopped at its end, whatever happened."""
    running = Processes(tmp_path_factory.mktemp("e2e-processes"))
    try:
        yield running
    finally:
        running.stop_all()


def wait_for_http(url: str, started: Started, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200; fail with the program's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if started.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{started.name} did not answer {url}:\n{started.tail()}")
        time.sleep(0.05)


# --- app servers ---------------------------------------------------------------------------------


def gunicorn_command(app: str, port: int, workers: int, worker_class: str = "sync") -> list[str]:
    """gunicorn serving ``app`` (``module:variable``) on loopback, with sync workers by default.

    ``worker_class`` is gunicorn's ``--worker-class``: ``uvicorn.workers.UvicornWorker`` serves
    an ASGI app.
    """
    return [
        sys.executable, "-m", "gunicorn", app, "--bind", f"{HOST}:{port}",
        "--workers", str(workers), "--worker-class", worker_class, "--log-level", "warning",
        "--graceful-timeout", "5",
    ]  # fmt: skip


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    """uvicorn serving ``app`` on loopback; more than one worker means worker processes."""
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


# --- Prometheus ----------------------------------------------------------------------------------

SCRAPE_INTERVAL = 1.0
"""Seconds between two scrapes of a job by :func:`start_prometheus`, and each scrape's timeout."""


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: its name, its target (``host:port``) and URL query parameters.

    ``settings`` are added to the job's ``scrape_config`` (``scrape_protocols``, say), over the
    global ones.
    """

    name: str
    target: str
    params: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


def prometheus_config(
    jobs: Sequence[ScrapeJob],
    interval: str = f"{SCRAPE_INTERVAL:g}s",
    global_settings: Mapping[str, Any] | None = None,
) -> str:
    """A Prometheus configuration scraping ``jobs`` every ``interval`` (JSON is valid YAML).

    ``global_settings`` are added to its ``global`` section (``scrape_protocols``, say).
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            **(global_settings or {}),
        },
        "scrape_configs": [
            {
                "job_name": job.name,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [job.target]}],
                **({"params": {k: [v] for k, v in job.params.items()}} if job.params else {}),
                **job.settings,
            }
            for job in jobs
        ],
    }
    return json.dumps(config, indent=2)


class Prometheus:
    """A running Prometheus and a client of its query API."""

    def __init__(self, started: Started, port: int) -> None:
        self.started = started
        self.url = f"http://{HOST}:{port}"

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; fails the test on an error answer."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expression`` (now, or at the Unix time ``at``)."""
        params = {"query": expression}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("/api/v1/query", **params)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def samples(self, selector: str, window: str, at: float) -> list[tuple[float, float]]:
        """The raw ``(time, value)`` samples of the one series ``selector`` picks, over the
        ``window`` (``10m``, say) ending at the Unix time ``at``; [] when it has none."""
        params = {"query": f"{selector}[{window}]", "time": repr(at)}
        data = self.api("/api/v1/query", **params)
        assert data["resultType"] == "matrix", data
        if not data["result"]:
            return []
        (series,) = data["result"]
        return [(float(moment), float(value)) for moment, value in series["values"]]

    def value(self, expression: str, at: float | None = None) -> float | None:
        """The value of a one-element vector; None when empty (and failing when longer)."""
        result = self.query(expression, at)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, expression: str, timeout: float, what: str) -> float:
        """Poll until ``expression`` has a value; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.value(expression)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus: {what} ({expression}) after {timeout}s")
            time.sleep(0.1)

    def last_scrape(self, job: str, successful: bool = False) -> float | None:
        """When the newest scrape of ``job`` started (Unix time), or None before the first.

        With ``successful``, the newest scrape only if it succeeded (``up == 1``).
        """
        up = f'up{{job="{job}"}}'
        # timestamp() of anything but a selector is the evaluation time: filter after it
        return self.value(f"timestamp({up}) and {up} == 1" if successful else f"timestamp({up})")

    def wait_for_scrape_after(
        self, job: str, moment: float, timeout: float = 10.0, successful: bool = False
    ) -> float:
        """Wait for a scrape of ``job`` that started after ``moment``; return its time.

        With ``successful``, wait for one that succeeded: its samples are stored at that time.
        """
        deadline = time.monotonic() + timeout
        while True:
            last = self.last_scrape(job, successful)
            if last is not None and last > moment:
                return last
            if time.monotonic() > deadline:
                pytest.fail(f"no scrape of {job} after {moment} (last: {last})")
            time.sleep(0.1)


def start_prometheus(
    processes: Processes,
    directory: Path,
    jobs: Sequence[ScrapeJob],
    binary: str | None = None,
    global_settings: Mapping[str, Any] | None = None,
    flags: Sequence[str] = (),
) -> Prometheus:
    """Start Prometheus scraping ``jobs`` every second; storage in ``directory``.

    ``binary`` defaults to ``prometheus`` on the PATH; ``global_settings`` go to the
    configuration's ``global`` section and ``flags`` to the command line.
    """
    if binary is None:
        binary = require_program("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(prometheus_config(jobs, global_settings=global_settings))
    port = free_port()
    started = processes.start(
        directory.name,
        [
            binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={HOST}:{port}", "--log.level=warn", *flags,
        ],
    )  # fmt: skip
    wait_for_http(f"http://{HOST}:{port}/-/ready", started)
    return Prometheus(started, port)


# --- the Prometheus binaries ---------------------------------------------------------------------

PROMETHEUS3_SCRIPT = ROOT / "scripts" / "prometheus3.sh"
PROMETHEUS3_CACHED = ROOT / ".cache" / "prometheus3" / "root" / "usr" / "bin" / "prometheus"
"""Where ``scripts/prometheus3.sh`` unpacks Debian unstable's ``prometheus`` package."""


def prometheus_version(binary: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a Prometheus binary, None if it does not run as one."""
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = re.match(r"prometheus, version (\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def require_prometheus2() -> tuple[str, tuple[int, int, int]]:
    """``prometheus`` on the PATH and its version, if it is 2.x (Debian 12's 2.42 here).

    A missing or other binary skips the test, except under CI=true, where it fails.
    """
    binary = require_program("prometheus")
    version = prometheus_version(binary)
    if version is None or version[0] != 2:
        missing(f"{binary} is not Prometheus 2 (version {version})")
    return binary, version


def require_prometheus3() -> tuple[str, tuple[int, int, int]]:
    """A Prometheus 3 binary and its version, as ``scripts/prometheus3.sh`` finds them.

    ``$PROMETHEUS3_BIN``, else ``prometheus`` on the PATH if it is 3.x, else the script's cached
    copy. None of them skips the test, except under CI=true, where ``scripts/test.sh`` has run
    the script: there it fails.
    """
    candidates = [os.environ.get("PROMETHEUS3_BIN"), shutil.which("prometheus")]
    candidates.append(str(PROMETHEUS3_CACHED))
    for candidate in candidates:
        if candidate:
            version = prometheus_version(candidate)
            if version is not None and version[0] == 3:
                return candidate, version
    missing(
        "no Prometheus 3 ($PROMETHEUS3_BIN, prometheus on the PATH, or "
        f"{PROMETHEUS3_CACHED.relative_to(ROOT)}): run bash {PROMETHEUS3_SCRIPT.relative_to(ROOT)}"
    )


REQUIRE_PROMETHEUS: dict[int, Callable[[], tuple[str, tuple[int, int, int]]]] = {
    2: require_prometheus2,
    3: require_prometheus3,
}
"""The binary and version of a Prometheus of each major version, as the functions above find."""
