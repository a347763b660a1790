"""outlast.Client / AsyncClient: httpx clients whose every transport is outlast's.

Proxies from the environment are kept (the proxy's name is resolved by outlast),
arguments pass through, the environment configures everything, OUTLAST_DISABLE=1 is
plain httpx.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import httpx
import pytest
import trustme
from loopback_http import Backend, ForwardProxy, client_context

import outlast
from outlast import Resolver
from outlast.http import AsyncClient, AsyncTransport, Client, Transport
from outlast.testing import DNSServer


@pytest.fixture
def outlast_env(monkeypatch: pytest.MonkeyPatch, fault_dns: DNSServer) -> DNSServer:
    """OUTLAST_* pointing the resolver at `fault_dns`; no proxy variables set."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", fault_dns.provider)
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "0.5")
    monkeypatch.delenv("OUTLAST_DISABLE", raising=False)
    return fault_dns


def test_http_proxy_from_the_environment_is_kept_and_its_name_resolved_by_outlast(
    outlast_env: DNSServer, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_name = unique_name("proxy")  # only the fault server knows this name
    outlast_env.set(proxy_name, ["127.0.0.1"])
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy_name}:{proxy.port}")
        with Client() as client:
            response = client.get("http://target.invalid/path")
            direct = client._transport_for_url(httpx.URL("https://target.invalid/"))
            proxied = client._transport_for_url(httpx.URL("http://target.invalid/"))
    assert response.text == "proxied http://target.invalid/path"
    assert proxy.targets == ["http://target.invalid/path"]
    assert isinstance(direct, Transport)
    assert isinstance(proxied, Transport)
    assert proxied is not direct
    assert proxied.resolver is direct.resolver  # one resolver for the whole client


def test_async_client_keeps_the_proxy_too(
    outlast_env: DNSServer, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_name = unique_name("aproxy")
    outlast_env.set(proxy_name, ["127.0.0.1"])

    async def main() -> str:
        async with AsyncClient() as client:
            assert isinstance(
                client._transport_for_url(httpx.URL("http://x.invalid/")), AsyncTransport
            )
            return (await client.get("http://target.invalid/a")).text

    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy_name}:{proxy.port}")
        text = asyncio.run(main())
    assert text == "proxied http://target.invalid/a"


def test_plain_httpx_with_a_transport_drops_the_proxy(
    outlast_env: DNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why outlast.Client exists: httpx ignores HTTP_PROXY once given transport=.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with httpx.Client(transport=Transport()) as client:
        assert not any(client._mounts.values())
    with Client() as client:
        assert any(client._mounts.values())


def test_client_passes_verify_and_http2_through(
    outlast_env: DNSServer, unique_name: Callable[[str], str], ca: trustme.CA
) -> None:
    name = unique_name("cli")
    outlast_env.set(name, ["127.0.0.1"])
    with Backend(cert=ca.issue_cert(name)) as server:
        with Client(verify=client_context(ca), http2=True) as client:
            response = client.get(f"https://{name}:{server.port}/")
        with Client(http2=True) as client, pytest.raises(httpx.ConnectError):
            client.get(f"https://{name}:{server.port}/")  # the system store does not trust it
    assert response.http_version == "HTTP/2"
    assert server.sni == [name, name]


def test_transport_with_no_arguments_reads_the_environment(
    outlast_env: DNSServer, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("OUTLAST_BREAKER_FAILURES", "7")
    name = unique_name("env")
    outlast_env.set(name, ["127.0.0.1"])
    transport = Transport()
    policy = transport.policy
    assert policy is not None
    assert policy.retry is not None
    assert policy.retry.attempts == 2
    assert policy.breaker is not None
    assert policy.breaker.failures == 7
    with Backend() as server, httpx.Client(transport=transport) as client:
        server.status = 503
        assert client.get(f"http://{name}:{server.port}/").status_code == 503
    assert server.hits == 2  # the HTTP classifiers are in: GET 503 retried, 2 attempts


def test_outlast_disable_is_plain_httpx(
    outlast_env: DNSServer, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("off")
    outlast_env.set(name, ["127.0.0.1"])
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    transport = Transport()
    assert transport.resolver is None
    assert transport.policy is None
    with Backend() as server:
        with httpx.Client(transport=transport) as client:
            # (Asking for `name` would send plain httpx to the machine's own DNS server,
            # beyond loopback; that the resolver is None shows it is not consulted.)
            assert client.get(f"http://localhost:{server.port}/").status_code == 200
        server.status = 503
        with Client() as client:
            assert client.get(f"http://127.0.0.1:{server.port}/").status_code == 503
    assert server.hits == 2  # no retries either


def test_outlast_disable_rescues_a_bad_configuration(
    outlast_env: DNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kill switch must work when the rest of the configuration is what broke.
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "zero")
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "soon")

    async def from_async(url: str) -> list[int]:
        async with (
            httpx.AsyncClient(transport=AsyncTransport()) as with_transport,
            AsyncClient() as client,
        ):
            return [
                (await with_transport.get(url)).status_code,
                (await client.get(url)).status_code,
            ]

    with Backend() as server:
        server.status = 503
        url = f"http://127.0.0.1:{server.port}/"
        with httpx.Client(transport=Transport()) as with_transport, Client() as client:
            statuses = [with_transport.get(url).status_code, client.get(url).status_code]
        statuses += asyncio.run(from_async(url))
    assert statuses == [503] * 4
    assert server.hits == 4  # plain httpx: no retries


@pytest.fixture
def resolvers_made(monkeypatch: pytest.MonkeyPatch) -> list[Resolver]:
    """Every resolver `Resolver.from_env` makes during the test."""
    made: list[Resolver] = []
    from_env = Resolver.from_env

    def recording(environ: object = None, **options: object) -> Resolver:
        resolver = from_env(environ, **options)  # type: ignore[arg-type]
        made.append(resolver)
        return resolver

    monkeypatch.setattr(Resolver, "from_env", recording)
    return made


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_a_client_given_a_transport_makes_no_resolver(
    outlast_env: DNSServer, resolvers_made: list[Resolver], client_class: type[httpx.Client]
) -> None:
    transport = httpx.AsyncHTTPTransport() if client_class is AsyncClient else httpx.HTTPTransport()
    client_class(transport=transport)  # type: ignore[arg-type]
    assert resolvers_made == []


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_a_client_whose_init_fails_leaves_no_resolver_running(
    outlast_env: DNSServer, resolvers_made: list[Resolver], client_class: type[httpx.Client]
) -> None:
    with pytest.raises(ValueError, match="URL"):  # httpx refuses the mount key after
        client_class(mounts={"not-a-pattern": None})  # building the default transport
    assert len(resolvers_made) == 1  # the process's shared resolver, made on first need
    made = weakref.ref(resolvers_made.pop())
    gc.collect()
    assert made() is None  # nothing holds it: freed, its thread (if any) stopped


def test_bad_arguments_say_what_was_expected() -> None:
    with pytest.raises(outlast.ConfigError, match="resolver"):
        Transport(resolver="udp://127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(outlast.ConfigError, match="policy"):
        AsyncTransport(policy=3)  # type: ignore[arg-type]
    with (
        Resolver(providers=["udp://127.0.0.1:9"]) as resolver,
        pytest.raises(outlast.ConfigError, match="eject_for"),
    ):
        Transport(eject_for=-1, resolver=resolver)
