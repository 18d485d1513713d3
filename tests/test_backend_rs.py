"""pytheus-backend-rs 0.0.9's ``RedisBackend`` (published for pytheus 0.6), unchanged, with a
real redis-server: loaded with ``load_backend``, it records and a scrape reads what every
process recorded. Its writes are asynchronous (a thread of its own sends them, and loses what
is still queued when the process exits), so each process waits to read its writes back. Its
``SingleProcessBackend`` and ``SingleProcessAtomicBackend`` run the whole behavioural suite
(``PYTHEUS_TEST_BACKENDS=rs_single,rs_atomic``, scripts/test.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e  # pytheus-backend-rs has wheels up to Python 3.12 only

PROGRAM = """
import sys, time
from pytheus_backend_rs import RedisBackend
from pytheus.backends import load_backend
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge, Histogram, Summary

load_backend(RedisBackend, {{"host": "127.0.0.1", "port": {port}}})
jobs = Counter("jobs_total", "Jobs.", required_labels=["queue", "region"],
               default_labels={{"region": "eu"}})
plain = Counter("plain_total", "Unlabelled.")
depth = Gauge("depth", "Depth.", required_labels=["queue"])
latency = Histogram("latency_seconds", "Latency.", buckets=[0.1, 1, 10])
sizes = Summary("sizes_bytes", "Sizes.", required_labels=["kind"])
for _ in range({rounds}):
    jobs.labels(queue="default").inc()
    jobs.labels("slow", "us").inc(2)
    plain.inc()
    latency.observe(0.5)
    latency.observe(5)
    sizes.labels("body").observe(100)
depth.labels("default").set(7)
depth.labels("default").dec(2)
if "--read" in sys.argv:
    deadline = time.monotonic() + 20
    while True:
        text = generate_metrics()
        if 'plain_total {expected}' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(text)
"""


def run(port: int, rounds: int, expected: float, read: bool) -> subprocess.Popen[str]:
    code = textwrap.dedent(PROGRAM.format(port=port, rounds=rounds, expected=expected))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    env["PYTHONPATH"] = str(ROOT)
    args = [sys.executable, "-c", code, *(["--read"] if read else [])]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def test_rs_redis_backend_records_and_reads_every_process() -> None:
    pytest.importorskip("pytheus_backend_rs")
    server = RedisServer()
    try:
        # its writes go out from a thread of its own, and what is still queued when the
        # process exits is lost (it has no flush): the writer waits to read its 300 back
        writer = run(server.port, 300, 300.0, read=True)
        writer.communicate(timeout=60)
        assert writer.returncode == 0
        client = redis.Redis(port=server.port, decode_responses=True)
        assert client.get("plain_total") == "300"
        reader = run(server.port, 200, 500.0, read=True)
        output, _ = reader.communicate(timeout=60)
        assert reader.returncode == 0
    finally:
        server.stop()
    values = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(output)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, frozenset(labels.items())))

    assert value("plain_total") == 500
    assert value("jobs_total", queue="default", region="eu") == 500
    assert value("jobs_total", queue="slow", region="us") == 1000
    assert value("depth", queue="default") == 5  # each process set 7 then took 2 away: last wins
    assert value("latency_seconds_bucket", le="0.1") == 0
    assert value("latency_seconds_bucket", le="1.0") == 500  # the bucket "1" in Redis
    assert value("latency_seconds_bucket", le="10.0") == 1000
    assert value("latency_seconds_bucket", le="+Inf") == 1000
    assert value("latency_seconds_count") == 1000
    assert value("latency_seconds_sum") == 500 * 5.5
    assert value("sizes_bytes_count", kind="body") == 500
    assert value("sizes_bytes_sum", kind="body") == 50_000
