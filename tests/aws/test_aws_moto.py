"""Real boto3 against moto's server, reached through a name only the test DNS serves."""

from __future__ import annotations

from collections.abc import Callable

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
