"""The ``pytheus`` command. ``pytheus serve`` exports what worker processes recorded.

Worker processes record into a multi-process backend: a shared directory
(:class:`~pytheus.backends.file.MultiProcessFileBackend`) or a Redis namespace
(:class:`~pytheus.backends.redis.MultiProcessRedisBackend`). ``pytheus serve`` is a separate
process that serves their aggregate over HTTP(S) for Prometheus, negotiating OpenMetrics or the
text format like every pytheus server::

    pytheus serve --dir /run/myapp-metrics                  # or PYTHEUS_MULTIPROC_DIR
    pytheus serve --redis-url redis://10.0.0.5:6379/0 --namespace shop --port 9095
    pytheus serve --redis-sentinels 10.0.0.1:26379,10.0.0.2:26379 --redis-service mymaster
    python -m pytheus serve --help

The exporter defines no metric itself: the metric objects live in the workers. It lists the
families the store holds (name, type, gauge mode, label names, buckets, all kept with every
series, and each family's stored description: help text, unit, an ``Enum``'s states; see
:mod:`pytheus.backends.descriptions`) and reads them through the store's own ``read``, so the
values are combined exactly as a scrape inside a worker would combine them, and families are
served with their real HELP and UNIT. Families written by workers of an older pytheus, which
kept no descriptions, get a fixed help text and the states seen in the store.

With the shared-file backend the exporter only reads: it takes no part in the directory's
*run* (it does not hold ``run.lock``, so a redeployment of the application still starts from
zero), never clears anything, and so serves what batch workers left behind. On a directory it
cannot write (a read-only mount in a sidecar) it reads the files of ended processes as they are,
without merging them into the archive; any writing process merges them.

Names that are not classic (``http.server.duration``, an ``Info`` key ``service.version``),
which workers define under ``PYTHEUS_NAME_VALIDATION=utf8``, are served only when the exporter
validates names as ``utf8`` too (``--name-validation utf8``, or the same environment variable):
then they are quoted or escaped as each scraper asks, as in the workers. Under the default,
classic validation, what has such names is left out, with a warning naming it.

Security: it listens on 127.0.0.1 unless ``--bind`` says otherwise. The basic-auth password is
read from a file or from the environment, never from the command line (which any local user
can read in the process list), and it is never logged; a Redis URL is logged without its
password, and may itself come from the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from pytheus import __version__
from pytheus.backends.base import MULTIPROC_DIR_ENV, current_store, load_backend
from pytheus.backends.descriptions import StoredDescription
from pytheus.backends.store import Value
from pytheus.desc import MetricDesc
from pytheus.exceptions import (
    BackendUnavailableException,
    InvalidBackendConfigException,
    PytheusException,
)
from pytheus.metrics._shadowed import info_series, newest_per_series, state_series
from pytheus.naming import ENV_VAR as NAME_VALIDATION_ENV
from pytheus.naming import (
    get_validation_scheme,
    is_valid_label_name,
    is_valid_metric_name,
    set_validation_scheme,
    utf8_names,
)
from pytheus.samples import (
    EMPTY_LABELS,
    HistogramData,
    LabelSet,
    MetricType,
    Series,
    SeriesValue,
    SummaryData,
)

logger = logging.getLogger("pytheus.cli")

DEFAULT_PORT = 9095
"""Not 9091, the Pushgateway's port, nor 9100, node_exporter's: both often run on the same host."""
DEFAULT_BIND = "127.0.0.1"
PASSWORD_ENV = "PYTHEUS_BASIC_AUTH_PASSWORD"
REDIS_URL_ENV = "PYTHEUS_REDIS_URL"
REDIS_SENTINELS_ENV = "PYTHEUS_REDIS_SENTINELS"
REDIS_SERVICE_ENV = "PYTHEUS_REDIS_SERVICE"
REDIS_CLUSTER_ENV = "PYTHEUS_REDIS_CLUSTER"
EXPORTED_HELP = "Recorded by worker processes; aggregated by pytheus serve."
"""The help text of a family the store holds no description of (written by an older pytheus)."""

INFO_LABEL = "__info"  # the hidden label of an Info's storage gauge (pytheus.metrics.info)
STATE_LABEL = "__state"  # the hidden label of an Enum's storage gauge (pytheus.metrics.stateset)
_STORED_TYPES = frozenset(
    {MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM, MetricType.SUMMARY,
     MetricType.UNTYPED}
)  # fmt: skip


# --- what the store holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredDefinition:
    """One family definition found in a store: everything its series are keyed by, but values.

    ``mode`` is the gauge's ``multiprocess_mode`` ("" when unset); ``upper_bounds`` is set for
    histograms only and ends with ``+Inf``.
    """

    name: str
    type: MetricType
    mode: str
    label_names: tuple[str, ...]
    upper_bounds: tuple[float, ...]
    help: str = EXPORTED_HELP
    unit: str = ""
    states: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = ()


Lister = Callable[[], "list[StoredDefinition]"]
"""Lists the definitions a store holds; raises BackendUnavailableException when it cannot."""


def definition_from_key(key: Sequence[Any]) -> StoredDefinition | None:
    """The definition of a stored series key ``[name, type, mode, label names, values, bounds]``.

    None for entries that are not metric series (exemplar slots), or that do not look valid.
    """
    try:
        name, raw_type, mode, names, _, bounds = key[:6]
        metric_type = MetricType(raw_type)
        definition = StoredDefinition(
            str(name), metric_type, str(mode or ""), tuple(str(n) for n in names),
            tuple(float(b) for b in bounds),
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
    if metric_type not in _STORED_TYPES:
        return None
    if not is_valid_metric_name(definition.name) or not all(
        is_valid_label_name(label) for label in definition.label_names
    ):
        _warn_not_served(definition.name, "is left out: its name or a label name is not classic")
        return None
    return definition


def _warn_not_served(name: str, what: str) -> None:
    """Tell once what of a metric is left out for names utf8 validation would serve."""
    if utf8_names() or (name, what) in _warned_names:
        return
    _warned_names.add((name, what))
    logger.warning(
        "metric %r %s; serve it with --name-validation utf8 (or %s=utf8)",
        name,
        what,
        NAME_VALIDATION_ENV,
    )


def count_definitions(keys: Iterable[Sequence[Any]]) -> dict[StoredDefinition, int]:
    """Each valid definition among series keys, with how many series it has."""
    counts: dict[StoredDefinition, int] = {}
    for key in keys:
        definition = definition_from_key(key)
        if definition is not None:
            counts[definition] = counts.get(definition, 0) + 1
    return counts


def described(
    counts: dict[StoredDefinition, int], found: Iterable[StoredDescription]
) -> dict[StoredDefinition, int]:
    """The definitions with their stored help, unit and states; a family whose series are all
    gone is served from its description alone (as the application serves it: 0 when it has no
    labels)."""
    by_key: dict[tuple[Any, ...], StoredDescription] = {}
    for d in sorted(found, key=repr):
        if d.type not in _STORED_TYPES:
            continue
        key = (d.name, d.type, d.mode, d.label_names, d.upper_bounds)
        known = by_key.get(key)
        # two versions of a program described it (a deployment changed its help or an Enum's
        # states): one help text is served, and the states of both, so none goes missing
        states = d.states if known is None else tuple(dict.fromkeys((*known.states, *d.states)))
        by_key[key] = dataclasses.replace(known or d, states=states)
    output: dict[StoredDefinition, int] = {}
    for definition, count in counts.items():
        key = (definition.name, definition.type, definition.mode, definition.label_names,
               definition.upper_bounds)  # fmt: skip
        description = by_key.pop(key, None)
        output[_with_description(definition, description)] = count
    for description in by_key.values():
        alone = definition_from_key(
            [description.name, description.type.value, description.mode,
             description.label_names, (), description.upper_bounds]
        )  # fmt: skip
        if alone is not None:
            output.setdefault(_with_description(alone, description), 0)
    return output


def _with_description(
    definition: StoredDefinition, description: StoredDescription | None
) -> StoredDefinition:
    if description is None:
        return definition
    return dataclasses.replace(
        definition, help=description.help, unit=description.unit, states=description.states,
        quantiles=description.quantiles,
    )  # fmt: skip


def file_lister(store: Any) -> Lister:
    """Lists what a shared directory holds (a :class:`~pytheus.backends.file.FileStore`)."""

    def definitions() -> list[StoredDefinition]:
        try:
            table, _ = store.directory.read_all()
        except OSError as error:
            raise BackendUnavailableException(
                f"the metrics directory cannot be read: {error}"
            ) from None
        return _one_per_name(described(count_definitions(table), store.descriptions(table)))

    return definitions


def redis_lister(store: Any) -> Lister:
    """Lists what a Redis namespace holds (a :class:`~pytheus.backends.redis.RedisStore`)."""
    index = f"{store.options.base}:index"

    def definitions() -> list[StoredDefinition]:
        try:
            metas = store.client.hvals(index)
            families = store.descriptions()
        except Exception as error:
            raise BackendUnavailableException(
                f"Redis at {store.options.address} cannot be read: {error}"
            ) from None
        keys = []
        for raw in metas:
            try:
                keys.append(json.loads(raw))
            except ValueError:
                continue
        return _one_per_name(described(count_definitions(keys), families))

    return definitions


_warned_conflicts: set[str] = set()
_warned_names: set[tuple[str, str]] = set()


def _one_per_name(counts: dict[StoredDefinition, int]) -> list[StoredDefinition]:
    """One definition per name (the one with most series), sorted by name.

    Two definitions of a name come from two versions of a program writing to the same store.
    """
    best: dict[str, tuple[int, StoredDefinition]] = {}
    for definition, count in counts.items():
        current = best.get(definition.name)
        if current is not None and definition.name not in _warned_conflicts:
            _warned_conflicts.add(definition.name)
            logger.warning(
                "metric %r is stored with two definitions (two versions of the program?); "
                "serving the one with most series",
                definition.name,
            )
        if current is None or (count, repr(definition)) > (current[0], repr(current[1])):
            best[definition.name] = (count, definition)
    return [best[name][1] for name in sorted(best)]


# --- the families served --------------------------------------------------------------------------


class ExportedFamily:
    """A family the exporter serves without a metric object: the store's series, as they are.

    It has what collection asks of a metric's family: ``desc``, no local values, and for Info
    and Enum a ``storage`` family and a ``finish`` turning the stored gauge into their series.
    """

    def __init__(
        self,
        desc: MetricDesc,
        storage: ExportedFamily | None = None,
        transform: Callable[[Sequence[Series]], Sequence[Series]] | None = None,
    ) -> None:
        self.desc = desc
        self.storage = storage
        self._transform = transform

    @property
    def name(self) -> str:
        return self.desc.name

    def collect(self) -> Iterator[Any]:
        """Nothing: collection reads the store through ``desc`` instead."""
        return iter(())

    def local_values(self) -> Iterator[tuple[LabelSet, Value]]:
        """Nothing: this process records nothing."""
        return iter(())

    def finish(self, series: Sequence[Series]) -> Sequence[Series]:
        if self._transform is not None:
            return self._transform(series)
        per_process = self.desc.option("multiprocess_mode") in ("all", "liveall")
        if not series and not self.desc.label_names and not per_process:
            # an unlabelled metric whose processes have all gone (a live gauge mode): 0, as
            # every process that defines it shows its own series
            return [(EMPTY_LABELS, zero_value(self.desc))]
        return series


def zero_value(desc: MetricDesc) -> SeriesValue:
    """The value of a series that has recorded nothing."""
    if desc.type is MetricType.HISTOGRAM:
        return HistogramData(desc.upper_bounds, [0.0] * len(desc.upper_bounds), 0.0)
    if desc.type is MetricType.SUMMARY:
        return SummaryData(0.0, 0.0)
    return 0.0


def exported_family(definition: StoredDefinition) -> ExportedFamily:
    """The family serving the series of ``definition``; Info and Enum are recognised."""
    options: tuple[tuple[str, object], ...] = ()
    if definition.mode:
        options = (("multiprocess_mode", definition.mode),)
    if definition.quantiles:
        options = (("quantiles", definition.quantiles),)
    stored = ExportedFamily(
        MetricDesc(
            name=definition.name,
            help=definition.help,
            type=definition.type,
            label_names=definition.label_names,
            upper_bounds=definition.upper_bounds,
            options=options,
            unit=definition.unit,
        )
    )
    hidden = definition.label_names[-1:]
    if definition.type is MetricType.GAUGE and definition.mode == "max":
        own = definition.label_names[:-1]
        if hidden == (INFO_LABEL,):
            desc = MetricDesc(definition.name, definition.help, MetricType.INFO, own)
            return ExportedFamily(desc, stored, lambda series: exported_info(desc, series))
        if hidden == (STATE_LABEL,):
            desc = MetricDesc(definition.name, definition.help, MetricType.STATESET, own)
            names = (*own, definition.name)
            states = definition.states
            return ExportedFamily(desc, stored, lambda series: enum_series(names, series, states))
    return stored


def exported_info(desc: MetricDesc, series: Sequence[Series]) -> list[Series]:
    """An Info's series, from the stored information whose keys this exporter may serve.

    The keys are label names: with classic validation, information holding a key that is not
    classic is left out (with a warning), as is any that cannot be read.
    """
    kept = [(labels, value) for labels, value in series if _servable_info(labels.values[-1])]
    if len(kept) < len(series):
        _warn_not_served(desc.name, "has information left out: a key is not a classic name")
    return info_series(desc.label_names, kept)


def _servable_info(stored: str) -> bool:
    """Whether an Info's stored information (JSON ``[[key, value], ...]``) can be served."""
    try:
        pairs = json.loads(stored)
    except ValueError:
        return False
    return isinstance(pairs, list) and all(
        isinstance(pair, list)
        and len(pair) == 2
        and is_valid_label_name(pair[0])
        and not pair[0].startswith("__")
        and isinstance(pair[1], str)
        for pair in pairs
    )


