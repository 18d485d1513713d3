"""Pushing metrics to a Prometheus Pushgateway, for jobs too short-lived to be scraped.

The URL of a group is ``/metrics/job/<job>/<label>/<value>...``. A value containing ``/`` (or
an empty one) is written in base64 as ``<label>@base64/<base64url of the value>``, as the
Pushgateway API specifies; other values are percent-encoded. The three operations:

- :func:`push_to_gateway` (PUT) replaces every metric of the group;
- :func:`pushadd_to_gateway` (POST) replaces only the metrics with the names pushed;
- :func:`delete_from_gateway` (DELETE) removes the group.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import quote

from pytheus.collection import collect_registry
from pytheus.exposition import text
from pytheus.registry import REGISTRY, Registry

PushHandler = Callable[[str, str, float | None, Mapping[str, str], bytes], None]
"""``handler(url, method, timeout, headers, body)``: sends one request, raises if it fails."""


def push_to_gateway(
    gateway: str,
    job: str,
    registry: Registry = REGISTRY,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float | None = 30,
    handler: PushHandler | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> None:
    """Replace the group's metrics on the Pushgateway with those of ``registry`` (PUT).

    ``gateway`` is ``host:port`` or a URL (``https://gateway:9091``). ``basic_auth`` is a
    ``(user, password)`` pair; ``handler`` replaces the HTTP client (for client certificates,
    proxies, ...). Raises :class:`OSError` when the Pushgateway refuses the push.

    Example::

        from pytheus.exposition import push_to_gateway

        push_to_gateway("localhost:9091", job="backup", registry=registry,
                        grouping_key={"instance": "db-1"})
    """
    _send("PUT", gateway, job, grouping_key, registry, timeout, handler, basic_auth)


def pushadd_to_gateway(
    gateway: str,
    job: str,
    registry: Registry = REGISTRY,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float | None = 30,
    handler: PushHandler | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> None:
    """Replace only the group's metrics that ``registry`` has, by name (POST).

    Example::

        pushadd_to_gateway("localhost:9091", job="backup", registry=registry)
    """
    _send("POST", gateway, job, grouping_key, registry, timeout, handler, basic_auth)


def delete_from_gateway(
    gateway: str,
    job: str,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float | None = 30,
    handler: PushHandler | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> None:
    """Delete the group (every metric pushed with this job and grouping key).

    Example::

        delete_from_gateway("localhost:9091", job="backup", grouping_key={"instance": "db-1"})
    """
    _send("DELETE", gateway, job, grouping_key, None, timeout, handler, basic_auth)


def group_url(gateway: str, job: str, grouping_key: Mapping[str, str] | None = None) -> str:
    """The URL of a group on the Pushgateway.

    Example::

        group_url("localhost:9091", "backup", {"path": "/var/db"})
        # "http://localhost:9091/metrics/job/backup/path@base64/L3Zhci9kYg=="
    """
    if not job:
        raise ValueError("the job name must not be empty")
    if "://" not in gateway:
        gateway = f"http://{gateway}"
    parts = [_path_pair("job", job)]
    parts.extend(_path_pair(name, value) for name, value in (grouping_key or {}).items())
    return f"{gateway.rstrip('/')}/metrics/{'/'.join(parts)}"


def _path_pair(name: str, value: str) -> str:
    if value == "" or "/" in value:
        encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
        return f"{quote(name, safe='')}@base64/{encoded}"
    return f"{quote(name, safe='')}/{quote(value, safe='')}"


def _send(
    method: str,
    gateway: str,
    job: str,
    grouping_key: Mapping[str, str] | None,
    registry: Registry | None,
    timeout: float | None,
    handler: PushHandler | None,
    basic_auth: tuple[str, str] | None,
) -> None:
    url = group_url(gateway, job, grouping_key)
    body = b""
    if registry is not None:
        body = text.render(collect_registry(registry, live=True)).encode("utf-8")
    headers = {"Content-Type": text.CONTENT_TYPE}
    if basic_auth is not None:
        token = base64.b64encode(":".join(basic_auth).encode("utf-8")).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    (handler or urllib_handler)(url, method, timeout, headers, body)


def urllib_handler(
    url: str, method: str, timeout: float | None, headers: Mapping[str, str], body: bytes
) -> None:
    """The default :data:`PushHandler`: one request with :mod:`urllib`.

    Example::

        urllib_handler("http://localhost:9091/metrics/job/backup", "DELETE", 30, {}, b"")
    """
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", errors="replace").strip()
        raise OSError(
            f"the Pushgateway answered {method} {url} with {error.code} {error.reason}: {detail}"
        ) from error
