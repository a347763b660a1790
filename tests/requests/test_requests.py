"""outlast.requests against real loopback servers: resolution, outage, TLS, retries, mount.

The fault space (layer x phase x fault) and the invariant in every cell:

- DNS (fresh / record gone empty / NXDOMAIN never seen good): a name seen good keeps
  being served; a name never seen fails as ``requests.ConnectionError``, no system lookup.
- dial (one address refuses / all refuse): the next address is dialled; all refusing is
  ``requests.ConnectionError`` after the policy's attempts, never more.
- TLS (right name / wrong name): SNI and the certificate check use the hostname; a
  wrong name is ``requests.exceptions.SSLError`` after exactly one attempt.
- response (503 storm, GET / POST; user ``max_retries`` none / int / Retry): attempts are
  ``min(outlast's, user's + 1)`` for GET, 1 for POST; urllib3 never adds its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import requests.adapters
import trustme
from loopback_http import Backend, ConnectProxy, ForwardProxy
from requests_helpers import quick_policy
from urllib3.util.retry import Retry as Urllib3Retry

import outlast.requests
from outlast import ConfigError, Event, Policy, Resolver
from outlast._dial import AddressFailed, FailedOver
from outlast.dns import EmptyAnswerDistrusted
from outlast.requests import CircuitOpenError, HTTPAdapter, Session, attempts_cap, mount
from outlast.testing import DNSServer


def _fresh(session: requests.Session) -> None:
    """Drop idle connections: the next request dials (and so resolves) again."""
    for adapter in session.adapters.values():
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        adapter.poolmanager.clear()


def test_get_resolves_through_outlast(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("get")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        response = session.get(f"http://{name}:{server.port}/x")
    assert response.status_code == 200
    assert response.text == "GET /x"
    assert fault_dns.queries_for(name) >= 1  # asked outlast's provider, not the system


def _replay(
    session: requests.Session, url: str, go_empty: Callable[[], None], seconds: float = 2.5
) -> list[int | str]:
    outcomes: list[int | str] = []
    timer = threading.Timer(0.4, go_empty)
    timer.start()
    start = time.monotonic()
    try:
        for _ in range(500):  # bounded
            if time.monotonic() - start >= seconds:
                break
            _fresh(session)
            try:
                outcomes.append(session.get(url, timeout=2).status_code)
            except requests.ConnectionError as exc:
                outcomes.append(type(exc).__name__)
            time.sleep(0.02)
    finally:
        timer.cancel()
    return outcomes


def test_empty_record_replay_outlast_stays_up_ttl_only_does_not(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    mine, theirs = unique_name("replay"), unique_name("replayttl")
    for name in (mine, theirs):
        fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[Event] = []
    resolver = resolver_for(listeners=[events.append], min_ttl=0.2, max_ttl=0.2)
    # The plain side: the same client, resolving by TTL alone (what a stub resolver does).
    ttl_only = resolver_for(min_ttl=0.2, max_ttl=0.2, keep_on_empty=0, stale_ttl=0)
    with Backend() as server:
        with Session(resolver=resolver, policy=policy) as session:
            outcomes = _replay(
                session, f"http://{mine}:{server.port}/", lambda: fault_dns.empty(mine)
            )
        with Session(resolver=ttl_only, policy=policy) as plain:
            plain_outcomes = _replay(
                plain, f"http://{theirs}:{server.port}/", lambda: fault_dns.empty(theirs)
            )
    assert len(outcomes) >= 20
    assert outcomes == [200] * len(outcomes)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)
    assert "ConnectionError" in plain_outcomes  # the replay does take a plain client down


def test_name_never_seen_fails_as_requests_connection_error(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("nx")
    session = Session(resolver=resolver_for(), policy=policy)
    with session, pytest.raises(requests.ConnectionError) as caught:
        session.get(f"http://{name}:9/")
    assert "NameResolutionError" in repr(caught.value) or "resolve" in str(caught.value)


def test_fails_over_to_the_next_address(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("failover")
    events: list[Event] = []
    with Backend() as server:
        # 127.0.0.2 refuses (nothing listens there on this port); 127.0.0.1 answers.
        fault_dns.set(name, ["127.0.0.2", "127.0.0.1"], ttl=30)
        session = Session(resolver=resolver_for(), policy=policy, listeners=[events.append])
        with session:
            # The answer's order is the DNS server's: put the answering address last, so
            # the refusing one is dialled first, whatever that order is.
            adapter = session.adapters["http://"]
            assert isinstance(adapter, HTTPAdapter)
            dialer = adapter._outlast.dialer
            assert dialer is not None
            dialer.outliers.failed("127.0.0.1", server.port)
            assert session.get(f"http://{name}:{server.port}/").status_code == 200
    assert any(isinstance(e, AddressFailed) and e.address == "127.0.0.2" for e in events)
    assert any(isinstance(e, FailedOver) and e.address == "127.0.0.1" for e in events)


# -- TLS --------------------------------------------------------------------------------


def test_tls_keeps_the_hostname(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SNI and the certificate check use the hostname; ``verify=`` beats REQUESTS_CA_BUNDLE."""
    name = unique_name("tls")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other.pem"))
    with Backend(cert=ca.issue_cert(name)) as server:
        with Session(resolver=resolver_for(), policy=policy, verify=ca_file) as session:
            response = session.get(f"https://{name}:{server.port}/")
        assert response.status_code == 200
        assert server.sni == [name]


