"""The Google recipe, for real: google-cloud-storage on outlast.requests.mount.

``outlast.requests.mount(client._http)`` instruments the client's ``AuthorizedSession``
(and the session google-auth refreshes tokens through) in place: downloads resolve
through outlast and keep working while the endpoint's record is empty, and with
``retry=None`` a 503 storm is retried by outlast alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import trustme
from google.api_core.exceptions import ServiceUnavailable
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from loopback_http import Backend
from requests_helpers import quick_policy

import outlast.requests
from outlast import Event, Resolver
from outlast.dns import EmptyAnswerDistrusted
from outlast.testing import DNSServer


def _client(url: str) -> Any:
    return storage.Client(
        project="outlast-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


def _fresh(session: requests.Session) -> None:
    for adapter in session.adapters.values():
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        adapter.poolmanager.clear()


def test_mount_covers_the_authorized_session_and_its_refresh_session(
    resolver_for: Callable[..., Resolver],
) -> None:
    client = _client("http://storage.outlast.test:1")
    session = client._http
    assert outlast.requests.mount(session, resolver=resolver_for()) is session
    refresh = session._auth_request_session
    for each in (session, refresh):
        https = each.adapters["https://"]
        assert isinstance(https, outlast.requests.HTTPAdapter)
        assert https.resolver is not None
    # google-auth's refresh adapter asked urllib3 for 3 retries: outlast's attempts are
    # capped at 4 and urllib3's own are off, so the two never multiply.
    assert refresh.adapters["https://"].max_retries.total == 0
    client.close()


def test_download_through_an_empty_record_outage(
    gcs_emulator: int,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("gcs")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[Event] = []
    resolver = resolver_for(listeners=[events.append], min_ttl=0.2, max_ttl=0.2)
    client = _client(f"http://{name}:{gcs_emulator}")
    session = outlast.requests.mount(client._http, resolver=resolver, policy=quick_policy())
    bucket = client.create_bucket(unique_name("b").split(".")[0])
    bucket.blob("k").upload_from_string(b"value", retry=None)
    outcomes: list[bytes | str] = []
    start = time.monotonic()
    emptied = False
    for _ in range(200):  # bounded
        elapsed = time.monotonic() - start
        if elapsed >= 2.5:
            break
        if not emptied and elapsed >= 0.4:
            fault_dns.empty(name)
            emptied = True
        _fresh(session)
        try:
            outcomes.append(bucket.blob("k").download_as_bytes(retry=None))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        time.sleep(0.05)
    client.close()
    assert len(outcomes) >= 10
    assert outcomes == [b"value"] * len(outcomes)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)


def test_503_storm_is_retried_by_outlast_alone(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("storm")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server:
        server.status = 503
        client = _client(f"http://{name}:{server.port}")
        outlast.requests.mount(client._http, resolver=resolver_for(), policy=quick_policy())
        with pytest.raises(ServiceUnavailable):
            client.bucket("b").blob("k").download_as_bytes(retry=None)
        client.close()
        targets = [target for _, target, _ in server.requests]
    # outlast's 3 attempts, no more: DEFAULT_RETRY would repeat each for up to 120 s.
    assert targets == ["/download/storage/v1/b/b/o/k?alt=media"] * 3


def test_tls_checks_the_endpoint_name(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mounted session verifies the endpoint's name; a wrong name fails, once.

    A session ``mount()`` instruments keeps requests' rule: ``REQUESTS_CA_BUNDLE``
    chooses the CA bundle over ``session.verify``, so that is how the test CA is given.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    right, wrong = unique_name("gtls"), unique_name("gwrong")
    for name in (right, wrong):
        fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend(cert=ca.issue_cert(right)) as server:
        client = _client(f"https://{right}:{server.port}")
        outlast.requests.mount(client._http, resolver=resolver_for(), policy=quick_policy())
        # The library's own download path, on the right name: the TLS handshake verifies.
        assert client.bucket("b").blob("k").download_as_bytes(retry=None).startswith(b"GET ")
        assert set(server.sni) == {right}
        wrong_client = _client(f"https://{wrong}:{server.port}")
        outlast.requests.mount(wrong_client._http, resolver=resolver_for(), policy=quick_policy())
        before = server.connections
        with pytest.raises(requests.exceptions.SSLError):
            wrong_client.bucket("b").blob("k").download_as_bytes(retry=None)
        assert server.connections - before == 1  # a certificate failure is not retried
        client.close()
        wrong_client.close()


def test_mount_after_mtls_keeps_the_client_certificate_adapter(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """google-auth's mutual-TLS adapter, instrumented in place, keeps its SSL context."""
    from google.auth.transport.requests import AuthorizedSession

    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    leaf = ca.issue_cert("client.outlast.test")
    cert, key = leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    session = AuthorizedSession(AnonymousCredentials())  # type: ignore[no-untyped-call]
    session.configure_mtls_channel(lambda: (cert, key))
    adapter = session.adapters["https://"]
    assert type(adapter).__name__ == "_MutualTlsAdapter"
    mtls_context = adapter._ctx_poolmanager
    outlast.requests.mount(session, resolver=resolver_for(), policy=quick_policy())
    assert session.adapters["https://"] is adapter
    assert isinstance(adapter, outlast.requests.HTTPAdapter)
    assert adapter.poolmanager.connection_pool_kw["ssl_context"] is mtls_context
    name = unique_name("mtls")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend(cert=ca.issue_cert(name)) as server, session:
        assert session.get(f"https://{name}:{server.port}/").status_code == 200
        assert server.sni == [name]
    assert fault_dns.queries_for(name) >= 1  # dialled through outlast
