"""``pytheus serve`` (``python -m pytheus serve``): real worker processes, a real exporter process.

Workers are separate Python processes that record into a shared directory, or into a real
redis-server on a free loopback port; the exporter runs as ``python -m pytheus serve --port 0``
and tells its port in its log. Scrapes go over HTTP(S) and are parsed with prometheus_client's
parsers, an independent oracle.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_parse,
)
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.backends.listing import StoredDefinition, count_definitions, definition_from_key
from pytheus.cli import DEFAULT_BIND, DEFAULT_PORT, PASSWORD_ENV, REDIS_URL_ENV, redact_url
from pytheus.samples import MetricType
from tests import proto_oracle
from tests.conftest import require_program
from tests.helpers import eventually
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SERVE_OPTIONS = (
    "--dir", "--redis-url", "--redis-sentinels", "--redis-cluster", "--redis-service",
    "--backend-class", "--backend-config", "--namespace", "--port",
    "--bind", "--certfile", "--keyfile",
    "--client-cafile", "--client-auth-required", "--basic-auth-user",
    "--basic-auth-password-file", "--name-validation", "--log-level", "--help",
)  # fmt: skip

# A worker: records known values, then exits ("exit") or stays alive until stdin closes ("stay").
# Arguments: index, mode, and optionally the name of one more counter (set to 7).
WORKER = """
import sys
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary

index, mode = int(sys.argv[1]), sys.argv[2]
jobs = Counter("jobs_total", "Jobs.", required_labels=["kind"])
jobs.labels(kind="a").inc(index + 1)
jobs.labels(kind="b").inc()
Gauge("workers_alive", "Living workers.", multiprocess_mode="livesum").set(1)
latency = Histogram("latency_seconds", "Latency.", buckets=[0.1, 1.0])
latency.observe(0.05)
latency.observe(0.5 * (index + 1))
Summary("payload_bytes", "Payloads.").observe(100)
Info("build", "Build.").info({"version": "1.2.3"})
Enum("phase", "Phase.", states=["starting", "running"]).state("running")
if len(sys.argv) > 3:
    Counter(sys.argv[3], "Recorded late.").inc(7)
from pytheus.backends.base import get_backend_class
if get_backend_class().__name__ == "MultiProcessRedisBackend":
    from pytheus.backends.redis import wait_for_flush
    assert wait_for_flush(10)
print("ready", flush=True)
if mode == "stay":
    sys.stdin.read()
"""


# --- processes -----------------------------------------------------------------------------------


def run_worker(index: int, env: dict[str, str], *extra: str, script: str = WORKER) -> None:
    """A worker that records, flushes and exits."""
    subprocess.run(
        [sys.executable, "-c", script, str(index), "exit", *extra],
        cwd=ROOT, env=env, check=True, timeout=30, capture_output=True,
    )  # fmt: skip


@contextmanager
def living_worker(
    index: int, env: dict[str, str], script: str = WORKER
) -> Iterator[subprocess.Popen[str]]:
    """A worker that has recorded and stays alive until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(index), "stay"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


class Exporter:
    """A running ``python -m pytheus serve``; its stderr is collected in ``log``."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.log: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"on (https?://\S+/metrics)", line)
            if found and "serving" in line:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # exited

    def wait_ready(self, timeout: float = 20.0) -> str:
        self._ready.wait(timeout)
        assert self.url, f"the exporter did not start: {''.join(self.log)}"
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        return code


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytheus", "serve", *args]


@contextmanager
def exporter(
    *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> Iterator[Exporter]:
    """Start ``pytheus serve ARGS --port 0`` (unless a port is given), after the ``prefix``
    command if any; stop it afterwards."""
    if "--port" not in args:
        args = (*args, "--port", "0")
    process = subprocess.Popen(
        [*prefix, *serve_command(*args)], cwd=ROOT, env=env if env is not None else clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    running = Exporter(process)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without pytheus's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHEUS_")}
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytheus", *args], cwd=ROOT, capture_output=True, text=True,
        env=env if env is not None else clean_env(), timeout=30,
    )  # fmt: skip


# --- scraping ------------------------------------------------------------------------------------


def fetch(
    url: str, accept: str | None = None, context: ssl.SSLContext | None = None, **headers: str
) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET."""
    request = urllib.request.Request(url, headers=headers)
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            body: bytes = response.read()
            return response.status, response.headers["Content-Type"], body.decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def samples(families: Iterable[Any]) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families
        for s in family.samples
    }


def scrape_text(url: str) -> Samples:
    status, content_type, body = fetch(url)
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4")
    return samples(text_parse(body))


