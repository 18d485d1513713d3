"""The Flask example our users know from pytheus's README works unmodified.

The snippet below is that example as published; only the port is swapped for a free one so the
test can run anywhere. It runs in its own process with a real HTTP server.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import parse

ROOT = Path(__file__).resolve().parent.parent

PUBLISHED_EXAMPLE = """
import time
from flask import Flask
from pytheus.metrics import Histogram
from pytheus.exposition import generate_metrics

app = Flask(__name__)

page_visit_latency_seconds = Histogram(
    'page_visit_latency_seconds', 'documenting the metric..'
)

# this is the endpoint that prometheus will use to scrape the metrics
@app.route('/metrics')
def metrics():
    return generate_metrics()

# track time with the context manager
@app.route('/')
def home():
    with page_visit_latency_seconds.time():
        return 'hello world!'

# alternatively you can also track time with the decorator shortcut
@app.route('/slow')
@page_visit_latency_seconds
def slow():
    time.sleep(3)
    return 'hello world! from slow!'

app.run(host='0.0.0.0', port=8080)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body.decode()


def test_published_flask_example_runs_unmodified(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "example.py"
    script.write_text(PUBLISHED_EXAMPLE.replace("port=8080", f"port={port}"))
    server = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert get(base + "/") == "hello world!"
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert get(base + "/") == "hello world!"
        assert get(base + "/slow") == "hello world! from slow!"
        families = parse(get(base + "/metrics"))
        by_name = {
            (s.name, s.labels.get("le")): s.value for s in families["page_visit_latency_seconds"]
        }
        assert by_name[("page_visit_latency_seconds_count", None)] == 3
        assert by_name[("page_visit_latency_seconds_bucket", "0.005")] >= 2  # the fast page
        assert by_name[("page_visit_latency_seconds_bucket", "2.5")] == 2  # not the 3 s one
        assert by_name[("page_visit_latency_seconds_sum", None)] >= 3
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_repository_example_serves_metrics() -> None:
    spec = importlib.util.spec_from_file_location("repo_example", ROOT / "example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # app.run is guarded by __main__, so this only defines it
    client = module.app.test_client()
    assert client.get("/").data == b"hello world!"
    body = client.get("/metrics").data.decode()
    count = {s.name: s.value for s in parse(body)["page_visit_latency_seconds"]}
    assert count["page_visit_latency_seconds_count"] >= 1