def enum_series(
    names: tuple[str, ...], series: Sequence[Series], declared: tuple[str, ...] = ()
) -> list[Series]:
    """An Enum's series, with its declared states (from its stored description; without one,
    the states seen in the store)."""
    series = list(series)  # read once, looked at twice
    seen = sorted({labels.values[-1] for labels, _ in series} - set(declared))
    states = [*declared, *seen]  # a state no description declares still shows
    newest = dict(sorted(newest_per_series(series).items()))
    if declared and not newest and len(names) == 1:  # unlabelled, never set: its first state
        newest[()] = (declared[0], 0.0)
    return state_series(names, states, newest)


class ExporterRegistry:
    """A registry whose families are whatever the store holds at each scrape.

    ``collect()`` lists the store (raising BackendUnavailableException, which servers answer
    with 503, when it cannot), then collection reads those families from the store in force.
    Collectors registered here (the exporter's own metrics, say) are served too.
    """

    prefix: str | None = None

    def __init__(self, lister: Lister) -> None:
        self._lister = lister
        self._extra: list[Any] = []
        self._lock = threading.Lock()

    def register(self, collector: Any) -> None:
        with self._lock:
            self._extra.append(collector)

    def unregister(self, collector: Any) -> None:
        with self._lock:
            self._extra = [c for c in self._extra if c is not collector]

    def collect(self) -> list[Any]:
        families: list[Any] = [exported_family(d) for d in self._lister()]
        with self._lock:
            return families + self._extra


