"""Configuration of the Redis backend, checked when it is loaded."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from pytheus.backends.base import BackendConfig
from pytheus.exceptions import InvalidBackendConfigException

_OWN_OPTIONS = {
    "namespace", "key_prefix", "expire_key_time", "flush_interval", "max_pending_series", "url",
    "exit_timeout", "sentinels", "service_name", "sentinel_kwargs", "cluster", "startup_nodes",
}  # fmt: skip


@dataclass(frozen=True)
class RedisOptions:
    namespace: str = ""
    expire_key_time: int = 3600
    flush_interval: float = 1.0
    max_pending_series: int = 100_000
    exit_timeout: float = 5.0
    url: str | None = None
    connection: dict[str, Any] = field(default_factory=dict)
    sentinels: tuple[tuple[str, int], ...] = ()
    """Sentinel addresses: the master of ``service_name`` is asked of them (and again after a
    failover)."""
    service_name: str = ""
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)
    cluster: bool = False
    """A Redis Cluster: reached through ``url``, ``host``/``port`` or ``startup_nodes``."""
    startup_nodes: tuple[tuple[str, int], ...] = ()

    @property
    def base(self) -> str:
        """What every key of the namespace starts with. In a cluster the whole of it is a hash
        tag, so that every key of one namespace is in one slot (one script reads them all)."""
        base = f"pytheus:{self.namespace}" if self.namespace else "pytheus"
        return f"{{{base}}}" if self.cluster else base

    @property
    def key(self) -> str:
        """The key the scripts are sent with: in a cluster, it says which node runs them."""
        return f"{self.base}:index"

    @property
    def address(self) -> str:
        """Where Redis is, for messages: never with the password."""
        if self.sentinels:
            found = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel://{found}/{self.service_name}"
        if self.startup_nodes:
            return "cluster " + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)
        if self.url:
            parts = urllib.parse.urlsplit(self.url)
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
            return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        if "unix_socket_path" in self.connection:
            return f"unix://{self.connection['unix_socket_path']}"
        host = self.connection.get("host", "localhost")
        return f"{host}:{self.connection.get('port', 6379)}"

    @classmethod
    def from_config(cls, config: BackendConfig) -> RedisOptions:
        connection = {k: v for k, v in config.items() if k not in _OWN_OPTIONS}
        connection.setdefault("socket_timeout", 2.0)
        connection.setdefault("socket_connect_timeout", 2.0)
        namespace = str(config.get("namespace", config.get("key_prefix", "")) or "")
        url = config.get("url")
        if url is not None:
            scheme = urllib.parse.urlsplit(str(url)).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise InvalidBackendConfigException(
                    f"Redis backend: url must start with redis://, rediss:// or unix://, "
                    f"got scheme {scheme!r}"
                )
        sentinels, service_name, sentinel_kwargs = _sentinel_options(config)
        if sentinels and url is not None:
            raise InvalidBackendConfigException(
                "Redis backend: give either 'url' or 'sentinels' (with 'service_name'), not both"
            )
        cluster, startup_nodes = _cluster_options(config, connection, sentinels)
        options = cls(
            namespace=namespace,
            expire_key_time=_number(config, "expire_key_time", 3600, int),
            flush_interval=_number(config, "flush_interval", 1.0, float),
            max_pending_series=_number(config, "max_pending_series", 100_000, int),
            exit_timeout=_number(config, "exit_timeout", 5.0, float),
            url=None if url is None else str(url),
            connection=connection,
            sentinels=sentinels,
            service_name=service_name,
            sentinel_kwargs=sentinel_kwargs,
            cluster=cluster,
            startup_nodes=startup_nodes,
        )
        if options.expire_key_time <= 0 or options.flush_interval < 0 or options.exit_timeout < 0:
            raise InvalidBackendConfigException(
                "Redis backend: expire_key_time must be > 0, flush_interval and exit_timeout >= 0"
            )
        if ":" in namespace or "{" in namespace:
            raise InvalidBackendConfigException(
                f"Redis backend: namespace {namespace!r} must not contain ':' or '{{'"
            )
        return options


def _cluster_options(
    config: BackendConfig, connection: dict[str, Any], sentinels: tuple[tuple[str, int], ...]
) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """``cluster`` and ``startup_nodes`` (which implies it), checked."""
    raw = config.get("startup_nodes")
    cluster = config.get("cluster", raw is not None)
    if not isinstance(cluster, bool):
        raise InvalidBackendConfigException(
            f"Redis backend: 'cluster' must be true or false, got {cluster!r}"
        )
    if not cluster:
        if raw is not None:
            raise InvalidBackendConfigException(
                "Redis backend: 'startup_nodes' are a Redis Cluster's: leave 'cluster' out or true"
            )
        return False, ()
    if sentinels:
        raise InvalidBackendConfigException(
            "Redis backend: a Redis Cluster is not behind Sentinel: give 'cluster' (with 'url',"
            " 'host'/'port' or 'startup_nodes') or 'sentinels', not both"
        )
    if connection.get("db", 0) not in (0, "0"):
        raise InvalidBackendConfigException(
            f"Redis backend: a Redis Cluster has database 0 only, got db={connection['db']!r}"
        )
    url = config.get("url")
    if url is not None and urllib.parse.urlsplit(str(url)).path.strip("/") not in ("", "0"):
        raise InvalidBackendConfigException(
            f"Redis backend: a Redis Cluster has database 0 only, got the url's "
            f"{urllib.parse.urlsplit(str(url)).path!r}"
        )
    if raw is None:
        return True, ()
    if url is not None or "host" in connection:
        raise InvalidBackendConfigException(
            "Redis backend: give a Redis Cluster's 'startup_nodes' or its 'url' (or 'host'), "
            "not both"
        )
    return True, _addresses(raw, "startup_nodes", 7000)


def _addresses(raw: Any, name: str, port: int) -> tuple[tuple[str, int], ...]:
    """A list of ``[host, port]`` pairs; one that is not names the option."""
    try:
        if isinstance(raw, (str, bytes)) or not raw:
            raise TypeError
        return tuple((str(host), int(port)) for host, port in raw)
    except (TypeError, ValueError):
        raise InvalidBackendConfigException(
            f"Redis backend: {name!r} must be a list of [host, port] pairs such as "
            f"[[\"10.0.0.1\", {port}]], got {raw!r}"
        ) from None


def _sentinel_options(
    config: BackendConfig,
) -> tuple[tuple[tuple[str, int], ...], str, dict[str, Any]]:
    """``sentinels`` (``[[host, port], ...]``), ``service_name`` and ``sentinel_kwargs``,
    checked; empty when there are no sentinels."""
    raw = config.get("sentinels")
    if raw is None:
        if "service_name" in config or "sentinel_kwargs" in config:
            raise InvalidBackendConfigException(
                "Redis backend: 'service_name' and 'sentinel_kwargs' need 'sentinels'"
            )
        return (), "", {}
    sentinels = _addresses(raw, "sentinels", 26379)
    service_name = config.get("service_name")
    if not isinstance(service_name, str) or not service_name:
        raise InvalidBackendConfigException(
            "Redis backend: 'sentinels' needs 'service_name', the name the sentinels monitor "
            f"the master under (such as \"mymaster\"), got {service_name!r}"
        )
    kwargs = config.get("sentinel_kwargs", {})
    if not isinstance(kwargs, dict):
        raise InvalidBackendConfigException(
            "Redis backend: 'sentinel_kwargs' must be a mapping of redis-py connection options "
            f"for the sentinels (password, ssl, ...), got {kwargs!r}"
        )
    return sentinels, service_name, dict(kwargs)


def _number(config: BackendConfig, name: str, default: Any, kind: type[Any]) -> Any:
    """Option ``name`` as an ``int`` or ``float``; a value that is not one names the option."""
    raw = config.get(name, default)
    try:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise TypeError
        return kind(raw)
    except (TypeError, ValueError):
        unit = "seconds, " if name in ("flush_interval", "exit_timeout", "expire_key_time") else ""
        raise InvalidBackendConfigException(
            f"Redis backend: option {name!r} must be a number ({unit}such as {default!r}), "
            f"got {raw!r}"
        ) from None
