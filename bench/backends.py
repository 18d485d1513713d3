"""Workloads of the multi-process backends, run by ``bench/run.py`` after the in-memory ones.

The shared-file backend is compared with prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``); the Redis backend with pytheus's own single-process backend, as
its goal is a hot path as fast as memory. Every side runs in a worker process of its own
(``bench/_backend_worker.py``): prometheus_client picks its value class from the environment when
it is imported, and a pytheus process has one backend. The harness times a loop from here, so
its figures include one round trip over a pipe per loop (some tens of microseconds, against
loops of 30 ms and more).

The scrape workloads fork their writer processes from the worker that scrapes, the way a
pre-forking server forks its workers: the writers record 1,100 series each, then either exit
(the dead) or wait, alive, until the workload is over. The worker then scrapes, as an exporter
process or the server's metrics endpoint would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.harness import OURS, RIGHT, THEIRS, Result, Runner, Workload, _cells

ROOT = Path(__file__).resolve().parent.parent

HOT_PATH_OPS = 200_000
QUICK_OPS = 2_000
LIVING = 8
DEAD = 100
QUICK_DEAD = 4
COUNTERS = 1_000
HISTOGRAMS = 100
REDIS_WRITERS = 8

_scale = {"dead": DEAD, "summaries": 1_000}
NOTES: list[str] = []
"""Figures the setups measured besides the timed loops, printed after the tables."""


def set_quick(quick: bool) -> None:
    """A ``--quick`` run forks a few dead processes instead of 100, and writes 100 summaries
    (and histograms) instead of 1,000."""
    _scale["dead"] = QUICK_DEAD if quick else DEAD
    _scale["summaries"] = 100 if quick else 1_000


@dataclass(frozen=True)
class BackendWorkload(Workload):
    ours_label: str = OURS
    """The heading of the ``pytheus`` column."""
    theirs_label: str = THEIRS
    """The heading of the other column: what pytheus is compared with."""
    needs: tuple[str, ...] = ()
    """Programs the workload starts (``redis-server``); without them it is skipped."""

    def missing(self) -> list[str]:
        return [program for program in self.needs if shutil.which(program) is None]


# --- worker processes -----------------------------------------------------------------------------


class Worker:
    """One side of a workload in its own process; see ``bench/_backend_worker.py``."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, **(env or {})}
        environment.pop("PYTHEUS_BACKEND_CLASS", None)
        environment.pop("PYTHEUS_MULTIPROC_DIR", None)
        if "PROMETHEUS_MULTIPROC_DIR" not in (env or {}):
            environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench._backend_worker", json.dumps(spec)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.setup: dict[str, Any] = self._answer()
        """What the worker reported once ready (the first scrape's time, for scrapes)."""

    def _answer(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            code = self.process.wait(timeout=30)
            raise RuntimeError(f"benchmark worker exited with status {code} (see stderr)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        stdin.flush()
        return self._answer()

    def runner(self, ops: int) -> Runner:
        def run() -> None:
            self.call("run", ops=ops)

        return run

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"op": "stop"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@contextmanager
def worker(spec: dict[str, Any], env: dict[str, str] | None = None) -> Iterator[Worker]:
    started = Worker(spec, env)
    try:
        yield started
    finally:
        started.close()


@contextmanager
def metrics_directory() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pytheus-bench-") as path:
        yield path


@contextmanager
def client_worker(spec: dict[str, Any]) -> Iterator[Worker]:
    """A prometheus_client worker in multiprocess mode, on a directory of its own."""
    with (
        metrics_directory() as path,
        worker(
            {**spec, "library": "client", "backend": "multiprocess"},
            {"PROMETHEUS_MULTIPROC_DIR": path},
        ) as started,
    ):
        yield started


@contextmanager
def file_worker(spec: dict[str, Any]) -> Iterator[Worker]:
    with (
        metrics_directory() as path,
        worker({**spec, "library": "pytheus", "backend": "file", "path": path}) as started,
    ):
        yield started


# --- a Redis server of our own --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="pytheus-bench-redis-") as directory:
        process = subprocess.Popen(
            [
                binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", directory,
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_redis(port, process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait(timeout=10)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on port {port}")


# --- shared-file backend vs prometheus_client's multiprocess mode ---------------------------------


@contextmanager
def file_inc(ops: int) -> Iterator[Runner]:
    with file_worker({"role": "inc"}) as started:
        yield started.runner(ops)


@contextmanager
def client_multiprocess_inc(ops: int) -> Iterator[Runner]:
    with client_worker({"role": "inc"}) as started:
        yield started.runner(ops)


def _fleet(dead: int) -> dict[str, Any]:
    return {
        "role": "scrape",
        "counters": COUNTERS,
        "histograms": HISTOGRAMS,
        "living": LIVING,
        "dead": dead,
    }


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


@contextmanager
def file_scrape(scrapes: int) -> Iterator[Runner]:
    with file_worker(_fleet(0)) as started:
        yield started.runner(scrapes)


@contextmanager
def client_multiprocess_scrape(scrapes: int) -> Iterator[Runner]:
    with client_worker(_fleet(0)) as started:
        yield started.runner(scrapes)


@contextmanager
def file_scrape_after_deaths(scrapes: int) -> Iterator[Runner]:
    dead = _scale["dead"]
    with file_worker(_fleet(dead)) as started:
        NOTES.append(
            f"file backend, {LIVING} living + {dead} dead processes: the first scrape after the "
            f"deaths (compacting the dead into archive.db) took {_ms(started.setup['first_ns'])}; "
            f"the table shows the scrapes after it"
        )
        yield started.runner(scrapes)


@contextmanager
def client_multiprocess_scrape_after_deaths(scrapes: int) -> Iterator[Runner]:
    dead = _scale["dead"]
    with client_worker(_fleet(dead)) as started:
        NOTES.append(
            f"prometheus_client, {LIVING} living + {dead} dead processes: the first scrape "
            f"took {_ms(started.setup['first_ns'])} (every scrape reads all "
            f"{LIVING + dead} processes' files)"
        )
        yield started.runner(scrapes)


# --- pytheus serve vs a scrape in the application, same store (issue 18) ------------------------


@contextmanager
def file_exporter_scrape(scrapes: int) -> Iterator[Runner]:
    with file_worker({**_fleet(0), "exporter": True}) as started:
        yield started.runner(scrapes)


def _redis_fleet(url: str, exporter: bool) -> dict[str, Any]:
    return _pytheus_spec(
        "redis", role="scrape", url=url, namespace="bench", counters=COUNTERS,
        histograms=HISTOGRAMS, dead=REDIS_WRITERS, exporter=exporter,
    )  # fmt: skip


@contextmanager
def redis_exporter_scrape(scrapes: int) -> Iterator[Runner]:
    with redis_server() as url, worker(_redis_fleet(url, True)) as started:
        yield started.runner(scrapes)


@contextmanager
def redis_application_scrape(scrapes: int) -> Iterator[Runner]:
    with redis_server() as url, worker(_redis_fleet(url, False)) as started:
        yield started.runner(scrapes)


# --- summaries with quantiles vs histograms, on the shared-file backend (issue 19) --------------

SUMMARY_VALUES = 20


@contextmanager
def file_summary_observe(ops: int) -> Iterator[Runner]:
    with file_worker({"role": "observe", "metric": "summary"}) as started:
        yield started.runner(ops)


@contextmanager
def file_histogram_observe(ops: int) -> Iterator[Runner]:
    with file_worker({"role": "observe", "metric": "histogram"}) as started:
        yield started.runner(ops)


def _observers(summaries: int, histograms: int) -> dict[str, Any]:
    return {"role": "scrape", "summaries": summaries, "histograms": histograms,
            "values": SUMMARY_VALUES, "living": LIVING, "dead": 0}  # fmt: skip


@contextmanager
def file_summary_scrape(scrapes: int) -> Iterator[Runner]:
    with file_worker(_observers(_scale["summaries"], 0)) as started:
        yield started.runner(scrapes)


@contextmanager
def file_histogram_scrape(scrapes: int) -> Iterator[Runner]:
    with file_worker(_observers(0, _scale["summaries"])) as started:
        yield started.runner(scrapes)


def _redis_observers(url: str, summaries: int, histograms: int) -> dict[str, Any]:
    return _pytheus_spec(
        "redis", role="scrape", url=url, namespace="bench", summaries=summaries,
        histograms=histograms, values=SUMMARY_VALUES, dead=REDIS_WRITERS,
    )  # fmt: skip


@contextmanager
def redis_summary_scrape(scrapes: int) -> Iterator[Runner]:
    with redis_server() as url, worker(_redis_observers(url, _scale["summaries"], 0)) as started:
        yield started.runner(scrapes)


@contextmanager
def redis_histogram_scrape(scrapes: int) -> Iterator[Runner]:
    with redis_server() as url, worker(_redis_observers(url, 0, _scale["summaries"])) as started:
        yield started.runner(scrapes)


# --- Redis backend vs pytheus's single-process backend --------------------------------------------


def _pytheus_spec(backend: str, **spec: Any) -> dict[str, Any]:
    return {"library": "pytheus", "backend": backend, **spec}


@contextmanager
def redis_inc(ops: int) -> Iterator[Runner]:
    with (
        redis_server() as url,
        worker(_pytheus_spec("redis", role="inc", url=url, namespace="bench")) as started,
    ):
        yield started.runner(ops)


@contextmanager
def memory_inc(ops: int) -> Iterator[Runner]:
    with worker(_pytheus_spec("memory", role="inc")) as started:
        yield started.runner(ops)


TOP_LEVEL = ("evalsha", "eval", "evalsha_ro", "eval_ro", "script", "ping")
"""Commands a client sends itself; the others in INFO commandstats ran inside the scripts."""


def _commands_per_scrape(url: str, counters: int, histograms: int, namespace: str) -> str:
    spec = _pytheus_spec(
        "redis", role="scrape", url=url, namespace=namespace, counters=counters,
        histograms=histograms, dead=REDIS_WRITERS,
    )  # fmt: skip
    with worker(spec) as started:
        started.call("run", ops=1)  # the scripts are loaded
        calls = started.call("commands")
    top = sum(calls.get(name, 0) for name in TOP_LEVEL)
    listed = ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))
    return f"{top} sent ({sum(calls.values())} run in all: {listed})"


@contextmanager
def redis_scrape(scrapes: int) -> Iterator[Runner]:
    with redis_server() as url:
        one = _commands_per_scrape(url, 1, 0, "one")
        many = _commands_per_scrape(url, COUNTERS, HISTOGRAMS, "many")
        NOTES.append(
            f"Redis commands per scrape (INFO commandstats after CONFIG RESETSTAT): "
            f"1 series: {one}; {COUNTERS + HISTOGRAMS:,} series: {many}"
        )
        spec = _pytheus_spec(
            "redis", role="scrape", url=url, namespace="bench", counters=COUNTERS,
            histograms=HISTOGRAMS, dead=REDIS_WRITERS,
        )  # fmt: skip
        with worker(spec) as started:
            yield started.runner(scrapes)


@contextmanager
def memory_scrape(scrapes: int) -> Iterator[Runner]:
    spec = _pytheus_spec(
        "memory", role="scrape", counters=COUNTERS, histograms=HISTOGRAMS,
        in_process_writes=REDIS_WRITERS,
    )  # fmt: skip
    with worker(spec) as started:
        yield started.runner(scrapes)


# --- the list -------------------------------------------------------------------------------------

FILE_OURS = "pytheus file"
FILE_THEIRS = "prometheus_client mp"
EXPORTER_OURS = "pytheus serve"
EXPORTER_THEIRS = "in the application"
SUMMARY_OURS = "Summary (quantiles)"
SUMMARY_THEIRS = "Histogram, same backend"
REDIS_OURS = "pytheus Redis"
REDIS_THEIRS = "pytheus memory"

BACKEND_WORKLOADS: list[BackendWorkload] = [
    BackendWorkload(
        name="file: Counter.inc()",
        target=0.7,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=file_inc,
        client=client_multiprocess_inc,
        ours_label=FILE_OURS,
        theirs_label=FILE_THEIRS,
    ),
    BackendWorkload(
        name="file: scrape 8 procs x 1,100 series",
        target=0.5,
        ops=5,
        quick_ops=1,
        pytheus=file_scrape,
        client=client_multiprocess_scrape,
        unit="scrape",
        ours_label=FILE_OURS,
        theirs_label=FILE_THEIRS,
    ),
    BackendWorkload(
        name="file: same + 100 dead procs",
        target=0.2,
        ops=2,
        quick_ops=1,
        pytheus=file_scrape_after_deaths,
        client=client_multiprocess_scrape_after_deaths,
        unit="scrape",
        ours_label=FILE_OURS,
        theirs_label=FILE_THEIRS,
    ),
    BackendWorkload(
        name="file: exporter scrape 8 procs x 1,100 series",
        target=1.2,
        ops=5,
        quick_ops=1,
        pytheus=file_exporter_scrape,
        client=file_scrape,
        unit="scrape",
        ours_label=EXPORTER_OURS,
        theirs_label=EXPORTER_THEIRS,
    ),
    BackendWorkload(
        name="file: Summary(quantiles).observe()",
        target=1.5,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=file_summary_observe,
        client=file_histogram_observe,
        ours_label=SUMMARY_OURS,
        theirs_label=SUMMARY_THEIRS,
    ),
    BackendWorkload(
        name="file: scrape 8 procs x 1,000 summaries",
        target=3.0,
        ops=5,
        quick_ops=1,
        pytheus=file_summary_scrape,
        client=file_histogram_scrape,
        unit="scrape",
        ours_label=SUMMARY_OURS,
        theirs_label=SUMMARY_THEIRS,
    ),
    BackendWorkload(
        name="redis: scrape 8 procs x 1,000 summaries",
        target=3.0,
        ops=5,
        quick_ops=1,
        pytheus=redis_summary_scrape,
        client=redis_histogram_scrape,
        unit="scrape",
        ours_label=SUMMARY_OURS,
        theirs_label=SUMMARY_THEIRS,
        needs=("redis-server",),
    ),
    BackendWorkload(
        name="redis: exporter scrape 1,100 series of 8 procs",
        target=1.2,
        ops=10,
        quick_ops=1,
        pytheus=redis_exporter_scrape,
        client=redis_application_scrape,
        unit="scrape",
        ours_label=EXPORTER_OURS,
        theirs_label=EXPORTER_THEIRS,
        needs=("redis-server",),
    ),
    BackendWorkload(
        name="redis: Counter.inc()",
        target=1.5,
        ops=HOT_PATH_OPS,
        quick_ops=QUICK_OPS,
        pytheus=redis_inc,
        client=memory_inc,
        ours_label=REDIS_OURS,
        theirs_label=REDIS_THEIRS,
        needs=("redis-server",),
    ),
    BackendWorkload(
        name="redis: scrape 1,100 series of 8 procs",
        target=3.0,
        ops=10,
        quick_ops=1,
        pytheus=redis_scrape,
        client=memory_scrape,
        unit="scrape",
        ours_label=REDIS_OURS,
        theirs_label=REDIS_THEIRS,
        needs=("redis-server",),
    ),
]


# --- tables with the backends' column headings ----------------------------------------------------


def table(results: list[Result], ours: str, theirs: str, markdown: bool) -> str:
    """``harness.text_table`` / ``markdown_table``, with other headings for the two columns."""
    headers = ("workload", ours, theirs, "ratio", "per-round ratios", "target", "met")
    rows = [headers, *(_cells(r) for r in results)]
    if markdown:
        rows = [tuple(cell.replace("|", "\\|") for cell in row) for row in rows]
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(headers))]
    aligned = [
        [cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(row, widths, RIGHT)]
        for row in rows
    ]
    if not markdown:
        return "\n".join("  ".join(row).rstrip() for row in aligned)
    header, *body = aligned
    rule = [
        "-" * (len(cell) - 1) + ":" if right else "-" * len(cell)
        for cell, right in zip(header, RIGHT)
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, rule, *body])
