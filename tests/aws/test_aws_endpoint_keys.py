"""Breakers, budgets and metric series are keyed by endpoint, never by bucket.

Invariant over (region x addressing style x bucket name x custom or AWS endpoint):
every request URL a client builds for a bucket keys as the client's endpoint
(``service:region:scheme://host:port``), so a process naming any number of buckets
holds as many breakers and exports as many series as endpoints it calls, and one
bucket's failures open the breaker that guards them all.
"""

from __future__ import annotations

from collections.abc import Callable

import boto3
import botocore.exceptions
from aws_helpers import CountingServer
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

import outlast
import outlast.aws
from outlast import Event, Policy, Resolver, Retry
from outlast.aws._retries import endpoint_key
from outlast.testing import DNSServer

_BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", fullmatch=True)
_REGIONS = st.sampled_from(["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"])


@given(bucket=_BUCKETS, region=_REGIONS)
def test_a_virtual_host_bucket_keys_as_its_endpoint(bucket: str, region: str) -> None:
    endpoint = f"https://s3.{region}.amazonaws.com"
    url = f"https://{bucket}.s3.{region}.amazonaws.com/key?x-id=GetObject"
    expected = f"s3:{region}:https://s3.{region}.amazonaws.com:443"
    assert endpoint_key("s3", region, url, endpoint) == expected
    # A redirect to another region's endpoint keys as that endpoint, not the bucket.
    assert endpoint_key("s3", region, url, "https://s3.amazonaws.com") == expected
    assert endpoint_key("s3", region, f"{endpoint}/{bucket}/key", endpoint) == expected


@given(bucket=_BUCKETS)
def test_a_bucket_under_a_custom_endpoint_keys_as_that_endpoint(bucket: str) -> None:
    base = "http://minio.internal:9000"
    url = f"http://{bucket}.minio.internal:9000/key"
    assert endpoint_key("s3", "us-east-1", url, base) == "s3:us-east-1:http://minio.internal:9000"


def test_keys_stay_bounded_over_many_buckets() -> None:
    keys = {
        endpoint_key(
            "s3",
            "us-east-1",
            f"https://bucket-{index}.s3.us-east-1.amazonaws.com/k",
            "https://s3.amazonaws.com",
        )
        for index in range(1500)
    }
    assert keys == {"s3:us-east-1:https://s3.us-east-1.amazonaws.com:443"}


def test_other_services_and_ipv6_keep_their_host() -> None:
    key = endpoint_key("dynamodb", None, "https://dynamodb.us-east-1.amazonaws.com/")
    assert key == "dynamodb:-:https://dynamodb.us-east-1.amazonaws.com:443"
    assert (
        endpoint_key("sqs", "us-east-1", "http://[::1]:4566/") == "sqs:us-east-1:http://[::1]:4566"
    )


def test_one_buckets_failures_open_the_endpoints_one_breaker(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
) -> None:
    name = unique_name("s3")
    buckets = [f"bucket-{index}" for index in range(20)]
    events: list[Event] = []
    policy = Policy(
        retry=Retry(attempts=1),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60),
        listeners=[events.append],
    )
    with CountingServer(500) as server:
        for bucket in buckets:
            fault_dns.set(f"{bucket}.{name}", ["127.0.0.1"], ttl=60)
        virtual = boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://{name}:{server.port}",
            config=Config(s3={"addressing_style": "virtual"}, retries={"mode": "standard"}),
        )
        client = outlast.aws.wrap(
            virtual,
            resolver=resolver_for(),
            policy=policy,
        )
        refused: list[str] = []
        for bucket in buckets:
            try:
                client.get_object(Bucket=bucket, Key="k")
            except outlast.aws.CircuitOpenError as exc:
                refused.append(exc.name)
            except botocore.exceptions.ClientError:
                pass
        assert server.hits == 2
    key = f"s3:us-east-1:http://{name}:{server.port}"
    assert refused == [key] * 18
    keys = {e.key for e in events if e.kind == "policy.breaker_state"} - {"default"}  # type: ignore[attr-defined]
    assert keys == {key}
