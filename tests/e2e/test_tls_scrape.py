"""docs/serving.md's self-signed certificate, made with the page's own openssl command, lets a
real Prometheus scrape start_http_server over HTTPS; the same certificate without its
subjectAltName (as the page once made it) is refused by Prometheus."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytheus.exposition import start_http_server
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.conftest import require_program
from tests.e2e.conftest import HOST, Processes, ScrapeJob, require_prometheus2, start_prometheus

ROOT = Path(__file__).resolve().parents[2]


def documented_openssl_command() -> str:
    """The ```sh block of the page's "HTTPS and client certificates" section."""
    page = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    section = page[page.index("### HTTPS and client certificates") :]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.M | re.S)
    assert found is not None and "openssl req" in found.group(1)
    return found.group(1)


def make_certificate(directory: Path, command: str) -> None:
    require_program("openssl")
    subprocess.run(["sh", "-c", command], cwd=directory, check=True, capture_output=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    Counter("secure_scrapes_total", "S.", registry=registry).inc(7)
    yield registry


@pytest.mark.system
def test_the_documented_certificate_is_accepted_by_prometheus(
    processes: Processes, tmp_path: Path, registry: CollectorRegistry
) -> None:
    binary, _ = require_prometheus2()
    documented, legacy = tmp_path / "documented", tmp_path / "legacy"
    documented.mkdir()
    legacy.mkdir()
    command = documented_openssl_command()
    make_certificate(documented, command)
    # the page's command before it named the host in a subjectAltName
    make_certificate(legacy, re.sub(r'-addext "[^"]*" ', "", command).replace("\\\n", " "))
    servers = {
        name: start_http_server(
            0, HOST, registry, certfile=str(where / "server.pem"), keyfile=str(where / "server.key")
        )
        for name, where in (("documented", documented), ("legacy", legacy))
    }
    try:
        jobs = [
            ScrapeJob(
                name, f"{HOST}:{server.port}",
                settings={
                    "scheme": "https",
                    "tls_config": {
                        "ca_file": str(where / "server.pem"), "server_name": "my-app.internal",
                    },
                },
            )
            for (name, server), where in zip(servers.items(), (documented, legacy))
        ]  # fmt: skip
        prometheus = start_prometheus(processes, tmp_path / "prometheus", jobs, binary=binary)
        for job in ("documented", "legacy"):
            prometheus.wait_for_scrape_after(job, 0, timeout=30)
        assert prometheus.value('up{job="documented"}') == 1
        assert prometheus.value('secure_scrapes_total{job="documented"}') == 7
        assert prometheus.value('up{job="legacy"}') == 0
        targets = prometheus.api("/api/v1/targets")["activeTargets"]
        [refused] = [t for t in targets if t["labels"]["job"] == "legacy"]
        assert "legacy Common Name" in refused["lastError"]
    finally:
        for server in servers.values():
            server.close()
