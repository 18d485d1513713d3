"""However a process ends, what it recorded reaches Redis; its own signal handling stays its own.

Real processes and a real redis-server. The flush interval is long (60 s), so a total is exact
only if the end of the process flushed it. How pools, executors, ``os._exit`` and
``Process.terminate()`` end their children is in ``test_multiprocessing_patterns.py``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

# Arguments: how the program treats SIGTERM ("default", "own-before" / "own-after": a handler of
# its own installed before / after the backend is loaded, "ignored"), then how it ends.
PROGRAM = """
import json, os, signal, sys
treatment, ending = sys.argv[1], sys.argv[2]


def own_handler(signum, frame):
    print("own handler ran", flush=True)
    sys.exit(0)


if treatment == "own-before":
    signal.signal(signal.SIGTERM, own_handler)
if treatment == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.metrics import Counter

load_backend(MultiProcessRedisBackend, json.loads(os.environ["REDIS_CONFIG"]))
if treatment == "own-after":
    signal.signal(signal.SIGTERM, own_handler)
ends = Counter("ends_total", "Ends.", required_labels=["how"])
ends.labels(how=ending).inc(5)
if treatment == "ignored":
    os.kill(os.getpid(), signal.SIGTERM)  # delivered before kill() returns, and ignored
    ends.labels(how=ending).inc(2)
    print("survived", flush=True)
if ending == "sys.exit":
    sys.exit(3)
elif ending == "exception":
    raise RuntimeError("the program fails")
elif ending == "os._exit":
    os._exit(4)
elif ending == "wait":
    print("ready", flush=True)
    sys.stdin.read()
elif ending == "blocked":
    # The SIGTERM reaches a thread of the application while the main thread is blocked in C,
    # on a lock nobody releases (a pool worker waiting for the lock of its task queue): the
    # main thread never gets to run the handler by itself.
    import multiprocessing, threading, time

    def sigterm_to_this_thread():
        time.sleep(0.5)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(60)

    threading.Thread(target=sigterm_to_this_thread, daemon=True).start()
    multiprocessing.Semaphore(0).acquire()
"""

SCRAPE = """
import json, os, sys
from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.exposition import generate_metrics
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry

load_backend(MultiProcessRedisBackend, json.loads(os.environ["REDIS_CONFIG"]))
registry = CollectorRegistry()
Counter("ends_total", "Ends.", required_labels=["how"], registry=registry)
sys.stdout.write(generate_metrics(registry))
"""


@pytest.fixture
def env(module_redis: RedisServer, tmp_path: Path) -> dict[str, str]:
    config = {"url": module_redis.url, "namespace": tmp_path.name, "flush_interval": 60}
    return {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_CONFIG": json.dumps(config)}


def start(env: dict[str, str], treatment: str, ending: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, treatment, ending], env=env, cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def totals(env: dict[str, str]) -> dict[str, float]:
    text = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    return {
        sample.labels["how"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ends_total"
    }


@pytest.mark.parametrize(
    ("ending", "status"), [("return", 0), ("sys.exit", 3), ("exception", 1), ("os._exit", 4)]
)
def test_every_ending_flushes(env: dict[str, str], ending: str, status: int) -> None:
    process = start(env, "default", ending)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == status, errors
    assert totals(env) == {ending: 5.0}


def terminate_when_ready(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM once the program has recorded; its output and its log."""
    assert process.stdout is not None
    lines = []
    while (line := process.stdout.readline()) and line.strip() != "ready":
        lines.append(line)
    process.send_signal(signal.SIGTERM)
    out, errors = process.communicate(timeout=60)
    return "".join(lines) + out, errors


def test_sigterm_flushes_and_still_kills(env: dict[str, str]) -> None:
    process = start(env, "default", "wait")
    terminate_when_ready(process)
    assert process.returncode == -signal.SIGTERM  # died of the signal, as without pytheus
    assert totals(env) == {"wait": 5.0}


@pytest.mark.parametrize("treatment", ["own-before", "own-after"])
def test_the_application_handler_still_runs(env: dict[str, str], treatment: str) -> None:
    process = start(env, treatment, "wait")
    out, _ = terminate_when_ready(process)
    assert "own handler ran" in out
    assert process.returncode == 0  # the application's handler decided how to end
    assert totals(env) == {"wait": 5.0}


def test_an_ignored_sigterm_stays_ignored(env: dict[str, str]) -> None:
    process = start(env, "ignored", "return")
    out, errors = process.communicate(timeout=60)
    assert "survived" in out, errors
    assert process.returncode == 0
    assert totals(env) == {"return": 7.0}


def test_sigterm_while_redis_is_down_still_ends_the_process(tmp_path: Path) -> None:
    dead_port = {"url": "redis://127.0.0.1:1/0", "namespace": tmp_path.name, "exit_timeout": 0.5}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_CONFIG": json.dumps(dead_port)}
    process = start(env, "default", "wait")
    _, errors = terminate_when_ready(process)
    assert process.returncode == -signal.SIGTERM
    assert "did not take this process's last metrics" in errors  # and the loss is logged


def test_sigterm_taken_by_another_thread_still_ends_a_blocked_main_thread(
    env: dict[str, str],
) -> None:
    process = start(env, "default", "blocked")
    _, errors = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, errors
    assert totals(env) == {"blocked": 5.0}


FORKED = """
import json, os, signal, sys, time

# registered before pytheus's own hooks, so it runs first in the child: the child gets its
# SIGTERM before pytheus has given it a wakeup pipe of its own
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))
from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.metrics import Counter

load_backend(MultiProcessRedisBackend, json.loads(os.environ["REDIS_CONFIG"]))
Counter("ends_total", "Ends.", required_labels=["how"]).labels(how="parent").inc(5)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
_, status = os.waitpid(child, 0)
time.sleep(1)  # the parent's watchdog acts 0.2 s after a SIGTERM it reads
print("parent alive; child", "killed by", signal.Signals(os.WTERMSIG(status)).name, flush=True)
"""


