"""The failover invariant, over every script of primary and fallback answers (hypothesis).

Cells: operation (allow-listed eventual read, consistent read, listed write with a
seekable / one-way body, not listed) x primary (answers, connection error) x each
fallback (answers an item, answers without an item, "not found", another error
response, connection error). Invariant in every cell: the caller gets the primary's
answer, or a fallback's positive answer to a call that may fail over (marked with
where it came from), or a non-"not found" error response of a fallback, or the
primary's own connection error; a fallback is never asked to fail over again.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import botocore.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from outlast._events import Emitter
from outlast.aws._failover import Failover, Fallback

_PRIMARY_DOWN = botocore.exceptions.EndpointConnectionError(endpoint_url="http://east/")


class _Meta:
    def __init__(self, region: str) -> None:
        self.region_name = region
        self.endpoint_url = f"http://{region}/"
        self.service_model = type("M", (), {"service_name": "dynamodb"})()


class _Client:
    """A client whose one call answers from a script: a dict, or an exception to raise."""

    def __init__(self, region: str, answer: Any) -> None:
        self.meta = _Meta(region)
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _make_api_call(self, operation: str, params: dict[str, Any]) -> Any:
        self.calls.append((operation, params))
        body = params.get("Body")
        if body is not None:
            body.read()  # every endpoint reads the body it is sent
        if isinstance(self.answer, Exception):
            raise self.answer
        return {**self.answer, "ResponseMetadata": {"HTTPStatusCode": 200}}


def _error(code: str, status: int) -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "GetItem")


class _OneWay(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return 0


_FALLBACK_ANSWERS = st.sampled_from(
    [
        "item",
        "no-item",
        "not-found",
        "throttled",
        "down",
    ]
)
_CALLS = st.sampled_from(
    [
        ("GetItem", {"Key": {}}, True),
        ("GetItem", {"Key": {}, "ConsistentRead": True}, False),
        ("Query", {"ConsistentRead": True}, False),
        ("BatchGetItem", {"RequestItems": {"t": {"Keys": [], "ConsistentRead": True}}}, False),
        ("PutObject-seekable", {}, True),
        ("PutObject-oneway", {}, False),
        ("PutItem", {}, False),
    ]
)


def _answer(kind: str) -> Any:
    return {
        "item": {"Item": {"pk": {"S": "k"}}},
        "no-item": {},
        "not-found": _error("ResourceNotFoundException", 400),
        "throttled": _error("ThrottlingException", 400),
        "down": botocore.exceptions.ConnectTimeoutError(endpoint_url="http://west/"),
    }[kind]


@settings(max_examples=300, deadline=None)
@given(
    call=_CALLS,
    primary_up=st.booleans(),
    fallbacks=st.lists(_FALLBACK_ANSWERS, min_size=1, max_size=3),
)
def test_a_caller_never_gets_wrong_data(
    call: tuple[str, dict[str, Any], bool], primary_up: bool, fallbacks: list[str]
) -> None:
    name, params, may_move = call
    operation = "PutObject" if name.startswith("PutObject") else name
    params = dict(params)
    if name == "PutObject-seekable":
        params["Body"] = io.BytesIO(b"x" * 100)
    elif name == "PutObject-oneway":
        params["Body"] = _OneWay()
    primary = _Client("us-east-1", {"Item": {"from": "east"}} if primary_up else _PRIMARY_DOWN)
    others = [_Client(f"us-west-{index}", _answer(kind)) for index, kind in enumerate(fallbacks)]
    # Every fallback is itself a client that would fail over back to the primary.
    for other in others:
        other._make_api_call = Failover(  # type: ignore[method-assign]
            other,
            [Fallback(client=primary, label="east")],
            lambda _: True,
            Emitter(logging.getLogger("test"), ()),
        ).make_api_call
    failover = Failover(
        primary,
        [Fallback(client=other, label=other.meta.region_name) for other in others],
        {"GetItem", "Query", "BatchGetItem", "PutObject"}.__contains__,
        Emitter(logging.getLogger("test"), ()),
    )
    try:
        result: Any = failover.make_api_call(operation, params)
    except Exception as exc:  # the invariant looks at what came out
        result = exc

    if primary_up:
        assert result["Item"] == {"from": "east"}
        assert all(not other.calls for other in others)
        return
    asked = [other for other in others if other.calls]
    if not may_move:
        assert result is _PRIMARY_DOWN
        assert not asked
        return
    # Fallbacks are asked in order until the first that gives a final answer.
    # (For GetItem an answer without "Item" is "not found"; for PutObject it is the answer.)
    answers = (
        ("item", "throttled", "no-item") if operation == "PutObject" else ("item", "throttled")
    )
    final = next((i for i, kind in enumerate(fallbacks) if kind in answers), None)
    if final is None:
        assert result is _PRIMARY_DOWN  # never a fallback's "not found" or "no item"
        assert len(asked) == len(others)
    else:
        assert len(asked) == final + 1
        if isinstance(result, botocore.exceptions.ClientError):
            assert result.response["Error"]["Code"] == "ThrottlingException"
            metadata = result.response["ResponseMetadata"]
        else:
            assert operation == "PutObject" or "Item" in result
            metadata = result["ResponseMetadata"]
        assert metadata["OutlastFailover"]["Region"] == others[final].meta.region_name
    for other in asked:
        assert len(other.calls) == 1  # asked once, and it did not fail over back
        if operation == "PutObject":
            assert other.calls[0][1]["Body"].tell() == 100  # it read the whole body
