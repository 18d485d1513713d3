"""The README's quickstart and the repository's example, scraped by a real Prometheus 3 with a
default scrape config (only the interval is shorter), and the quickstart under gunicorn with 4
workers as the README shows it. The original pytheus quickstart (``return generate_metrics()``,
served by Flask as HTML) is down for Prometheus 3 unless its job has the documented
``fallback_scrape_protocol``.
"""

from __future__ import annotations

import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    HOST,
    Processes,
    Prometheus,
    ScrapeJob,
    free_port,
    gunicorn_command,
    require_prometheus3,
    start_prometheus,
    wait_for_http,
)
from tests.test_example import PUBLISHED_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 40


def readme_quickstart() -> str:
    """The first ```python block of the README's Quickstart section, as published."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quickstart") :]
    found = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert found is not None
    return found.group(1)


def readme_gunicorn_line() -> str:
    """The README's gunicorn command for the quickstart."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [line] = [ln for ln in readme.splitlines() if "gunicorn" in ln and "quickstart:app" in ln]
    return line


@dataclass
class Stack:
    prometheus: Prometheus
    gunicorn: str  # the quickstart under gunicorn's workers


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.fixture(scope="module")
def stack(processes: Processes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary, _ = require_prometheus3()
    here = tmp_path_factory.mktemp("quickstart")
    (here / "quickstart.py").write_text(readme_quickstart())
    (here / "original.py").write_text(PUBLISHED_EXAMPLE)
    (here / "example.py").write_text((ROOT / "example.py").read_text())
    ports = {name: free_port() for name in ("gunicorn", "quickstart", "example", "original")}
    # the README's line, on a free port, in the directory holding quickstart.py
    line = readme_gunicorn_line()
    assert line.startswith("PYTHEUS_MULTIPROC_DIR=") and " -w 4 " in line
    directory = here / "metrics"
    command = gunicorn_command("quickstart:app", ports["gunicorn"], workers=4)
    started = [
        processes.start(
            "quickstart-gunicorn", [*command, "--chdir", str(here)],
            {"PYTHEUS_MULTIPROC_DIR": str(directory)},
        ),
    ]  # fmt: skip
    for name, port in (("quickstart", ports["quickstart"]), ("example", ports["example"]),
                       ("original", ports["original"])):  # fmt: skip
        source = (here / f"{name}.py").read_text().replace("port=8080", f"port={port}")
        (here / f"{name}.py").write_text(source)
        started.append(processes.start(name, [sys.executable, str(here / f"{name}.py")]))
    for port, program in zip(ports.values(), started):
        wait_for_http(f"http://{HOST}:{port}/metrics", program)  # "/" would be counted
    jobs = [ScrapeJob(name, f"{HOST}:{port}") for name, port in ports.items()]
    jobs.append(
        ScrapeJob(
            "original-with-fallback", f"{HOST}:{ports['original']}",
            settings={"fallback_scrape_protocol": "PrometheusText0.0.4"},
        )
    )  # fmt: skip
    prometheus = start_prometheus(processes, here / "prometheus", jobs, binary=binary)
    yield Stack(prometheus, f"http://{HOST}:{ports['gunicorn']}")


@pytest.mark.system
@pytest.mark.parametrize(
    ("job", "up"),
    [("gunicorn", 1), ("quickstart", 1), ("example", 1), ("original-with-fallback", 1),
     ("original", 0)],
)  # fmt: skip
def test_prometheus_3_scrapes_the_quickstart(stack: Stack, job: str, up: int) -> None:
    prometheus = stack.prometheus
    prometheus.wait_for_scrape_after(job, 0, timeout=30)
    assert prometheus.value(f'up{{job="{job}"}}') == up


@pytest.mark.system
def test_the_quickstart_under_gunicorn_counts_every_request(stack: Stack) -> None:
    for _ in range(REQUESTS):
        assert get(stack.gunicorn + "/") == "hello world!"
    for _ in range(8):  # any worker answers with the totals of all four
        [count] = [
            line for line in get(stack.gunicorn + "/metrics").splitlines()
            if line.startswith("page_visit_latency_seconds_count ")
        ]  # fmt: skip
        assert float(count.split()[1]) == REQUESTS, count
    prometheus = stack.prometheus
    prometheus.wait_for(
        f'page_visit_latency_seconds_count{{job="gunicorn"}} == {REQUESTS}', 30,
        "the quickstart's count under gunicorn",
    )  # fmt: skip
