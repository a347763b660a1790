"""TLS: moto behind a trustme certificate, reached by a name whose addresses outlast dialled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore.exceptions
import pytest
import trustme
from aws_helpers import raw_client
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

import outlast.aws
from outlast import Resolver
from outlast.testing import DNSServer


@pytest.fixture
def tls_moto(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, str]]]:
    """Start moto over HTTPS with a certificate for a given name; returns (port, CA file)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers = []

    def start(cert_name: str) -> tuple[int, str]:
        cert = ca.issue_cert(cert_name)
        chain = tmp_path / f"{cert_name}.pem"
        key = tmp_path / f"{cert_name}.key"
        cert.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(chain), str(key)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return int(server.server_address[1]), str(ca_file)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_https_keeps_the_hostname_for_the_certificate(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    tls_moto: Callable[[str], tuple[int, str]],
) -> None:
    name = unique_name("tls")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    port, ca_file = tls_moto(name)
    client = outlast.aws.wrap(
        raw_client("dynamodb", f"https://{name}:{port}", verify=ca_file),
        resolver=resolver_for(),
    )
    tables = client.list_tables()
    assert tables["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_certificate_for_another_name_fails(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    tls_moto: Callable[[str], tuple[int, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique_name("tls")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    port, ca_file = tls_moto("someone-else.outlast.test")
    client = outlast.aws.wrap(
        raw_client("dynamodb", f"https://{name}:{port}", verify=ca_file),
        resolver=resolver_for(),
    )
    with pytest.raises(botocore.exceptions.SSLError, match="doesn't match"):
        client.list_tables()
    mismatches = [r for r in caplog.records if "did not match" in r.getMessage()]
    assert len(mismatches) == 1  # the same certificate would come back: not retried
