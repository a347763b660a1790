"""Real boto3 against moto's server, reached through a name only the test DNS serves."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import pytest
from aws_helpers import raw_client

import outlast.aws
from outlast import Resolver
from outlast.testing import DNSServer


def _table(client: object, name: str) -> None:
    client.create_table(  # type: ignore[attr-defined]
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_dynamodb_create_put_get_through_the_test_dns(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    client = outlast.aws.wrap(
        raw_client("dynamodb", f"http://{name}:{moto_port}"), resolver=resolver_for()
    )
    _table(client, "things")
    client.put_item(TableName="things", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    item = client.get_item(TableName="things", Key={"pk": {"S": "a"}})["Item"]
    assert item == {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert fault_dns.queries_for(name) >= 1  # the name went through outlast's resolver


def test_get_item_keeps_working_while_the_record_goes_empty(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    resolver = resolver_for(min_ttl=0.2, max_ttl=0.2)
    client = outlast.aws.wrap(
        raw_client("dynamodb", f"http://{name}:{moto_port}"), resolver=resolver
    )
    _table(client, "outage")
    client.put_item(TableName="outage", Item={"pk": {"S": "k"}})
    # New connections each call: the name is resolved again and again during the outage.
    client._endpoint.http_session._manager.clear()
    failures: list[Exception] = []
    calls = 0
    before = fault_dns.queries_for(name)
    deadline = time.monotonic() + 2.0
    emptied = False
    while time.monotonic() < deadline and calls < 60:
        if not emptied and calls == 6:
            fault_dns.empty(name)
            emptied = True
        try:
            client.get_item(TableName="outage", Key={"pk": {"S": "k"}})["Item"]
        except Exception as exc:
            failures.append(exc)
        calls += 1
        client._endpoint.http_session._manager.clear()
        time.sleep(0.05)
    assert emptied
    assert calls >= 20
    assert failures == []
    assert fault_dns.queries_for(name) > before + 2  # the empty answers were seen, and distrusted
    assert resolver.resolve(name).addresses == ("127.0.0.1",)


def _s3_name(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A name for moto's S3 that moto reads as path-style (not as a bucket subdomain)."""
    name = unique_name("blobs")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", f"http://{name}:{moto_port}")
    return name


def test_s3_put_and_streamed_get_of_a_large_object(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _s3_name(fault_dns, unique_name, moto_port, monkeypatch)
    plain = raw_client("s3", f"http://127.0.0.1:{moto_port}")
    client = outlast.aws.wrap(
        raw_client("s3", f"http://{name}:{moto_port}"), resolver=resolver_for()
    )
    data = os.urandom(6 * 1024 * 1024 + 123)
    client.create_bucket(Bucket="outlast-big")
    client.put_object(Bucket="outlast-big", Key="blob", Body=io.BytesIO(data))
    response = client.get_object(Bucket="outlast-big", Key="blob")
    body = response["Body"]
    plain_body = plain.get_object(Bucket="outlast-big", Key="blob")["Body"]
    assert type(body) is type(plain_body)
    assert response["ContentLength"] == len(data)
    assert body.tell() == 0  # handed over unread, as without outlast
    assert plain_body.read(5) == data[:5]
    plain_body.close()
    received = bytearray()
    chunks = 0
    for chunk in body.iter_chunks(chunk_size=256 * 1024):
        received += chunk
        chunks += 1
    assert bytes(received) == data
    assert chunks > 1


def test_a_stream_closed_early_leaves_the_client_usable(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _s3_name(fault_dns, unique_name, moto_port, monkeypatch)
    client = outlast.aws.wrap(
        raw_client("s3", f"http://{name}:{moto_port}"), resolver=resolver_for()
    )
    client.create_bucket(Bucket="outlast-early")
    client.put_object(Bucket="outlast-early", Key="k", Body=b"x" * 2_000_000)
    body = client.get_object(Bucket="outlast-early", Key="k")["Body"]
    assert body.read(10) == b"x" * 10
    body.close()
    head = client.head_object(Bucket="outlast-early", Key="k")
    assert head["ContentLength"] == 2_000_000