# --- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``pytheus`` parser, with its ``serve`` command."""
    parser = argparse.ArgumentParser(
        prog="pytheus",
        description="pytheus command-line tools.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"pytheus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the metrics that worker processes recorded in a multi-process backend",
        description=(
            "Serve, for Prometheus, the aggregate of what worker processes recorded in a shared "
            "directory or a Redis namespace. Each scrape reads the store: families appear as "
            "soon as a worker records them. The format follows the scraper's Accept header "
            "(OpenMetrics or text 0.0.4); a store that cannot be read is answered with 503."
        ),
        epilog=(
            f"Environment: {MULTIPROC_DIR_ENV} (the directory, when --dir is not given), "
            f"{REDIS_URL_ENV} (the Redis URL, when --redis-url is not given; keeps its "
            f"password out of the process list), {REDIS_SENTINELS_ENV} and {REDIS_SERVICE_ENV} "
            "(a Redis behind Sentinel, when neither --redis-url nor --redis-sentinels is given), "
            f"{REDIS_CLUSTER_ENV}=1 (the Redis URL is a Redis Cluster's node), "
            f"{PASSWORD_ENV} (the basic-auth password, "
            "when --basic-auth-password-file is not given), "
            f"{NAME_VALIDATION_ENV} (utf8 or legacy, when --name-validation is not given). "
            "There is deliberately no password option: command lines are visible to every "
            "local user."
        ),
        allow_abbrev=False,
    )
    serve.set_defaults(usage_error=serve.error)
    _add_source_options(serve)
    _add_server_options(serve)
    return parser