def sample(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def assert_worker_totals(found: Samples, workers: int) -> None:
    """What ``workers`` workers of indexes 0..workers-1 recorded, combined."""
    assert sample(found, "jobs_total", kind="a") == sum(range(1, workers + 1))
    assert sample(found, "jobs_total", kind="b") == workers
    assert sample(found, "latency_seconds_count") == 2 * workers
    assert sample(found, "latency_seconds_bucket", le="0.1") == workers
    assert sample(found, "latency_seconds_bucket", le="1.0") == workers + min(workers, 2)
    assert sample(found, "latency_seconds_sum") == pytest.approx(
        0.05 * workers + sum(0.5 * (i + 1) for i in range(workers))
    )
    assert sample(found, "payload_bytes_count") == workers
    assert sample(found, "payload_bytes_sum") == 100 * workers
    assert sample(found, "build_info", version="1.2.3") == 1
    assert sample(found, "phase", phase="running") == 1


# --- help and options ----------------------------------------------------------------------------


def test_help_lists_every_option() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for option in SERVE_OPTIONS:
        assert option in text, option
    assert f"default: {DEFAULT_PORT})" in text
    assert f"default: {DEFAULT_BIND}," in text
    for variable in (
        "PYTHEUS_MULTIPROC_DIR",
        REDIS_URL_ENV,
        PASSWORD_ENV,
        "PYTHEUS_NAME_VALIDATION",
    ):
        assert variable in text
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "--version" in top.stdout


def test_without_a_command_prints_help() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "serve" in result.stdout


def test_console_script_is_declared() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # no tomllib before Python 3.11
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert 'pytheus = "pytheus.cli:main"' in scripts.splitlines()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dir", "/tmp", "--basic-auth-password", "x"], "unrecognized arguments"),
        (["--dir", "/tmp", "--basic-auth-pass", "x"], "unrecognized arguments"),  # no abbrev
        (["--dir", "/tmp", "--basic-auth-user", "u"], "needs a password"),
        (["--dir", "/tmp", "--basic-auth-password-file", "/dev/null"], "needs --basic-auth-user"),
        (["--dir", "/tmp", "--redis-url", "redis://127.0.0.1:1"], "not allowed with"),
        ([], "no source"),
        (["--dir", "/tmp", "--namespace", "shop"], "--namespace applies"),
        (["--dir", "/tmp", "--keyfile", "k.pem"], "need --certfile"),
        (["--dir", "/tmp", "--client-auth-required"], "needs --client-cafile"),
        (["--dir", "/nonexistent/pytheus"], "not an existing directory"),
        (["--redis-url", "http://127.0.0.1:1"], "url must start with"),
        (["--redis-sentinels", "127.0.0.1:1"], "needs --redis-service"),
        (["--redis-sentinels", "127.0.0.1", "--redis-service", "m"], "is not host:port"),
        (["--redis-url", "redis://127.0.0.1:1", "--redis-sentinels", "h:1"], "not allowed with"),
        (["--dir", "/tmp", "--redis-service", "m"], "goes with --redis-sentinels"),
        (["--dir", "/tmp", "--redis-cluster"], "goes with a Redis URL"),
        (["--dir", "/tmp", "--backend-config", "x.json"], "goes with --backend-class"),
        (["--backend-class", "a.B", "--namespace", "x"], "are Redis's"),
        (["--backend-class", "a.B", "--dir", "/tmp"], "not allowed with"),
        (["--dir", "/tmp", "--port", "70000"], "not a port number"),
    ],
)
def test_refused_invocations(args: list[str], message: str) -> None:
    result = run_cli("serve", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_ambiguous_environment_is_refused(tmp_path: Path) -> None:
    env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path), PYTHEUS_REDIS_URL="redis://127.0.0.1:1")
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert "both" in result.stderr


# --- the adapter (in this process) ---------------------------------------------------------------


def test_definitions_from_stored_keys() -> None:
    inf = float("inf")
    keys: list[list[Any]] = [
        ["jobs_total", "counter", "", ["kind"], ["a"], []],
        ["jobs_total", "counter", "", ["kind"], ["b"], []],
        ["temp", "gauge", "all", [], [], [], 1234],  # a per-process series of a dead process
        ["lat", "histogram", "", [], [], [0.1, inf]],
        ["lat", "exemplar", "", [], [], [0.1, inf], 0],  # an exemplar slot: not a series
        ["bad name", "counter", "", [], [], []],
        ["x", "nonsense", "", [], [], []],
    ]
    assert count_definitions(keys) == {
        StoredDefinition("jobs_total", MetricType.COUNTER, "", ("kind",), ()): 2,
        StoredDefinition("temp", MetricType.GAUGE, "all", (), ()): 1,
        StoredDefinition("lat", MetricType.HISTOGRAM, "", (), (0.1, inf)): 1,
    }
    assert definition_from_key(["too", "short"]) is None