def test_a_sigterm_to_a_child_being_forked_stays_with_the_child(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKED], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "parent alive; child killed by SIGTERM" in result.stdout
    assert totals(env) == {"parent": 5.0}


# Argument: when the SIGTERM comes to the child, forked from a thread (as the pool's worker
# handler forks) by a process that has recorded nothing: "before-it-runs" (before CPython's
# after-fork step in the child) or "before-it-blocks" (just before its main thread blocks on a
# lock the parent holds, as a pool worker does on its task queue's during Pool.terminate()).
JUST_FORKED = """
import ctypes, json, multiprocessing, os, signal, sys, threading, time
when = sys.argv[1]
if when == "before-it-runs":
    # the child stops in C right after fork() returned there, before CPython's after-fork
    # step, until the parent has sent SIGTERM and writes a byte to the child's stdin
    read, write = os.pipe()
    os.dup2(read, 0)
    libc = ctypes.CDLL(None)
    libc.__register_atfork(None, None, ctypes.cast(libc.getchar, ctypes.c_void_p), None)
from pytheus.backends import load_backend
from pytheus.backends.process_end import at_process_end
from pytheus.backends.redis import MultiProcessRedisBackend

load_backend(MultiProcessRedisBackend, json.loads(os.environ["REDIS_CONFIG"]))
parent = os.getpid()
at_process_end(lambda deadline: print(
    "callbacks ran in", "parent" if os.getpid() == parent else "child", flush=True
))
task_lock = multiprocessing.Lock()
task_lock.acquire()  # the parent's main thread holds it for ever


def sigterm_to_this_thread():
    # taken here, the SIGTERM interrupts nothing in the main thread, as one that came just
    # before it blocked
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    time.sleep(60)


def fork_then_terminate():
    child = os.fork()
    if child == 0:
        if when == "before-it-blocks":
            threading.Thread(target=sigterm_to_this_thread, daemon=True).start()
        task_lock.acquire()
        os._exit(0)
    if when == "before-it-runs":
        os.kill(child, signal.SIGTERM)
        os.write(write, b"x")  # the child may go on
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            print("child killed by", signal.Signals(os.WTERMSIG(status)).name, flush=True)
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    print("child still alive after 15 s", flush=True)


thread = threading.Thread(target=fork_then_terminate)
thread.start()
thread.join()
"""


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(
            "before-it-runs",
            marks=pytest.mark.skipif(
                not hasattr(ctypes.CDLL(None), "__register_atfork"), reason="glibc's fork hooks"
            ),
        ),
        "before-it-blocks",
    ],
)
def test_a_sigterm_to_a_child_just_forked_still_ends_it(env: dict[str, str], when: str) -> None:
    """``Pool(maxtasksperchild=...)``'s ``terminate()`` sends SIGTERM to a worker it may just have
    forked. CPython drops the signals a child caught before its own after-fork step: SIGTERM is
    blocked while forking, until the child is past it. And the child has a watchdog of its own
    from the start, also when its parent had none (it had recorded nothing)."""
    result = subprocess.run(
        [sys.executable, "-c", JUST_FORKED, when], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, (result.returncode, result.stderr)
    lines = result.stdout.splitlines()
    assert "child killed by SIGTERM" in lines, (lines, result.stderr)
    assert "callbacks ran in child" in lines
    assert lines[-1] == "callbacks ran in parent"


OWN_HANDLER_AFTER = """
import json, os, signal, sys, threading, time
from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.metrics import Counter

load_backend(MultiProcessRedisBackend, json.loads(os.environ["REDIS_CONFIG"]))
Counter("ends_total", "Ends.", required_labels=["how"]).labels(how="graceful").inc(5)
calls = []
signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(time.monotonic()))
threading.Thread(target=lambda: (time.sleep(0.3), os.kill(os.getpid(), signal.SIGTERM))).start()
deadline = time.monotonic() + 3
while time.monotonic() < deadline:  # a graceful shutdown that takes its time
    time.sleep(0.05)
print("own handler calls:", len(calls), flush=True)
"""


def test_an_application_handler_installed_later_runs_once_per_sigterm(
    env: dict[str, str],
) -> None:
    """pytheus never sends SIGTERM of its own: one SIGTERM, one call of the application's
    handler (RQ and Celery tell a second one from the first: a cold shutdown)."""
    result = subprocess.run(
        [sys.executable, "-c", OWN_HANDLER_AFTER], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["own handler calls: 1"]
    assert totals(env) == {"graceful": 5.0}


EXIT_IN_HANDLER = """
import json, os, signal, sys
signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(3))  # before pytheus's: chained
from pytheus.backends import load_backend
from pytheus.backends.redis import MultiProcessRedisBackend
from pytheus.metrics import Counter

config = {**json.loads(os.environ["REDIS_CONFIG"]), "flush_interval": 0}
load_backend(MultiProcessRedisBackend, config)  # write-through: inc() flushes, under its lock
counter = Counter("ends_total", "Ends.", required_labels=["how"]).labels(how="os._exit")
print("ready", flush=True)
while True:
    counter.inc()
"""


def test_an_os_exit_in_a_handler_that_interrupted_a_flush_still_ends(
    env: dict[str, str],
) -> None:
    """The handler most likely interrupts the main thread while it holds the flush lock: the
    callbacks run on a thread of their own, which os._exit waits for until the deadline, never
    longer (they used to run in the handler, on that lock, for ever)."""
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", EXIT_IN_HANDLER], env=env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 3
