"""The Redis backend over TLS (``rediss://``) with an ACL user; the password is never shown."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pytheus.backends import SingleProcessBackend, load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.exceptions import BackendUnavailableException, InvalidBackendConfigException
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.helpers import value
from tests.redis_server import free_port, server_binary
from tests.test_http_server import Certs, certs  # noqa: F401 - the certificate fixture

PASSWORD = "acl-s3cret-9"


@pytest.fixture
def tls_server(certs: Certs, tmp_path: Path) -> Iterator[int]:  # noqa: F811
    binary = server_binary()
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
            "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
            "--user", "default", "off",
            "--user", "metrics", "on", f">{PASSWORD}", "~pytheus*", "&*", "+@all",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(
            host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs.ca),
            username="metrics", password=PASSWORD, socket_timeout=1,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)
        load_backend(SingleProcessBackend, {})


def test_tls_and_acl_user(tls_server: int, certs: Certs, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    url = f"rediss://metrics:{PASSWORD}@127.0.0.1:{tls_server}/0"
    with caplog.at_level(logging.DEBUG):
        load_backend(MultiProcessRedisBackend, {"url": url, "ssl_ca_certs": str(certs.ca)})
        registry = CollectorRegistry()
        Counter("secure_total", "S.", registry=registry).inc(4)
        assert value(registry, "secure_total") == 4
        # a Redis that cannot be reached makes the backend log its address: without the password
        closed = f"rediss://metrics:{PASSWORD}@127.0.0.1:{free_port()}/0"
        load_backend(MultiProcessRedisBackend, {"url": closed, "ssl_ca_certs": str(certs.ca)})
    assert "cannot write metrics to Redis at rediss://127.0.0.1:" in caplog.text
    assert PASSWORD not in caplog.text


def test_wrong_acl_password_is_named_by_address_only(tls_server: int, certs: Certs) -> None:  # noqa: F811
    with pytest.raises(InvalidBackendConfigException) as raised:
        load_backend(
            MultiProcessRedisBackend,
            {
                "host": "127.0.0.1", "port": tls_server, "ssl": True, "ssl_ca_certs": str(certs.ca),
                "username": "metrics", "password": "not-the-password",
            },
        )  # fmt: skip
    assert f"127.0.0.1:{tls_server}" in str(raised.value)
    assert "not-the-password" not in str(raised.value)


def test_plain_connection_to_tls_port_fails_cleanly(tls_server: int) -> None:
    """Without TLS no command succeeds: recording goes on, and a scrape says why it failed."""
    load_backend(MultiProcessRedisBackend, {"url": f"redis://127.0.0.1:{tls_server}/0",
                                            "socket_timeout": 0.5})  # fmt: skip
    registry = CollectorRegistry()
    counter = Counter("plain_total", "P.", registry=registry)
    counter.inc()  # never raises into the application
    with pytest.raises(BackendUnavailableException, match=f"127.0.0.1:{tls_server}"):
        generate_metrics(registry)


def test_a_certificate_that_fails_verification_is_a_configuration_error(
    tls_server: int,
    certs: Certs,  # noqa: F811
) -> None:
    """Not an outage to ride out with 503s: the application is told at load_backend."""
    url = f"rediss://metrics:{PASSWORD}@127.0.0.1:{tls_server}/0"
    try:
        with pytest.raises(InvalidBackendConfigException) as raised:
            load_backend(
                MultiProcessRedisBackend, {"url": url, "ssl_ca_certs": str(certs.other_ca)}
            )
        assert "its TLS certificate was refused" in str(raised.value)
        assert "ssl_ca_certs" in str(raised.value)
        assert PASSWORD not in str(raised.value)
    finally:
        load_backend(SingleProcessBackend, {})