def test_redact_url() -> None:
    assert redact_url("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact_url("rediss://app:s3cret@[::1]:6380") == "rediss://app:***@[::1]:6380"
    assert redact_url("redis://10.0.0.5:6379/0") == "redis://10.0.0.5:6379/0"


# --- the shared-file backend ---------------------------------------------------------------------


def test_directory_of_living_and_dead_workers(tmp_path: Path) -> None:
    env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path))
    with living_worker(0, env):
        run_worker(1, env)
        run_worker(2, env)
        with exporter("--dir", str(tmp_path)) as running:
            found = scrape_text(running.url)
            assert_worker_totals(found, 3)
            assert sample(found, "workers_alive") == 1  # livesum: the dead are gone

            run_worker(3, env, "late_total")  # a family the exporter has never seen
            found = scrape_text(running.url)
            assert_worker_totals(found, 4)
            assert sample(found, "late_total") == 7

            status, content_type, body = fetch(running.url, OPENMETRICS_ACCEPT)
            assert status == 200
            assert content_type.startswith("application/openmetrics-text; version=1.0.0")
            families = {f.name: f for f in openmetrics_parse(body)}  # type: ignore[no-untyped-call]
            assert families["build"].type == "info"
            assert families["phase"].type == "stateset"
            assert families["latency_seconds"].type == "histogram"
            assert sample(samples(iter(families.values())), "jobs_total", kind="a") == 10
        assert running.process.returncode == 0  # SIGTERM stops it cleanly
    assert not any("Traceback" in line for line in running.log)


def test_directory_from_the_environment(tmp_path: Path) -> None:
    env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path))
    run_worker(0, env)
    with exporter(env=env) as running:
        assert_worker_totals(scrape_text(running.url), 1)
        assert f"directory {tmp_path}" in "".join(running.log)


# --- the Redis backend ---------------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, on a free loopback port."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


def redis_env(tmp_path: Path, url: str, namespace: str) -> dict[str, str]:
    config = tmp_path / f"redis-{namespace}.json"
    config.write_text(json.dumps({"url": url, "namespace": namespace}))
    return clean_env(
        PYTHEUS_BACKEND_CLASS="pytheus.backends.redis.MultiProcessRedisBackend",
        PYTHEUS_BACKEND_CONFIG=str(config),
    )


@pytest.mark.system
def test_redis_namespace(tmp_path: Path, redis_server: RedisServer) -> None:
    shop = redis_env(tmp_path, redis_server.url, "shop")
    run_worker(0, shop)
    run_worker(1, shop)
    run_worker(5, redis_env(tmp_path, redis_server.url, "other"))  # another namespace
    with living_worker(2, shop):
        with exporter("--redis-url", redis_server.url, "--namespace", "shop") as running:
            found = scrape_text(running.url)
            assert_worker_totals(found, 3)
            run_worker(3, shop, "late_total")
            found = scrape_text(running.url)
            assert_worker_totals(found, 4)
            assert sample(found, "late_total") == 7
            assert sample(found, "workers_alive") == 1  # livesum: the living worker's
        # the URL may carry a password: it can come from the environment instead
        env = clean_env(PYTHEUS_REDIS_URL=redis_server.url)
        with exporter("--namespace", "other", env=env) as running:
            assert sample(scrape_text(running.url), "jobs_total", kind="a") == 6


@pytest.mark.system
def test_a_redis_behind_sentinel(tmp_path: Path) -> None:
    """Workers and the exporter find the master through the sentinels, after a failover too."""
    from tests.redis_sentinel import SERVICE, SentinelGroup

    group = SentinelGroup()
    try:
        config = tmp_path / "sentinel.json"
        config.write_text(json.dumps(
            {"sentinels": group.addresses, "service_name": SERVICE, "namespace": "ha"}
        ))  # fmt: skip
        env = clean_env(
            PYTHEUS_BACKEND_CLASS="pytheus.backends.redis.MultiProcessRedisBackend",
            PYTHEUS_BACKEND_CONFIG=str(config),
        )
        run_worker(0, env)
        run_worker(1, env)
        addresses = ",".join(f"{host}:{port}" for host, port in group.addresses)
        with exporter("--redis-sentinels", addresses, "--redis-service", SERVICE,
                      "--namespace", "ha") as running:  # fmt: skip
            assert_worker_totals(scrape_text(running.url), 2)
            group.wait_for_replica_to_catch_up()
            group.kill_master()
            group.wait_for_failover()
            run_worker(2, env)  # finds the promoted replica through the sentinels too

            def three_workers() -> None:
                assert_worker_totals(scrape_text(running.url), 3)

            eventually(three_workers, timeout=60)
        env = clean_env(PYTHEUS_REDIS_SENTINELS=addresses, PYTHEUS_REDIS_SERVICE=SERVICE)
        with exporter("--namespace", "ha", env=env) as running:  # from the environment
            assert_worker_totals(scrape_text(running.url), 3)
    finally:
        group.stop()


@pytest.mark.system
def test_a_redis_cluster(tmp_path: Path) -> None:
    """Workers and the exporter on a Redis Cluster: the URL of any node, and --redis-cluster."""
    from tests.redis_cluster import ClusterGroup

    with ClusterGroup() as cluster:
        config = tmp_path / "cluster.json"
        config.write_text(json.dumps({"url": cluster.url, "cluster": True, "namespace": "c"}))
        env = clean_env(
            PYTHEUS_BACKEND_CLASS="pytheus.backends.redis.MultiProcessRedisBackend",
            PYTHEUS_BACKEND_CONFIG=str(config),
        )
        run_worker(0, env)
        run_worker(1, env)
        other_node = f"redis://127.0.0.1:{cluster.masters[-1]}/0"
        with exporter("--redis-url", other_node, "--redis-cluster", "--namespace", "c") as running:
            assert_worker_totals(scrape_text(running.url), 2)
        env = clean_env(PYTHEUS_REDIS_URL=cluster.url, PYTHEUS_REDIS_CLUSTER="1")
        with exporter("--namespace", "c", env=env) as running:  # from the environment
            assert_worker_totals(scrape_text(running.url), 2)


