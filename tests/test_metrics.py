"""Behaviour of each metric type, on every backend (the ``registry`` fixture)."""

from __future__ import annotations

import asyncio
import functools
import math
import time

import pytest

from pytheus.exceptions import (
    BucketException,
    InvalidValueException,
    PytheusException,
    UnobservableMetricException,
)
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import PER_VALUE
from tests.helpers import samples, value


def test_counter_counts(registry: CollectorRegistry) -> None:
    counter = Counter("jobs_total", "Jobs.", registry=registry)
    assert value(registry, "jobs_total") == 0.0
    counter.inc()
    counter.inc(2.5)
    assert value(registry, "jobs_total") == 3.5


@pytest.mark.parametrize("amount", [-1, -0.001, math.nan, -math.inf])
def test_counter_refuses_negative_and_nan(registry: CollectorRegistry, amount: float) -> None:
    counter = Counter("jobs_total", "Jobs.", registry=registry)
    with pytest.raises(InvalidValueException, match="jobs_total") as raised:
        counter.inc(amount)
    assert isinstance(raised.value, ValueError)
    assert value(registry, "jobs_total") == 0.0


def test_counter_count_exceptions(registry: CollectorRegistry) -> None:
    counter = Counter("failures_total", "Failures.", registry=registry)
    with pytest.raises(ZeroDivisionError), counter.count_exceptions():
        1 / 0
    with counter.count_exceptions():
        pass
    with pytest.raises(KeyError), counter.count_exceptions(ValueError):
        raise KeyError("not counted")
    with pytest.raises(ValueError), counter.count_exceptions((KeyError, ValueError)):
        raise ValueError("counted")
    assert value(registry, "failures_total") == 2.0


def test_counter_decorators(registry: CollectorRegistry) -> None:
    counter = Counter("failures_total", "Failures.", registry=registry)

    @counter
    def always_fails() -> None:
        """Doc kept."""
        raise RuntimeError

    @counter(exceptions=(KeyError,))
    def fails_with(error: Exception) -> None:
        raise error

    assert always_fails.__name__ == "always_fails"
    assert always_fails.__doc__ == "Doc kept."
    with pytest.raises(RuntimeError):
        always_fails()
    with pytest.raises(KeyError):
        fails_with(KeyError())
    with pytest.raises(ValueError):
        fails_with(ValueError())
    assert value(registry, "failures_total") == 2.0


def test_gauge_operations(registry: CollectorRegistry) -> None:
    gauge = Gauge("queue_size", "Queue size.", registry=registry)
    gauge.inc()
    gauge.inc(4)
    gauge.dec(2)
    assert value(registry, "queue_size") == 3.0
    gauge.set(-7.5)
    assert value(registry, "queue_size") == -7.5
    before = time.time()
    gauge.set_to_current_time()
    after = time.time()
    current = value(registry, "queue_size")
    assert current is not None and before <= current <= after


def test_gauge_track_inprogress_and_time(registry: CollectorRegistry) -> None:
    in_progress = Gauge("in_progress", "In progress.", registry=registry)
    duration = Gauge("duration_seconds", "Duration.", registry=registry)
    with in_progress.track_inprogress():
        assert value(registry, "in_progress") == 1.0
    assert value(registry, "in_progress") == 0.0
    with pytest.raises(RuntimeError), in_progress.track_inprogress():
        raise RuntimeError  # the gauge still goes back down
    assert value(registry, "in_progress") == 0.0
    with duration.time():
        time.sleep(0.01)
    seconds = value(registry, "duration_seconds")
    assert seconds is not None and 0.01 <= seconds < 5


def test_gauge_decorators(registry: CollectorRegistry) -> None:
    duration = Gauge("duration_seconds", "Duration.", registry=registry)
    in_progress = Gauge("in_progress", "In progress.", registry=registry)
    seen: list[float | None] = []

    @duration
    def timed() -> str:
        time.sleep(0.01)
        return "done"

    @in_progress(track_inprogress=True)
    def tracked() -> None:
        seen.append(value(registry, "in_progress"))

    assert timed() == "done"
    tracked()
    assert seen == [1.0]
    assert value(registry, "in_progress") == 0.0
    seconds = value(registry, "duration_seconds")
    assert seconds is not None and seconds >= 0.01
    assert timed.__name__ == "timed" and tracked.__name__ == "tracked"


