"""``patch_client(prometheus_client)``: prometheus_client code records into pytheus.

Every program runs in a fresh interpreter (the patch changes prometheus_client for the whole
process), and its output is read with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_program
from tests.helpers import backend_environment
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "apps" / "client_program.py"
RUNTIME = ("process_", "python_")
TIMED = {"timed_seconds_sum"}  # a duration: its value differs from run to run


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHEUS_", "PROMETHEUS_"))},
        "PYTHONPATH": str(ROOT),
        **env,
    }
    done = subprocess.run(
        [sys.executable, *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_program(processes: int, method: str, rounds: int, env: dict[str, str]) -> str:
    return run([str(PROGRAM), str(processes), method, str(rounds)], env)


def families(text: str) -> dict[str, Any]:
    """``{family: (type, help, {(sample, labels): value})}`` without the runtime families."""
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(RUNTIME):
            continue
        values = {
            (s.name, frozenset(s.labels.items())): s.value if s.name not in TIMED else None
            for s in family.samples
        }
        found[family.name] = (family.type, family.documentation, values)
    return found


def test_the_same_exposition_before_and_after_the_patch_in_one_process(tmp_path: Path) -> None:
    before = run_program(0, "fork", 3, {"PROMETHEUS_DISABLE_CREATED_SERIES": "true"})
    after = run_program(0, "fork", 3, {"PATCH_CLIENT": "1"})
    assert families(after) == families(before)
    # and the same families as pytheus's own runtime ones, not twice
    names = [f.name for f in text_string_to_metric_families(after)]
    assert len(names) == len(set(names))
    assert "process_cpu_seconds" in names and "python_info" in names
    expected = {
        ("shop_requests_total", frozenset({("method", "GET"), ("code", "200")})): 3.0,
        ("worker_errors_total", frozenset()): 3.0,
        ("latency_seconds_count", frozenset({("route", "/items")})): 3.0,
    }
    values = {k: v for _, _, found in families(after).values() for k, v in found.items()}
    assert {k: values[k] for k in expected} == expected
    promtool = require_program("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=after, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


@pytest.fixture(scope="module")
def redis_server() -> Any:
    server = RedisServer()
    yield server
    server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["file", "redis"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_exact_totals_of_four_processes_after_the_patch(
    backend: str, method: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"PATCH_CLIENT": "1", **backend_environment(backend, tmp_path, redis_server.url)}
    found = families(run_program(4, method, 250, env))
    values = {k: v for _, _, series in found.values() for k, v in series.items()}

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, frozenset(labels.items())))

    assert value("shop_requests_total", method="GET", code="200") == 1000
    assert value("shop_requests_total", method="POST", code="500") == 2000
    assert value("shop_requests_total", method="DELETE", code="404") is None  # removed
    assert value("worker_errors_total") == 1000
    assert value("latency_seconds_bucket", route="/items", le="0.5") == 1000
    assert value("latency_seconds_bucket", route="/items", le="0.1") == 0
    assert value("response_size_bytes_count") == 1000
    assert value("response_size_bytes_sum") == 100_000
    assert value("in_progress") == 0
    assert value("queue_length", queue="default") == 5
    assert value("build_info", version="1.2.3") == 1
    assert value("state", state="busy") == 1


PATCHED = """
import prometheus_client
from pytheus.experimental.compatibility import patch_client
patch_client(prometheus_client)
"""


def run_patched(code: str, env: dict[str, str] | None = None) -> str:
    return run(["-c", PATCHED + textwrap.dedent(code)], env or {})


def test_the_patch_reaches_prometheus_clients_submodules() -> None:
    output = run_patched(
        """
        import prometheus_client.core, prometheus_client.metrics, prometheus_client.multiprocess
        import pytheus.compat as compat
        for module in (prometheus_client, prometheus_client.core, prometheus_client.metrics):
            for name in ("Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"):
                assert getattr(module, name) is getattr(compat, name), (module, name)
        assert prometheus_client.multiprocess.MultiProcessCollector is compat.MultiProcessCollector
        prometheus_client.multiprocess.mark_process_dead(12345)
        print("ok")
        """
    )
    assert output.strip() == "ok"


def test_what_the_patch_does_not_cover_raises_naming_it() -> None:
    output = run_patched(
        """
        from prometheus_client.metrics import MetricWrapperBase
        from pytheus.exceptions import PytheusCompatibilityException

        class Mine(MetricWrapperBase):
            _type = "gauge"

        try:
            Mine("mine", "Mine.")
        except PytheusCompatibilityException as error:
            print(error)
        """
    )
    assert "Mine, derived from prometheus_client.metrics.MetricWrapperBase" in output


def test_prometheus_client_errors_keep_their_type() -> None:
    """Libraries catch ValueError around definitions (duplicates, bad names): keep it."""
    output = run_patched(
        """
        c = prometheus_client.Counter("c", "C.", ["a", "b"])
        try:
            c.labels("only one")
        except ValueError as error:
            print("labels:", error)
        try:
            prometheus_client.Counter("c", "Another definition.", ["x"])
        except ValueError as error:
            print("duplicate:", error)
        try:
            prometheus_client.Counter("bad name", "C.")
        except ValueError as error:
            print("name:", error)
        try:
            prometheus_client.Info("i", "I.", unit="seconds")
        except ValueError as error:
            print("unit:", error)
        """
    )
    lines = output.splitlines()
    assert [line.split(":")[0] for line in lines] == ["labels", "duplicate", "name", "unit"]
    assert "'c'" in lines[0] and "['a', 'b']" in lines[0]


def test_exposition_and_serving_functions_serve_pytheus(tmp_path: Path) -> None:
    textfile = tmp_path / "metrics.prom"
    output = run_patched(
        f"""
        import asyncio, urllib.request
        from wsgiref.util import setup_testing_defaults
        from prometheus_client import (
            Counter, generate_latest, make_asgi_app, make_wsgi_app,
            start_http_server, write_to_textfile, REGISTRY,
        )
        from prometheus_client.openmetrics.exposition import generate_latest as om_latest
        from pytheus.exposition import generate_metrics

        jobs = Counter("jobs", "Jobs done.", ["queue"])
        jobs.labels("default").inc(7)

        print("latest", b'jobs_total{{queue="default"}} 7.0' in generate_latest())
        print("openmetrics", b'jobs_total{{queue="default"}} 7.0' in om_latest(REGISTRY))
        print("pytheus", 'jobs_total{{queue="default"}} 7.0' in generate_metrics())

        environ = {{}}
        setup_testing_defaults(environ)
        body = b"".join(make_wsgi_app()(environ, lambda status, headers: None))
        print("wsgi", b'jobs_total{{queue="default"}} 7.0' in body)

        async def asgi():
            sent = []
            async def receive():
                return {{"type": "http.request"}}
            async def send(message):
                sent.append(message)
            scope = {{"type": "http", "method": "GET", "path": "/", "query_string": b"",
                      "headers": []}}
            await make_asgi_app()(scope, receive, send)
            return b"".join(m.get("body", b"") for m in sent)
        print("asgi", b'jobs_total{{queue="default"}} 7.0' in asyncio.run(asgi()))

        server, thread = start_http_server(0, addr="127.0.0.1")
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{{port}}/metrics") as response:
            print("http", b'jobs_total{{queue="default"}} 7.0' in response.read())
            print("type", response.headers["Content-Type"].startswith("text/plain"))
        server.shutdown()

        write_to_textfile({str(textfile)!r}, REGISTRY)
        """
    )
    assert output.split() == [
        "latest", "True", "openmetrics", "True", "pytheus", "True", "wsgi", "True",
        "asgi", "True", "http", "True", "type", "True",
    ]  # fmt: skip
    parsed = families(textfile.read_text())
    assert parsed["jobs"][2] == {("jobs_total", frozenset({("queue", "default")})): 7.0}


@pytest.mark.system
def test_push_to_gateway_pushes_pytheus_values(tmp_path: Path) -> None:
    from tests.test_push import read_group, run_gateway

    with run_gateway(tmp_path) as address:
        run_patched(
            f"""
            from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
            registry = CollectorRegistry()
            done = Gauge("batch_done", "Records processed.", registry=registry)
            done.set(1234)
            push_to_gateway({address!r}, job="batch", registry=registry)
            """
        )
        group = read_group(address, "batch")
    assert group[("batch_done", frozenset({("job", "batch"), ("instance", "")}))] == 1234


def test_patch_client_is_idempotent_and_counter_reset_works() -> None:
    output = run_patched(
        """
        patch_client(prometheus_client)
        c = prometheus_client.Counter("resets", "R.")
        c.inc(5)
        c.reset()
        c.inc()
        print(prometheus_client.REGISTRY.get_sample_value("resets_total"))
        """
    )
    assert output.strip() == "1.0"


def test_registry_operations_prometheus_client_users_rely_on() -> None:
    """unregister, register in another registry, emptying a registry (a test fixture's way),
    the default collectors switched off, name filters and the duplicate check."""
    output = run_patched(
        """
        from prometheus_client import (
            GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, CollectorRegistry,
            Counter, PlatformCollector, generate_latest,
        )
        REGISTRY.unregister(PROCESS_COLLECTOR)  # "no default metrics"
        REGISTRY.unregister(PLATFORM_COLLECTOR)
        REGISTRY.unregister(GC_COLLECTOR)
        jobs = Counter("jobs", "Jobs.")
        jobs.inc(3)
        print("defaults off:", [l for l in generate_latest().decode().splitlines()
                                if not l.startswith("#")])
        print("restricted:", generate_latest(REGISTRY.restricted_registry(["jobs_total"])))
        other = CollectorRegistry()
        other.register(jobs)
        print("other:", other.get_sample_value("jobs_total"))
        REGISTRY.unregister(jobs)
        print("unregistered:", REGISTRY.get_sample_value("jobs_total"))
        for collector in list(REGISTRY._collector_to_names):
            REGISTRY.unregister(collector)
        Counter("requests", "Requests.").inc()
        print("after emptying:", REGISTRY.get_sample_value("requests_total"))
        PlatformCollector()
        try:
            PlatformCollector()
        except ValueError as error:
            print("duplicate:", "python_info" in str(error))
        """
    )
    assert output.splitlines() == [
        "defaults off: ['jobs_total 3.0']",
        "restricted: b'# HELP jobs_total Jobs.\\n# TYPE jobs_total counter\\njobs_total 3.0\\n'",
        "other: 3.0",
        "unregistered: None",
        "after emptying: 1.0",
        "duplicate: True",
    ]


def test_metric_level_collect_describe_and_info_names() -> None:
    output = run_patched(
        """
        from prometheus_client import Counter, Info, generate_latest
        jobs = Counter("jobs", "Jobs.", ["queue"])
        jobs.labels("a").inc(2)
        [family] = jobs.collect()
        print([(s.name, s.labels, s.value) for s in family.samples])
        print([(m.name, m.type) for m in jobs.describe()])
        Info("app_info", "Application.").info({"version": "1.2"})
        print([l for l in generate_latest().decode().splitlines() if l.startswith("app_info")])
        """
    )
    assert output.splitlines() == [
        "[('jobs_total', {'queue': 'a'}, 2.0)]",
        "[('jobs', 'counter')]",
        """['app_info_info{version="1.2"} 1.0']""",
    ]


def test_metrics_created_before_the_patch() -> None:
    """Their children still work; creating one of the original class after the patch is an
    error, not a count kept in one process."""
    output = run(
        [
            "-c",
            textwrap.dedent(
                """
                import prometheus_client
                from prometheus_client import Counter
                early = Counter("early", "Created before the patch.", ["m"])
                from pytheus.compat import patch_client
                patch_client(prometheus_client)
                early.labels("GET").inc()
                print("child:", early.labels("GET")._value.get())
                try:
                    Counter("late", "Created after the patch with the original class.")
                except ValueError as error:
                    print("refused:", "imported before patch_client ran" in str(error))
                """
            ),
        ],
        {},
    )
    assert output.splitlines() == ["child: 1.0", "refused: True"]


def test_subclasses_passing_keywords_on_are_not_refused() -> None:
    output = run_patched(
        """
        class TenantCounter(prometheus_client.Counter):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
        c = TenantCounter("requests", "R.", ["tenant"], namespace="shop")
        c.labels("a").inc()
        print(prometheus_client.REGISTRY.get_sample_value("shop_requests_total", {"tenant": "a"}))
        """
    )
    assert output.strip() == "1.0"


def test_compat_classes_without_the_patch_serve_each_family_once() -> None:
    output = run(
        [
            "-c",
            "from pytheus.compat import Counter\n"
            "from prometheus_client import generate_latest\n"
            "Counter('jobs', 'Jobs.').inc()\n"
            "names = [l.split()[2] for l in generate_latest().decode().splitlines()"
            " if l.startswith('# TYPE')]\n"
            "print(len(names) == len(set(names)), 'jobs_total' in names)\n",
        ],
        {},
    )
    assert output.strip() == "True True"


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["file", "redis", "prometheus_multiproc_dir"])
def test_reset_and_multiprocess_collector_across_processes(
    backend: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    """prometheus_client's multi-process idiom, unchanged: PROMETHEUS_MULTIPROC_DIR (adopted by
    patch_client), MultiProcessCollector, and reset() taking back only this process's count."""
    if backend == "prometheus_multiproc_dir":
        env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    else:
        env = backend_environment(backend, tmp_path, redis_server.url)
    program = textwrap.dedent(
        """
        import multiprocessing
        from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess
        JOBS = Counter("jobs", "Jobs done.")
        def work(_):
            for _ in range(100):
                JOBS.inc()
        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(4) as pool:
                pool.map(work, range(4), chunksize=1)
            JOBS.inc(7)
            JOBS.reset()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            print(registry.get_sample_value("jobs_total"))
        """
    )
    script = tmp_path / "program.py"
    script.write_text(PATCHED + program)
    assert run([str(script)], env).strip() == "400.0"
