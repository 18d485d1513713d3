import time

from flask import Flask

from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics
from pytheus.metrics import Histogram

app = Flask(__name__)

page_visit_latency_seconds = Histogram(
    "page_visit_latency_seconds", "Time taken to serve a page, in seconds."
)


# Prometheus scrapes this endpoint (Prometheus 3 needs the content type: Flask's default is HTML).
@app.route("/metrics")
def metrics() -> tuple[str, dict[str, str]]:
    return generate_metrics(), {"Content-Type": PROMETHEUS_CONTENT_TYPE}


# Time a block with the context manager...
@app.route("/")
def home() -> str:
    with page_visit_latency_seconds.time():
        return "hello world!"


# ...or a whole view with the decorator.
@app.route("/slow")
@page_visit_latency_seconds
def slow() -> str:
    time.sleep(3)
    return "hello world! from slow!"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8080)
