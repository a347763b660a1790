"""One retry layer, botocore's judgement, the per-endpoint breaker: against a counting server."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable

import botocore.exceptions
import pytest
from aws_helpers import CountingServer, raw_client
from botocore.awsrequest import AWSHTTPConnectionPool

import outlast
import outlast.aws
from outlast import Policy, Resolver, Retry
from outlast.policy import Decision
from outlast.testing import DNSServer

_KEY = {"pk": {"S": "a"}}


def _bare_policy(attempts: int) -> Policy:
    """Retries only (no budget, no breaker): every hit is a retry the policy chose."""
    return Policy(
        retry=Retry(attempts=attempts, base=0.001, cap=0.005),
        budget=None,
        breaker=None,
        classify_error=outlast.aws.classify_error,
        classify_result=outlast.aws.classify_result,
    )


def _error(code: str) -> bytes:
    return json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "x"}
    ).encode()


@pytest.fixture
def name_for(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> Callable[[], str]:
    def make() -> str:
        name = unique_name("ddb")
        fault_dns.set(name, ["127.0.0.1"], ttl=60)
        return name

    return make


def test_botocore_and_outlast_retries_do_not_multiply(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    with CountingServer(500) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=_bare_policy(3),
        )
        for _ in range(3):
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                client.get_item(TableName="t", Key=_KEY)
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        # botocore alone makes up to 10 attempts for DynamoDB (legacy mode); multiplied, 30.
        assert server.hits == 3 * 3


def test_an_unwrapped_client_keeps_botocores_retries(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    with CountingServer(500) as server:
        outlast.aws.wrap(
            raw_client("dynamodb", f"http://127.0.0.1:{server.port}"), resolver=resolver_for()
        )
        plain = raw_client(
            "dynamodb",
            f"http://127.0.0.1:{server.port}",
            retries={"mode": "standard", "max_attempts": 2},
        )
        with pytest.raises(botocore.exceptions.ClientError):
            plain.get_item(TableName="t", Key=_KEY)
        assert server.hits == 3  # botocore's own retries (2 retries), untouched
        session = plain._endpoint.http_session
        assert session._pool_classes_by_scheme["http"] is AWSHTTPConnectionPool


def test_budget_and_breaker_hold_backend_hits_per_call_down(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    calls = 40
    with CountingServer(500) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"), resolver=resolver_for()
        )  # the default policy: OUTLAST_* defaults, shared, keyed by endpoint
        refusals: list[outlast.aws.CircuitOpenError] = []

        def call(_: int) -> None:
            try:
                client.get_item(TableName="t", Key=_KEY)
            except outlast.aws.CircuitOpenError as exc:
                refusals.append(exc)
            except botocore.exceptions.ClientError:
                pass

        # Four callers at once: while one probes the open breaker, the others wait for
        # its verdict and are refused when it fails (a lone caller would be the probe).
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(call, range(calls)))
        assert refusals
        refusal = refusals[-1]
        assert isinstance(refusal, botocore.exceptions.EndpointConnectionError)
        assert isinstance(refusal, outlast.OutlastError)
        assert refusal.name == f"dynamodb:us-east-1:http://{name}:{server.port}"
        assert server.hits / calls <= 1.2, server.hits


def test_the_open_breaker_touches_no_network(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver], fault_dns: DNSServer
) -> None:
    name = name_for()
    policy = Policy(
        retry=Retry(attempts=1),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60),
        classify_error=outlast.aws.classify_error,
        classify_result=outlast.aws.classify_result,
    )
    with CountingServer(503) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=policy,
        )
        for _ in range(2):
            with pytest.raises(botocore.exceptions.ClientError):
                client.get_item(TableName="t", Key=_KEY)
        hits, queries = server.hits, fault_dns.queries_for(name)
        for _ in range(5):
            with pytest.raises(outlast.aws.CircuitOpenError):
                client.get_item(TableName="t", Key=_KEY)
        assert (server.hits, fault_dns.queries_for(name)) == (hits, queries)


@pytest.mark.parametrize(
    ("status", "body", "expected_hits"),
    [
        (400, _error("ValidationException"), 1),  # the caller's mistake: never retried
        (400, _error("ThrottlingException"), 3),  # throttling: botocore retries it
        (400, _error("ProvisionedThroughputExceededException"), 3),
        (500, b"{}", 3),
        (501, b"{}", 1),  # not one of botocore's transient statuses
    ],
)
def test_what_is_retried_is_botocores_judgement(
    name_for: Callable[[], str],
    resolver_for: Callable[..., Resolver],
    status: int,
    body: bytes,
    expected_hits: int,
) -> None:
    name = name_for()
    with CountingServer(status, body) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=_bare_policy(3),
        )
        with pytest.raises(botocore.exceptions.ClientError):
            client.get_item(TableName="t", Key=_KEY)
        assert server.hits == expected_hits


def test_an_explicit_botocore_max_attempts_caps_outlasts(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    with CountingServer(500) as server:
        # botocore's max_attempts counts retries: 0 means one attempt in all.
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}", retries={"max_attempts": 0}),
            resolver=resolver_for(),
        )
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.get_item(TableName="t", Key=_KEY)
        assert server.hits == 1
        assert outlast.aws.wrapped(client).policy.retry.attempts == 1  # type: ignore[union-attr]
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def test_aws_max_attempts_in_the_environment_caps_outlasts(
    name_for: Callable[[], str],
    resolver_for: Callable[..., Resolver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    name = name_for()
    client = outlast.aws.wrap(raw_client("dynamodb", f"http://{name}:1"), resolver=resolver_for())
    wrapped = outlast.aws.wrapped(client)
    assert wrapped is not None
    assert wrapped.policy.retry is not None
    assert wrapped.policy.retry.attempts == 2


def test_retry_attempts_are_reported_like_botocores(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    with CountingServer(500) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=_bare_policy(3),
        )
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.get_item(TableName="t", Key=_KEY)
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 2


def test_a_policy_without_classifiers_gets_botocores_judgement(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    policy = Policy(
        retry=Retry(attempts=3, base=0.001, cap=0.005),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60),
    )
    with CountingServer(500) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=policy,
        )
        with pytest.raises(botocore.exceptions.ClientError):
            client.get_item(TableName="t", Key=_KEY)
        # 500 retried, and the failures opened the user's own breaker (shared, not copied).
        assert server.hits == 2
        assert policy.for_key(f"dynamodb:us-east-1:http://{name}:{server.port}").state == "open"
        with pytest.raises(outlast.aws.CircuitOpenError):
            client.get_item(TableName="t", Key=_KEY)
        assert server.hits == 2


def test_a_classifier_the_user_set_is_kept(
    name_for: Callable[[], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = name_for()
    policy = Policy(
        retry=Retry(attempts=3, base=0.001, cap=0.005),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60),
        classify_result=lambda outcome: Decision.ACCEPT,
    )
    with CountingServer(500) as server:
        client = outlast.aws.wrap(
            raw_client("dynamodb", f"http://{name}:{server.port}"),
            resolver=resolver_for(),
            policy=policy,
        )
        for _ in range(3):
            with pytest.raises(botocore.exceptions.ClientError):
                client.get_item(TableName="t", Key=_KEY)
        assert server.hits == 3  # the user's classifier accepts 500s: no retry, no breaker