def _add_source_options(serve: argparse.ArgumentParser) -> None:
    source = serve.add_argument_group("source (one of)")
    exclusive = source.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--dir",
        metavar="PATH",
        help=f"the directory of the shared-file backend (default: ${MULTIPROC_DIR_ENV})",
    )
    exclusive.add_argument(
        "--redis-url",
        metavar="URL",
        help=f"redis://, rediss:// or unix:// URL of the Redis backend (default: ${REDIS_URL_ENV})",
    )
    exclusive.add_argument(
        "--redis-sentinels",
        metavar="HOST:PORT,...",
        help=f"the sentinels of a Redis behind Sentinel (default: ${REDIS_SENTINELS_ENV})",
    )
    source.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help=f"the Redis URL is a node of a Redis Cluster (default: ${REDIS_CLUSTER_ENV}=1)",
    )
    source.add_argument(
        "--redis-service",
        metavar="NAME",
        default=None,
        help=f"the name the sentinels monitor the master under (default: ${REDIS_SERVICE_ENV})",
    )
    source.add_argument(
        "--namespace",
        metavar="NS",
        default="",
        help="the Redis backend's namespace, as the workers configured it (default: none)",
    )


def _add_server_options(serve: argparse.ArgumentParser) -> None:
    server = serve.add_argument_group("server")
    server.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    server.add_argument(
        "--bind",
        metavar="ADDRESS",
        default=DEFAULT_BIND,
        help=f"address to listen on; '0.0.0.0' or '::' for every interface (default: "
        f"{DEFAULT_BIND}, reachable from this host only)",
    )
    server.add_argument("--certfile", metavar="FILE", help="serve HTTPS with this certificate")
    server.add_argument("--keyfile", metavar="FILE", help="the certificate's private key")
    server.add_argument(
        "--client-cafile", metavar="FILE", help="verify client certificates against these CAs"
    )
    server.add_argument(
        "--client-auth-required",
        action="store_true",
        help="refuse clients without a certificate (needs --client-cafile)",
    )
    server.add_argument(
        "--basic-auth-user",
        metavar="USER",
        help=f"require HTTP basic auth as USER; the password comes from "
        f"--basic-auth-password-file or ${PASSWORD_ENV}",
    )
    server.add_argument(
        "--basic-auth-password-file",
        metavar="FILE",
        help="file holding the basic-auth password (one trailing newline is ignored)",
    )
    server.add_argument(
        "--name-validation",
        choices=["legacy", "utf8"],
        help=f"utf8 serves metrics whose metric or label names are not classic, quoted or "
        f"escaped as each scraper asks; legacy leaves them out (default: ${NAME_VALIDATION_ENV}, "
        "else legacy)",
    )
    server.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="what is logged to stderr (default: info)",
    )


