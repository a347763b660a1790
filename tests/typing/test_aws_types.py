"""Exercised by ``mypy --strict`` (tests/typing/test_mypy.py): ``outlast.aws.wrap`` keeps types.

boto3-stubs gives each client its own class (``DynamoDBClient``); ``wrap`` returns the
client it was given, and its type says so. pytest collects this file too, so importing
it must do nothing: the calls sit in functions nobody runs.
"""

from __future__ import annotations

import sys
from typing import Any

import outlast.aws

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


class DynamoDBClient:
    """Stands in for boto3-stubs' ``mypy_boto3_dynamodb.DynamoDBClient``."""

    meta: Any

    def get_item(self, *, TableName: str, Key: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def keeps_the_client_type(client: DynamoDBClient) -> None:
    wrapped = outlast.aws.wrap(client, fallback_regions=["us-west-2"])
    assert_type(wrapped, DynamoDBClient)
    wrapped.get_item(TableName="t", Key={})
    wrapped.get_itme(TableName="t", Key={})  # type: ignore[attr-defined]


def an_untyped_client_stays_any(client: Any) -> None:
    assert_type(outlast.aws.wrap(client), Any)
