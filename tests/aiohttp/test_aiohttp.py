"""outlast.aiohttp against real loopback servers: resolution, outage, TLS, retries.

The fault space (layer x phase x fault) and the invariant in every cell:

- DNS (fresh / record gone empty / never seen good): a name seen good keeps being
  served through the outage (aiohttp's own DNS cache is off, so nothing stale hides a
  change either way); a name never seen is ``aiohttp.ClientConnectorDNSError``.
- TLS (right name / wrong name): the server name and certificate check are the
  hostname's; a wrong name fails once, ``ClientConnectorCertificateError``.
- response (503 storm, GET / POST): GET makes outlast's attempts, no more; POST one.
- breaker open: ``outlast.aiohttp.CircuitOpenError``, an ``aiohttp.ClientConnectionError``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable

import aiohttp
import pytest
import trustme
from aiohttp_helpers import quick_policy
from loopback_http import Backend

from outlast import ConfigError, Event, Policy, Resolver
from outlast.aiohttp import CircuitOpenError, ClientSession
from outlast.aiohttp import Resolver as AiohttpResolver
from outlast.dns import EmptyAnswerDistrusted
from outlast.testing import DNSServer

FRESH = {"force_close": True}  # every request dials, so resolves


def test_resolver_results_carry_the_hostname(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("rr")
    fault_dns.set(name, ["127.0.0.1", "::1"], ttl=30)

    async def main() -> None:
        resolver = AiohttpResolver(resolver_for())
        both = await resolver.resolve(name, 443, socket.AF_UNSPEC)
        assert {r["host"] for r in both} == {"127.0.0.1", "::1"}
        assert all(r["hostname"] == name and r["port"] == 443 for r in both)
        v4 = await resolver.resolve(name, 443, socket.AF_INET)
        assert [(r["host"], r["family"]) for r in v4] == [("127.0.0.1", socket.AF_INET)]
        with pytest.raises(socket.gaierror):
            await resolver.resolve(unique_name("nx"), 443)
        await resolver.close()

    asyncio.run(main())


def test_get_resolves_through_outlast_and_the_dns_cache_is_off(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("get")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)

    async def main(port: int) -> tuple[int, str, bool]:
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            connector = session.connector
            assert isinstance(connector, aiohttp.TCPConnector)
            async with session.get(f"http://{name}:{port}/x") as response:
                return response.status, await response.text(), connector.use_dns_cache

    with Backend() as server:
        status, text, cached = asyncio.run(main(server.port))
    assert (status, text, cached) == (200, "GET /x", False)
    assert fault_dns.queries_for(name) >= 1


async def _replay(
    session: aiohttp.ClientSession, url: str, go_empty: Callable[[], None], seconds: float = 2.5
) -> list[int | str]:
    outcomes: list[int | str] = []
    start = time.monotonic()
    emptied = False
    for _ in range(500):  # bounded
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        if not emptied and elapsed >= 0.4:
            go_empty()
            emptied = True
        try:
            async with session.get(url) as response:
                outcomes.append(response.status)
        except aiohttp.ClientConnectionError as exc:
            outcomes.append(type(exc).__name__)
        await asyncio.sleep(0.02)
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
    ttl_only = resolver_for(min_ttl=0.2, max_ttl=0.2, keep_on_empty=0, stale_ttl=0)

    async def main(port: int) -> tuple[list[int | str], list[int | str]]:
        async with ClientSession(
            resolver=resolver, policy=policy, connector_options=FRESH
        ) as session:
            outcomes = await _replay(
                session, f"http://{mine}:{port}/", lambda: fault_dns.empty(mine)
            )
        async with ClientSession(
            resolver=ttl_only, policy=policy, connector_options=FRESH
        ) as plain:
            plain_outcomes = await _replay(
                plain, f"http://{theirs}:{port}/", lambda: fault_dns.empty(theirs)
            )
        return outcomes, plain_outcomes

    with Backend() as server:
        outcomes, plain_outcomes = asyncio.run(main(server.port))
    assert len(outcomes) >= 20
    assert outcomes == [200] * len(outcomes)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)
    assert "ClientConnectorDNSError" in plain_outcomes


def _tls_get(
    url: str, ctx: ssl.SSLContext, resolver: Resolver, policy: Policy
) -> int | BaseException:
    async def main() -> int | BaseException:
        session = ClientSession(resolver=resolver, policy=policy, connector_options={"ssl": ctx})
        async with session:
            try:
                async with session.get(url) as response:
                    return response.status
            except aiohttp.ClientError as exc:
                return exc

    return asyncio.run(main())


def test_tls_keeps_the_hostname(
    ca: trustme.CA,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("tls")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with Backend(cert=ca.issue_cert(name)) as server:
        assert _tls_get(f"https://{name}:{server.port}/", ctx, resolver_for(), policy) == 200
        assert server.sni == [name]


def test_tls_wrong_name_fails_once(
    ca: trustme.CA,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("tlswrong")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with Backend(cert=ca.issue_cert("someone-else.outlast.test")) as server:
        outcome = _tls_get(f"https://{name}:{server.port}/", ctx, resolver_for(), policy)
        assert isinstance(outcome, aiohttp.ClientConnectorCertificateError)
        assert server.connections == 1


@pytest.mark.parametrize(("method", "expected"), [("GET", 3), ("POST", 1)])
def test_503_storm_attempts_do_not_multiply(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
    method: str,
    expected: int,
) -> None:
    name = unique_name("storm")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)

    async def main(port: int) -> int:
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            response = await session.request(method, f"http://{name}:{port}/", data=b"x")
            async with response:
                return response.status

    with Backend() as server:
        server.status = 503
        assert asyncio.run(main(server.port)) == 503
        assert server.hits == expected


def test_a_503_then_200_is_retried_to_success(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    name = unique_name("recover")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)

    async def main(port: int) -> tuple[int, str]:
        async with (
            ClientSession(resolver=resolver_for(), policy=policy) as session,
            session.get(f"http://{name}:{port}/") as response,
        ):
            return response.status, await response.text()

    with Backend() as server:
        server.script.extend([503, 504])
        assert asyncio.run(main(server.port)) == (200, "GET /")
        assert server.hits == 3


def test_open_breaker_raises_an_aiohttp_connection_error(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("breaker")
    fault_dns.set(name, ["127.0.0.2"], ttl=30)  # nothing listens: every connect is refused

    async def main() -> BaseException:
        policy = quick_policy(1, breaker=True)
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            for _ in range(2):
                with pytest.raises(aiohttp.ClientConnectorError):
                    await session.get(f"http://{name}:9/")
            with pytest.raises(CircuitOpenError) as caught:
                await session.get(f"http://{name}:9/")
            return caught.value

    error = asyncio.run(main())
    assert isinstance(error, aiohttp.ClientConnectionError)
    assert isinstance(error, CircuitOpenError)
    assert error.name == f"http://{name}:9"


def test_bad_arguments_are_config_errors() -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="connector"):
            ClientSession(connector=aiohttp.TCPConnector())
        with pytest.raises(ConfigError, match="use_dns_cache"):
            ClientSession(connector_options={"use_dns_cache": True})
        with pytest.raises(ConfigError, match="resolver"):
            AiohttpResolver("1.1.1.1")  # type: ignore[arg-type]

    asyncio.run(main())


def test_a_moved_record_is_followed_without_aiohttps_10s_cache(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    policy: Policy,
) -> None:
    """aiohttp's connector would hold the old address for 10 s; outlast's session does not."""
    name = unique_name("moved")
    resolver = resolver_for(min_ttl=0.2, max_ttl=0.2)

    async def main(port: int) -> float | None:
        session = ClientSession(resolver=resolver, policy=policy, connector_options=FRESH)
        async with session:
            async with session.get(f"http://{name}:{port}/") as response:
                assert response.status == 200
            fault_dns.set(name, ["127.0.0.3"], ttl=1)  # the record moves
            start = time.monotonic()
            for _ in range(100):  # bounded: 5 s
                async with session.get(f"http://{name}:{port}/") as response:
                    if response.status == 200 and new.hits:
                        return time.monotonic() - start
                await asyncio.sleep(0.05)
        return None

    with Backend(address="127.0.0.2") as old, Backend(address="127.0.0.3", port=old.port) as new:
        fault_dns.set(name, ["127.0.0.2"], ttl=1)
        moved_after = asyncio.run(main(old.port))
    assert moved_after is not None
    assert moved_after < 5  # aiohttp's own cache would have kept 127.0.0.2 for 10 s
