"""start_http_server over real sockets: plain HTTP, HTTPS, client certificates and basic auth.

The certificates are made for the module with the ``cryptography`` package: a CA, a server
certificate for 127.0.0.1 signed by it, a client certificate signed by it, and a client
certificate from another CA the server does not trust. Clients are urllib with ssl contexts.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import http.client
import ipaddress
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
    MetricsServer,
    start_http_server,
)
from pytheus.metrics import Counter
from pytheus.registry import CollectorRegistry
from tests.backends_under_test import UnreadableBackend

# --- certificates --------------------------------------------------------------------------------


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by a CA the server does not trust
    stranger_key: Path
    other_ca: Path  # that CA, which did not sign the server's certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # key identifiers: Python 3.13 verifies strictly (VERIFY_X509_STRICT) and wants them
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(directory: Path, stem: str, pair: tuple[x509.Certificate, Any]) -> tuple[Path, Path]:
    cert, key = pair
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca_cert, ca_key = _issue("pytheus test CA", None, ca=True)
    other_cert, other_key = _issue("another CA", None, ca=True)
    ca_path, _ = _write(directory, "ca", (ca_cert, ca_key))
    server = _write(
        directory, "server", _issue("127.0.0.1", (ca_cert.subject, ca_key), server=True)
    )
    client = _write(directory, "client", _issue("prometheus", (ca_cert.subject, ca_key)))
    stranger = _write(directory, "stranger", _issue("mallory", (other_cert.subject, other_key)))
    other_ca, _ = _write(directory, "other-ca", (other_cert, other_key))
    return Certs(ca_path, *server, *client, *stranger, other_ca)


# --- helpers -------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes


def get(
    url: str,
    context: ssl.SSLContext | None = None,
    method: str = "GET",
    **headers: str,
) -> Reply:
    wire_headers = {name.replace("_", "-"): value for name, value in headers.items()}
    request = urllib.request.Request(url, headers=wire_headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def client_context(
    certs: Certs, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def registry_with_data() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("served_total", "Served.", registry=registry).inc(4)
    return registry


def served_value(reply: Reply) -> float:
    assert reply.status == 200, reply.body
    body = reply.body
    if reply.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    [family] = text_parse(body.decode("utf-8"))
    value: float = family.samples[0].value
    return value


# --- plain HTTP ----------------------------------------------------------------------------------


def test_plain_http(registry_with_data: CollectorRegistry) -> None:
    with start_http_server(0, addr="127.0.0.1", registry=registry_with_data) as server:
        assert isinstance(server, MetricsServer)
        assert server.port > 0
        assert server.host == "127.0.0.1"
        base = f"http://127.0.0.1:{server.port}"

        reply = get(f"{base}/metrics")
        assert reply.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
        assert served_value(reply) == 4

        reply = get(f"{base}/metrics", Accept="application/openmetrics-text; version=1.0.0")
        assert reply.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
        assert reply.body.endswith(b"# EOF\n")

        reply = get(f"{base}/metrics", Accept_Encoding="gzip")
        assert reply.headers["Content-Encoding"] == "gzip"
        assert served_value(reply) == 4

        assert get(f"{base}/metrics?name[]=other").body == b""
        assert served_value(get(f"{base}/metrics?name[]=served_total")) == 4

        head = get(f"{base}/metrics", method="HEAD")
        assert (head.status, head.body) == (200, b"")
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):  # as make_wsgi_app answers
            refused = get(f"{base}/metrics", method=method)
            assert (refused.status, refused.headers["Allow"]) == (405, "GET, HEAD"), method


def test_close_stops_serving(registry_with_data: CollectorRegistry) -> None:
    server = start_http_server(0, addr="127.0.0.1", registry=registry_with_data)
    port = server.port
    assert served_value(get(f"http://127.0.0.1:{port}/")) == 4
    server.close()
    server.shutdown()  # a second stop does nothing
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass


def test_ipv6(registry_with_data: CollectorRegistry) -> None:
    try:
        server = start_http_server(0, addr="::1", registry=registry_with_data)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    with server:
        assert served_value(get(f"http://[::1]:{server.port}/metrics")) == 4


def test_backend_unavailable_is_503() -> None:
    load_backend(UnreadableBackend, {})
    try:
        registry = CollectorRegistry()
        Counter("doomed_total", "Doomed.", registry=registry).inc()
        with start_http_server(0, addr="127.0.0.1", registry=registry) as server:
            reply = get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        load_backend(SingleProcessBackend, {})
    assert reply.status == 503
    assert reply.body == b"metrics backend unavailable\n"


# --- TLS -----------------------------------------------------------------------------------------


def test_https(certs: Certs, registry_with_data: CollectorRegistry) -> None:
    with start_http_server(
        0,
        addr="127.0.0.1",
        registry=registry_with_data,
        certfile=str(certs.server_cert),
        keyfile=str(certs.server_key),
    ) as server:
        url = f"https://127.0.0.1:{server.port}/metrics"
        # a client that does not speak TLS gets nothing, and the server goes on serving
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):
            connection.request("GET", "/metrics")
            connection.getresponse().read()
        connection.close()
        assert served_value(get(url, client_context(certs))) == 4
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(url, ssl.create_default_context())  # the test CA is not a system CA


def test_client_certificate_required(certs: Certs, registry_with_data: CollectorRegistry) -> None:
    with start_http_server(
        0,
        addr="127.0.0.1",
        registry=registry_with_data,
        certfile=str(certs.server_cert),
        keyfile=str(certs.server_key),
        client_cafile=str(certs.ca),
        client_auth_required=True,
    ) as server:
        url = f"https://127.0.0.1:{server.port}/metrics"
        trusted = client_context(certs, certs.client_cert, certs.client_key)
        assert served_value(get(url, trusted)) == 4
        with pytest.raises(OSError):
            get(url, client_context(certs))  # no client certificate
        with pytest.raises(OSError):
            get(url, client_context(certs, certs.stranger_cert, certs.stranger_key))
        assert served_value(get(url, trusted)) == 4  # still serving


def test_client_certificate_optional(certs: Certs, registry_with_data: CollectorRegistry) -> None:
    with start_http_server(
        0,
        addr="127.0.0.1",
        registry=registry_with_data,
        certfile=str(certs.server_cert),
        keyfile=str(certs.server_key),
        client_capath=str(certs.ca.parent),  # a directory; nothing in it is hashed, trusts none
        client_cafile=str(certs.ca),
    ) as server:
        url = f"https://127.0.0.1:{server.port}/metrics"
        assert served_value(get(url, client_context(certs))) == 4
        trusted = client_context(certs, certs.client_cert, certs.client_key)
        assert served_value(get(url, trusted)) == 4
        with pytest.raises(OSError):
            get(url, client_context(certs, certs.stranger_cert, certs.stranger_key))


def test_tls_options_need_a_certificate(certs: Certs) -> None:
    with pytest.raises(ValueError, match="certfile"):
        start_http_server(0, addr="127.0.0.1", client_cafile=str(certs.ca))
    with pytest.raises(ValueError, match="client_cafile"):
        start_http_server(
            0,
            addr="127.0.0.1",
            certfile=str(certs.server_cert),
            keyfile=str(certs.server_key),
            client_auth_required=True,
        )


# --- basic auth ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(certs: Certs) -> Iterator[str]:
    registry = CollectorRegistry()
    Counter("served_total", "Served.", registry=registry).inc(4)
    with start_http_server(
        0,
        addr="127.0.0.1",
        registry=registry,
        certfile=str(certs.server_cert),
        keyfile=str(certs.server_key),
        basic_auth=("prometheus", "pä:ss wörd"),
    ) as server:
        yield f"https://127.0.0.1:{server.port}/metrics"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic("prometheus", "wrong"),
        basic("prometheus", "pä:ss wörd "),
        basic("prometheus", "pä:ss wör"),
        basic("Prometheus", "pä:ss wörd"),
        basic("", ""),
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Bearer prometheus:pä:ss wörd",
    ],
)
def test_basic_auth_refuses(certs: Certs, auth_server: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = get(auth_server, client_context(certs), **headers)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert b"served_total" not in reply.body


def test_basic_auth_accepts(certs: Certs, auth_server: str) -> None:
    reply = get(auth_server, client_context(certs), Authorization=basic("prometheus", "pä:ss wörd"))
    assert served_value(reply) == 4
    lower_scheme = "basic " + basic("prometheus", "pä:ss wörd").split(" ")[1]
    assert get(auth_server, client_context(certs), Authorization=lower_scheme).status == 200


def test_basic_auth_with_a_check_function(
    certs: Certs, registry_with_data: CollectorRegistry
) -> None:
    seen: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        seen.append((user, password))
        return user == "scraper" and password == "token-1"

    with start_http_server(
        0,
        addr="127.0.0.1",
        registry=registry_with_data,
        certfile=str(certs.server_cert),
        keyfile=str(certs.server_key),
        basic_auth=check,
    ) as server:
        url = f"https://127.0.0.1:{server.port}/"
        assert get(url, client_context(certs)).status == 401
        assert get(url, client_context(certs), Authorization=basic("scraper", "x")).status == 401
        reply = get(url, client_context(certs), Authorization=basic("scraper", "token-1"))
        assert served_value(reply) == 4
    assert seen == [("scraper", "x"), ("scraper", "token-1")]
