"""Compare pytheus with prometheus_client on the workloads of ``bench/workloads.py``.

Usage::

    .venv/bin/python bench/run.py                   # full run, about 2 minutes
    .venv/bin/python bench/run.py --quick           # under a minute: checks the harness works
    .venv/bin/python bench/run.py --markdown        # the tables as Markdown, for the docs
    .venv/bin/python bench/run.py --suite backends  # only the multi-process backends
    .venv/bin/python bench/run.py --suite native    # native histograms against classic ones

Each workload is timed for several rounds; within a round both libraries run back to back, and
which one goes first alternates from round to round, so drift in the machine's speed hits both.
The table shows the median time per operation of each library, their ratio (pytheus divided by
prometheus_client: below 1 means pytheus is faster) and whether the ratio meets its target.

Three suites: ``core`` (``bench/workloads.py``: pytheus's in-memory backend against
prometheus_client), ``backends`` (``bench/backends.py``: the shared-file backend against
prometheus_client's multiprocess mode, the Redis backend against pytheus's memory backend) and
``native`` (``bench/native.py``: pytheus's native histograms against its classic ones), each
printed as its own table; all three run by default. Workloads that need a program that is not
installed (``redis-server``) are skipped, with a message.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytheus
from bench import backends
from bench.backends import BACKEND_WORKLOADS, BackendWorkload
from bench.harness import OURS, THEIRS, Result, Workload, markdown_table, measure, text_table
from bench.native import NATIVE_WORKLOADS
from bench.workloads import WORKLOADS

FULL_ROUNDS = 9
QUICK_ROUNDS = 2
SUITES = ("all", "core", "backends", "native")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a very short smoke run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--rounds", type=int, help=f"rounds per workload (default {FULL_ROUNDS})")
    parser.add_argument("--only", metavar="TEXT", help="run the workloads whose name contains TEXT")
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="all",
        help=(
            "core: in-memory workloads; backends: file and Redis backends; native: native "
            "histograms against classic ones; all (default): the three"
        ),
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser.parse_args(argv)


def describe_machine() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
        f"pytheus {pytheus.__version__}, "
        f"prometheus_client {importlib.metadata.version('prometheus_client')}"
    )


def selected(suite: str, only: str | None) -> list[Workload]:
    workloads: list[Workload] = []
    if suite in ("all", "core"):
        workloads += WORKLOADS
    if suite in ("all", "backends"):
        workloads += BACKEND_WORKLOADS
    if suite in ("all", "native"):
        workloads += NATIVE_WORKLOADS
    return [w for w in workloads if only is None or only.lower() in w.name.lower()]


def headings(workload: Workload) -> tuple[str, str]:
    if isinstance(workload, BackendWorkload):
        return workload.ours_label, workload.theirs_label
    return OURS, THEIRS


def tables(results: list[Result], markdown: bool) -> str:
    """One table per pair of column headings, in the order the workloads ran."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        groups.setdefault(headings(result.workload), []).append(result)
    rendered = []
    for (ours, theirs), group in groups.items():
        if (ours, theirs) == (OURS, THEIRS):
            rendered.append(markdown_table(group) if markdown else text_table(group))
        else:
            rendered.append(backends.table(group, ours, theirs, markdown))
    return "\n\n".join(rendered)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    workloads = selected(args.suite, args.only)
    if not workloads:
        print(f"no workload name contains {args.only!r}", file=sys.stderr)
        return 2
    backends.set_quick(args.quick)
    print(describe_machine())
    print(f"{rounds} rounds per workload{', quick run' if args.quick else ''}\n", flush=True)
    results: list[Result] = []
    skipped: list[str] = []
    for workload in workloads:
        missing = workload.missing() if isinstance(workload, BackendWorkload) else []
        if missing:
            skipped.append(f"skipped {workload.name}: {', '.join(missing)} not installed")
            print(f"  {skipped[-1]}", file=sys.stderr, flush=True)
            continue
        results.append(measure(workload, rounds, args.quick))
        if not args.markdown:
            print(f"  done: {workload.name}", file=sys.stderr, flush=True)
    print(tables(results, args.markdown))
    notes = [*backends.NOTES, *skipped]
    if notes:
        print()
        print("\n".join(f"- {note}" for note in notes))
    if args.check and not all(result.met for result in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
