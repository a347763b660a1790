"""boto3 clients share breakers: outlast.aws's default policy is built with the fleet.

The composition root (issue 11, the lead's branch) builds it with the fleet plugged in;
this test FAILS on branch i14 alone and passes once that is merged.
"""

from __future__ import annotations

import os

import pytest

import outlast
from outlast.fleet import Fleet

from .helpers import wait_for

pytest.importorskip("botocore")


def test_the_aws_default_policy_shares_breakers_with_the_fleet(redis_server, monkeypatch) -> None:
    from outlast.aws._retries import default_policy, endpoint_key

    for name in [n for n in os.environ if n.startswith("OUTLAST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OUTLAST_REDIS_URL", redis_server.url)
    key = endpoint_key("dynamodb", "us-east-1", "https://127.0.0.1:9/")

    def boom() -> None:
        raise ConnectionError("down")

    with Fleet(redis_server.url) as other_process:
        opener = outlast.Policy(
            retry=None,
            breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60),
            shared=other_process,
        ).for_key(key)
        view = default_policy().for_key(key)  # what every wrapped boto3 client uses
        assert view.state == "closed"
        with pytest.raises(ConnectionError):
            opener.call(boom)
        assert opener.state == "open"
        assert wait_for(lambda: view.state == "open", 5), "boto3's breaker never heard"
