"""Runtime collectors: the process, garbage collector and Python metrics Prometheus users expect.

The names and meanings are those of the official clients (client_python, client_golang):

- :class:`ProcessCollector`: ``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
  ``process_virtual_memory_bytes``, ``process_open_fds``, ``process_max_fds``,
  ``process_start_time_seconds``, read from ``/proc`` (Linux); nothing where there is no
  ``/proc``;
- :class:`GCCollector`: ``python_gc_objects_collected_total``,
  ``python_gc_objects_uncollectable_total`` and ``python_gc_collections_total`` by generation;
- :class:`PlatformCollector`: ``python_info`` (1, labelled with the interpreter's version).

Example::

    from pytheus.registry import CollectorRegistry
    from pytheus.runtime import ProcessCollector, register_runtime_collectors

    registry = CollectorRegistry()
    register_runtime_collectors(registry)   # all three; a second call adds nothing

    workers = CollectorRegistry()
    workers.register(ProcessCollector(pids=lambda: [4242, 4243]))  # one series per pid
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator

from pytheus._registries import REGISTRY, Registry
from pytheus.backends.base import current_store
from pytheus.samples import EMPTY_LABELS, LabelSet, MetricFamily, MetricType, Series

# name, type, help; in the order a scrape sorts them anyway
_PROCESS_METRICS: tuple[tuple[str, MetricType, str], ...] = (
    ("process_cpu_seconds_total", MetricType.COUNTER, "User and system CPU time, in seconds."),
    ("process_max_fds", MetricType.GAUGE, "Limit (soft) on the number of open file descriptors."),
    ("process_open_fds", MetricType.GAUGE, "Number of open file descriptors."),
    ("process_resident_memory_bytes", MetricType.GAUGE, "Resident set size, in bytes."),
    ("process_start_time_seconds", MetricType.GAUGE,
     "Time the process started, in seconds since the Unix epoch."),
    ("process_virtual_memory_bytes", MetricType.GAUGE, "Virtual memory size, in bytes."),
)  # fmt: skip


def _sysconf(name: str) -> int | None:
    try:
        return os.sysconf(name)
    except (AttributeError, ValueError, OSError):  # not Unix, or not known here
        return None


class ProcessCollector:
    """CPU, memory, file descriptors and start time of this process, or of the given pids.

    With ``pids=None`` the series describe the process that scrapes and have no labels. With a
    callable, each scrape calls it and exposes one series per pid, labelled ``pid``; a pid that
    is gone (or unreadable) is left out. A multi-process backend passes its living workers.

    Example::

        REGISTRY.register(ProcessCollector())                     # this process
        REGISTRY.register(ProcessCollector(pids=lambda: workers))  # process_open_fds{pid="42"}
    """

    def __init__(
        self, pids: Callable[[], Iterable[int]] | None = None, proc_root: str = "/proc"
    ) -> None:
        self._pids = pids
        self._proc_root = proc_root
        self._ticks = _sysconf("SC_CLK_TCK")
        self._page_size = _sysconf("SC_PAGESIZE")

    @property
    def name(self) -> str:
        return "process_collector"

    def describe(self) -> Iterator[MetricFamily]:
        """The families it exposes, without samples: registration checks names with this, so
        registering reads nothing and chooses no backend."""
        for name, metric_type, help_text in _PROCESS_METRICS:
            yield MetricFamily(name, metric_type, help_text, [])

    def collect(self) -> Iterator[MetricFamily]:
        # the shared-file backend knows every living process of the machine
        living = current_store().living_pids() if self._pids is None else self._pids()
        if living is None:
            targets: list[tuple[LabelSet, str]] = [(EMPTY_LABELS, "self")]
        else:
            pids = dict.fromkeys(str(pid) for pid in living)  # each once, in order
            targets = [(LabelSet(("pid",), (pid,)), pid) for pid in pids]
        boot_time = self._boot_time()
        series: dict[str, list[Series]] = {name: [] for name, _, _ in _PROCESS_METRICS}
        for labels, pid in targets:
            for name, value in self._read(os.path.join(self._proc_root, pid), boot_time).items():
                series[name].append((labels, value))
        for name, metric_type, help_text in _PROCESS_METRICS:
            if series[name]:
                yield MetricFamily(name, metric_type, help_text, series[name])

    def _boot_time(self) -> float | None:
        try:
            with open(os.path.join(self._proc_root, "stat"), "rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except OSError:
            pass
        return None

    def _read(self, directory: str, boot_time: float | None) -> dict[str, float]:
        """The metrics of one process that could be read; none if it is gone."""
        values: dict[str, float] = {}
        try:
            with open(os.path.join(directory, "stat"), "rb") as stat:
                # after "pid (command)", whose command may hold spaces and parentheses
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            return values
        if len(fields) >= 22:  # fields[0] is field 3 (state) of proc(5)
            utime, stime, start, vsize, rss = (float(fields[i]) for i in (11, 12, 19, 20, 21))
            values["process_virtual_memory_bytes"] = vsize
            if self._page_size is not None:
                values["process_resident_memory_bytes"] = rss * self._page_size
            if self._ticks:
                values["process_cpu_seconds_total"] = (utime + stime) / self._ticks
                if boot_time is not None:
                    values["process_start_time_seconds"] = boot_time + start / self._ticks
        with contextlib.suppress(OSError):  # another user's process: no fd listing
            values["process_open_fds"] = len(os.listdir(os.path.join(directory, "fd")))
        max_fds = _max_open_files(os.path.join(directory, "limits"))
        if max_fds is not None:
            values["process_max_fds"] = max_fds
        return values


def _max_open_files(path: str) -> float | None:
    """The soft limit from a ``/proc/<pid>/limits`` file (``unlimited`` is +Inf)."""
    try:
        with open(path, "rb") as limits:
            for line in limits:
                if line.startswith(b"Max open files"):
                    soft = line.split()[3]
                    return math.inf if soft == b"unlimited" else float(soft)
    except (OSError, IndexError, ValueError):
        pass
    return None


_GC_METRICS = (
    ("python_gc_objects_collected_total", "collected", "Objects collected by the GC."),
    ("python_gc_objects_uncollectable_total", "uncollectable",
     "Uncollectable objects the GC found."),
    ("python_gc_collections_total", "collections", "Runs of the GC on this generation."),
)  # fmt: skip


class GCCollector:
    """Objects collected, uncollectable objects and collections, per GC generation (CPython).

    Example::

        REGISTRY.register(GCCollector())   # python_gc_collections_total{generation="0"} ...
    """

    @property
    def name(self) -> str:
        return "gc_collector"

    def describe(self) -> Iterator[MetricFamily]:
        """The families it exposes, without samples (see :meth:`ProcessCollector.describe`)."""
        for name, _, help_text in _GC_METRICS:
            yield MetricFamily(name, MetricType.COUNTER, help_text, [])

    def collect(self) -> Iterator[MetricFamily]:
        get_stats = getattr(gc, "get_stats", None)
        if get_stats is None:  # not CPython
            return
        stats = get_stats()
        by_generation = [LabelSet(("generation",), (str(index),)) for index in range(len(stats))]
        for name, key, help_text in _GC_METRICS:
            series: list[Series] = [
                (labels, float(generation[key])) for labels, generation in zip(by_generation, stats)
            ]
            yield MetricFamily(name, MetricType.COUNTER, help_text, series)


class PlatformCollector:
    """``python_info`` 1, labelled with the interpreter's implementation and version.

    Example::

        REGISTRY.register(PlatformCollector())
        # python_info{implementation="CPython",major="3",minor="11",patchlevel="7",
        #             version="3.11.7"} 1.0
    """

    def __init__(self) -> None:
        info = sys.version_info
        self._labels = LabelSet(
            ("implementation", "major", "minor", "patchlevel", "version"),
            (platform.python_implementation(), str(info.major), str(info.minor),
             str(info.micro), platform.python_version()),
        )  # fmt: skip

    @property
    def name(self) -> str:
        return "platform_collector"

    def describe(self) -> Iterator[MetricFamily]:
        """The family it exposes, without samples (see :meth:`ProcessCollector.describe`)."""
        yield MetricFamily("python_info", MetricType.GAUGE, "Python platform information.", [])

    def collect(self) -> Iterator[MetricFamily]:
        yield MetricFamily(
            "python_info", MetricType.GAUGE, "Python platform information.", [(self._labels, 1.0)]
        )


RUNTIME_COLLECTORS: tuple[type[ProcessCollector | GCCollector | PlatformCollector], ...] = (
    ProcessCollector,
    GCCollector,
    PlatformCollector,
)
"""The collector classes :func:`register_runtime_collectors` registers, one instance each."""


def register_runtime_collectors(registry: Registry | None = None) -> list[object]:
    """Register one of each :data:`RUNTIME_COLLECTORS` in ``registry`` (default ``REGISTRY``).

    A class already registered there is skipped, so calling this twice is harmless. Returns the
    collectors it registered.

    Example::

        from pytheus.registry import CollectorRegistry
        registry = CollectorRegistry(prefix="shop")   # shop_process_open_fds, ...
        register_runtime_collectors(registry)
    """
    registry = _default(registry)
    present = {type(collector) for collector in registry.collect()}
    added: list[object] = []
    for cls in RUNTIME_COLLECTORS:
        if cls not in present:
            collector = cls()
            registry.register(collector)
            added.append(collector)
    return added


def unregister_runtime_collectors(registry: Registry | None = None) -> None:
    """Remove the runtime collectors from ``registry`` (default ``REGISTRY``): the opt-out.

    Example::

        unregister_runtime_collectors()   # the default registry exposes only your metrics
    """
    registry = _default(registry)
    for collector in list(registry.collect()):
        if isinstance(collector, RUNTIME_COLLECTORS):
            registry.unregister(collector)


def _default(registry: Registry | None) -> Registry:
    return REGISTRY if registry is None else registry