@pytest.mark.system
def test_a_backend_of_ones_own(tmp_path: Path) -> None:
    """--backend-class serves any store that lists what it holds (Store.families())."""
    held = tmp_path / "held.json"
    held.write_text(json.dumps([
        ["jobs_total", "counter", "Jobs done.", [[["kind"], ["a"], 3], [["kind"], ["b"], 4]]],
        ["temperature", "gauge", "Degrees.", [[[], [], 21.5]]],
    ]))  # fmt: skip
    config = tmp_path / "backend.json"
    config.write_text(json.dumps({"path": str(held)}))
    with exporter("--backend-class", "tests.apps.listed_store.ListedBackend",
                  "--backend-config", str(config)) as running:  # fmt: skip
        status, _, body = fetch(running.url)
        assert status == 200, body
        families = {f.name: f for f in text_parse(body)}
        assert families["jobs"].documentation == "Jobs done."
        found = samples(families.values())
        assert sample(found, "jobs_total", kind="b") == 4
        assert sample(found, "temperature") == 21.5
        held.write_text(json.dumps([["jobs_total", "counter", "Jobs done.", []]]))
        assert sample(scrape_text(running.url), "temperature") is None  # read at each scrape
    refused = run_cli("serve", "--backend-class", "tests.apps.listed_store.UnlistedBackend")
    assert refused.returncode == 2
    assert "cannot list what it holds" in refused.stderr
    refused = run_cli("serve", "--backend-class", "tests.apps.nowhere.Backend")
    assert refused.returncode == 2
    refused = run_cli("serve", "--backend-class", "tests.apps.listed_store.ListedBackend",
                      "--backend-config", str(tmp_path / "missing.json"))  # fmt: skip
    assert refused.returncode == 2
    assert "(from --backend-config) could not be read" in refused.stderr


@pytest.mark.system
def test_a_live_gauge_shows_0_once_its_writers_have_gone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """What a process defining the gauge would show, not HELP and TYPE without a sample."""
    run_worker(0, redis_env(tmp_path, redis_server.url, "ended"))  # it leaves and says goodbye
    with exporter("--redis-url", redis_server.url, "--namespace", "ended") as running:
        status, _, body = fetch(running.url)
        assert status == 200
        assert sample(samples(text_parse(body)), "workers_alive") == 0
        assert sample(samples(text_parse(body)), "jobs_total", kind="a") == 1


@pytest.mark.system
def test_redis_down_is_503_and_recovers(tmp_path: Path, redis_server: RedisServer) -> None:
    env = redis_env(tmp_path, redis_server.url, "flaky")
    run_worker(0, env)
    with exporter("--redis-url", redis_server.url, "--namespace", "flaky") as running:
        assert fetch(running.url)[0] == 200
        redis_server.stop()
        status, _, body = fetch(running.url)
        assert status == 503, body
        redis_server.start()  # empty: the worker is gone, nothing to re-send
        assert fetch(running.url)[0] == 200


def test_redis_password_is_not_logged(tmp_path: Path) -> None:
    """A Redis that is down at start is only a warning; the URL's password never shows."""
    with exporter("--redis-url", "redis://:hunter2@127.0.0.1:1/0", "--log-level", "debug") as run:
        assert fetch(run.url)[0] == 503
    log = "".join(run.log)
    assert "hunter2" not in log
    assert "redis://:***@127.0.0.1:1/0" in log


# --- binding, TLS and basic auth -----------------------------------------------------------------


def test_binds_loopback_only_by_default(tmp_path: Path) -> None:
    with exporter("--dir", str(tmp_path)) as running:
        assert running.url.startswith("http://127.0.0.1:")
        assert fetch(running.url)[0] == 200
        # bound to 127.0.0.1 itself, not to every address: another loopback address is refused
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", running.port), timeout=5).close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_tls_with_basic_auth_from_a_file(tmp_path: Path) -> None:
    password = "correct horse battery staple"
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    cert, key = self_signed(tmp_path)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    run_worker(0, clean_env(PYTHEUS_MULTIPROC_DIR=str(metrics)))
    args = (
        "--dir", str(metrics), "--certfile", str(cert), "--keyfile", str(key),
        "--basic-auth-user", "prometheus", "--basic-auth-password-file", str(secret),
    )  # fmt: skip
    with exporter(*args) as running:
        assert running.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        assert fetch(running.url, context=context)[0] == 401
        wrong = authorization("prometheus", "wrong")
        assert fetch(running.url, context=context, Authorization=wrong)[0] == 401
        right = authorization("prometheus", password)
        status, _, body = fetch(running.url, context=context, Authorization=right)
        assert status == 200
        assert sample(samples(text_parse(body)), "jobs_total", kind="a") == 1
        command_line = Path(f"/proc/{running.process.pid}/cmdline").read_bytes()
        assert password.encode() not in command_line
    assert password not in "".join(running.log)


