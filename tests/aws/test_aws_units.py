"""outlast.aws without a server: its public names, errors, and what wrap changes and leaves."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import botocore.exceptions
import pytest
from aws_helpers import CountingServer, raw_client
from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool

import outlast
import outlast.aws
from outlast import Resolver
from outlast.testing import DNSServer


def test_all_lists_exactly_the_public_names() -> None:
    # ("@py_builtins" and the like: pytest rewrites asserts in its plugins' package.)
    public = {name for name in vars(outlast.aws) if not name.startswith(("_", "@"))}
    modules = {"annotations"}
    assert set(outlast.aws.__all__) == public - modules
    assert outlast.aws.__all__ == sorted(outlast.aws.__all__, key=lambda n: (not n.isupper(), n))


def test_the_circuit_open_error_is_both_botocores_and_outlasts() -> None:
    error = outlast.aws.CircuitOpenError(
        endpoint_url="https://dynamodb.us-east-1.amazonaws.com/",
        name="dynamodb:us-east-1:dynamodb.us-east-1.amazonaws.com",
        retry_after=1.5,
    )
    assert isinstance(error, botocore.exceptions.EndpointConnectionError)
    assert isinstance(error, outlast.CircuitOpenError)
    assert "was not contacted" in str(error)
    assert "1.50s" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.retry_after, str(copy)) == (error.name, error.retry_after, str(error))


def test_wrap_changes_that_client_only(resolver_for: Callable[..., Resolver]) -> None:
    before = raw_client("dynamodb", "http://127.0.0.1:1")
    client = raw_client("dynamodb", "http://127.0.0.1:1")
    assert outlast.aws.wrap(client, resolver=resolver_for()) is client
    after = raw_client("dynamodb", "http://127.0.0.1:1")
    classes = client._endpoint.http_session._pool_classes_by_scheme
    assert classes["https"] is not AWSHTTPSConnectionPool
    assert issubclass(classes["https"], AWSHTTPSConnectionPool)
    for other in (before, after):
        session = other._endpoint.http_session
        assert session._pool_classes_by_scheme["http"] is AWSHTTPConnectionPool
        assert session._pool_classes_by_scheme["https"] is AWSHTTPSConnectionPool
        assert "make_request" not in vars(other._endpoint)


def test_wrapping_twice_is_an_error(resolver_for: Callable[..., Resolver]) -> None:
    client = outlast.aws.wrap(raw_client("sqs", "http://127.0.0.1:1"), resolver=resolver_for())
    with pytest.raises(outlast.ConfigError, match="not wrapped yet"):
        outlast.aws.wrap(client)


def test_wrap_refuses_what_is_not_a_client() -> None:
    with pytest.raises(outlast.ConfigError, match="boto3/botocore client"):
        outlast.aws.wrap(object())


def test_outlast_disable_leaves_the_client_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    client = raw_client("dynamodb", "http://127.0.0.1:1")
    assert outlast.aws.wrap(client) is client
    assert outlast.aws.wrapped(client) is None
    assert client._endpoint.http_session._pool_classes_by_scheme["http"] is AWSHTTPConnectionPool


@pytest.mark.parametrize(
    ("service", "operation", "expected"),
    [
        ("dynamodb", "GetItem", True),
        ("dynamodb", "Query", True),
        ("dynamodb", "BatchGetItem", True),
        ("dynamodb", "PutItem", False),
        ("dynamodb", "TransactWriteItems", False),
        ("s3", "HeadObject", True),
        ("s3", "PutObject", False),
        ("s3", "ListObjectsV2", True),
        ("secretsmanager", "GetSecretValue", True),
        ("sts", "GetCallerIdentity", True),
        ("sqs", "ListQueues", False),
        ("sqs", "SendMessage", False),
        ("ec2", "DescribeInstances", False),
        # Reads by name that are region-local or act: never by default.
        ("ssm", "GetParameter", False),
        ("cognito-identity", "GetId", False),
        ("redshift", "GetClusterCredentials", False),
        ("dynamodb", "TransactGetItems", False),
    ],
)
def test_the_default_allow_list_is_read_only(service: str, operation: str, expected: bool) -> None:
    assert outlast.aws.read_only(service, operation) is expected


def test_default_parts_follow_a_changed_outlast_environment(
    monkeypatch: pytest.MonkeyPatch, unique_name: Callable[[str], str]
) -> None:
    # As the outlast_dns fixture in two tests: each wrap resolves through its own server.
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "0.5")
    with CountingServer(200) as http:
        seen = []
        for _ in range(2):
            name = unique_name("ddb")
            with DNSServer() as dns:
                monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", dns.provider)
                dns.set(name, ["127.0.0.1"], ttl=60)
                client = outlast.aws.wrap(raw_client("dynamodb", f"http://{name}:{http.port}"))
                same = outlast.aws.wrap(raw_client("dynamodb", f"http://{name}:{http.port}"))
                client.list_tables()
                assert dns.queries_for(name) >= 1
                state, other = outlast.aws.wrapped(client), outlast.aws.wrapped(same)
                assert state is not None
                assert other is not None
                # The same settings: one resolver and one policy (one breaker per endpoint).
                assert other.resolver is state.resolver
                assert other.policy is state.policy
                seen.append(state)
        assert seen[0].resolver is not seen[1].resolver
        assert seen[0].policy is not seen[1].policy
        assert http.hits == 2


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"mode": "legacy"}, "legacy retry mode, up to 10 attempts per DynamoDB call"),
        ({"mode": "standard"}, "standard retry mode, up to 3 attempts per DynamoDB call"),
        (
            {"mode": "standard", "total_max_attempts": 5},
            "standard retry mode, up to 5 attempts per DynamoDB call",
        ),
    ],
)
def test_the_drill_names_its_boto3_baseline(retries: dict[str, object], expected: str) -> None:
    from outlast.cli._drill._aws import baseline

    client = raw_client("dynamodb", "http://127.0.0.1:1", retries=retries)
    assert baseline(client) == f"botocore {botocore.__version__}, {expected}"
