"""The shared directory's runs, with real process trees: what is kept, and what starts from zero.

The rule (``pytheus.backends.file._run``): files are kept while the process tree that wrote them
is alive (a process of the run's recorded lineage is the new process or one of its ancestors);
a new process tree, here a new session as a service manager or a container starts one, starts
from zero. The exporter only reads, also from a read-only mount.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pytheus.backends.file._run import identity, lineage
from tests.multiprocessing_patterns import expected
from tests.test_cli import clean_env, exporter, scrape_text
from tests.test_multiprocessing_patterns import run, samples

ROOT = Path(__file__).resolve().parent.parent
COUNT_LINEAGE = """
import json, os
from pytheus.backends.file._run import lineage
print(json.dumps([lineage(), os.getpid(), os.getppid()]))
"""


def in_new_session(*command: str) -> list[str]:
    """``command`` under a shell of its own session: a new process tree (a redeployment)."""
    return ["setsid", "--wait", "sh", "-c", 'exec "$0" "$@" & wait', *command]


def test_lineage_goes_up_to_the_first_group_leader() -> None:
    out = subprocess.run(
        in_new_session(sys.executable, "-c", COUNT_LINEAGE),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        check=True, timeout=30,
    ).stdout  # fmt: skip
    found, pid, parent = json.loads(out)
    # the process, then the shell, which leads the session (and its group): it ends the lineage
    assert [entry.split(":")[0] for entry in found] == [str(pid), str(parent)]
    assert all(entry.split(":")[1].isdigit() for entry in found)  # start times, from /proc
    own = lineage()
    assert own[:2] == [identity(os.getpid()), identity(os.getppid())]


def test_a_session_leader_begins_a_tree_of_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-c", COUNT_LINEAGE], env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, check=True, timeout=30, start_new_session=True,
    )  # fmt: skip
    found, pid, _ = json.loads(result.stdout)
    assert [entry.split(":")[0] for entry in found] == [str(pid)]


def write_in_pool(directory: Path, *, new_tree: bool = False) -> None:
    """A program whose pool children record the 8 tasks; the program itself never loads the
    backend, and it has exited when this returns."""
    command = [
        sys.executable,
        "-c",
        "import tests.multiprocessing_patterns as p; p.with_pool('fork')()",
    ]
    if new_tree:
        command = in_new_session(*command)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)


def doubled(samples: dict[str, float]) -> dict[str, float]:
    return {name: 2 * value for name, value in samples.items()}


def test_totals_stay_for_the_tree_that_wrote_them_and_go_for_a_new_one(tmp_path: Path) -> None:
    environment = {"PYTHEUS_MULTIPROC_DIR": str(tmp_path)}
    scrape = ["-c", "import sys; from pytheus.exposition import generate_metrics; "
              "from tests.multiprocessing_patterns import registry; "
              "sys.stdout.write(generate_metrics(registry))"]  # fmt: skip
    write_in_pool(tmp_path)  # its parent (the program) has exited: nobody holds the run
    with exporter("--dir", str(tmp_path)) as serving:
        assert _task_samples(scrape_text(serving.url)) == expected()
        write_in_pool(tmp_path)  # started by the same parent (this test): the same tree
        assert _task_samples(scrape_text(serving.url)) == doubled(expected())
        assert samples(run(scrape, environment)) == doubled(expected())
        write_in_pool(tmp_path, new_tree=True)  # a redeployment: starts from zero
        assert _task_samples(scrape_text(serving.url)) == expected()


def _task_samples(found: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    named = {}
    for (name, labels), value in found.items():
        if name.startswith("task"):
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
            named[f"{name}{{{text}}}" if text else name] = value
    return named


LIVING_WRITER = """
import sys
import tests.multiprocessing_patterns as p
p.task(0)
p.task(1)
print("ready", flush=True)
sys.stdin.read()
"""


def read_only(directory: Path) -> list[str]:
    """A command prefix: what follows runs with ``directory`` mounted read-only over itself,
    as a sidecar with a read-only volume sees it."""
    mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "-rm"]
    return [*unshare, "sh", "-c", mount, str(directory)]


def test_exporter_serves_a_read_only_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHEUS_MULTIPROC_DIR": str(tmp_path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", LIVING_WRITER], env=env, cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        # three more tasks in processes that end: their files stay until a writer compacts them
        subprocess.run(
            [sys.executable, "-c", "import tests.multiprocessing_patterns as p\n"
             "for n in range(2, 8): p.task(n)"],
            env=env, cwd=ROOT, check=True, timeout=60,
        )  # fmt: skip
        before = sorted(os.listdir(tmp_path))
        with exporter("--dir", str(tmp_path), prefix=read_only(tmp_path)) as serving:
            assert _task_samples(scrape_text(serving.url)) == expected()
            assert "Traceback" not in "".join(serving.log)
        assert sorted(os.listdir(tmp_path)) == before  # it wrote nothing, compacted nothing
    finally:
        writer.kill()
        writer.wait(10)


def test_exporter_on_an_unreadable_directory_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = subprocess.run(
        [sys.executable, "-m", "pytheus", "serve", "--dir", str(missing), "--port", "0"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{str(missing)!r} is not an existing directory" in result.stderr


def test_importing_pytheus_chooses_no_backend(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import pkgutil, importlib, pytheus
        for module in pkgutil.walk_packages(pytheus.__path__, "pytheus."):
            if module.name != "pytheus.__main__":
                importlib.import_module(module.name)
        from pytheus.metrics import Counter, Enum, Gauge, Histogram, Info, Summary
        Counter("a_total", "A.", required_labels=["x"]).labels(x="1")
        Gauge("b", "B."); Histogram("c", "C."); Summary("d", "D.")
        Info("e", "E."); Enum("f", "F.", states=["on", "off"])
    """)
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60,
        env={**os.environ, "PYTHEUS_MULTIPROC_DIR": str(tmp_path)},
    )  # fmt: skip
    assert os.listdir(tmp_path) == []