def test_basic_auth_password_from_the_environment(tmp_path: Path) -> None:
    env = clean_env(**{PASSWORD_ENV: "s3cret"})
    with exporter("--dir", str(tmp_path), "--basic-auth-user", "prom", env=env) as running:
        assert fetch(running.url)[0] == 401
        assert fetch(running.url, Authorization=authorization("prom", "s3cret"))[0] == 200
    assert "s3cret" not in "".join(running.log)


def test_port_in_use_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_cli("serve", "--dir", str(tmp_path), "--port", str(port))
    assert result.returncode == 1
    assert "cannot serve" in result.stderr
    assert time.monotonic() - started < 20


# --- UTF-8 names ---------------------------------------------------------------------------------

# A worker run with PYTHEUS_NAME_VALIDATION=utf8: names that are not classic, and classic ones.
UTF8_WORKER = """
import sys
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info

index, mode = int(sys.argv[1]), sys.argv[2]
requests = Counter("http.server.requests_total", "Requests.", required_labels=["http.method"])
requests.labels({"http.method": "GET"}).inc(index + 1, exemplar={"trace.id": f"t{index}"})
Histogram("http.server.duration", "Duration.", buckets=[0.1, 1.0]).observe(0.5)
Gauge('say "hi"', "Quoted.", multiprocess_mode="max").set(index + 1)
Info("build.meta", "Build.").info({"service.version": "1.2"})
Info("build", "Classic name, UTF-8 key.").info({"git.commit": "abc"})
Enum("task.state", "State.", states=["idle", "busy"]).state("busy")
Counter("jobs_total", "Classic.").inc()
from pytheus.backends.base import get_backend_class
if get_backend_class().__name__ == "MultiProcessRedisBackend":
    from pytheus.backends.redis import wait_for_flush
    assert wait_for_flush(10)
print("ready", flush=True)
if mode == "stay":
    sys.stdin.read()
"""
UTF8_OPENMETRICS = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"
UTF8_TEXT = "text/plain;version=1.0.0;escaping=allow-utf-8"
UNDERSCORES_TEXT = "text/plain;version=0.0.4;escaping=underscores"
PROTOBUF_UTF8 = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;escaping=allow-utf-8"
)


def assert_utf8_served(url: str, workers: int, exemplars: bool) -> None:
    """What UTF8_WORKER of indexes 0..workers-1 recorded, in every format the exporter speaks."""
    status, content_type, body = fetch(url, UTF8_OPENMETRICS)
    assert status == 200, body
    assert content_type.endswith("; escaping=allow-utf-8")
    families = {f.name: f for f in openmetrics_parse(body)}  # type: ignore[no-untyped-call]
    assert families["build.meta"].type == "info" and families["task.state"].type == "stateset"
    found = samples(iter(families.values()))
    total = sum(range(1, workers + 1))
    assert sample(found, "http.server.requests_total", **{"http.method": "GET"}) == total
    assert sample(found, "http.server.duration_bucket", le="1.0") == workers
    assert sample(found, 'say "hi"') == workers
    assert sample(found, "build.meta_info", **{"service.version": "1.2"}) == 1
    assert sample(found, "build_info", **{"git.commit": "abc"}) == 1
    assert sample(found, "task.state", **{"task.state": "busy"}) == 1
    assert sample(found, "jobs_total") == workers
    if exemplars:
        [counter] = families["http.server.requests"].samples
        assert counter.exemplar is not None
        assert set(counter.exemplar.labels) == {"trace.id"}

    status, _, body = fetch(url, UTF8_TEXT)
    assert status == 200
    found = samples(text_parse(body))
    assert sample(found, "build.meta_info", **{"service.version": "1.2"}) == 1
    assert sample(found, 'say "hi"') == workers

    status, content_type, body = fetch(url, UNDERSCORES_TEXT)
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert '"' + "http" not in body and '{"' not in body
    found = samples(text_parse(body))
    assert sample(found, "http_server_requests_total", http_method="GET") == total
    assert sample(found, "say__hi_") == workers
    assert sample(found, "build_meta_info", service_version="1.2") == 1
    assert sample(found, "build_info", git_commit="abc") == 1
    assert sample(found, "task_state", task_state="busy") == 1
    checked = subprocess.run(
        [require_program("promtool"), "check", "metrics"], input=body, capture_output=True,
        text=True,
    )  # fmt: skip
    assert "parsing error" not in checked.stdout + checked.stderr
    assert checked.returncode in (0, 3), checked.stderr  # 3: naming-style lint only

    request = urllib.request.Request(url, headers={"Accept": PROTOBUF_UTF8})
    with urllib.request.urlopen(request, timeout=10) as response:
        decoded = {f.name: f for f in proto_oracle.decode_delimited(response.read())}
    [info] = decoded["build.meta_info"].metric
    assert [(pair.name, pair.value) for pair in info.label] == [("service.version", "1.2")]
    assert {m.label[0].name for m in decoded["task.state"].metric} == {"task.state"}


