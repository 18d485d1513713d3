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
record(metric.labels("warm", "up"))
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for a, b in pairs:
    record(metric.labels(a, b))
gc.collect()
after = tracemalloc.get_traced_memory()[0]
print(json.dumps((after - before) / n))
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


def run_case(library: str, backend: str, kind: str, n: int, env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CASE, library, backend, kind, str(n)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    value: float = json.loads(done.stdout.strip().splitlines()[-1])
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 series: a smoke run")
    parser.add_argument("--series", type=int, help="series per case (default 100,000)")
    args = parser.parse_args(argv)
    n = args.series or (2_000 if args.quick else 100_000)
    base_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    redis_binary = shutil.which("redis-server")
    rows: list[tuple[str, float | None, float | None, str]] = []
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
                memory_bytes = ours
            theirs: float | None = None
            if client_mode is not None:
                client_env = dict(env)
                if client_mode == "multiprocess":
                    client_env["PROMETHEUS_MULTIPROC_DIR"] = str(scratch)
                theirs = run_case("prometheus_client", backend, kind, n, client_env)
            rows.append((label, ours, theirs, ""))
    print(f"Python {sys.version.split()[0]}; {n:,} labelled series per case, heap bytes each\n")
    print(f"{'case':<24}{'pytheus':>12}{'prometheus_client':>20}{'ratio':>8}  target")
    for label, measured, client, note in rows:
        if measured is None:
            print(f"{label:<24}{note}")
        elif client is not None:
            ratio = measured / client
            print(f"{label:<24}{measured:>10.0f} B{client:>18.0f} B{ratio:>8.2f}  <= {TARGET}")
        else:
            assert memory_bytes is not None
            ratio = measured / memory_bytes
            print(f"{label:<24}{measured:>10.0f} B{'-':>20}{ratio:>8.2f}  <= 1.2x memory backend")
    if args.quick:
        print("(--quick figures are not worth reading)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
