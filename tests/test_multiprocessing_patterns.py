"""Exact totals in the multiprocessing code users write, on both multi-process backends.

Each case runs ``tests/multiprocessing_patterns.py`` as a program of its own (so that the parent
may load the backend only after its children, as a batch job does), then scrapes again from a
fresh process. Both scrapes are parsed with prometheus_client's parser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import backend_environment, flat_samples
from tests.multiprocessing_patterns import PATTERNS, expected, expected_waits
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e  # real programs end to end: run on the main Python only
SCRAPE = """
import sys
from pytheus.exposition import generate_metrics
from tests.multiprocessing_patterns import registry
sys.stdout.write(generate_metrics(registry))
"""


@pytest.fixture(params=["file", "redis"])
def environment(
    request: pytest.FixtureRequest, tmp_path: Path, module_redis: RedisServer
) -> dict[str, str]:
    """The environment that selects the backend in the program and in all its children."""
    return backend_environment(request.param, tmp_path, module_redis.url)


def run(arguments: list[str], environment: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, *arguments],
        env={**os.environ, "PYTHONPATH": str(ROOT), **environment},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def samples(text: str) -> dict[str, float]:
    """The task metrics' samples, parsed by prometheus_client."""
    return flat_samples(text, "task")


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_pattern_keeps_exact_totals(
    pattern: str, when: str, environment: dict[str, str]
) -> None:
    parent = run(["-m", "tests.multiprocessing_patterns", pattern, when], environment)
    assert samples(parent) == expected()
    assert_waits(parent)
    fresh = run(["-c", SCRAPE], environment)  # a fresh process
    assert samples(fresh) == expected()
    assert_waits(fresh)


def assert_waits(text: str) -> None:
    """The summary with quantiles: count exact, sum to the last bits (the order of additions
    differs), each quantile within 1 % of the exact quantile of every task's observations."""
    found, want = flat_samples(text, "pool_wait"), expected_waits()
    assert set(found) == set(want)
    for name, value in want.items():
        if "quantile=" in name:
            assert abs(found[name] - value) <= 0.01 * value * (1 + 1e-9), (name, found[name])
        else:
            assert found[name] == pytest.approx(value, rel=1e-12), name
