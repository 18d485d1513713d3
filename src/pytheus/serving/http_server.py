"""A stand-alone metrics HTTP(S) server in a daemon thread, with optional basic auth."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Union
from urllib.parse import urlsplit

from pytheus.registry import REGISTRY, Registry
from pytheus.serving._response import Response, metrics_response, plain_response

logger = logging.getLogger("pytheus.serving")

BasicAuth = Union[tuple[str, str], Callable[[str, str], bool]]
"""A ``(user, password)`` pair, or a function ``check(user, password) -> bool``."""

_POLL_INTERVAL = 0.1  # how soon shutdown() stops the serving loop
_SOCKET_TIMEOUT = 30.0  # a client that stalls (in the TLS handshake or the request) is dropped


class MetricsServer:
    """A running metrics server: ``port`` is the bound port; stop it with ``close()``.

    Also a context manager: ``with start_http_server(0) as server: ...``.
    """

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False
        address = server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    def shutdown(self) -> None:
        """Stop serving and close the listening socket; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    close = shutdown

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def start_http_server(
    port: int,
    addr: str = "0.0.0.0",
    registry: Registry = REGISTRY,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
    client_capath: str | None = None,
    client_auth_required: bool = False,
    basic_auth: BasicAuth | None = None,
) -> MetricsServer:
    """Serve the metrics of ``registry`` on ``addr:port`` from a daemon thread.

    ``port=0`` picks a free port (read it from the returned server's ``port``). With
    ``certfile`` (and ``keyfile``) it serves HTTPS; ``client_cafile``/``client_capath`` verify
    client certificates, which ``client_auth_required`` makes mandatory. ``basic_auth`` answers
    401 to requests without the right credentials (use it over HTTPS).

    Example::

        from pytheus.exposition import start_http_server

        server = start_http_server(8000, basic_auth=("prometheus", "s3cret"),
                                   certfile="server.pem", keyfile="server.key")
        ...
        server.close()
    """
    context = _tls_context(certfile, keyfile, client_cafile, client_capath, client_auth_required)
    server = _MetricsHTTPServer((addr, port), registry, _credentials_check(basic_auth), context)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": _POLL_INTERVAL},
        name=f"pytheus-metrics-server:{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return MetricsServer(server, thread)


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        check_credentials: Callable[[str | None], bool],
        tls_context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = _address_family(*address)
        self.registry = registry
        self.check_credentials = check_credentials
        self.tls_context = tls_context
        super().__init__(address, _MetricsHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (slow on some hosts)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection, in its own thread; the TLS handshake happens here too."""
        request.settimeout(_SOCKET_TIMEOUT)
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_socket = self.tls_context.wrap_socket(request, server_side=True)
        except OSError as error:  # ssl.SSLError is an OSError
            logger.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            tls_socket.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error serving %s", client_address, exc_info=True)


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsHTTPServer
    server_version = "pytheus"
    sys_version = ""  # no Python version in the Server header

    def do_GET(self) -> None:
        self._respond(self._response())

    def do_HEAD(self) -> None:
        self._respond(self._response())

    # Other methods get 405 with "Allow: GET, HEAD", as from make_wsgi_app and make_asgi_app
    # (BaseHTTPRequestHandler would answer 501, "not implemented", for a method it lacks).
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _response(self) -> Response:
        if not self.server.check_credentials(self.headers.get("Authorization")):
            return plain_response(
                HTTPStatus.UNAUTHORIZED,
                b"unauthorized\n",
                ("WWW-Authenticate", 'Basic realm="metrics", charset="UTF-8"'),
            )
        return metrics_response(
            self.server.registry,
            self.command,
            urlsplit(self.path).query,
            self.headers.get("Accept"),
            self.headers.get("Accept-Encoding"),
        )

    def _respond(self, response: Response) -> None:
        self.send_response(response.status.value)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


def _tls_context(
    certfile: str | None,
    keyfile: str | None,
    cafile: str | None,
    capath: str | None,
    client_auth_required: bool,
) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile or cafile or capath or client_auth_required:
            raise ValueError("TLS options need certfile, the server's certificate")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if cafile or capath:
        context.load_verify_locations(cafile=cafile, capath=capath)
        context.verify_mode = ssl.CERT_REQUIRED if client_auth_required else ssl.CERT_OPTIONAL
    elif client_auth_required:
        raise ValueError("client_auth_required needs client_cafile or client_capath")
    return context


def _credentials_check(basic_auth: BasicAuth | None) -> Callable[[str | None], bool]:
    """A function telling whether an ``Authorization`` header value is accepted."""
    if basic_auth is None:
        return lambda header: True
    if callable(basic_auth):
        check = basic_auth
    else:
        expected_user, expected_password = (part.encode("utf-8") for part in basic_auth)

        def check(user: str, password: str) -> bool:
            # both comparisons always run, in constant time
            user_ok = hmac.compare_digest(user.encode("utf-8"), expected_user)
            password_ok = hmac.compare_digest(password.encode("utf-8"), expected_password)
            return user_ok & password_ok

    def accepts(header: str | None) -> bool:
        credentials = _parse_basic(header)
        return credentials is not None and bool(check(*credentials))

    return accepts


def _parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from ``Basic <base64>``, or None when absent or malformed."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _address_family(addr: str, port: int) -> socket.AddressFamily:
    """The family of the address ``addr`` resolves to first: IPv6 for ``"::"``, IPv4 for ``""``."""
    if not addr:
        return socket.AF_INET
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return infos[0][0]