def test_gauge_set_refuses_non_numbers(registry: CollectorRegistry) -> None:
    gauge = Gauge("queue_size", "Queue size.", registry=registry)
    with pytest.raises(InvalidValueException, match="queue_size"):
        gauge.set("12 evil")  # type: ignore[arg-type]
    gauge.set(True)  # numbers of any numeric type are accepted
    assert value(registry, "queue_size") == 1.0


def test_histogram_buckets_sum_count(registry: CollectorRegistry) -> None:
    histogram = Histogram("size_bytes", "Sizes.", buckets=[1, 5, 10], registry=registry)
    for observed in (0.5, 1, 3, 5, 7, 11, 100):
        histogram.observe(observed)
    got = samples(registry)

    def bucket(le: str) -> float:
        return got[("size_bytes_bucket", frozenset({("le", le)}))]

    assert [bucket("1.0"), bucket("5.0"), bucket("10.0"), bucket("+Inf")] == [2, 4, 5, 7]
    assert got[("size_bytes_count", frozenset())] == 7
    assert got[("size_bytes_sum", frozenset())] == 127.5


def test_histogram_default_buckets(registry: CollectorRegistry) -> None:
    histogram = Histogram("latency_seconds", "Latency.", registry=registry)
    bounds = sorted(
        float(labels_["le"].replace("+Inf", "inf"))
        for (name, labels), _ in samples(registry).items()
        if name == "latency_seconds_bucket"
        for labels_ in [dict(labels)]
    )
    assert bounds == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]
    assert histogram._upper_bounds[-1] == math.inf


@pytest.mark.parametrize(
    "buckets", [[1, 1, 2], [3, 2], [1, math.nan], ["a", "b"], [0.5, 0.25, math.inf]]
)
def test_histogram_refuses_bad_buckets(registry: CollectorRegistry, buckets: list[float]) -> None:
    with pytest.raises(BucketException, match="bad_buckets"):
        Histogram("bad_buckets", "Bad.", buckets=buckets, registry=registry)


def test_histogram_keeps_explicit_inf(registry: CollectorRegistry) -> None:
    histogram = Histogram("h", "H.", buckets=[1, math.inf], registry=registry)
    assert histogram._upper_bounds == (1.0, math.inf)


def test_histogram_time_and_decorator(registry: CollectorRegistry) -> None:
    histogram = Histogram("work_seconds", "Work.", buckets=[0.001, 10], registry=registry)

    @histogram
    def work() -> int:
        time.sleep(0.002)
        return 42

    with histogram.time():
        time.sleep(0.002)
    assert work() == 42
    assert work.__name__ == "work"
    got = samples(registry)
    assert got[("work_seconds_count", frozenset())] == 2
    assert got[("work_seconds_bucket", frozenset({("le", "0.001")}))] == 0
    assert got[("work_seconds_bucket", frozenset({("le", "10.0")}))] == 2


def test_summary_sum_and_count(registry: CollectorRegistry) -> None:
    summary = Summary("payload_bytes", "Payloads.", registry=registry)
    summary.observe(10)
    summary.observe(2.5)

    @summary
    def handler() -> None:
        pass

    handler()
    with summary.time():
        pass
    got = samples(registry)
    assert got[("payload_bytes_count", frozenset())] == 4
    assert 12.5 <= got[("payload_bytes_sum", frozenset())] < 13.5


def test_async_decorators_time_the_awaited_call(registry: CollectorRegistry) -> None:
    histogram = Histogram("async_seconds", "Async.", buckets=[0.04, 10], registry=registry)
    summary = Summary("async_summary_seconds", "Async.", registry=registry)
    gauge = Gauge("async_gauge_seconds", "Async.", registry=registry)
    in_progress = Gauge("async_in_progress", "Async.", registry=registry)
    failures = Counter("async_failures_total", "Async.", registry=registry)
    seen: list[float | None] = []

    @histogram
    @summary
    @gauge
    async def sleepy() -> str:
        await asyncio.sleep(0.05)
        return "slept"

    @in_progress(track_inprogress=True)
    async def tracked() -> None:
        await asyncio.sleep(0)
        seen.append(value(registry, "async_in_progress"))

    @failures
    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError

    assert asyncio.iscoroutinefunction(sleepy)
    coroutine = sleepy()  # creating the coroutine records nothing
    assert samples(registry)[("async_seconds_count", frozenset())] == 0
    assert asyncio.run(coroutine) == "slept"
    asyncio.run(tracked())
    with pytest.raises(RuntimeError):
        asyncio.run(fails())
    got = samples(registry)
    assert got[("async_seconds_bucket", frozenset({("le", "0.04")}))] == 0  # awaited time, >= 0.05
    assert got[("async_seconds_count", frozenset())] == 1
    assert got[("async_summary_seconds_sum", frozenset())] >= 0.05
    assert got[("async_gauge_seconds", frozenset())] >= 0.05
    assert seen == [1.0]
    assert got[("async_in_progress", frozenset())] == 0
    assert got[("async_failures_total", frozenset())] == 1


