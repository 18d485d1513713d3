"""One side of a multi-process workload of ``bench/backends.py``, in a process of its own.

Run as ``python -m bench._backend_worker SPEC`` (SPEC: a JSON object, see ``main``). The worker
builds its side (metrics, and for the scrape workloads the writer processes it forks), prints one
JSON line with what the setup measured, then serves one JSON command per line on stdin:

- ``{"op": "run", "ops": N}``: N operations (``Counter.inc()`` or scrapes), answered with
  ``{"ns": ...}`` once done;
- ``{"op": "commands"}`` (Redis scrapers): the Redis commands one scrape sends;
- ``{"op": "stop"}``: stops the writers and exits.

A separate process per side is what makes these workloads possible: prometheus_client chooses
its value class when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``, and pytheus has one
backend per process. The worker keeps the garbage collector paused during a loop, as the
harness does (``gc.freeze()`` after the setup keeps the collections between loops short).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns
from typing import Any

COUNTER_NAME = "bench_http_requests_total"
HISTOGRAM_NAME = "bench_http_request_duration_seconds"
SUMMARY_NAME = "bench_job_duration_seconds"
QUANTILES = (0.5, 0.9, 0.99)
# pytheus's default buckets, given to prometheus_client too (as in bench/workloads.py)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEAD_IN_PARALLEL = 4


def counter_labels(index: int) -> tuple[str, str]:
    return f"/api/v1/resource/{index // 10}", f"{200 + index % 10}"


def observation(index: int, nth: int = 0) -> float:
    """The ``nth`` value a write observes in histogram series ``index``."""
    if nth == 0:
        return (index % 50) * 0.05
    return 0.0005 * 1.4 ** ((index * 7 + nth * 13) % 45)  # 0.5 ms to about 1 h


def sample_lines(counters: int, histograms: int, native: bool = False, summaries: int = 0) -> int:
    """Lines of a scrape: one per counter series; per histogram series its buckets, sum, count;
    per summary series its quantiles, sum, count.

    A native-only histogram has the single classic bucket ``+Inf`` in the text format.
    """
    per_histogram = 3 if native else len(BUCKETS) + 3
    return counters + histograms * per_histogram + summaries * (len(QUANTILES) + 2)


def check_scrape(
    text: str, counters: int, histograms: int, writes: int, native: bool = False,
    summaries: int = 0,
) -> int:  # fmt: skip
    """Checks the sample lines and the counters' total (every write adds 1); returns the lines."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if any(line.endswith(" NaN") for line in lines if line.startswith(SUMMARY_NAME)):
        raise AssertionError("a summary's quantile is NaN: the windows were not merged")
    expected = sample_lines(counters, histograms, native, summaries)
    if len(lines) != expected:
        raise AssertionError(f"expected {expected} sample lines in a scrape, got {len(lines)}")
    total = sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(COUNTER_NAME))
    if total != counters * writes:
        raise AssertionError(f"counters add up to {total}, expected {counters * writes}")
    return len(lines)


# --- the two libraries ----------------------------------------------------------------------------


