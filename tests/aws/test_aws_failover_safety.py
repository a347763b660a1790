"""Failover never hands a caller wrong data: consistent reads, "not found", bodies, recursion.

The matrix (operation kind x fault x fallback answer) and the invariant in every cell:
a caller gets either the primary's answer, a fallback's positive answer to a read that
may be served elsewhere, or the primary's own connection error; never a replica's
answer to a strongly consistent read (unless opted in), never a fallback's "not
found", never a truncated write, never a RecursionError.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from aws_helpers import DroppingServer, raw_client, refused_port

import outlast
import outlast.aws
from outlast import Event, Resolver
from outlast.aws import _failover
from outlast.testing import DNSServer

_KEY = {"pk": {"S": "k"}}


def _west(fault_dns: DNSServer, resolver: Resolver, port: int, service: str) -> Any:
    """A wrapped client in us-west-2 on moto, reached through a name the test DNS serves."""
    name = f"west-{service}.outlast.test"
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    if service == "s3":
        name = "127.0.0.1"  # moto reads a name's first label as a bucket
    client = raw_client(service, f"http://{name}:{port}", region="us-west-2")
    return outlast.aws.wrap(client, resolver=resolver)


def _table(client: Any, table: str, balance: str = "100") -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=table, Item={"pk": {"S": "k"}, "balance": {"N": balance}})


def _primary(resolver: Resolver, fallback: Any, **options: Any) -> tuple[Any, str]:
    url = f"http://127.0.0.1:{refused_port()}"
    client = outlast.aws.wrap(
        raw_client("dynamodb", url), resolver=resolver, fallback_clients=[fallback], **options
    )
    return client, url


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("get_item", {"Key": _KEY, "ConsistentRead": True}),
        (
            "query",
            {
                "KeyConditionExpression": "pk = :k",
                "ExpressionAttributeValues": {":k": {"S": "k"}},
                "ConsistentRead": True,
            },
        ),
        ("scan", {"ConsistentRead": True}),
    ],
)
def test_a_consistent_read_never_fails_over_by_default(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    operation: str,
    params: dict[str, Any],
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "dynamodb")
    table = unique_name("t").split(".")[0]
    _table(west, table)
    events: list[Event] = []
    primary, url = _primary(resolver_for(), west, listeners=[events.append])
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        getattr(primary, operation)(TableName=table, **params)
    assert url in str(caught.value)
    assert not [e for e in events if e.kind.startswith("aws.")]
    # The same read without ConsistentRead fails over, and says where it came from.
    eventual = {k: v for k, v in params.items() if k != "ConsistentRead"}
    answer = getattr(primary, operation)(TableName=table, **eventual)
    came_from = answer["ResponseMetadata"]["OutlastFailover"]
    assert came_from["Region"] == "us-west-2"
    assert url in came_from["Source"]


def test_a_consistent_read_fails_over_when_opted_in(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "dynamodb")
    table = unique_name("t").split(".")[0]
    _table(west, table)
    primary, _ = _primary(resolver_for(), west, failover_consistent_reads=True)
    answer = primary.get_item(TableName=table, Key=_KEY, ConsistentRead=True)
    assert answer["Item"]["balance"] == {"N": "100"}
    assert answer["ResponseMetadata"]["OutlastFailover"]["Region"] == "us-west-2"


def test_batch_get_item_stays_home_if_any_table_reads_consistently(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "dynamodb")
    first, second = unique_name("a").split(".")[0], unique_name("b").split(".")[0]
    _table(west, first)
    _table(west, second)
    primary, _ = _primary(resolver_for(), west)
    mixed = {first: {"Keys": [_KEY]}, second: {"Keys": [_KEY], "ConsistentRead": True}}
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        primary.batch_get_item(RequestItems=mixed)
    eventual = {first: {"Keys": [_KEY]}, second: {"Keys": [_KEY], "ConsistentRead": False}}
    answer = primary.batch_get_item(RequestItems=eventual)
    assert set(answer["Responses"]) == {first, second}


def test_a_fallbacks_not_found_raises_the_primarys_error(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "dynamodb")
    table = unique_name("t").split(".")[0]
    _table(west, table)
    events: list[Event] = []
    primary, url = _primary(resolver_for(), west, listeners=[events.append])
    # An item the replica lacks: no "Item" is not proof the primary lacks it.
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        primary.get_item(TableName=table, Key={"pk": {"S": "only-in-east"}})
    assert url in str(caught.value)
    # A table the fallback region lacks: not ResourceNotFoundException.
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        primary.describe_table(TableName="not-replicated")
    assert url in str(caught.value)
    reasons = [e.reason for e in events if e.kind == "aws.fallback_failed"]  # type: ignore[attr-defined]
    assert len(reasons) == 2
    assert all(reason.startswith("not found there") for reason in reasons)


def test_ssm_get_parameter_is_not_on_the_default_list_and_not_found_stays_unknown(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "ssm")
    url = f"http://127.0.0.1:{refused_port()}"
    events: list[Event] = []
    by_default = outlast.aws.wrap(
        raw_client("ssm", url),
        resolver=resolver_for(),
        fallback_clients=[west],
        listeners=[events.append],
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        by_default.get_parameter(Name="/exists/in/east")
    assert not [e for e in events if e.kind.startswith("aws.")]
    listed = outlast.aws.wrap(
        raw_client("ssm", url),
        resolver=resolver_for(),
        fallback_clients=[west],
        failover_operations=["GetParameter"],
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        listed.get_parameter(Name="/exists/in/east")  # ParameterNotFound in the west
    assert url in str(caught.value)


def _bucket(client: Any, name: str) -> None:
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})


def test_a_listed_write_sends_the_whole_body_to_the_fallback(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "s3")
    bucket = unique_name("bucket").split(".")[0]
    _bucket(west, bucket)
    payload = bytes(range(256)) * 782  # 200 192 bytes
    with DroppingServer() as dropping:
        primary = outlast.aws.wrap(
            raw_client("s3", f"http://127.0.0.1:{dropping.port}"),
            resolver=resolver_for(),
            fallback_clients=[west],
            failover_operations=["PutObject"],
        )
        answer = primary.put_object(Bucket=bucket, Key="blob", Body=io.BytesIO(payload))
        assert dropping.received
        assert all(size == len(payload) for size in dropping.received)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    stored = west.get_object(Bucket=bucket, Key="blob")["Body"].read()
    assert stored == payload


class _OneWayStream(io.RawIOBase):
    """A readable stream that cannot seek (a pipe, a socket, a generator's reader)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _SaysUnseekable(io.BytesIO):
    """A stream that declares it cannot be rewound (botocore's SigV4 over plain HTTP
    hashes a body with tell/read/seek whatever it declares, so a truly one-way body
    never reaches an http endpoint; over TLS it can)."""

    def seekable(self) -> bool:
        return False


def test_the_body_positions_are_taken_before_the_call() -> None:
    bodies = _failover._Bodies({"Body": io.BytesIO(b"abc"), "Key": "k", "Raw": b"bytes"})
    assert bodies.rewind()
    assert not _failover._Bodies({"Body": _OneWayStream(b"abc")}).rewind()
    moved = io.BytesIO(b"abcdef")
    moved.seek(2)
    kept = _failover._Bodies({"Body": moved})
    moved.read()
    assert kept.rewind()
    assert moved.tell() == 2


def test_a_body_that_cannot_be_rewound_never_fails_over(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west = _west(fault_dns, resolver_for(), moto_port, "s3")
    bucket = unique_name("bucket").split(".")[0]
    _bucket(west, bucket)
    events: list[Event] = []
    url = f"http://127.0.0.1:{refused_port()}"
    primary = outlast.aws.wrap(
        raw_client("s3", url),
        resolver=resolver_for(),
        fallback_clients=[west],
        failover_operations=["PutObject"],
        listeners=[events.append],
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        primary.put_object(
            Bucket=bucket, Key="oneway", Body=_SaysUnseekable(b"x" * 1000), ContentLength=1000
        )
    assert url in str(caught.value)
    reasons = [e.reason for e in events if e.kind == "aws.fallback_failed"]  # type: ignore[attr-defined]
    assert reasons == ["the request body cannot be rewound"]
    assert "Contents" not in west.list_objects_v2(Bucket=bucket)


def test_mutual_fallbacks_do_not_recurse(resolver_for: Callable[..., Resolver]) -> None:
    east_url = f"http://127.0.0.1:{refused_port()}"
    east_raw = raw_client("dynamodb", east_url)
    west_raw = raw_client("dynamodb", f"http://127.0.0.1:{refused_port()}", region="us-west-2")
    events: list[Event] = []
    east = outlast.aws.wrap(
        east_raw, resolver=resolver_for(), fallback_clients=[west_raw], listeners=[events.append]
    )
    outlast.aws.wrap(west_raw, resolver=resolver_for(), fallback_clients=[east])
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        east.get_item(TableName="t", Key=_KEY)
    assert url_in(east_url, caught.value)
    assert time.monotonic() - started < 30
    kinds = [e.kind for e in events if e.kind.startswith("aws.")]
    assert kinds == ["aws.failover", "aws.fallback_failed"]


def url_in(url: str, error: BaseException) -> bool:
    return url in str(error)


def test_a_fallback_region_runs_the_primarys_handlers(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique_name("anywhere")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://{name}:{moto_port}")
    table = unique_name("t").split(".")[0]
    _table(
        outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{moto_port}", region="eu-west-1"),
            resolver=resolver_for(),
        ),
        table,
    )
    primary_raw = raw_client("dynamodb", f"http://127.0.0.1:{refused_port()}")
    signed: list[str] = []

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-team"] = "payments"
        signed.append(request.url)

    primary_raw.meta.events.register("before-sign.dynamodb.GetItem", add_header)
    primary = outlast.aws.wrap(primary_raw, resolver=resolver_for(), fallback_regions=["eu-west-1"])
    assert primary.get_item(TableName=table, Key=_KEY)["Item"]
    assert signed[-1].startswith(f"http://{name}:{moto_port}")  # the fallback's request
    wrapped = outlast.aws.wrapped(primary)
    assert wrapped is not None
    built = wrapped.fallbacks[0].client()
    # botocore's own handlers are the fallback's, built for its region, not copies.
    carried = [h for _, _, h, _ in outlast.aws._handlers.user_handlers(built.meta.events)]
    assert carried.count(add_header) == 1
