"""TLS stays exact through outlast's transports: SNI and verification use the hostname.

A real TLS server (trustme CA) behind a name served by a real DNS server on loopback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import httpx
import pytest
import trustme
from loopback_http import Backend, ConnectProxy, client_context

import outlast
from outlast import Resolver
from outlast.http import AsyncTransport, Transport
from outlast.testing import DNSServer


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 20:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def test_https_sni_and_host_are_the_name(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("tls")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend(cert=ca.issue_cert(name)) as server:
        transport = Transport(verify=client_context(ca), resolver=resolver_for())
        with httpx.Client(transport=transport) as client:
            first = client.get(f"https://{name}:{server.port}/a")
            second = client.get(f"https://{name}:{server.port}/b")
    assert first.status_code == 200
    assert second.text == "GET /b"
    assert server.sni == [name]  # one handshake, carrying the hostname
    assert server.connections == 1  # the pool, keyed by hostname, reused it
    assert server.requests[0][2]["host"] == f"{name}:{server.port}"
    assert str(first.request.url) == f"https://{name}:{server.port}/a"


def test_http2_over_tls(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("h2")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend(cert=ca.issue_cert(name)) as server:
        transport = Transport(verify=client_context(ca), http2=True, resolver=resolver_for())
        with httpx.Client(transport=transport) as client:
            response = client.get(f"https://{name}:{server.port}/two")
    assert response.http_version == "HTTP/2"
    assert response.text == "GET /two"
    assert server.sni == [name]


def test_plain_http(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("plain")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend() as server, httpx.Client(transport=Transport(resolver=resolver_for())) as client:
        response = client.post(f"http://{name}:{server.port}/p", content=b"x")
    assert response.text == "POST /p"
    assert server.requests[0][2]["host"] == f"{name}:{server.port}"


def test_async_https_and_http2(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("atls")
    fault_dns.set(name, ["127.0.0.1"])
    resolver = resolver_for()

    async def main(server: Backend) -> tuple[httpx.Response, httpx.Response]:
        ctx = client_context(ca)
        async with httpx.AsyncClient(transport=AsyncTransport(verify=ctx, resolver=resolver)) as c:
            one = await c.get(f"https://{name}:{server.port}/one")
        two_t = AsyncTransport(verify=ctx, http2=True, resolver=resolver)
        async with httpx.AsyncClient(transport=two_t) as c:
            two = await c.get(f"https://{name}:{server.port}/two")
        return one, two

    with Backend(cert=ca.issue_cert(name)) as server:
        one, two = asyncio.run(main(server))
    assert (one.http_version, one.text) == ("HTTP/1.1", "GET /one")
    assert (two.http_version, two.text) == ("HTTP/2", "GET /two")
    assert server.sni == [name, name]


def test_certificate_for_another_name_fails_sync(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("wrong")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend(cert=ca.issue_cert("someone-else.outlast.test")) as server:
        transport = Transport(verify=client_context(ca), resolver=resolver_for())
        with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError) as info:
            client.get(f"https://{name}:{server.port}/")
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(info.value))
    assert server.hits == 0
    assert server.connections == 1  # a certificate failure is not retried


def test_certificate_for_another_name_fails_async(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("awrong")
    fault_dns.set(name, ["127.0.0.1"])
    resolver = resolver_for()

    async def main(port: int) -> None:
        transport = AsyncTransport(verify=client_context(ca), resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"https://{name}:{port}/")

    with (
        Backend(cert=ca.issue_cert("someone-else.outlast.test")) as server,
        pytest.raises(httpx.ConnectError) as info,
    ):
        asyncio.run(main(server.port))
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(info.value))
    assert server.hits == 0
    assert server.connections == 1  # a certificate failure is not retried


def test_https_through_a_connect_proxy_keeps_the_target_name(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    # outlast resolves the proxy's name (the proxy tunnels to loopback by itself); TLS
    # inside the tunnel is with the target: its name in SNI, its certificate checked.
    name, wrong, proxy_name = unique_name("via"), unique_name("viawrong"), unique_name("proxy")
    for host in (name, wrong, proxy_name):
        fault_dns.set(host, ["127.0.0.1"])
    resolver = resolver_for()
    with (
        ConnectProxy() as proxy,
        Backend(cert=ca.issue_cert(name)) as server,
        Backend(cert=ca.issue_cert("someone-else.outlast.test")) as impostor,
    ):
        proxy_url = f"http://{proxy_name}:{proxy.port}"
        transport = Transport(verify=client_context(ca), resolver=resolver, proxy=proxy_url)
        with httpx.Client(transport=transport) as client:
            response = client.get(f"https://{name}:{server.port}/tunnelled")
            with pytest.raises(httpx.ConnectError) as info:
                client.get(f"https://{wrong}:{impostor.port}/")

        async def through_async() -> httpx.Response:
            atransport = AsyncTransport(
                verify=client_context(ca), resolver=resolver, proxy=proxy_url
            )
            async with httpx.AsyncClient(transport=atransport) as aclient:
                return await aclient.get(f"https://{name}:{server.port}/async")

        aresponse = asyncio.run(through_async())
    assert (response.text, aresponse.text) == ("GET /tunnelled", "GET /async")
    assert proxy.targets == [
        f"{name}:{server.port}",
        f"{wrong}:{impostor.port}",
        f"{name}:{server.port}",
    ]
    assert server.sni == [name, name]
    assert server.requests[0][2]["host"] == f"{name}:{server.port}"
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(info.value))
    assert impostor.sni == [wrong]
    assert impostor.hits == 0


def test_resolution_failure_is_an_httpx_connect_error(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("gone")
    fault_dns.nxdomain(name)
    policy = outlast.Policy(retry=outlast.Retry(attempts=1), breaker=None)
    transport = Transport(resolver=resolver_for(), policy=policy)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(f"http://{name}:9/")
    assert name in str(info.value)
    assert any(isinstance(e, outlast.ResolveError) for e in _chain(info.value))
    assert not isinstance(info.value, outlast.OutlastError)


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("form", ["trailing_dot", "idna"])
def test_sni_and_certificate_check_use_the_canonical_name(
    form: str,
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    # `https://svc.test.:PORT/` (absolute name) and `https://bücher.test/` (IDNA): the
    # certificate names `svc.test` / `xn--bcher-kva.test`; SNI and the hostname check
    # must use that form, as urllib3 does, while the URL and Host header stay as given.
    base = unique_name("dot")
    if form == "trailing_dot":
        canonical, in_url = base, base + "."
    else:
        in_url = "bücher-" + base
        canonical = httpx.URL(f"https://{in_url}/").raw_host.decode()
    fault_dns.set(canonical, ["127.0.0.1"])
    resolver = resolver_for()
    url_of = lambda port: f"https://{in_url}:{port}/x"  # noqa: E731

    async def main(port: int) -> httpx.Response:
        transport = AsyncTransport(verify=client_context(ca), resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(url_of(port))

    with Backend(cert=ca.issue_cert(canonical)) as server:
        if face == "sync":
            transport = Transport(verify=client_context(ca), resolver=resolver)
            with httpx.Client(transport=transport) as client:
                response = client.get(url_of(server.port))
        else:
            response = asyncio.run(main(server.port))
    assert response.status_code == 200
    assert server.sni == [canonical]
    raw = httpx.URL(url_of(server.port)).raw_host
    assert response.request.url.raw_host == raw  # the URL is never rewritten
    assert server.requests[0][2]["host"] == f"{raw.decode()}:{server.port}"


def test_a_trailing_dot_through_a_connect_proxy_verifies_the_canonical_name(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name, proxy_name = unique_name("dotvia"), unique_name("dotproxy")
    fault_dns.set(proxy_name, ["127.0.0.1"])
    with ConnectProxy() as proxy, Backend(cert=ca.issue_cert(name)) as server:
        transport = Transport(
            verify=client_context(ca),
            resolver=resolver_for(),
            proxy=f"http://{proxy_name}:{proxy.port}",
        )
        with httpx.Client(transport=transport) as client:
            response = client.get(f"https://{name}.:{server.port}/via")
    assert response.text == "GET /via"
    assert proxy.targets == [f"{name}.:{server.port}"]  # the URL's form, as httpx sends it
    assert server.sni == [name]