def port_number(text: str) -> int:
    """A TCP port, 0 to 65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pytheus`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    return serve(args, args.usage_error)


# --- serve ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the workers' metrics are: a directory, or a Redis (a URL, or sentinels and the
    service they monitor) and namespace."""

    directory: str | None = None
    redis_url: str | None = None
    namespace: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    cluster: bool = False

    def describe(self) -> str:
        """For the log: never with the Redis password."""
        if self.directory is not None:
            return f"directory {self.directory}"
        namespace = f" namespace {self.namespace!r}" if self.namespace else ""
        if self.sentinels:
            found = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"Redis {self.service!r} behind sentinels {found}{namespace}"
        cluster = "Redis Cluster" if self.cluster else "Redis"
        return f"{cluster} {redact_url(self.redis_url or '')}{namespace}"

    def redis_config(self) -> dict[str, Any]:
        """The Redis backend's configuration for this source."""
        if self.sentinels:
            sentinels = [list(address) for address in self.sentinels]
            return {"sentinels": sentinels, "service_name": self.service,
                    "namespace": self.namespace}  # fmt: skip
        config = {"url": self.redis_url, "namespace": self.namespace}
        return {**config, "cluster": True} if self.cluster else config


def redact_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host:6379/0``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = user + host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def resolve_source(args: argparse.Namespace, environ: dict[str, str]) -> Source:
    """The source from the options, else from the environment; ValueError when unclear."""
    directory, url, sentinels = args.dir, args.redis_url, args.redis_sentinels
    service = args.redis_service or environ.get(REDIS_SERVICE_ENV) or ""
    if directory is None and url is None and sentinels is None:
        directory = environ.get(MULTIPROC_DIR_ENV) or None
        url = environ.get(REDIS_URL_ENV) or None
        sentinels = environ.get(REDIS_SENTINELS_ENV) or None
        given = [name for name, value in ((MULTIPROC_DIR_ENV, directory), (REDIS_URL_ENV, url),
                 (REDIS_SENTINELS_ENV, sentinels)) if value is not None]  # fmt: skip
        if len(given) > 1:
            raise ValueError(
                f"{'both' if len(given) == 2 else 'all of'} "
                f"{' and '.join('$' + name for name in given)} are set: say which with "
                "--dir, --redis-url or --redis-sentinels"
            )
    if directory is None and url is None and sentinels is None:
        raise ValueError(
            f"no source: give --dir (or ${MULTIPROC_DIR_ENV}), --redis-url (or ${REDIS_URL_ENV})"
            f" or --redis-sentinels with --redis-service (or ${REDIS_SENTINELS_ENV} and "
            f"${REDIS_SERVICE_ENV})"
        )
    if directory is not None and args.namespace:
        raise ValueError("--namespace applies to the Redis backend, not to --dir")
    cluster = args.redis_cluster or environ.get(REDIS_CLUSTER_ENV, "") in ("1", "true", "yes")
    if cluster and url is None:
        raise ValueError(f"--redis-cluster (or ${REDIS_CLUSTER_ENV}) goes with a Redis URL")
    if sentinels is None:
        if args.redis_service:
            raise ValueError("--redis-service goes with --redis-sentinels")
        return Source(directory, url, args.namespace, cluster=cluster)
    if not service:
        raise ValueError(
            f"--redis-sentinels needs --redis-service (or ${REDIS_SERVICE_ENV}): the name the "
            "sentinels monitor the master under"
        )
    return Source(None, None, args.namespace, _sentinel_addresses(sentinels), service)


