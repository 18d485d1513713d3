"""How a Redis namespace scales: scrape time, response size and Redis memory by series count.

Run: ``python bench/redis_sizing.py [--series 10000 100000] [--processes 8]``. For each size, a
redis-server of its own (no persistence, a free loopback port) takes ``--processes`` forked
writers, each recording the same counter series (labels ``path`` and ``code``) and flushing; a
fresh process then loads the backend and times ``generate_metrics`` (median of 5, after one
untimed scrape). Counters, histograms and summaries of all processes are summed in Redis, so the
figures depend on the number of series, not of processes (gauges keep a field per process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import redis_server


def write(url: str, series: int) -> None:
    """A writer process: every series once, then flush (runs in a forked child)."""
    from pytheus.backends import load_backend
    from pytheus.backends.redis import MultiProcessRedisBackend, wait_for_flush
    from pytheus.metrics import Counter
    from pytheus.registry import CollectorRegistry

    load_backend(MultiProcessRedisBackend, {"url": url, "namespace": "sizing"})
    counter = Counter("sizing_requests_total", "R.", required_labels=["path", "code"],
                      registry=CollectorRegistry())  # fmt: skip
    for index in range(series):
        counter.labels(path=f"/api/{index // 10}", code=str(200 + index % 10)).inc()
    if not wait_for_flush(300):
        raise RuntimeError("the writer could not flush")


def measure(url: str, series: int, processes: int) -> dict[str, float]:
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                write(url, series)
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        if status:
            raise RuntimeError("a writer failed")
    import redis

    from pytheus.backends import load_backend
    from pytheus.backends.redis import MultiProcessRedisBackend
    from pytheus.exposition import generate_metrics
    from pytheus.metrics import Counter
    from pytheus.registry import CollectorRegistry

    load_backend(MultiProcessRedisBackend, {"url": url, "namespace": "sizing"})
    registry = CollectorRegistry()
    Counter("sizing_requests_total", "R.", required_labels=["path", "code"], registry=registry)
    body = generate_metrics(registry)
    lines = sum(1 for line in body.splitlines() if line.startswith("sizing_requests_total{"))
    if lines != series:
        raise AssertionError(f"expected {series} series in the scrape, got {lines}")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        generate_metrics(registry)
        times.append(time.perf_counter() - start)
    used = redis.Redis.from_url(url).info("memory")["used_memory"]
    return {"scrape_s": statistics.median(times), "body": len(body.encode()), "redis": used}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    print(f"{'series':>9}  {'processes':>9}  {'scrape':>9}  {'body':>9}  {'Redis memory':>12}")
    for series in args.series:
        with redis_server() as url:
            found = measure(url, series, args.processes)
        print(
            f"{series:>9,}  {args.processes:>9}  {found['scrape_s'] * 1000:>7.0f} ms  "
            f"{found['body'] / 1e6:>6.1f} MB  {found['redis'] / 1e6:>9.1f} MB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