def assert_utf8_left_out(running: Exporter) -> None:
    """A legacy exporter serves the classic families only, and says what it left out."""
    status, _, body = fetch(running.url, UTF8_OPENMETRICS)
    assert status == 200
    families = openmetrics_parse(body)  # type: ignore[no-untyped-call]
    # "build" is classic, but its only information has a key that is not: no series
    assert {f.name for f in families if f.samples} == {"jobs"}

    def told() -> None:  # the exporter logs as it serves; its log is read on another thread
        log = "".join(running.log)
        for name in ("http.server.requests_total", "build.meta", "task.state"):
            assert f"metric {name!r} is left out" in log, name
        assert "metric 'build' has information left out: a key is not a classic name" in log
        assert "--name-validation utf8" in log

    eventually(told)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_utf8_names_from_the_shared_directory(tmp_path: Path, how: str) -> None:
    env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path), PYTHEUS_NAME_VALIDATION="utf8")
    run_worker(0, env, script=UTF8_WORKER)
    with living_worker(1, env, script=UTF8_WORKER):
        if how == "option":
            served = exporter("--dir", str(tmp_path), "--name-validation", "utf8")
        else:
            served = exporter("--dir", str(tmp_path), env=clean_env(PYTHEUS_NAME_VALIDATION="utf8"))
        with served as running:
            assert "name validation: utf8" in "".join(running.log)
            assert_utf8_served(running.url, 2, exemplars=True)
    assert not any("Traceback" in line for line in running.log)


def test_legacy_exporter_leaves_utf8_names_out(tmp_path: Path) -> None:
    env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path), PYTHEUS_NAME_VALIDATION="utf8")
    run_worker(0, env, script=UTF8_WORKER)
    legacy = clean_env(PYTHEUS_NAME_VALIDATION="utf8")  # the option wins over the environment
    with exporter("--dir", str(tmp_path), "--name-validation", "legacy", env=legacy) as running:
        assert_utf8_left_out(running)
        fetch(running.url)
        log = "".join(running.log)
        assert log.count("metric 'build.meta' is left out") == 1  # told once, not per scrape


@pytest.mark.system
def test_utf8_names_from_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {**redis_env(tmp_path, redis_server.url, "utf8"), "PYTHEUS_NAME_VALIDATION": "utf8"}
    run_worker(0, env, script=UTF8_WORKER)
    run_worker(1, env, script=UTF8_WORKER)
    args = ("--redis-url", redis_server.url, "--namespace", "utf8")
    with exporter(*args, "--name-validation", "utf8") as running:
        assert_utf8_served(running.url, 2, exemplars=True)
    with exporter(*args) as running:  # legacy, the default
        assert_utf8_left_out(running)


# --- serving what the application would ----------------------------------------------------------

# A worker with help texts, units, every type and gauge modes; it writes its own scrape
# (OpenMetrics) to the file named by its first argument, then stays until stdin closes.
DESCRIBED_WORKER = """
import sys
from pytheus.collection import collect_registry
from pytheus.exposition import openmetrics
from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.registry import REGISTRY

Counter("jobs_total", "Jobs finished, by kind.", required_labels=["kind"]).labels("a").inc(3)
Counter("idle_total", "Never incremented.")
Gauge("queue_bytes", "Bytes queued.", multiprocess_mode="max", unit="bytes").set(512)
Gauge("temperature_celsius", "Temperature.", multiprocess_mode="sum", unit="celsius").set(21)
Histogram("wait_seconds", "Time waited.", buckets=[0.1, 1], unit="seconds").observe(0.5)
Summary("payload_bytes", "Payload sizes.", unit="bytes").observe(100)
Summary("service_seconds", "Service time.", quantiles=[0.5, 0.99]).observe(0.25)
Info("build", "Build information.").info({"version": "1.2.3"})
Enum("phase", "Lifecycle phase.", states=["starting", "running", "stopping"]).state("running")
from pytheus.backends.base import get_backend_class
if get_backend_class().__name__ == "MultiProcessRedisBackend":
    from pytheus.backends.redis import wait_for_flush
    assert wait_for_flush(10)
with open(sys.argv[1], "w") as scrape:
    scrape.write(openmetrics.render(collect_registry(REGISTRY)))
print("ready", flush=True)
sys.stdin.read()
"""

RUNTIME = ("process_", "python_")


def described_families(text: str) -> dict[str, tuple[str, str, str, Samples]]:
    """``{name: (type, help, unit, samples)}`` of an OpenMetrics exposition, runtime left out."""
    return {
        f.name: (f.type, f.documentation, f.unit, samples([f]))
        for f in openmetrics_parse(text)  # type: ignore[no-untyped-call]
        if not f.name.startswith(RUNTIME)
    }


