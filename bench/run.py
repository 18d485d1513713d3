"""Compare pytheus with prometheus_client on the workloads of ``bench/workloads.py``.

Usage::

    .venv/bin/python bench/run.py              # full run, about 25 seconds
    .venv/bin/python bench/run.py --quick      # a few seconds: checks the harness works
    .venv/bin/python bench/run.py --markdown   # the table as Markdown, for docs/performance.md

Each workload is timed for several rounds; within a round both libraries run back to back, and
which one goes first alternates from round to round, so drift in the machine's speed hits both.
The table shows the median time per operation of each library, their ratio (pytheus divided by
prometheus_client: below 1 means pytheus is faster) and whether the ratio meets its target.
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
from bench.harness import Result, markdown_table, measure, text_table
from bench.workloads import WORKLOADS

FULL_ROUNDS = 9
QUICK_ROUNDS = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a very short smoke run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--rounds", type=int, help=f"rounds per workload (default {FULL_ROUNDS})")
    parser.add_argument("--only", metavar="TEXT", help="run the workloads whose name contains TEXT")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    workloads = [w for w in WORKLOADS if args.only is None or args.only.lower() in w.name.lower()]
    if not workloads:
        print(f"no workload name contains {args.only!r}", file=sys.stderr)
        return 2
    print(describe_machine())
    print(f"{rounds} rounds per workload{', quick run' if args.quick else ''}\n", flush=True)
    results: list[Result] = []
    for workload in workloads:
        results.append(measure(workload, rounds, args.quick))
        if not args.markdown:
            print(f"  done: {workload.name}", file=sys.stderr, flush=True)
    print(markdown_table(results) if args.markdown else text_table(results))
    if args.check and not all(result.met for result in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
