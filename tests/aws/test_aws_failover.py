"""Region failover: the primary's port refuses connections, a client in another region answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from aws_helpers import raw_client, refused_port

import outlast
import outlast.aws
from outlast import Event, Resolver
from outlast.testing import DNSServer

_KEY = {"pk": {"S": "k"}}


def _table_with_item(client: Any, table: str) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=table, Item={"pk": {"S": "k"}, "where": {"S": "west"}})


def test_reads_fail_over_to_another_region_and_writes_do_not(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary_name, west_name = unique_name("east"), unique_name("west")
    fault_dns.set(primary_name, ["127.0.0.1"], ttl=60)
    fault_dns.set(west_name, ["127.0.0.1"], ttl=60)
    resolver = resolver_for()
    west = outlast.aws.wrap(
        raw_client("dynamodb", f"http://{west_name}:{moto_port}", region="us-west-2"),
        resolver=resolver,
    )
    _table_with_item(west, "failover")
    events: list[Event] = []
    primary = outlast.aws.wrap(
        raw_client("dynamodb", f"http://{primary_name}:{refused_port()}"),
        resolver=resolver,
        fallback_clients=[west],
        listeners=[events.append],
    )
    caplog.set_level(logging.WARNING, logger="outlast.aws")
    served = 0
    for _ in range(20):
        try:
            item = primary.get_item(TableName="failover", Key=_KEY)["Item"]
        except botocore.exceptions.BotoCoreError:
            continue
        served += item["where"] == {"S": "west"}
    assert served >= 19
    failovers = [e for e in events if isinstance(e, outlast.aws.FailedOver)]
    assert len(failovers) >= 19
    assert failovers[0].operation == "GetItem"
    assert "us-west-2" in failovers[0].target
    logged = [r for r in caplog.records if getattr(r, "outlast_event", None) == "aws.failover"]
    assert logged
    assert logged[0].outlast_operation == "GetItem"  # type: ignore[attr-defined]

    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        primary.put_item(TableName="failover", Item={"pk": {"S": "written"}})
    assert "Item" not in west.get_item(TableName="failover", Key={"pk": {"S": "written"}})
    assert not [
        e for e in events if isinstance(e, outlast.aws.FailedOver) and e.operation == "PutItem"
    ]


def test_a_listed_write_fails_over(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
) -> None:
    west_name = unique_name("west")
    fault_dns.set(west_name, ["127.0.0.1"], ttl=60)
    west = raw_client("dynamodb", f"http://{west_name}:{moto_port}", region="us-west-2")
    west = outlast.aws.wrap(west, resolver=resolver_for())
    _table_with_item(west, "listed")
    primary = outlast.aws.wrap(
        raw_client("dynamodb", f"http://127.0.0.1:{refused_port()}"),
        resolver=resolver_for(),
        fallback_clients=[west],
        failover_operations=["put_item", "GetItem"],
    )
    primary.put_item(TableName="listed", Item={"pk": {"S": "moved"}})
    assert "Item" in west.get_item(TableName="listed", Key={"pk": {"S": "moved"}})
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        primary.describe_table(TableName="listed")  # read-only, but not on the given list


def test_a_fallback_region_is_built_like_the_primary(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique_name("anywhere")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    # A client built for a region by name gets botocore's endpoint for it; here the
    # service-wide endpoint variable points every region's endpoint at moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://{name}:{moto_port}")
    west = raw_client("dynamodb", f"http://{name}:{moto_port}", region="eu-west-1")
    _table_with_item(outlast.aws.wrap(west, resolver=resolver_for()), "regional")
    primary = outlast.aws.wrap(
        raw_client("dynamodb", f"http://127.0.0.1:{refused_port()}", connect_timeout=1.5),
        resolver=resolver_for(),
        fallback_regions=["eu-west-1"],
    )
    item = primary.get_item(TableName="regional", Key=_KEY)["Item"]
    assert item["where"] == {"S": "west"}
    wrapped = outlast.aws.wrapped(primary)
    assert wrapped is not None
    built = wrapped.fallbacks[0].client()
    assert built.meta.region_name == "eu-west-1"
    assert built.meta.config.connect_timeout == 1.5
    assert built._request_signer._credentials is primary._request_signer._credentials
    assert outlast.aws.wrapped(built) is not None  # DNS and breakers there too


def test_when_every_fallback_fails_the_primarys_error_is_raised(
    resolver_for: Callable[..., Resolver],
) -> None:
    fallback = outlast.aws.wrap(
        raw_client("dynamodb", f"http://127.0.0.1:{refused_port()}", region="us-west-2"),
        resolver=resolver_for(),
    )
    events: list[Event] = []
    primary_url = f"http://127.0.0.1:{refused_port()}"
    primary = outlast.aws.wrap(
        raw_client("dynamodb", primary_url),
        resolver=resolver_for(),
        fallback_clients=[fallback],
        listeners=[events.append],
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        primary.get_item(TableName="t", Key=_KEY)
    assert primary_url in str(caught.value)
    kinds = [e.kind for e in events if e.kind.startswith("aws.")]
    assert kinds == ["aws.failover", "aws.fallback_failed"]


def test_a_fallback_region_that_cannot_be_built_is_skipped(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique_name("anywhere")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://{name}:{moto_port}")
    west = raw_client("dynamodb", f"http://{name}:{moto_port}", region="eu-west-1")
    _table_with_item(outlast.aws.wrap(west, resolver=resolver_for()), "skipped")
    events: list[Event] = []
    primary_url = f"http://127.0.0.1:{refused_port()}"
    # botocore refuses to build a client for "not a region!" (InvalidRegionError).
    primary = outlast.aws.wrap(
        raw_client("dynamodb", primary_url),
        resolver=resolver_for(),
        fallback_regions=["not a region!", "eu-west-1"],
        listeners=[events.append],
    )
    item = primary.get_item(TableName="skipped", Key=_KEY)["Item"]
    assert item["where"] == {"S": "west"}
    failed = [e for e in events if e.kind == "aws.fallback_failed"]
    assert len(failed) == 1
    assert failed[0].target == "region not a region!"  # type: ignore[attr-defined]
    assert failed[0].reason.startswith("InvalidRegionError")  # type: ignore[attr-defined]
    kinds = [e.kind for e in events if e.kind.startswith("aws.")]
    assert kinds == ["aws.fallback_failed", "aws.failover"]

    alone = outlast.aws.wrap(
        raw_client("dynamodb", primary_url),
        resolver=resolver_for(),
        fallback_regions=["not a region!"],
    )
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as caught:
        alone.get_item(TableName="skipped", Key=_KEY)
    assert primary_url in str(caught.value)  # the primary's error, not the build's


def test_an_unknown_operation_on_the_list_is_a_config_error(
    resolver_for: Callable[..., Resolver],
) -> None:
    with pytest.raises(outlast.ConfigError, match="failover_operations"):
        outlast.aws.wrap(
            raw_client("dynamodb", "http://127.0.0.1:1"),
            resolver=resolver_for(),
            fallback_regions=["us-west-2"],
            failover_operations=["get_itme"],
        )
