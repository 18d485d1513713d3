"""Heap bytes per labelled series, against prometheus_client, each library in a fresh interpreter.

Usage::

    .venv/bin/python bench/memory.py            # 100,000 series per case, about a minute
    .venv/bin/python bench/memory.py --quick    # 2,000 series: checks that it works

A case creates a ``Counter`` (or a ``Histogram`` with the default buckets) with labels ``a`` and
``b``, then ``labels(a_i, b_i)`` and one ``inc()``/``observe()`` for each of N distinct pairs,
with the label strings made beforehand. The figure is what tracemalloc counts as allocated on
the heap by those N calls, after a garbage collection, divided by N: the label strings are left
out (both libraries keep the same ones). Backends: pytheus's memory backend against
prometheus_client's default, pytheus's shared files against prometheus_client's multiprocess
mode (the heap only: both also write files), pytheus's Redis backend against its own memory
backend (a redis-server on a free loopback port).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(ROOT))

from bench.backends import redis_server  # noqa: E402

CASE = r"""
import gc, json, os, sys, tracemalloc
library, backend, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pairs = [(f"a{i}", f"b{i}") for i in range(n)]
if library == "pytheus":
    if backend == "file":
        from pytheus.backends import load_backend
        from pytheus.backends.file import MultiProcessFileBackend
        load_backend(MultiProcessFileBackend, {"path": os.environ["BENCH_DIR"]})
    elif backend == "redis":
        from pytheus.backends import load_backend
        from pytheus.backends.redis import MultiProcessRedisBackend
        load_backend(MultiProcessRedisBackend, {"url": os.environ["BENCH_REDIS"],
                                                "namespace": "bench", "flush_interval": 3600})
    from pytheus.metrics import Counter, Histogram
    from pytheus.registry import CollectorRegistry
    registry = CollectorRegistry()
    if kind == "counter":
        metric = Counter("m_total", "M.", required_labels=["a", "b"], registry=registry)
    else:
        metric = Histogram("h_seconds", "H.", required_labels=["a", "b"], registry=registry)
else:
    import prometheus_client
    registry = prometheus_client.CollectorRegistry()
    if kind == "counter":
        metric = prometheus_client.Counter("m_total", "M.", ["a", "b"], registry=registry)
    else:
        metric = prometheus_client.Histogram("h_seconds", "H.", ["a", "b"], registry=registry)
record = (lambda child: child.inc()) if kind == "counter" else (lambda child: child.observe(0.3))
if library == "pytheus":
    from pytheus.exposition import generate_metrics
    scrape = lambda: generate_metrics(registry)
else:
    scrape = lambda: prometheus_client.generate_latest(registry)
record(metric.labels("warm", "up"))
scrape()  # imports and first-use caches are not the series' bytes
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for a, b in pairs:
    record(metric.labels(a, b))
gc.collect()
after = tracemalloc.get_traced_memory()[0]
scrape()
gc.collect()
scraped = tracemalloc.get_traced_memory()[0]
print(json.dumps([(after - before) / n, (scraped - before) / n]))
"""

SCALE = r"""
import gc, gzip, json, sys, time, tracemalloc
library, n = sys.argv[1], int(sys.argv[2])
pairs = [(f"a{i}", f"b{i}") for i in range(n)]
if library == "pytheus":
    from pytheus.exposition.negotiation import render_for_request
    from pytheus.metrics import Counter
    from pytheus.registry import CollectorRegistry
    registry = CollectorRegistry()
    metric = Counter("m_total", "M.", required_labels=["a", "b"], registry=registry)
    scrape = lambda: render_for_request(registry, None, None)[0]
    scrape_gzip = lambda: render_for_request(registry, None, "gzip")[0]
else:
    import prometheus_client
    registry = prometheus_client.CollectorRegistry()
    metric = prometheus_client.Counter("m_total", "M.", ["a", "b"], registry=registry)
    scrape = lambda: prometheus_client.generate_latest(registry)
    scrape_gzip = lambda: gzip.compress(prometheus_client.generate_latest(registry))
start = time.perf_counter()
for a, b in pairs:
    metric.labels(a, b).inc()
create = time.perf_counter() - start
gc.collect()
start = time.perf_counter()
scrape()
first = time.perf_counter() - start
start = time.perf_counter()
body = scrape()
steady = time.perf_counter() - start
size = len(body)
del body
peaks = []
for render in (scrape, scrape_gzip):
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    body = render()
    peaks.append(tracemalloc.get_traced_memory()[1] - base)
    tracemalloc.stop()
    del body
