"""Pushing to a real Pushgateway (the ``prometheus-pushgateway`` program), read back from it.

Each gateway runs for the module on a free loopback port with persistence off; what it serves on
its own ``/metrics`` is parsed with prometheus_client's parser. One gateway requires basic auth
(a web config file with a bcrypt hash, as the exporter toolkit wants).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.exposition import delete_from_gateway, push_to_gateway, pushadd_to_gateway
from pytheus.metrics import Counter, Gauge, Histogram, Summary
from pytheus.registry import CollectorRegistry
from pytheus.serving.push import group_url, urllib_handler
from tests.conftest import require_program
from tests.helpers import eventually

AUTH = ("pusher", "s3cret pass")
GATEWAY_OWN = {"push_time_seconds", "push_failure_time_seconds"}

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def run_gateway(directory: Path, web_config: Path | None = None) -> Iterator[str]:
    program = require_program("prometheus-pushgateway")
    port = free_port()
    args = [
        program,
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",
        "--log.level=warn",
    ]
    if web_config is not None:
        args.append(f"--web.config.file={web_config}")
    with open(directory / "pushgateway.log", "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_listening(port, process)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "prometheus-pushgateway exited; see pushgateway.log"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                return
        except urllib.error.HTTPError:  # answering at all (401 with auth) is enough
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("prometheus-pushgateway did not start")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_gateway(tmp_path_factory.mktemp("pushgateway")) as address:
        yield address


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("pushgateway-auth")
    hashed = bcrypt.hashpw(AUTH[1].encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = directory / "web.yml"
    web_config.write_text(json.dumps({"basic_auth_users": {AUTH[0]: hashed}}))  # JSON is YAML
    with run_gateway(directory, web_config) as address:
        yield address


def read_group(
    gateway: str, job: str, headers: Mapping[str, str] | None = None, with_own: bool = False
) -> Series:
    """(sample name, labels) -> value of what the gateway serves for ``job``."""
    request = urllib.request.Request(f"http://{gateway}/metrics", headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode("utf-8")
    found: Series = {}
    for family in text_parse(text):
        for sample in family.samples:
            if sample.labels.get("job") == job and (with_own or family.name not in GATEWAY_OWN):
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def batch_registry(records: float, with_gauge: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("batch_records_total", "Records processed.", registry=registry).inc(records)
    if with_gauge:
        Gauge("batch_last_success_seconds", "Last success.", registry=registry).set(1.7e9)
    return registry


# --- operations ----------------------------------------------------------------------------------


@pytest.mark.system
def test_push_replaces_the_group(gateway: str) -> None:
    push_to_gateway(gateway, "push-job", batch_registry(10))
    group = labels(job="push-job", instance="")
    assert read_group(gateway, "push-job") == {
        ("batch_records_total", group): 10,
        ("batch_last_success_seconds", group): 1.7e9,
    }
    push_to_gateway(gateway, "push-job", batch_registry(3, with_gauge=False))
    assert read_group(gateway, "push-job") == {("batch_records_total", group): 3}


@pytest.mark.system
def test_pushadd_replaces_only_metrics_of_the_same_name(gateway: str) -> None:
    push_to_gateway(gateway, "pushadd-job", batch_registry(10))
    pushadd_to_gateway(gateway, "pushadd-job", batch_registry(25, with_gauge=False))
    group = labels(job="pushadd-job", instance="")
    assert read_group(gateway, "pushadd-job") == {
        ("batch_records_total", group): 25,
        ("batch_last_success_seconds", group): 1.7e9,
    }


def deleted(gateway: str, job: str) -> None:
    """Nothing of ``job`` left: the Pushgateway answers a DELETE with 202 Accepted and applies
    it soon after."""

    def empty() -> None:
        assert read_group(gateway, job, with_own=True) == {}

    eventually(empty, timeout=10)


@pytest.mark.system
def test_delete_removes_the_group(gateway: str) -> None:
    push_to_gateway(gateway, "delete-job", batch_registry(1), grouping_key={"shard": "1"})
    push_to_gateway(gateway, "delete-job", batch_registry(2), grouping_key={"shard": "2"})
    delete_from_gateway(gateway, "delete-job", grouping_key={"shard": "1"})

    def shards() -> set[str]:
        return {dict(key[1])["shard"] for key in read_group(gateway, "delete-job", with_own=True)}

    def shards_are(expected: set[str]) -> None:
        assert shards() == expected

    eventually(lambda: shards_are({"2"}), timeout=10)  # a DELETE is applied after its answer
    delete_from_gateway(gateway, "delete-job", grouping_key={"shard": "2"})
    deleted(gateway, "delete-job")


@pytest.mark.system
def test_grouping_key_with_slash_empty_and_odd_values(gateway: str) -> None:
    job = "nightly/backup"
    key = {"path": "/var/lib/db", "shard": "", "region": "eu west #1?&=", "slashes": "//"}
    push_to_gateway(gateway, job, batch_registry(7, with_gauge=False), grouping_key=key)
    assert read_group(gateway, job) == {
        ("batch_records_total", labels(job=job, instance="", **key)): 7
    }
    delete_from_gateway(gateway, job, grouping_key=key)
    deleted(gateway, job)


@pytest.mark.system
def test_every_type_and_backend(gateway: str, registry: CollectorRegistry, backend: str) -> None:
    job = f"types-{backend}"
    Counter("t_events_total", "E.", required_labels=["kind"], registry=registry).labels(
        kind='a "quoted"\nvalue'
    ).inc(2)
    Gauge("t_depth", "D.", registry=registry).set(-1.5)
    Histogram("t_wait_seconds", "W.", buckets=[1, 5], registry=registry).observe(3)
    Summary("t_size_bytes", "S.", registry=registry).observe(10)
    push_to_gateway(gateway, job, registry, grouping_key={"instance": "host-1"})

    group = {"job": job, "instance": "host-1"}
    got = read_group(gateway, job)
    assert got[("t_events_total", labels(kind='a "quoted"\nvalue', **group))] == 2
    assert got[("t_depth", labels(**group))] == -1.5
    buckets = {  # the gateway writes bounds its own way ("5", not "5.0")
        float(dict(key[1])["le"]): value
        for key, value in got.items()
        if key[0] == "t_wait_seconds_bucket"
    }
    assert buckets == {1.0: 0, 5.0: 1, float("inf"): 1}
    assert got[("t_wait_seconds_count", labels(**group))] == 1
    assert got[("t_size_bytes_sum", labels(**group))] == 10
    delete_from_gateway(gateway, job, grouping_key={"instance": "host-1"})


@pytest.mark.system
def test_gateway_given_as_url(gateway: str) -> None:
    push_to_gateway(f"http://{gateway}/", "url-job", batch_registry(5, with_gauge=False))
    assert read_group(gateway, "url-job") == {
        ("batch_records_total", labels(job="url-job", instance="")): 5
    }


@pytest.mark.system
def test_refused_push_raises_with_the_gateways_reason(gateway: str) -> None:
    registry = CollectorRegistry()
    Gauge("clash_value_total", "As a gauge.", registry=registry).set(1)
    push_to_gateway(gateway, "clash-a", registry)
    other = CollectorRegistry()
    Counter("clash_value", "As a counter.", registry=other).inc()  # clash_value_total too
    with pytest.raises(OSError, match="400") as error:
        push_to_gateway(gateway, "clash-b", other)
    assert "inconsistent" in str(error.value)
    assert read_group(gateway, "clash-b") == {}


@pytest.mark.system
def test_custom_handler(gateway: str) -> None:
    calls: list[tuple[str, str]] = []

    def handler(
        url: str, method: str, timeout: float | None, headers: Mapping[str, str], body: bytes
    ) -> None:
        calls.append((url, method))
        urllib_handler(url, method, timeout, {**headers, "X-Via": "handler"}, body)

    push_to_gateway(gateway, "handler-job", batch_registry(2, with_gauge=False), handler=handler)
    delete_from_gateway(gateway, "handler-job", handler=handler)
    url = f"http://{gateway}/metrics/job/handler-job"
    assert calls == [(url, "PUT"), (url, "DELETE")]
    deleted(gateway, "handler-job")


@pytest.mark.system
def test_basic_auth(auth_gateway: str) -> None:
    registry = batch_registry(9, with_gauge=False)
    with pytest.raises(OSError, match="401"):
        push_to_gateway(auth_gateway, "auth-job", registry)
    with pytest.raises(OSError, match="401"):
        push_to_gateway(auth_gateway, "auth-job", registry, basic_auth=(AUTH[0], "wrong"))
    push_to_gateway(auth_gateway, "auth-job", registry, basic_auth=AUTH)
    assert read_group(auth_gateway, "auth-job", auth_header(*AUTH)) == {
        ("batch_records_total", labels(job="auth-job", instance="")): 9
    }


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "key", "path"),
    [
        ("backup", None, "/metrics/job/backup"),
        ("backup", {"instance": "db-1"}, "/metrics/job/backup/instance/db-1"),
        ("a/b", {}, "/metrics/job@base64/YS9i"),
        ("backup", {"path": "/var/db"}, "/metrics/job/backup/path@base64/L3Zhci9kYg=="),
        ("backup", {"shard": ""}, "/metrics/job/backup/shard@base64/="),
        ("back up", {"q": "a?b#c%"}, "/metrics/job/back%20up/q/a%3Fb%23c%25"),
        ("backup", {"n": "\u00e9"}, "/metrics/job/backup/n/%C3%A9"),
    ],
)
def test_group_url(job: str, key: dict[str, str] | None, path: str) -> None:
    assert group_url("gw:9091", job, key) == f"http://gw:9091{path}"
    assert group_url("https://gw:9091/", job, key) == f"https://gw:9091{path}"


def test_empty_job_is_refused() -> None:
    with pytest.raises(ValueError, match="job"):
        group_url("gw:9091", "")