def _sentinel_addresses(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as address pairs; ValueError naming the one that is not."""
    found = []
    for part in text.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--redis-sentinels: {part.strip()!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def resolve_basic_auth(args: argparse.Namespace, environ: dict[str, str]) -> tuple[str, str] | None:
    """``(user, password)`` when basic auth is asked for; ValueError when incomplete."""
    if args.basic_auth_user is None:
        if args.basic_auth_password_file is not None:
            raise ValueError("--basic-auth-password-file needs --basic-auth-user")
        return None
    if args.basic_auth_password_file is not None:
        try:
            password = Path(args.basic_auth_password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read --basic-auth-password-file: {error}") from None
        password = password.removesuffix("\n").removesuffix("\r")
    else:
        password = environ.get(PASSWORD_ENV, "")
    if not password:
        raise ValueError(
            f"--basic-auth-user needs a password: --basic-auth-password-file FILE, "
            f"or ${PASSWORD_ENV} (an empty password is refused)"
        )
    return args.basic_auth_user, password


def check_tls_options(args: argparse.Namespace) -> None:
    """ValueError for TLS options that make no sense together."""
    if args.certfile is None and (args.keyfile or args.client_cafile):
        raise ValueError("--keyfile and --client-cafile need --certfile")
    if args.client_auth_required and not args.client_cafile:
        raise ValueError("--client-auth-required needs --client-cafile")


def load_source(source: Source) -> Lister:
    """Load the source's backend in this process; return what lists its families."""
    if source.directory is not None:
        from pytheus.backends.file import FileStore, MultiProcessFileBackend

        # The exporter only reads: it never deletes what workers left (clear_stale), and it
        # does not hold the run open, so a restart of the whole app still starts a new run.
        load_backend(
            MultiProcessFileBackend,
            {"path": source.directory, "clear_stale": False, "join_run": False},
        )
        store = current_store()
        assert isinstance(store, FileStore)
        return _own_lister(store) or file_lister(store)
    try:
        from pytheus.backends.redis import MultiProcessRedisBackend, RedisStore
    except ImportError as error:
        raise InvalidBackendConfigException(
            f"the Redis backend needs redis-py (pip install 'pytheus[redis]'): {error}"
        ) from None
    load_backend(MultiProcessRedisBackend, source.redis_config())
    store = current_store()
    assert isinstance(store, RedisStore)
    return _own_lister(store) or redis_lister(store)


def _own_lister(store: object) -> Lister | None:
    """The store's own listing, once stores offer one: ``definitions()``, returning objects
    with this module's :class:`StoredDefinition` fields."""
    definitions = getattr(store, "definitions", None)
    if not callable(definitions):
        return None
    return lambda: _one_per_name(dict.fromkeys(definitions(), 1))


def serve(args: argparse.Namespace, usage_error: Callable[[str], NoReturn]) -> int:
    """``pytheus serve``: serve until SIGTERM or SIGINT; returns the exit status."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s pytheus serve %(levelname)s %(message)s"
    )
    environ = dict(os.environ)
    try:
        source = resolve_source(args, environ)
        basic_auth = resolve_basic_auth(args, environ)
        check_tls_options(args)
    except ValueError as error:
        usage_error(str(error))
    if args.name_validation is not None:
        set_validation_scheme(args.name_validation)
    _warn_about_exposure(args.bind, args.certfile is not None, basic_auth is not None)
    try:
        lister = load_source(source)
    except PytheusException as error:
        logger.error("cannot use the %s: %s", source.describe(), error)
        return 2
    from pytheus.serving import start_http_server

    try:
        server = start_http_server(
            args.port,
            args.bind,
            ExporterRegistry(lister),
            certfile=args.certfile,
            keyfile=args.keyfile,
            client_cafile=args.client_cafile,
            client_auth_required=args.client_auth_required,
            basic_auth=basic_auth,
        )
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        logger.error("cannot serve on %s port %s: %s", args.bind, args.port, error)
        return 1
    scheme = "https" if args.certfile else "http"
    host = f"[{server.host}]" if ":" in server.host else server.host
    logger.info(
        "serving the %s on %s://%s:%d/metrics%s (name validation: %s)",
        source.describe(),
        scheme,
        host,
        server.port,
        " with basic auth" if basic_auth else "",
        get_validation_scheme(),
    )
    with server:
        _wait_for_termination()
    logger.info("stopped")
    return 0


def _warn_about_exposure(bind: str, tls: bool, basic_auth: bool) -> None:
    if _is_loopback(bind) or tls:
        return
    if basic_auth:
        logger.warning("basic-auth credentials will cross the network in clear: add --certfile")
    else:
        logger.warning("serving on %s without TLS or authentication", bind)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _wait_for_termination() -> None:
    """Block until SIGTERM or SIGINT."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    while not stop.wait(1.0):
        pass