print(json.dumps([create, first, steady, size, *peaks]))
"""

# (label, pytheus backend, prometheus_client mode or None, kind)
CASES = [
    ("counter, memory", "memory", "default", "counter"),
    ("histogram, memory", "memory", "default", "histogram"),
    ("counter, shared files", "file", "multiprocess", "counter"),
    ("counter, Redis", "redis", None, "counter"),
]
TARGET = 0.6
"""Target: pytheus's bytes per series at most this fraction of prometheus_client's."""


def run_case(library: str, backend: str, kind: str, n: int, env: dict[str, str]) -> list[float]:
    """Bytes per series after creating them, and after one scrape as well."""
    return _run([CASE, library, backend, kind, str(n)], env)


def _run(args: list[str], env: dict[str, str]) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", *args], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    values: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return values


def scale_rows(n: int, env: dict[str, str]) -> None:
    """Creating and scraping ``n`` counter series, in both libraries (one interpreter each)."""
    ours = _run([SCALE, "pytheus", str(n)], env)
    theirs = _run([SCALE, "prometheus_client", str(n)], env)
    print(f"\n{n:,} counter series (memory backend against prometheus_client's default)\n")
    print(f"{'':<34}{'pytheus':>12}{'prometheus_client':>20}{'ratio':>8}  target")
    for index, label, target in ((0, "creating them", "<= 1.0"),
                                 (1, "first scrape", ""),
                                 (2, "scrape", "<= 0.3")):  # fmt: skip
        ratio = ours[index] / theirs[index]
        print(f"{label:<34}{ours[index]:>10.2f} s{theirs[index]:>18.2f} s{ratio:>8.2f}  {target}")
    body = ours[3]
    print(f"{'response body':<34}{body / 1e6:>9.1f} MB{theirs[3] / 1e6:>17.1f} MB")
    for index, label in ((4, "extra peak memory of a scrape"), (5, "same, gzip")):
        factor = ours[index] / body
        print(
            f"{label:<34}{ours[index] / 1e6:>9.1f} MB{theirs[index] / 1e6:>17.1f} MB"
            f"{factor:>7.2f}x body  <= 2x body"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 series: a smoke run")
    parser.add_argument("--series", type=int, help="series per case (default 100,000)")
    parser.add_argument(
        "--scale", type=int, default=None,
        help="also create and scrape this many series (1,000,000 in docs/performance.md)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    n = args.series or (2_000 if args.quick else 100_000)
    base_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    redis_binary = shutil.which("redis-server")
    rows: list[tuple[str, list[float] | None, list[float] | None, str]] = []
    memory_bytes: float | None = None
    for label, backend, client_mode, kind in CASES:
        scratch = Path(tempfile.mkdtemp(prefix="pytheus-memory-"))
        env = {**base_env, "BENCH_DIR": str(scratch)}
        with contextlib.ExitStack() as stack:
            if backend == "redis":
                if redis_binary is None:
                    rows.append((label, None, None, "redis-server not found"))
                    continue
                env["BENCH_REDIS"] = stack.enter_context(redis_server())
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            ours = run_case("pytheus", backend, kind, n, env)
            if backend == "memory" and kind == "counter":
                memory_bytes = ours[1]
            theirs: list[float] | None = None
            if client_mode is not None:
                client_env = dict(env)
                if client_mode == "multiprocess":
                    client_env["PROMETHEUS_MULTIPROC_DIR"] = str(scratch)
                theirs = run_case("prometheus_client", backend, kind, n, client_env)
            rows.append((label, ours, theirs, ""))
    print(f"Python {sys.version.split()[0]}; {n:,} labelled series per case, heap bytes each")
    print("(after creating them / after a scrape too; the ratio and target are for the latter)\n")
    print(f"{'case':<24}{'pytheus':>16}{'prometheus_client':>20}{'ratio':>8}  target")
    for label, measured, client, note in rows:
        if measured is None:
            print(f"{label:<24}{note}")
            continue
        mine = f"{measured[0]:.0f} / {measured[1]:.0f} B"
        if client is not None:
            other = f"{client[0]:.0f} / {client[1]:.0f} B"
            ratio = measured[1] / client[1]
            print(f"{label:<24}{mine:>16}{other:>20}{ratio:>8.2f}  <= {TARGET}")
        else:
            assert memory_bytes is not None
            ratio = measured[1] / memory_bytes
            print(f"{label:<24}{mine:>16}{'-':>20}{ratio:>8.2f}  <= 1.2x memory backend")
    if args.scale:
        scale_rows(args.scale, base_env)
    if args.quick:
        print("(--quick figures are not worth reading)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