class Side:
    """One library's metrics in this process: define them, write every series, scrape."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.counters: int = spec.get("counters", 0)
        self.histograms: int = spec.get("histograms", 0)
        self.summaries: int = spec.get("summaries", 0)
        self.values: int = spec.get("values", 1)
        """Observations per histogram (and summary) series in each write."""

    def write_series(self, times: int = 1) -> None:
        raise NotImplementedError

    def scrape(self) -> str:
        raise NotImplementedError

    def render(self) -> object:
        """What the timed loop runs: a scrape in the text format unless the spec asks else."""
        return self.scrape()

    def inc_loop(self) -> Callable[[int], None]:
        raise NotImplementedError


class PytheusSide(Side):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        from pytheus.backends import load_backend
        from pytheus.backends.memory import SingleProcessBackend
        from pytheus.metrics import Counter, Histogram, Summary
        from pytheus.registry import CollectorRegistry

        backend = spec["backend"]
        if backend == "file":
            from pytheus.backends.file import MultiProcessFileBackend

            load_backend(MultiProcessFileBackend, {"path": spec["path"]})
        elif backend == "redis":
            from pytheus.backends.redis import MultiProcessRedisBackend

            load_backend(
                MultiProcessRedisBackend, {"url": spec["url"], "namespace": spec["namespace"]}
            )
        else:
            load_backend(SingleProcessBackend, {})
        self.registry = CollectorRegistry()
        self.counter = Counter(
            COUNTER_NAME, "Requests.", required_labels=["path", "code"], registry=self.registry
        )
        self.histogram = Histogram(
            HISTOGRAM_NAME,
            "Latency.",
            required_labels=["route"],
            registry=self.registry,
            native=spec.get("native", False),
        )
        self.summary = Summary(
            SUMMARY_NAME, "Jobs.", required_labels=["route"], registry=self.registry,
            quantiles=QUANTILES,
        )  # fmt: skip

    def write_series(self, times: int = 1) -> None:
        for index in range(self.counters):
            path, code = counter_labels(index)
            self.counter.labels(path=path, code=code).inc(times)
        for index in range(self.histograms):
            child = self.histogram.labels(route=f"route_{index}")
            for _ in range(times):
                for nth in range(self.values):
                    child.observe(observation(index, nth))
        for index in range(self.summaries):
            summary = self.summary.labels(route=f"route_{index}")
            for _ in range(times):
                for nth in range(self.values):
                    summary.observe(observation(index, nth))

    def render(self) -> object:
        """A scrape as ``pytheus.exposition.render_for_request`` answers the spec's Accept."""
        accept = self.spec.get("accept")
        if accept is None:
            return self.scrape()
        from pytheus.exposition.negotiation import render_for_request

        return render_for_request(self.registry, accept, None)

    def scrape(self) -> str:
        """The registry's scrape, or with ``"exporter": true`` in the spec what ``pytheus serve``
        serves of the same store (everything it holds, without the metric objects)."""
        from pytheus.exposition import generate_metrics

        if self.spec.get("exporter"):
            from pytheus.backends.base import current_store
            from pytheus.cli import ExporterRegistry

            return generate_metrics(ExporterRegistry(current_store()))
        return generate_metrics(self.registry)

    def inc_loop(self) -> Callable[[int], None]:
        from pytheus.metrics import Counter
        from pytheus.registry import CollectorRegistry

        counter = Counter("bench_events_total", "Events.", registry=CollectorRegistry())

        def run(ops: int) -> None:
            for _ in repeat(None, ops):
                counter.inc()

        return run

    def observe_loop(self) -> Callable[[int], None]:
        """``observe`` on an unlabelled Histogram (default buckets) or Summary with quantiles
        (the spec's ``metric``), cycling through 64 values from 0.5 ms to about 1 h."""
        from pytheus.metrics import Histogram, Summary
        from pytheus.registry import CollectorRegistry

        registry = CollectorRegistry()
        metric: Histogram | Summary
        if self.spec["metric"] == "summary":
            metric = Summary("bench_wait_seconds", "Wait.", quantiles=QUANTILES, registry=registry)
        else:
            metric = Histogram("bench_wait_seconds", "Wait.", registry=registry)
        observe = metric.observe
        values = [observation(3, nth) for nth in range(64)]

        def run(ops: int) -> None:
            for _ in repeat(None, ops // 64):
                for value in values:
                    observe(value)

        return run

    def flush(self) -> bool:
        from pytheus.backends.redis import wait_for_flush

        return wait_for_flush(30.0)


class ClientSide(Side):
    """prometheus_client in multiprocess mode (the caller set ``PROMETHEUS_MULTIPROC_DIR``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        import prometheus_client
        from prometheus_client import values
        from prometheus_client.multiprocess import MultiProcessCollector

        if values.ValueClass is values.MutexValue:
            raise RuntimeError("prometheus_client is not in multiprocess mode")
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.client = prometheus_client
        # the writers' metrics belong to no registry; the scrape reads the files
        self.counter = prometheus_client.Counter(
            COUNTER_NAME, "Requests.", ["path", "code"], registry=None
        )
        self.histogram = prometheus_client.Histogram(
            HISTOGRAM_NAME, "Latency.", ["route"], registry=None, buckets=BUCKETS
        )
        self.registry = prometheus_client.CollectorRegistry()
        MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]

    def write_series(self, times: int = 1) -> None:
        for index in range(self.counters):
            self.counter.labels(*counter_labels(index)).inc(times)
        for index in range(self.histograms):
            child = self.histogram.labels(f"route_{index}")
            for _ in range(times):
                for nth in range(self.values):
                    child.observe(observation(index, nth))

    def scrape(self) -> str:
        text: bytes = self.client.generate_latest(self.registry)
        return text.decode()

    def inc_loop(self) -> Callable[[int], None]:
        counter = self.client.Counter("bench_events_total", "Events.", registry=None)

        def run(ops: int) -> None:
            for _ in repeat(None, ops):
                counter.inc()

        return run


def make_side(spec: dict[str, Any]) -> Side:
    return PytheusSide(spec) if spec["library"] == "pytheus" else ClientSide(spec)


# --- writer processes -----------------------------------------------------------------------------


class Writers:
    """Forked writer processes: the dead ones write and exit, the living ones wait for ``stop``."""

    def __init__(self) -> None:
        self.living: list[int] = []
        self._stop_r, self._stop_w = os.pipe()

    def _fork(self, work: Callable[[], None], ready_w: int, stay: bool) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:  # the child: never returns
            os.close(self._stop_w)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            work()
            os.write(ready_w, b"1")
            if stay:
                os.read(self._stop_r, 1)  # until the parent closes its end
            status = 0
        except BaseException:
            traceback.print_exc()
            os.write(ready_w, b"0")
        finally:
            os._exit(status)

    def _wait_ready(self, ready_r: int, count: int) -> None:
        received = b""
        while len(received) < count:
            chunk = os.read(ready_r, count - len(received))
            if not chunk:
                raise RuntimeError("a writer process ended without reporting")
            received += chunk
        if b"0" in received:
            raise RuntimeError("a writer process failed (its traceback is above)")

    def start_dead(self, work: Callable[[], None], count: int) -> None:
        """``count`` processes that each run ``work`` and exit, a few at a time."""
        ready_r, ready_w = os.pipe()
        try:
            for first in range(0, count, DEAD_IN_PARALLEL):
                batch = min(DEAD_IN_PARALLEL, count - first)
                pids = [self._fork(work, ready_w, stay=False) for _ in range(batch)]
                self._wait_ready(ready_r, batch)
                for pid in pids:
                    _, status = os.waitpid(pid, 0)
                    if status != 0:
                        raise RuntimeError(f"writer process {pid} exited with status {status}")
        finally:
            os.close(ready_r)
            os.close(ready_w)

    def start_living(self, work: Callable[[], None], count: int) -> None:
        ready_r, ready_w = os.pipe()
        try:
            self.living += [self._fork(work, ready_w, stay=True) for _ in range(count)]
            self._wait_ready(ready_r, count)
        finally:
            os.close(ready_r)
            os.close(ready_w)

    def stop(self) -> None:
        os.close(self._stop_w)
        for pid in self.living:
            os.waitpid(pid, 0)
        self.living = []


# --- the command loop -----------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> tuple[int, object]:
    start = perf_counter_ns()
    result = action()
    return perf_counter_ns() - start, result


def redis_commands(side: Side, url: str) -> dict[str, int]:
    """Calls per command (INFO commandstats) for one scrape, counted from a clean slate."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.config_resetstat()
        side.scrape()
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] not in ("config", "info")
    }


