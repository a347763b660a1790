"""aiobotocore through outlast.aws.wrap: the same resolver, policy and failover, awaited.

Against moto's server on loopback (and a counting server answering 500). Matrix:
fault (record empty, 500 storm, primary refused) x call kind (eventual read,
consistent read, write) x client (plain aiobotocore, wrapped). Invariants: a wrapped
client rides through the empty record (100 % of calls), makes at most the policy's
attempts per call against a 500 (no multiplication with aiobotocore's retries), and
fails over exactly as a boto3 client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import botocore.exceptions
import dns.resolver
import pytest
from aws_helpers import CountingServer, refused_port

import outlast
import outlast.aws
from outlast import Event, Policy, Resolver, Retry
from outlast.testing import DNSServer

aiobotocore_session = pytest.importorskip("aiobotocore.session")
aiobotocore_config = pytest.importorskip("aiobotocore.config")
aiohttp_abc = pytest.importorskip("aiohttp.abc")

_KEY = {"pk": {"S": "k"}}


@contextlib.asynccontextmanager
async def _client(
    url: str, *, region: str = "us-east-1", attempts: int | None = None, **connector: Any
) -> AsyncIterator[Any]:
    config = aiobotocore_config.AioConfig(
        connect_timeout=2,
        read_timeout=10,
        retries=None if attempts is None else {"mode": "standard", "total_max_attempts": attempts},
        connector_args={"force_close": True, "keepalive_timeout": None, **connector},
    )
    session = aiobotocore_session.get_session()
    async with session.create_client(
        "dynamodb", endpoint_url=url, region_name=region, config=config
    ) as client:
        yield client


async def _table(client: Any, table: str) -> None:
    await client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    await client.put_item(TableName=table, Item={"pk": {"S": "k"}, "balance": {"N": "100"}})


class _StubResolver(aiohttp_abc.AbstractResolver):  # type: ignore[misc,name-defined]
    """What a plain client does: ask the DNS server, no cache of its own (dnspython stub)."""

    def __init__(self, server: DNSServer) -> None:
        self._stub = dns.resolver.Resolver(configure=False)
        self._stub.nameservers = [server.address]
        self._stub.nameserver_ports = {server.address: server.port}
        self._stub.lifetime = 1.0

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        try:
            answer = await asyncio.to_thread(self._stub.resolve, host, "A")
        except dns.exception.DNSException as exc:
            raise OSError(socket.EAI_NONAME, str(exc)) from exc
        return [
            {
                "hostname": host,
                "host": r.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for r in answer
        ]

    async def close(self) -> None:
        return None


def test_the_empty_record_replay_wrapped_vs_plain(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    table = unique_name("t").split(".")[0]

    async def main() -> tuple[int, int, int]:
        url = f"http://{name}:{moto_port}"
        async with (
            _client(url) as wrapped,
            # One attempt: its legacy retries would make each failing call last 25.6 s.
            _client(url, attempts=1, resolver=_StubResolver(fault_dns), ttl_dns_cache=1) as plain,
        ):
            outlast.aws.wrap(wrapped, resolver=resolver_for(min_ttl=1, max_ttl=1))
            await _table(wrapped, table)
            await plain.get_item(TableName=table, Key=_KEY)
            fault_dns.empty(name)
            calls, wrapped_ok, plain_ok = 30, 0, 0
            for _ in range(calls):  # 30 calls over ~3 s of empty record
                await asyncio.sleep(0.1)
                with contextlib.suppress(botocore.exceptions.BotoCoreError):
                    wrapped_ok += "Item" in await wrapped.get_item(TableName=table, Key=_KEY)
                with contextlib.suppress(botocore.exceptions.BotoCoreError):
                    plain_ok += "Item" in await plain.get_item(TableName=table, Key=_KEY)
            return calls, wrapped_ok, plain_ok

    calls, wrapped_ok, plain_ok = asyncio.run(main())
    assert wrapped_ok == calls  # 100 %
    assert plain_ok < calls // 2  # aiohttp's 1 s cache expires, then the empty answer


def test_a_500_storm_makes_the_policys_attempts_only(
    resolver_for: Callable[..., Resolver],
) -> None:
    policy = Policy(retry=Retry(attempts=3, base=0.001), budget=None, breaker=None)

    async def main(port: int) -> None:
        async with _client(f"http://127.0.0.1:{port}") as client:
            outlast.aws.wrap(client, resolver=resolver_for(), policy=policy)
            for _ in range(3):
                with pytest.raises(botocore.exceptions.ClientError) as caught:
                    await client.get_item(TableName="t", Key=_KEY)
                metadata = caught.value.response["ResponseMetadata"]
                assert metadata["HTTPStatusCode"] == 500
                assert metadata["RetryAttempts"] == 2

    with CountingServer(500) as server:
        asyncio.run(main(server.port))
    # aiobotocore alone makes up to 10 per DynamoDB call (legacy mode); multiplied, 30.
    assert server.hits == 3 * 3


def test_an_open_breaker_refuses_without_a_request(
    resolver_for: Callable[..., Resolver],
) -> None:
    policy = Policy(
        retry=Retry(attempts=1),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60),
    )

    async def main(port: int) -> int:
        async with _client(f"http://127.0.0.1:{port}") as client:
            outlast.aws.wrap(client, resolver=resolver_for(), policy=policy)
            refused = 0
            for _ in range(5):
                try:
                    await client.get_item(TableName="t", Key=_KEY)
                except outlast.aws.CircuitOpenError:
                    refused += 1
                except botocore.exceptions.ClientError:
                    pass
            return refused

    with CountingServer(503) as server:
        assert asyncio.run(main(server.port)) == 3
    assert server.hits == 2


def test_failover_rules_hold_for_aiobotocore(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    name = unique_name("west")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    table = unique_name("t").split(".")[0]
    events: list[Event] = []

    async def main() -> None:
        async with (
            _client(f"http://{name}:{moto_port}", region="us-west-2") as west,
            _client(f"http://127.0.0.1:{refused_port()}") as primary,
        ):
            outlast.aws.wrap(west, resolver=resolver_for())
            await _table(west, table)
            outlast.aws.wrap(
                primary,
                resolver=resolver_for(),
                fallback_clients=[west],
                listeners=[events.append],
            )
            answer = await primary.get_item(TableName=table, Key=_KEY)
            assert answer["ResponseMetadata"]["OutlastFailover"]["Region"] == "us-west-2"
            with pytest.raises(botocore.exceptions.EndpointConnectionError):
                await primary.get_item(TableName=table, Key=_KEY, ConsistentRead=True)
            with pytest.raises(botocore.exceptions.EndpointConnectionError):
                await primary.get_item(TableName=table, Key={"pk": {"S": "only-east"}})
            with pytest.raises(botocore.exceptions.EndpointConnectionError):
                await primary.put_item(TableName=table, Item={"pk": {"S": "w"}})

    asyncio.run(main())
    kinds = [e.kind for e in events if e.kind.startswith("aws.")]
    assert kinds == ["aws.failover", "aws.failover", "aws.fallback_failed"]


def test_fallback_regions_are_a_config_error_for_aiobotocore(
    resolver_for: Callable[..., Resolver],
) -> None:
    async def main() -> None:
        async with _client(f"http://127.0.0.1:{refused_port()}") as client:
            with pytest.raises(outlast.ConfigError, match="fallback_regions"):
                outlast.aws.wrap(client, resolver=resolver_for(), fallback_regions=["us-west-2"])

    asyncio.run(main())


@pytest.mark.parametrize(
    ("chaos", "error", "fault"),
    [
        ("connect_refused=1.0", botocore.exceptions.EndpointConnectionError, "connect_refused"),
        ("connect_timeout=1.0", botocore.exceptions.ConnectTimeoutError, "connect_timeout"),
        ("http_503=1.0", botocore.exceptions.ClientError, "http_503"),
        ("latency=5@1.0", botocore.exceptions.ReadTimeoutError, "latency"),
    ],
)
def test_chaos_reaches_aiobotocore(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
    chaos: str,
    error: type[Exception],
    fault: str,
) -> None:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    monkeypatch.setenv("OUTLAST_CHAOS", chaos)
    monkeypatch.setenv("OUTLAST_RETRY_BASE", "0.01")
    events: list[Event] = []

    async def main() -> None:
        config = aiobotocore_config.AioConfig(connect_timeout=0.2, read_timeout=0.2)
        async with aiobotocore_session.get_session().create_client(
            "dynamodb", endpoint_url=f"http://{name}:{moto_port}", config=config
        ) as client:
            outlast.aws.wrap(client, resolver=resolver_for(), listeners=[events.append])
            with pytest.raises(error) as caught:
                await client.list_tables()
            if isinstance(caught.value, botocore.exceptions.ClientError):
                assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    asyncio.run(main())
    injected = [e for e in events if e.kind == "chaos.injected"]
    assert len(injected) >= 2  # the policy retried: every attempt met the fault
    assert {e.fault for e in injected} == {fault}  # type: ignore[attr-defined]