def test_decorators_keep_metadata() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h", "H.", registry=registry)

    def original(a: int, b: int = 2) -> int:
        """Adds."""
        return a + b

    wrapped = histogram(original)
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert (wrapped.__name__, wrapped.__doc__) == ("original", "Adds.")
    assert wrapped(1) == 3
    assert isinstance(wrapped, functools.partial) is False


@pytest.mark.parametrize(
    "use",
    [
        lambda m: m.inc(),
        lambda m: m.time().__enter__(),
        lambda m: m.track_inprogress().__enter__(),
        lambda m: m.set(1),
    ],
)
def test_partially_labelled_gauge_cannot_record(registry: CollectorRegistry, use: object) -> None:
    gauge = Gauge("g", "G.", required_labels=["a", "b"], registry=registry)
    with pytest.raises(UnobservableMetricException, match=r"'g'.*\['b'\]"):
        use(gauge.labels(a="1"))  # type: ignore[operator]
    assert samples(registry) == {}


def test_every_error_is_a_pytheus_exception() -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "C.", required_labels=["a"], registry=registry)
    for call in (
        counter.inc,
        lambda: counter.labels(b="1"),
        lambda: Counter("1bad", "Bad.", registry=registry),
        lambda: counter.labels(a="1").inc(-1),
    ):
        with pytest.raises(PytheusException):
            call()


def test_unit_must_be_the_name_suffix() -> None:
    from pytheus.exceptions import MetricDefinitionException

    registry = CollectorRegistry()
    Histogram("request_duration_seconds", "D.", unit="seconds", registry=registry)
    Counter("sent_bytes_total", "S.", unit="bytes", registry=registry)
    with pytest.raises(MetricDefinitionException, match=r"'request_duration'.*_seconds"):
        Gauge("request_duration", "D.", unit="seconds", registry=registry)
    with pytest.raises(MetricDefinitionException, match="not a valid name"):
        Summary("size_bytes", "S.", unit="bad unit", registry=registry)


def test_info(registry: CollectorRegistry) -> None:
    from pytheus.exceptions import LabelValidationException
    from pytheus.metrics import Info
    from tests.helpers import family_types

    build = Info("build", "Build.", registry=registry)
    build.info({"version": "1.2", "commit": 'a"b\\c'})
    component = Info("component_info", "C.", required_labels=["name"], registry=registry)
    component.labels(name="db").info({"v": "3"})
    time.sleep(0.002)
    component.labels(name="db").info({"v": 4})  # the newest information wins
    got = samples(registry)
    assert got == {
        ("build_info", frozenset({("version", "1.2"), ("commit", 'a"b\\c')})): 1,
        ("component_info", frozenset({("name", "db"), ("v", "4")})): 1,
    }
    assert family_types(generate_metrics(registry))["build_info"] == "gauge"
    with pytest.raises(LabelValidationException, match="already one of"):
        component.labels(name="x").info({"name": "y"})
    with pytest.raises(LabelValidationException, match="invalid label name"):
        build.info({"bad-name": "y"})
    component.remove(name="db")
    assert ("component_info", frozenset({("name", "db"), ("v", "4")})) not in samples(registry)


def test_enum(registry: CollectorRegistry) -> None:
    from pytheus.metrics import Enum

    task = Enum("task_state", "State.", states=["starting", "running", "stopped"],
                registry=registry)  # fmt: skip
    jobs = Enum("job_state", "Jobs.", required_labels=["job"], states=["idle", "busy"],
                registry=registry)  # fmt: skip

    def states(name: str, **labels: str) -> dict[str, float]:
        return {
            dict(ls)[name]: v
            for (sample, ls), v in samples(registry).items()
            if sample == name and labels.items() <= dict(ls).items()
        }

    assert states("task_state") == {"starting": 1, "running": 0, "stopped": 0}
    task.state("running")
    assert states("task_state") == {"starting": 0, "running": 1, "stopped": 0}
    jobs.labels(job="a").state("busy")
    jobs.labels(job="b")
    assert states("job_state", job="a") == {"idle": 0, "busy": 1}
    assert states("job_state", job="b") == {"idle": 1, "busy": 0}
    with pytest.raises(InvalidValueException, match=r"'task_state'.*'paused'"):
        task.state("paused")
    from pytheus.exceptions import MetricDefinitionException

    with pytest.raises(MetricDefinitionException, match="states"):
        Enum("e", "E.", states=[], registry=registry)
    jobs.remove(job="a")
    assert states("job_state", job="a") == {}


