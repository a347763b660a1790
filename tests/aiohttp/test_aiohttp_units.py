"""outlast.aiohttp without sockets: public surface, import contract, and the attempt
arithmetic of the middleware over every (method, outcome script, policy) cell.

The invariant, proved with hypothesis over a scripted handler: the middleware makes
``n`` attempts where ``n`` is the first attempt whose outcome is final (success, business
error, certificate failure, proxy refusal, the caller's timeout, an error outlast does
not know, or a read-phase failure
/ 5xx of a request that is not safe to repeat) or the policy's attempts; connect failures
are retried whatever the method; a response retried is released; what the caller sees is
the last attempt's outcome.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time
from typing import Any
from unittest import mock

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aiohttp_helpers import quick_policy
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

import outlast
import outlast.aiohttp
from outlast.aiohttp import CircuitOpenError, middleware

STATUSES = (200, 404, 429, 500, 502, 503, 504)
ERRORS = ("connect", "dns", "read", "disconnect", "certificate", "timeout", "unknown")
RETRY_STATUSES = {429, 500, 502, 503, 504}  # outlast.http's rule
SAFE = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
KEY = ConnectionKey("api.outlast.test", 443, True, True, None, None, None)


def test_all_is_sorted_and_complete() -> None:
    module = outlast.aiohttp
    public = {n for n in vars(module) if not n.startswith(("_", "@")) and n != "annotations"}
    assert set(module.__all__) == public
    assert module.__all__ == sorted(module.__all__)


def test_import_contract() -> None:
    code = (
        "import sys, outlast.aiohttp\n"
        "bad = ('requests', 'botocore', 'boto3', 'outlast.aws', 'outlast.requests')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_circuit_open_error_is_both_and_pickles() -> None:
    error = CircuitOpenError("https://api.outlast.test:443", 2.5)
    assert isinstance(error, aiohttp.ClientConnectionError)
    assert isinstance(error, outlast.CircuitOpenError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.name, again.retry_after) == (error.name, error.retry_after)


def _error(kind: str) -> Exception:
    if kind == "connect":
        return aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused"))
    if kind == "dns":
        return aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "no name"))
    if kind == "read":
        return aiohttp.ClientOSError(104, "reset")
    if kind == "disconnect":
        return aiohttp.ServerDisconnectedError()
    if kind == "certificate":
        return aiohttp.ClientConnectorCertificateError(KEY, Exception("certificate"))
    if kind == "unknown":
        return RuntimeError("an error outlast does not know: neutral, final")
    return TimeoutError()


def _expected(method: str, script: list[int | str], limit: int) -> int:
    for number, outcome in enumerate(script, start=1):
        if number >= limit:
            return number
        if outcome in ("connect", "dns"):
            continue
        if outcome in ("read", "disconnect") or outcome in RETRY_STATUSES:
            if method in SAFE:
                continue
            return number
        return number
    raise AssertionError("the script is longer than any limit")


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "TRACE", "PUT", "DELETE", "POST", "PATCH"]),
    script=st.lists(st.sampled_from(STATUSES + ERRORS), min_size=6, max_size=6),
    policy_attempts=st.integers(1, 4),
)
def test_attempts_never_multiply(
    method: str, script: list[int | str], policy_attempts: int
) -> None:
    request = mock.Mock(spec=aiohttp.ClientRequest)
    request.method = method
    request.headers = {}
    request.body = b""
    request.url = URL("https://api.outlast.test/x")
    request.session = mock.Mock(timeout=aiohttp.ClientTimeout())  # no deadline
    calls: list[int | str] = []
    released: list[int] = []

    async def handler(req: Any) -> Any:
        outcome = script[len(calls)]
        calls.append(outcome)
        if isinstance(outcome, str):
            raise _error(outcome)
        response = mock.Mock(spec=aiohttp.ClientResponse)
        response.status = outcome
        response.headers = {}
        response.release.side_effect = lambda: released.append(len(calls))
        return response

    async def main() -> int | str:
        try:
            response = await middleware(quick_policy(policy_attempts))(request, handler)
        except (aiohttp.ClientError, TimeoutError, RuntimeError):
            seen = calls[-1]
            assert isinstance(seen, str)
            return seen
        status: int = response.status
        return status

    seen = asyncio.run(main())
    assert len(calls) == _expected(method, script, policy_attempts)
    assert seen == calls[-1]
    # Every response but the one returned was released before the next attempt.
    responses = [n for n, outcome in enumerate(calls, start=1) if isinstance(outcome, int)]
    assert released == [n for n in responses if n < len(calls)]


#: What one scripted attempt does under ``ClientTimeout(sock_connect=C, sock_read=R)``:
#: refused at once, answered, or silent until aiohttp's own ``sock_read`` ends it.
STEPS = ("refused", "silent", 503, 200)


@settings(max_examples=25, deadline=None)
@given(
    script=st.lists(st.sampled_from(STEPS), min_size=4, max_size=4),
    attempts=st.integers(1, 4),
    connect=st.sampled_from([None, 0.02]),
)
def test_a_call_without_total_ends_by_its_deadline(
    script: list[int | str], attempts: int, connect: float | None
) -> None:
    """Invariant: with ``sock_read`` and no ``total``, the call ends by the later of its
    first attempt's end and the deadline (``sock_connect`` + ``sock_read``); retries are
    cut there (``aiohttp.ServerTimeoutError``); never more attempts than the policy's."""
    read = 0.3
    deadline = (connect or 0) + read
    request = mock.Mock(spec=aiohttp.ClientRequest)
    request.method, request.headers, request.body = "GET", {}, b""
    request.url = URL("https://api.outlast.test/x")
    request.session = mock.Mock(timeout=aiohttp.ClientTimeout(sock_connect=connect, sock_read=read))
    calls: list[float] = []

    async def handler(req: Any) -> Any:
        step = script[len(calls)]
        calls.append(time.monotonic())
        if step == "refused":
            raise _error("connect")
        if step == "silent":
            await asyncio.sleep(read)  # aiohttp's sock_read ends it
            raise aiohttp.SocketTimeoutError("Timeout on reading data from socket")
        response = mock.Mock(spec=aiohttp.ClientResponse)
        response.status, response.headers = step, {}
        return response

    async def main() -> tuple[object, float]:
        started = time.monotonic()
        try:
            outcome: object = await middleware(quick_policy(attempts))(request, handler)
        except aiohttp.ClientError as exc:
            outcome = exc
        return outcome, time.monotonic() - started

    outcome, took = asyncio.run(main())
    first = read if script[0] == "silent" else 0.0
    assert len(calls) <= attempts
    assert took < max(first, deadline) + 0.2  # scheduling margin on a loaded machine
    if type(outcome) is aiohttp.ServerTimeoutError:  # a retry cut (not sock_read's own)
        assert took >= deadline - 0.01  # cut at the deadline, not before


def test_a_retry_cut_at_the_deadline_is_neutral_under_the_users_own_classifier() -> None:
    """docs/aiohttp.md: with a policy of your own the HTTP rules stay on top. A retry
    the middleware cut before sending it (the deadline had passed: ``outlast_unsent``)
    reached nobody; a classifier of the user's that retries every error counted it as
    the destination's failure, so a busy loop could open the breaker."""
    from outlast.aiohttp._session import _cut_short, _view
    from outlast.policy import Decision, Outcome, retry_all

    def mine(outcome: Outcome, /) -> Decision:
        return retry_all(outcome)

    view = _view(outlast.Policy(classify_error=mine))
    request = mock.Mock(method="GET", url=URL("http://example.test/"), headers={}, body=b"")
    unsent = _cut_short(request, None)
    unsent.outlast_unsent = True  # type: ignore[attr-defined]  # as _attempt marks it
    assert view.classify_error(Outcome(2, error=unsent)) == Decision.NEUTRAL
    sent = _cut_short(request, None)  # cut while in flight: the destination's, retried
    assert view.classify_error(Outcome(2, error=sent)).unwell
