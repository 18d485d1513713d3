"""A small program written for prometheus_client, as its users write them.

tests/test_compat_client.py runs it unchanged, before and after ``patch_client`` (the
environment variable ``PATCH_CLIENT=1`` turns the patch on, in every process it starts).
``python client_program.py [processes] [start method] [rounds]`` prints the exposition of its
default registry after ``processes`` workers (0: none, the parent works) ran ``rounds`` rounds.
"""

import contextlib
import os
import sys

if os.environ.get("PATCH_CLIENT") == "1":
    import prometheus_client

    from pytheus.compat import patch_client

    patch_client(prometheus_client)

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
    multiprocess,
)  # fmt: skip

REQUESTS = Counter("requests", "Requests served.", ["method", "code"], namespace="shop")
ERRORS = Counter("errors_total", "Errors raised.", subsystem="worker")
IN_PROGRESS = Gauge("in_progress", "Requests in progress.", multiprocess_mode="livesum")
QUEUE = Gauge("queue_length", "Jobs waiting.", ["queue"], multiprocess_mode="max")
LATENCY = Histogram("latency", "Latency.", ["route"], unit="seconds", buckets=(0.1, 0.5, 1, 5))
SIZE = Summary("response_size", "Response size.", unit="bytes")
BUILD = Info("build", "Build information.")
STATE = Enum("state", "Worker state.", states=["idle", "busy"])


@ERRORS.count_exceptions(KeyError)
def failing() -> None:
    raise KeyError("missing")


def work(rounds: int) -> int:
    for _ in range(rounds):
        REQUESTS.labels("GET", "200").inc()
        REQUESTS.labels(method="POST", code="500").inc(2)
        with IN_PROGRESS.track_inprogress():
            LATENCY.labels(route="/items").observe(0.3)
        SIZE.observe(100)
        with contextlib.suppress(KeyError):
            failing()
    REQUESTS.labels("DELETE", "404").inc()
    REQUESTS.remove("DELETE", "404")
    QUEUE.labels("default").set(5)
    BUILD.info({"version": "1.2.3"})
    STATE.state("busy")
    return rounds


if __name__ == "__main__":
    processes, method, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if processes == 0:
        work(rounds)
        ANSWER = Gauge("answer", "Computed when scraped.")
        ANSWER.set_function(lambda: 42)
        ROOMS = Gauge("room_temperature", "Per room.", ["room"])
        ROOMS.labels("kitchen").set(21)
        ROOMS.clear()
        TIMED = Summary("timed", "Time spent.", unit="seconds")
        with TIMED.time():
            pass
        output = generate_latest(REGISTRY)
    else:
        import multiprocessing

        with multiprocessing.get_context(method).Pool(processes) as pool:
            pool.map(work, [rounds] * processes)
        registry = CollectorRegistry()  # prometheus_client's multi-process idiom
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    sys.stdout.write(output.decode())