def setup_scrape(spec: dict[str, Any], side: Side, writers: Writers) -> dict[str, Any]:
    """Writes the series (in writer processes when asked), checks one scrape, times the first."""
    living: int = spec.get("living", 0)
    dead: int = spec.get("dead", 0)
    report: dict[str, Any] = {}
    if spec["backend"] == "redis":
        assert isinstance(side, PytheusSide)
        pytheus_side = side

        def write_and_flush() -> None:
            pytheus_side.write_series()
            if not pytheus_side.flush():
                raise RuntimeError("the writer could not flush to Redis")

        writers.start_dead(write_and_flush, dead)  # they finish and exit: Redis keeps the data
    else:
        writers.start_dead(side.write_series, dead)
        writers.start_living(side.write_series, living)
    if side.summaries and living:
        time.sleep(1.5)  # living writers publish their quantile windows every second
    if spec.get("in_process_writes"):
        side.write_series(spec["in_process_writes"])
    writes = living + dead + spec.get("in_process_writes", 0)
    first_ns, text = timed(side.scrape)
    assert isinstance(text, str)
    report["first_ns"] = first_ns
    report["lines"] = check_scrape(
        text, side.counters, side.histograms, writes, spec.get("native", False), side.summaries
    )
    rendered = side.render()
    body = rendered[0] if isinstance(rendered, tuple) else rendered
    assert isinstance(body, (str, bytes))
    report["bytes"] = len(body.encode() if isinstance(body, str) else body)
    return report


def main() -> int:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    side = make_side(spec)
    writers = Writers()
    try:
        if spec["role"] == "inc":
            loop = side.inc_loop()
            report: dict[str, Any] = {}
        elif spec["role"] == "observe":
            assert isinstance(side, PytheusSide)
            loop = side.observe_loop()
            report = {}
        else:
            report = setup_scrape(spec, side, writers)
            scrape = side.render

            def loop(ops: int) -> None:
                for _ in repeat(None, ops):
                    scrape()

        gc.collect()
        gc.freeze()
        print(json.dumps(report), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            if op == "stop":
                break
            if op == "run":
                gc.disable()
                start = perf_counter_ns()
                loop(command["ops"])
                elapsed = perf_counter_ns() - start
                gc.enable()
                print(json.dumps({"ns": elapsed}), flush=True)
                gc.collect()  # after answering; short, as the setup's objects are frozen
            elif op == "commands":
                print(json.dumps(redis_commands(side, spec["url"])), flush=True)
            else:
                raise ValueError(f"unknown command {op!r}")
    finally:
        writers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
