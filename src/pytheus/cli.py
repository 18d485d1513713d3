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

The exporter defines no metric itself: the metric objects live in the workers. At each scrape
it asks the store for everything it holds, read once (``Store.families()``; the families come
from what every series is keyed by and from each family's stored description, see
:mod:`pytheus.backends.listing`), so the values are combined exactly as a scrape inside a worker
would combine them, and families are served with their real HELP and UNIT.

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
import ipaddress
import logging
import os
import signal
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from pytheus import __version__
from pytheus.backends.base import (
    MULTIPROC_DIR_ENV,
    current_store,
    import_backend_class,
    load_backend,
    read_config_file,
)
from pytheus.backends.store import Store, lists_families
from pytheus.exceptions import (
    InvalidBackendConfigException,
    PytheusException,
)
from pytheus.naming import ENV_VAR as NAME_VALIDATION_ENV
from pytheus.naming import (
    get_validation_scheme,
    set_validation_scheme,
)
from pytheus.samples import MetricFamily

logger = logging.getLogger("pytheus.cli")

DEFAULT_PORT = 9095
"""Not 9091, the Pushgateway's port, nor 9100, node_exporter's: both often run on the same host."""
DEFAULT_BIND = "127.0.0.1"
PASSWORD_ENV = "PYTHEUS_BASIC_AUTH_PASSWORD"
REDIS_URL_ENV = "PYTHEUS_REDIS_URL"
REDIS_SENTINELS_ENV = "PYTHEUS_REDIS_SENTINELS"
REDIS_SERVICE_ENV = "PYTHEUS_REDIS_SERVICE"
REDIS_CLUSTER_ENV = "PYTHEUS_REDIS_CLUSTER"


# --- what is served -------------------------------------------------------------------------------


class ExporterRegistry:
    """A registry whose families are whatever the store holds at each scrape.

    ``collect()`` reads everything the store holds, once (``Store.families()``, raising
    BackendUnavailableException, which servers answer with 503, when it cannot). Collectors
    registered here (the exporter's own metrics, say) are served too.
    """

    prefix: str | None = None

    def __init__(self, store: Store) -> None:
        self._store = store
        self._extra: list[Any] = []
        self._lock = threading.Lock()

    def register(self, collector: Any) -> None:
        with self._lock:
            self._extra.append(collector)

    def unregister(self, collector: Any) -> None:
        with self._lock:
            self._extra = [c for c in self._extra if c is not collector]

    def collect(self) -> list[Any]:
        held = _Held(self._store.families())
        with self._lock:
            return [held, *self._extra]