def test_set_function(registry: CollectorRegistry) -> None:
    items = [1, 2, 3]
    gauge = Gauge("items", "Items.", registry=registry)
    gauge.set_function(lambda: len(items))
    assert value(registry, "items") == 3
    items.append(4)
    assert value(registry, "items") == 4
    labelled = Gauge("broken", "Broken.", required_labels=["a"], registry=registry)
    labelled.labels(a="x").set_function(lambda: 1 / 0)  # a failing callback: NaN, no crash
    assert math.isnan(value(registry, "broken", a="x") or 0)


def test_exemplars_are_kept_where_the_backend_can(
    registry: CollectorRegistry, backend: str
) -> None:
    from pytheus.collection import collect_registry
    from pytheus.exceptions import LabelValidationException
    from pytheus.samples import CounterData, HistogramData

    counter = Counter("requests_total", "R.", registry=registry)
    histogram = Histogram("latency_seconds", "L.", buckets=[0.1, 1], registry=registry)
    counter.inc(2, exemplar={"trace_id": "abc"})
    histogram.observe(0.5, exemplar={"trace_id": "def"})
    histogram.observe(0.05)
    with pytest.raises(LabelValidationException, match="128"):
        counter.inc(exemplar={"trace_id": "x" * 130})
    with pytest.raises(LabelValidationException, match="exemplar label name"):
        histogram.observe(1, exemplar={"bad-name": "x"})
    families = {f.name: f for f in collect_registry(registry)}
    [(_, counted)] = families["requests_total"].series
    [(_, observed)] = families["latency_seconds"].series
    assert isinstance(observed, HistogramData)
    if backend in PER_VALUE:  # the per-value protocol has no place for exemplars
        assert counted == 2 and observed.exemplars is None
        return
    assert isinstance(counted, CounterData) and counted.value == 2  # the refused call: nothing
    assert counted.exemplar is not None
    assert dict(counted.exemplar.labels) == {"trace_id": "abc"} and counted.exemplar.value == 2
    assert observed.exemplars is not None
    assert [e and dict(e.labels) for e in observed.exemplars] == [None, {"trace_id": "def"}, None]
    assert observed.exemplars[1] is not None and observed.exemplars[1].value == 0.5


def test_summary_quantiles(registry: CollectorRegistry, backend: str) -> None:
    import random

    from pytheus.exceptions import MetricDefinitionException

    summary = Summary("latency_seconds", "L.", quantiles=(0.5, 0.9, 0.99), registry=registry)
    generator = random.Random(7)
    observed = sorted(generator.expovariate(1.0) for _ in range(5000))
    for item in observed:
        summary.observe(item)
    got = samples(registry)
    assert got[("latency_seconds_count", frozenset())] == 5000
    quantiles = {dict(ls)["quantile"]: v for (n, ls), v in got.items() if n == "latency_seconds"}
    if backend in PER_VALUE:  # the per-value protocol has no place for them: documented
        assert quantiles == {}
        return
    for q in (0.5, 0.9, 0.99):
        exact = observed[int(q * (len(observed) - 1))]
        assert abs(quantiles[repr(q)] - exact) <= 0.01 * exact
    with pytest.raises(MetricDefinitionException, match="'bad_seconds'"):
        Summary("bad_seconds", "B.", quantiles=(1.5,), registry=registry)


def test_the_last_info_and_state_win_when_the_clock_steps_back(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytheus.metrics import Enum, Info

    build = Info("build", "Build.", registry=registry)
    phase = Enum("phase", "Phase.", states=["starting", "serving", "idle"], registry=registry)
    build.info({"version": "1"})
    phase.state("serving")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 5.0)  # an NTP correction
    phase.state("idle")
    build.info({"version": "2"})
    assert value(registry, "phase", phase="idle") == 1
    assert value(registry, "phase", phase="serving") == 0
    assert value(registry, "build_info", version="2") == 1
    assert value(registry, "build_info", version="1") is None
