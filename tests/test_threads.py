"""Concurrency in one process: exact totals and consistent histogram scrapes, every backend."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Histogram
from pytheus.registry import CollectorRegistry
from tests.helpers import value

THREADS = 8


def run_threads(target: object, count: int = THREADS) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_eight_threads_inc_exactly(registry: CollectorRegistry) -> None:
    counter = Counter("hits_total", "Hits.", required_labels=["kind"], registry=registry)
    plain = Counter("plain_total", "Plain.", registry=registry)

    def work() -> None:
        shared = counter.labels(kind="shared")
        for _ in range(20_000):
            plain.inc()
            shared.inc()
            counter.labels(kind=threading.current_thread().name).inc()

    run_threads(work)
    assert value(registry, "plain_total") == 160_000
    assert value(registry, "hits_total", kind="shared") == 160_000


# One value per bucket of BUCKETS (the last above them all): from the cumulative buckets of a
# scrape, the count of each value follows, and so does the sum those observations make. A scrape
# that pairs buckets and a sum of different moments shows it.
BUCKETS = [1, 2, 3]
VALUES = (1.0, 2.0, 3.0, 4.0)


def torn(samples: dict[str, float]) -> str | None:
    """What disagrees in one scrape of histogram ``h``, or None when it is one moment."""
    cumulative = [samples[f"h_bucket{le}"] for le in ("1.0", "2.0", "3.0", "+Inf")]
    per_value = [b - a for a, b in zip([0.0, *cumulative], cumulative)]
    expected_sum = sum(v * c for v, c in zip(VALUES, per_value))
    if samples["h_count"] != cumulative[-1] or samples["h_sum"] != expected_sum:
        return f"buckets {cumulative}, count {samples['h_count']}, sum {samples['h_sum']}"
    return None


def test_scrape_during_observe_sees_one_moment(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=BUCKETS, registry=registry)
    writers = 4
    stop = threading.Event()
    problems: list[str] = []
    partial: set[float] = set()  # counts seen while the writers were writing
    observed = [0] * writers

    def observe(number: int) -> None:
        # at least 20,000 each; then on until the scrapes have seen 4 moments (3 before the end)
        i = 0
        while i < 20_000 or (len(partial) < 4 and i < 2_000_000):
            histogram.observe(VALUES[i % 4])
            i += 1
        observed[number] = i

    def scrape() -> None:
        while not stop.is_set():
            for family in text_string_to_metric_families(generate_metrics(registry)):
                got = {s.name + s.labels.get("le", ""): s.value for s in family.samples}
                problem = torn(got)
                if problem is not None:
                    problems.append(problem)
                elif got["h_count"] > 0 and not stop.is_set():
                    partial.add(got["h_count"])

    scraper = threading.Thread(target=scrape)
    scraper.start()
    threads = [threading.Thread(target=observe, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    scraper.join()
    assert problems == []
    total = sum(observed)
    assert len(partial - {float(total)}) >= 3, "no scrape overlapped the writes"
    assert value(registry, "h_count") == total
    assert value(registry, "h_sum") == sum(VALUES[i % 4] for n in observed for i in range(n))