class _Held:
    """The families a store held at one scrape, as a collector."""

    def __init__(self, families: list[MetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[MetricFamily]:
        return self._families


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
    exclusive.add_argument(
        "--backend-class",
        metavar="MODULE.CLASS",
        help="a backend of your own, whose store lists what it holds (Store.families())",
    )
    source.add_argument(
        "--backend-config",
        metavar="FILE",
        default=None,
        help="the JSON configuration of --backend-class (default: none)",
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
    backend_class: str | None = None
    backend_config: str | None = None

    def describe(self) -> str:
        """For the log: never with the Redis password."""
        if self.directory is not None:
            return f"directory {self.directory}"
        if self.backend_class is not None:
            return f"backend {self.backend_class}"
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


_Location = tuple[str | None, str | None, str | None]
"""``(directory, Redis URL, sentinels)``: where the workers' metrics are, one of the three."""

_CLUSTER_NEEDS_URL = f"--redis-cluster (or ${REDIS_CLUSTER_ENV}) goes with a Redis URL"


def resolve_source(args: argparse.Namespace, environ: dict[str, str]) -> Source:
    """The source from the options, else from the environment; ValueError when unclear."""
    if args.backend_class is not None:
        return _backend_class_source(args)
    if args.backend_config is not None:
        raise ValueError("--backend-config goes with --backend-class")
    directory, url, sentinels = _located_source(args, environ)
    if directory is not None:
        return _directory_source(args, environ, directory)
    if url is not None:
        return _redis_url_source(args, environ, url)
    assert sentinels is not None  # _located_source returns one of the three
    return _sentinel_source(args, environ, sentinels)


def _backend_class_source(args: argparse.Namespace) -> Source:
    """``--backend-class``: a backend of the user's, with its ``--backend-config``."""
    if args.namespace or args.redis_service or args.redis_cluster:
        raise ValueError("--namespace, --redis-service and --redis-cluster are Redis's")
    return Source(backend_class=args.backend_class, backend_config=args.backend_config)


def _located_source(args: argparse.Namespace, environ: dict[str, str]) -> _Location:
    """The location the options give, else the one the environment gives; ValueError when
    there is none."""
    location: _Location = (args.dir, args.redis_url, args.redis_sentinels)
    if location == (None, None, None):
        location = _location_from_environment(environ)
    if location == (None, None, None):
        raise ValueError(
            f"no source: give --dir (or ${MULTIPROC_DIR_ENV}), --redis-url (or ${REDIS_URL_ENV})"
            f", --redis-sentinels with --redis-service (or ${REDIS_SENTINELS_ENV} and "
            f"${REDIS_SERVICE_ENV}), or --backend-class"
        )
    return location


def _location_from_environment(environ: dict[str, str]) -> _Location:
    """The location the environment gives, if any; ValueError when it gives more than one."""
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
    return directory, url, sentinels


def _directory_source(args: argparse.Namespace, environ: dict[str, str], directory: str) -> Source:
    """A shared directory: no Redis option applies."""
    if args.namespace:
        raise ValueError("--namespace applies to the Redis backend, not to --dir")
    if _cluster_asked(args, environ):
        raise ValueError(_CLUSTER_NEEDS_URL)
    _refuse_service_without_sentinels(args)
    return Source(directory, None, args.namespace)


def _redis_url_source(args: argparse.Namespace, environ: dict[str, str], url: str) -> Source:
    """A Redis URL: a single Redis, or a node of a Redis Cluster."""
    cluster = _cluster_asked(args, environ)
    _refuse_service_without_sentinels(args)
    return Source(None, url, args.namespace, cluster=cluster)


def _sentinel_source(args: argparse.Namespace, environ: dict[str, str], sentinels: str) -> Source:
    """A Redis behind Sentinel: the sentinels, and the service name they monitor."""
    if _cluster_asked(args, environ):
        raise ValueError(_CLUSTER_NEEDS_URL)
    service = args.redis_service or environ.get(REDIS_SERVICE_ENV) or ""
    if not service:
        raise ValueError(
            f"--redis-sentinels needs --redis-service (or ${REDIS_SERVICE_ENV}): the name the "
            "sentinels monitor the master under"
        )
    return Source(None, None, args.namespace, _sentinel_addresses(sentinels), service)


def _cluster_asked(args: argparse.Namespace, environ: dict[str, str]) -> bool:
    """Whether ``--redis-cluster`` (or its environment variable) says Redis Cluster."""
    return bool(args.redis_cluster) or environ.get(REDIS_CLUSTER_ENV, "") in ("1", "true", "yes")


def _refuse_service_without_sentinels(args: argparse.Namespace) -> None:
    """ValueError when ``--redis-service`` is given for a source that is not Sentinel's."""
    if args.redis_service:
        raise ValueError("--redis-service goes with --redis-sentinels")


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


def load_source(source: Source) -> Store:
    """Load the source's backend in this process; return its store."""
    if source.backend_class is not None:
        return _own_backend(source.backend_class, source.backend_config)
    if source.directory is not None:
        from pytheus.backends.file import MultiProcessFileBackend

        # The exporter only reads: it never deletes what workers left (clear_stale), and it
        # does not hold the run open, so a restart of the whole app still starts a new run.
        load_backend(
            MultiProcessFileBackend,
            {"path": source.directory, "clear_stale": False, "join_run": False},
        )
        return current_store()
    try:
        from pytheus.backends.redis import MultiProcessRedisBackend
    except ImportError as error:
        raise InvalidBackendConfigException(
            f"the Redis backend needs redis-py (pip install 'pytheus[redis]'): {error}"
        ) from None
    load_backend(MultiProcessRedisBackend, source.redis_config())
    return current_store()


def _own_backend(path: str, config_file: str | None) -> Store:
    """``--backend-class``: a backend of the user's, whose store can list what it holds."""
    config = read_config_file(config_file, "--backend-config") if config_file else {}
    load_backend(import_backend_class(path), config)
    store = current_store()
    if not lists_families(store):
        raise InvalidBackendConfigException(
            f"{path}'s store cannot list what it holds: it needs a families() method "
            "(see pytheus.backends.store.Store)"
        )
    return store


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
        store = load_source(source)
    except PytheusException as error:
        logger.error("cannot use the %s: %s", source.describe(), error)
        return 2
    from pytheus.serving import start_http_server

    try:
        server = start_http_server(
            args.port,
            args.bind,
            ExporterRegistry(store),
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
