"""outlast.requests without sockets: the public surface, the import contract, and the
attempt arithmetic over every (method, outcome script, user ``max_retries``, policy) cell.

The invariant, proved with hypothesis over a scripted ``send``: an outlast adapter makes
``n`` attempts where ``n`` is the first attempt whose outcome is final (success, business
error, certificate failure, or a read-phase failure / 5xx of a request that is not safe
to repeat) or the least of outlast's attempts and the user's ``max_retries + 1``; connect
failures are retried whatever the method; what the caller sees is the last attempt's.
"""

from __future__ import annotations

import pickle
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import requests.adapters
from hypothesis import given, settings
from hypothesis import strategies as st
from requests_helpers import quick_policy
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry as Urllib3Retry

import outlast
import outlast.requests
from outlast import Resolver
from outlast.requests import CircuitOpenError, HTTPAdapter, attempts_cap

URL = "http://api.outlast.test/x"
STATUSES = (200, 404, 429, 500, 502, 503, 504)
ERRORS = ("connect", "read", "certificate")
RETRY_STATUSES = {429, 500, 502, 503, 504}  # outlast.http's rule
SAFE = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}


def test_all_is_sorted_and_complete() -> None:
    module = outlast.requests
    public = {n for n in vars(module) if not n.startswith(("_", "@")) and n != "annotations"}
    assert set(module.__all__) == public
    assert module.__all__ == sorted(module.__all__)


def test_import_contract() -> None:
    code = (
        "import sys, outlast, outlast.requests\n"
        "bad = ('httpx', 'botocore', 'boto3', 'aiohttp', 'outlast.http', 'outlast.aws',"
        " 'outlast.aiohttp')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # httpx is outlast's own dependency (outlast.__init__ exposes the httpx transport).
    assert all(m.startswith(("httpx", "outlast.http")) for m in eval(out.stdout))
    core = "import sys, outlast\nprint('requests' in sys.modules, 'aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", core], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_circuit_open_error_is_both_and_pickles() -> None:
    error = CircuitOpenError("https://api.outlast.test:443", 2.5)
    assert isinstance(error, requests.ConnectionError)
    assert isinstance(error, outlast.CircuitOpenError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.name, again.retry_after) == (error.name, error.retry_after)


def test_an_outlast_adapter_refuses_to_be_pickled(resolver: Resolver) -> None:
    session = outlast.requests.Session(resolver=resolver, policy=quick_policy())
    with session, pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(session)


def _error(kind: str, request: requests.PreparedRequest) -> Exception:
    if kind == "connect":
        reason: Exception = NewConnectionError(None, "refused")  # type: ignore[arg-type]
        return requests.ConnectionError(MaxRetryError(None, URL, reason), request=request)  # type: ignore[arg-type]
    if kind == "read":
        return requests.ConnectionError(ProtocolError("Connection aborted."), request=request)
    cert = Urllib3SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    return requests.exceptions.SSLError(MaxRetryError(None, URL, cert), request=request)  # type: ignore[arg-type]


def _response(status: int, request: requests.PreparedRequest) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.request = request
    response.url = URL
    response.raw = mock.Mock()
    return response


@pytest.fixture(scope="module")
def resolver() -> Iterator[Resolver]:
    made = Resolver(providers=["udp://127.0.0.1:9"], timeout=0.1)
    yield made
    made.close()


def _expected(method: str, script: list[int | str], limit: int) -> int:
    for number, outcome in enumerate(script, start=1):
        if number >= limit:
            return number
        if outcome == "connect":
            continue
        if outcome == "read" or outcome in RETRY_STATUSES:
            if method in SAFE:
                continue
            return number
        return number  # a success, a business error, a certificate failure: final
    raise AssertionError("the script is longer than any limit")


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "TRACE", "PUT", "DELETE", "POST", "PATCH"]),
    script=st.lists(st.sampled_from(STATUSES + ERRORS), min_size=6, max_size=6),
    user=st.one_of(
        st.none(),
        st.integers(0, 4),
        st.builds(Urllib3Retry, total=st.integers(0, 4)),
    ),
    policy_attempts=st.integers(1, 4),
)
def test_attempts_never_multiply(
    resolver: Resolver,
    method: str,
    script: list[int | str],
    user: int | Urllib3Retry | None,
    policy_attempts: int,
) -> None:
    adapter = HTTPAdapter(max_retries=user, resolver=resolver, policy=quick_policy(policy_attempts))
    assert adapter.max_retries.total == 0  # urllib3 never retries under outlast
    cap = attempts_cap(user)
    limit = policy_attempts if cap is None else min(policy_attempts, cap)
    request = requests.Request(method, URL, data=b"body").prepare()
    calls: list[Any] = []

    def send(self: Any, req: Any, *args: Any, **kwargs: Any) -> requests.Response:
        outcome = script[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, str):
            raise _error(outcome, req)
        return _response(outcome, req)

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", send):
        raised: requests.RequestException | None = None
        try:
            seen: int | str = adapter.send(request).status_code
        except requests.RequestException as exc:
            raised, seen = exc, calls[-1]
    if raised is not None:
        assert raised.request is request
        assert isinstance(seen, str)  # raised only for an error outcome
    assert len(calls) == _expected(method, script, limit)
    assert seen == calls[-1]  # the caller sees the last attempt's outcome
    adapter.close()