@pytest.mark.system
@pytest.mark.parametrize("backend", ["file", "redis"])
def test_the_exporter_serves_what_the_application_serves(
    backend: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Help, unit, every type, gauge modes, an Enum's unset states and an unlabelled counter
    never incremented, as the application's own scrape shows them; and after the worker has
    exited, the families stay, with their help and unit."""
    source: tuple[str, ...]
    if backend == "file":
        env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
        source = ("--dir", str(tmp_path / "metrics"))
    else:
        env = redis_env(tmp_path, redis_server.url, "described")
        source = ("--redis-url", redis_server.url, "--namespace", "described")
    own_scrape = tmp_path / "application.txt"
    process = subprocess.Popen(
        [sys.executable, "-c", DESCRIBED_WORKER, str(own_scrape)],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        application = described_families(own_scrape.read_text())
        assert application["queue_bytes"][1:3] == ("Bytes queued.", "bytes")
        median = sample(application["service_seconds"][3], "service_seconds", quantile="0.5")
        assert median == pytest.approx(0.25, rel=0.01)
        with exporter(*source) as running:
            status, _, body = fetch(running.url, OPENMETRICS_ACCEPT)
            assert status == 200
            assert described_families(body) == application
            process.stdin.close()  # type: ignore[union-attr]
            assert process.wait(timeout=30) == 0
            status, _, body = fetch(running.url, OPENMETRICS_ACCEPT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    after = described_families(body)
    assert {name: family[:3] for name, family in after.items()} == {
        name: family[:3] for name, family in application.items()
    }
    assert sample(after["jobs"][3], "jobs_total", kind="a") == 3
    assert sample(after["idle"][3], "idle_total") == 0


def test_two_versions_of_an_enum_serve_every_state() -> None:
    """A deployment changed an Enum's states; the store holds both descriptions: the exporter
    serves the states of both, so the current one is never missing."""
    from pytheus.backends.descriptions import StoredDescription
    from pytheus.backends.listing import described, enum_series, exported_family
    from pytheus.samples import LabelSet

    stored = StoredDefinition("job_state", MetricType.GAUGE, "max", ("__state",), ())
    old = StoredDescription(
        "job_state", MetricType.GAUGE, "max", ("__state",), (), "Old.", "", ("idle", "running")
    )
    new = dataclasses.replace(old, help="New.", states=("idle", "paused", "running"))
    [definition] = described({stored: 1}, [new, old])
    assert sorted(definition.states) == ["idle", "paused", "running"]
    assert exported_family(definition).desc.type is MetricType.STATESET
    series = enum_series(
        ("job_state",), [(LabelSet(("__state",), ("paused",)), 5.0)], definition.states
    )
    assert {labels.values[-1]: v for labels, v in series} == {
        "idle": 0.0, "running": 0.0, "paused": 1.0,
    }  # fmt: skip


# A worker recording into every kind of series the exporter must serve as the application does:
# native histograms (with a non-default factor and zero threshold), exemplars, and a gauge in
# each multiprocess mode; argv: its index, then "exit" (record and exit) or "stay" (record, then
# answer "scrape PATH ACCEPT" lines on stdin with the application's own scrape until EOF).
PARITY_WORKER = """
import sys
from pytheus.exposition.negotiation import render_for_request
from pytheus.metrics import Counter, Gauge, Histogram
from pytheus.registry import REGISTRY

index, mode = int(sys.argv[1]), sys.argv[2]
MODES = ["all", "sum", "min", "max", "mostrecent",
         "liveall", "livesum", "livemin", "livemax", "livemostrecent"]
for gauge_mode in MODES:
    Gauge(f"level_{gauge_mode}", f"Level ({gauge_mode}).", multiprocess_mode=gauge_mode).set(
        10 + index
    )
jobs = Counter("jobs_total", "Jobs.", required_labels=["kind"])
jobs.labels("a").inc(1 + index, exemplar={"trace_id": f"t{index}"})
rpc = Histogram("rpc_seconds", "RPC time.", buckets=[0.1, 1], native=True,
                native_bucket_factor=1.3, native_zero_threshold=0.001, unit="seconds")
for value in (0.0005, 0.05, 0.5, 2.0 + index, -3.0):
    rpc.observe(value)
only_native = Histogram("sizes_bytes", "Sizes.", native=True, buckets=[], unit="bytes")
only_native.observe(300 * (index + 1), exemplar={"trace_id": f"s{index}"})
wait = Histogram("wait_seconds", "Waits.", buckets=[0.1, 1])
wait.observe(0.5, exemplar={"trace_id": f"w{index}"})
from pytheus.backends.base import get_backend_class
if get_backend_class().__name__ == "MultiProcessRedisBackend":
    from pytheus.backends.redis import wait_for_flush
    assert wait_for_flush(10)
if mode == "stay":
    print("ready", flush=True)
    for line in sys.stdin:
        _, path, accept = line.rstrip("\\n").split(" ", 2)
        body, _, _ = render_for_request(REGISTRY, accept, None)
        with open(path, "wb") as out:
            out.write(body)
        print("done", flush=True)
"""
PROTOBUF = proto_oracle.CONTENT_TYPE


def served_families(body: str) -> dict[str, Any]:
    """``{name: (type, help, unit, samples with their exemplars)}`` of an OpenMetrics text."""
    return {
        f.name: (
            f.type, f.documentation, f.unit,
            sorted(
                (s.name, sorted(s.labels.items()), s.value,
                 (sorted(s.exemplar.labels.items()), s.exemplar.value) if s.exemplar else None)
                for s in f.samples
            ),
        )
        for f in openmetrics_parse(body)  # type: ignore[no-untyped-call]
        if not f.name.startswith(RUNTIME)
    }  # fmt: skip


def native_families(body: bytes) -> dict[str, list[Any]]:
    """The histograms of a protobuf scrape, decoded with the official schema: each series'
    labels and histogram message (native part included), as the wire carries them."""
    return {
        family.name: sorted(
            ([(p.name, p.value) for p in metric.label], metric.histogram.SerializeToString())
            for metric in family.metric
        )
        for family in proto_oracle.decode_delimited(body)
        if family.type == proto_oracle.metrics_pb2().HISTOGRAM
    }


@pytest.mark.system
@pytest.mark.parametrize("backend", ["file", "redis"])
def test_the_exporter_serves_native_histograms_exemplars_and_every_gauge_mode(
    backend: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two writers, one started through a shell of its own (another parent) that has exited,
    one living: the exporter, started with the application's environment, serves in OpenMetrics
    and protobuf what the living application's own scrape serves: native histograms with their
    settings, exemplars, each gauge mode."""
    if backend == "file":
        env = clean_env(PYTHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
        source: tuple[str, ...] = ("--dir", str(tmp_path / "metrics"))
    else:
        env = redis_env(tmp_path, redis_server.url, "parity")
        source = ("--redis-url", redis_server.url, "--namespace", "parity")
    command = shlex.join([sys.executable, "-c", PARITY_WORKER, "1", "exit"])
    subprocess.run(["sh", "-c", f"{command}; true"], cwd=ROOT, env=env, check=True, timeout=30)
    process = subprocess.Popen(
        [sys.executable, "-c", PARITY_WORKER, "0", "stay"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None

    def application(accept: str) -> bytes:
        path = tmp_path / "application.scrape"
        process.stdin.write(f"scrape {path} {accept}\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        assert process.stdout.readline().strip() == "done"  # type: ignore[union-attr]
        return path.read_bytes()

    try:
        assert process.stdout.readline().strip() == "ready"
        with exporter(*source, env=env) as running:
            own = served_families(application(OPENMETRICS_ACCEPT).decode())
            status, _, body = fetch(running.url, OPENMETRICS_ACCEPT)
            assert status == 200
            assert served_families(body) == own
            request = urllib.request.Request(running.url, headers={"Accept": PROTOBUF})
            with urllib.request.urlopen(request, timeout=10) as response:
                served = native_families(response.read())
            assert served == native_families(application(PROTOBUF))
    finally:
        process.kill()
        process.wait(timeout=10)
    # the oracle saw what the writers recorded, not two empty scrapes
    # both writers' increments; the exemplar of the newest, the living writer's
    assert own["jobs"][3] == [("jobs_total", [("kind", "a")], 3.0, ([("trace_id", "t0")], 1.0))]
    assert own["rpc_seconds"][2] == "seconds"
    assert {name for name in own if name.startswith("level_")} == {
        f"level_{mode}" for mode in ("all", "sum", "min", "max", "mostrecent", "liveall",
                                     "livesum", "livemin", "livemax", "livemostrecent")
    }  # fmt: skip
    pb2 = proto_oracle.metrics_pb2()
    [(_, raw)] = served["sizes_bytes"]
    histogram = pb2.Histogram.FromString(raw)
    assert histogram.sample_count == 2 and histogram.schema == 3  # the default factor's
    [(_, raw)] = served["rpc_seconds"]
    histogram = pb2.Histogram.FromString(raw)
    assert histogram.zero_threshold == 0.001 and histogram.schema == 2  # factor 1.3: 2 ** 2 ** -2
    assert histogram.zero_count == 2 and histogram.sample_count == 10


def test_a_description_keeps_a_native_histograms_settings() -> None:
    """What ``pytheus serve`` knows of a native histogram comes from its stored description:
    encoded and decoded whole; older descriptions (eight or nine elements) read as classic; a
    description with settings a Histogram would refuse is not read at all."""
    from pytheus.backends.descriptions import decode, encode
    from pytheus.metrics import Histogram
    from pytheus.registry import CollectorRegistry

    histogram = Histogram(
        "rpc_seconds", "RPC.", native=True, native_bucket_factor=1.3, native_max_buckets=50,
        native_zero_threshold=0.01, native_reset_seconds=60, registry=CollectorRegistry(),
    )  # fmt: skip
    stored = decode(encode(histogram._desc))
    assert stored is not None
    assert dict(stored.native) == {
        "native_schema": 2, "native_zero_threshold": 0.01, "native_max_buckets": 50,
        "native_reset_seconds": 60.0,
    }  # fmt: skip
    classic = decode(encode(Histogram("plain", "P.", registry=CollectorRegistry())._desc))
    assert classic is not None and classic.native == ()
    raw = json.loads(encode(histogram._desc))
    for older in (raw[:8], raw[:9]):
        read = decode(json.dumps(older))
        assert read is not None and read.native == () and read.help == "RPC."
    for settings in ([9, 0.01, 50, 60], [2, -1, 50, 60], [2, 0.01, True, 60], [2, 0.01, 50]):
        assert decode(json.dumps([*raw[:9], settings])) is None, settings
