import time

from flask import Flask

from pytheus.exposition import generate_metrics
from pytheus.metrics import Histogram

app = Flask(__name__)

page_visit_latency_seconds = Histogram(
    "page_visit_latency_seconds", "Time taken to serve a page, in seconds."
)


# Prometheus scrapes this endpoint.
@app.route("/metrics")
def metrics() -> str:
    return generate_metrics()


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