def test_tls_wrong_name_fails_once(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("tlswrong")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend(cert=ca.issue_cert("someone-else.outlast.test")) as server:
        session = Session(resolver=resolver_for(), policy=policy, verify=ca_file)
        with session, pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://{name}:{server.port}/")
        assert server.connections == 1  # a certificate that does not verify is not retried


def test_requests_ca_bundle_works_as_in_requests(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests lets REQUESTS_CA_BUNDLE decide ``verify`` (over ``session.verify``): kept."""
    name = unique_name("bundle")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    server = Backend(cert=ca.issue_cert(name))
    with server, Session(resolver=resolver_for(), policy=policy) as session:
        assert session.get(f"https://{name}:{server.port}/").status_code == 200
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(Path(ca_file).with_name("none.pem")))
        _fresh(session)
        with pytest.raises((OSError, requests.exceptions.SSLError)):
            session.get(f"https://{name}:{server.port}/")


# -- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_retries", "expected"),
    [(None, 3), (Urllib3Retry(total=5, status_forcelist=[503]), 3), (1, 2), (0, 1)],
)
def test_503_storm_attempts_do_not_multiply(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    max_retries: int | Urllib3Retry | None,
    expected: int,
) -> None:
    name = unique_name("storm")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server:
        server.status = 503
        session = Session(resolver=resolver_for(), policy=quick_policy(), max_retries=max_retries)
        with session:
            response = session.get(f"http://{name}:{server.port}/")
        assert response.status_code == 503
        assert server.hits == expected


def test_post_is_not_repeated_after_a_503(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("post")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        server.status = 503
        assert session.post(f"http://{name}:{server.port}/", data=b"x").status_code == 503
        assert server.hits == 1


def test_a_503_then_200_is_retried_to_success(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("recover")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        server.script.extend([503, 502])
        assert session.get(f"http://{name}:{server.port}/").status_code == 200
        assert server.hits == 3


def test_open_breaker_raises_a_requests_connection_error(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("breaker")
    fault_dns.set(name, ["127.0.0.2"], ttl=30)  # nothing listens: every connect is refused
    session = Session(resolver=resolver_for(), policy=quick_policy(1, breaker=True))
    with session:
        for _ in range(2):
            with pytest.raises(requests.ConnectionError):
                session.get(f"http://{name}:9/")
        with pytest.raises(CircuitOpenError) as caught:
            session.get(f"http://{name}:9/")
    assert isinstance(caught.value, requests.ConnectionError)
    assert caught.value.name == f"http://{name}:9"


def test_http_proxy_name_resolves_through_outlast(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    proxy_name = unique_name("proxy")
    fault_dns.set(proxy_name, ["127.0.0.1"], ttl=30)
    with ForwardProxy() as proxy:
        proxies = {"http": f"http://{proxy_name}:{proxy.port}"}
        with Session(resolver=resolver_for(), policy=policy, proxies=proxies) as session:
            response = session.get("http://target.outlast.test/p")
    assert response.status_code == 200
    assert proxy.targets == ["http://target.outlast.test/p"]


def test_https_through_a_connect_proxy_keeps_tls_on_the_target_name(
    ca: trustme.CA,
    ca_file: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    """outlast resolves the proxy's name; the tunnel and TLS are to the target's name."""
    name, proxy_name = unique_name("tunnel"), unique_name("cproxy")
    fault_dns.set(proxy_name, ["127.0.0.1"], ttl=30)
    with Backend(cert=ca.issue_cert(name)) as server, ConnectProxy() as proxy:
        proxies = {"https": f"http://{proxy_name}:{proxy.port}"}
        session = Session(resolver=resolver_for(), policy=policy, proxies=proxies, verify=ca_file)
        with session:
            assert session.get(f"https://{name}:{server.port}/").status_code == 200
        assert proxy.targets == [f"{name}:{server.port}"]
        assert server.sni == [name]
    assert fault_dns.queries_for(name) == 0  # the target's name is the proxy's business


# -- mount ------------------------------------------------------------------------------


def test_mount_instruments_an_existing_session_in_place(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("mount")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    session = requests.Session()
    custom = requests.adapters.HTTPAdapter(max_retries=Urllib3Retry(total=1))
    session.mount("http://", custom)
    assert mount(session, resolver=resolver_for(), policy=quick_policy()) is session
    assert session.adapters["http://"] is custom
    assert isinstance(custom, HTTPAdapter)
    mount(session)  # idempotent: already instrumented adapters are left as they are
    with Backend() as server, session:
        server.status = 503
        assert session.get(f"http://{name}:{server.port}/").status_code == 503
        assert server.hits == 2  # the adapter's Retry(total=1) capped outlast's 3 attempts


def test_mount_keeps_an_adapter_subclass(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    seen: list[str] = []

    class Custom(requests.adapters.HTTPAdapter):
        def add_headers(self, request: requests.PreparedRequest, **kwargs: object) -> None:
            seen.append(request.url or "")

    name = unique_name("subclass")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    session = requests.Session()
    session.mount("http://", Custom())
    mount(session, resolver=resolver_for(), policy=policy)
    adapter = session.adapters["http://"]
    assert isinstance(adapter, Custom)
    assert isinstance(adapter, outlast.requests.HTTPAdapter)
    with Backend() as server, session:
        assert session.get(f"http://{name}:{server.port}/").status_code == 200
    assert seen == [f"http://{name}:{server.port}/"]


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="session"):
        mount("not a session")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="verifyy"):
        Session(verifyy=False)
    with pytest.raises(ConfigError, match="max_retries"):
        HTTPAdapter(max_retries=-1)
    with pytest.raises(ConfigError, match="resolver"):
        HTTPAdapter(resolver="8.8.8.8")  # type: ignore[arg-type]


def test_disabled_is_plain_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    adapter = HTTPAdapter(max_retries=2)
    assert adapter.resolver is None
    assert adapter.policy is None
    assert adapter.max_retries.total == 2  # urllib3 retries as requests would
    with Backend() as server, Session() as session:
        server.status = 503
        assert session.get(f"http://127.0.0.1:{server.port}/").status_code == 503
        assert server.hits == 1


@pytest.mark.parametrize(
    ("value", "cap"),
    [
        (None, None),
        (0, 1),
        (3, 4),
        (Urllib3Retry(total=False), 1),
        (Urllib3Retry(total=2), 3),
        (Urllib3Retry(total=None, connect=4, read=1), 5),
        (Urllib3Retry(total=None), None),
    ],
)
def test_attempts_cap(value: object, cap: int | None) -> None:
    assert attempts_cap(value) == cap
