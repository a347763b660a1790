"""A kept-alive connection the server closed as it was reused: sent again, uncounted.

aiohttp re-sends an idempotent request once after ``ServerDisconnectedError`` or
``ClientOSError`` (RFC 9112, section 9.3.1.1). That re-send wraps every middleware, so
with outlast's attempts inside it would double them: outlast turns it off and does the
re-send itself, inside the attempt, when the connection had carried a request before.

Cells: policy (never retries: ``retry=None``, ``attempts=1``; retries: 3 attempts) x
method (GET, POST) x server (closes a connection when its second request comes: stale;
closes every connection after reading the request: the destination failing on fresh
connections). Invariants: a stale connection costs a GET nothing (no error, nothing
counted against the origin or the budget, no backoff); a POST is never sent twice;
a destination failing on fresh connections gets exactly the policy's attempts (the
re-send never multiplies them); and a call re-sends at most once, as aiohttp does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from stale_server import Server, counted, stale_policy

from outlast import Resolver, Retry
from outlast.aiohttp import ClientSession

POLICIES = {
    "retry=None": None,
    "attempts=1": Retry(attempts=1),
    "3 attempts": Retry(attempts=3, base=0.2, cap=0.2),  # a backoff would be recorded
}


async def _call(session: aiohttp.ClientSession, method: str, url: str) -> int | str:
    try:
        async with session.request(method, url) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


def _run(
    resolver: Resolver,
    retry: Retry | None,
    answers: int,
    calls: Callable[[aiohttp.ClientSession, str], Awaitable[list[int | str]]],
    **options: Any,
) -> tuple[list[int | str], int, tuple[int | None, int | None], list[float]]:
    """The calls' outcomes, the requests the server read, the origin's (failures,
    retries) and the backoffs the policy slept."""
    slept: list[float] = []
    policy = stale_policy(retry, slept)
    server = Server(answers)

    async def main() -> list[int | str]:
        async with (
            server.serving(),
            ClientSession(resolver=resolver, policy=policy, **options) as session,
        ):
            return await calls(session, f"http://127.0.0.1:{server.port}/")

    seen = asyncio.run(main())
    return seen, server.hits, counted(policy, server.port), slept


#: The session's timeout picks the path: none or ``total``, the middleware makes the first
#: attempt itself; ``sock_read`` alone, each attempt is watched for the call's deadline.
TIMEOUTS = {
    "no deadline": aiohttp.ClientTimeout(total=None),
    "total": aiohttp.ClientTimeout(total=5),
    "sock_read": aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=2),
}


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
@pytest.mark.parametrize("retry", POLICIES.values(), ids=POLICIES.keys())
def test_a_stale_kept_alive_connection_costs_a_get_nothing(
    resolver_for: Callable[..., Resolver], retry: Retry | None, timeout: aiohttp.ClientTimeout
) -> None:
    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _call(session, "GET", url) for _ in range(4)]

    # each connection answers one request: every call after the first reuses a closed one
    seen, hits, (failures, retries), slept = _run(resolver_for(), retry, 1, calls, timeout=timeout)
    assert seen == [200, 200, 200, 200]
    assert hits == 1 + 3 * 2  # each reused connection took the request, then closed
    assert (failures, retries) == (0, 0)  # nothing held against the origin or the budget
    assert slept == []  # and no backoff


@pytest.mark.parametrize("retry", POLICIES.values(), ids=POLICIES.keys())
def test_a_post_on_a_stale_connection_is_not_sent_again(
    resolver_for: Callable[..., Resolver], retry: Retry | None
) -> None:
    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _call(session, "POST", url) for _ in range(2)]

    seen, hits, _, _ = _run(resolver_for(), retry, 1, calls)
    assert seen == [200, "ServerDisconnectedError"]  # the server may have acted on it
    assert hits == 2  # once each: a POST is never repeated


@pytest.mark.parametrize("retry", POLICIES.values(), ids=POLICIES.keys())
def test_a_destination_dropping_fresh_connections_gets_only_the_policys_attempts(
    resolver_for: Callable[..., Resolver], retry: Retry | None
) -> None:
    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _call(session, "GET", url)]

    seen, hits, (failures, _), _ = _run(resolver_for(), retry, 0, calls)
    assert seen == ["ServerDisconnectedError"]
    attempts = 1 if retry is None else retry.attempts
    assert hits == attempts  # no uncounted re-send: the connections were new
    assert failures == attempts  # each attempt the destination's own failure


@pytest.mark.parametrize("retry", POLICIES.values(), ids=POLICIES.keys())
def test_a_call_re_sends_at_most_once(
    resolver_for: Callable[..., Resolver], retry: Retry | None
) -> None:
    """Two pooled connections, both closed by the server: the re-send takes the second
    one and fails too. That failure is the attempt's (as aiohttp's once-only re-send
    would end): the policy retries it when it may, on a new connection."""

    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        first = await asyncio.gather(_call(session, "GET", url), _call(session, "GET", url))
        return [*first, await _call(session, "GET", url)]

    seen, hits, (failures, retries), _ = _run(resolver_for(), retry, 1, calls)
    if retry is None or retry.attempts == 1:
        assert seen == [200, 200, "ServerDisconnectedError"]
        assert hits == 2 + 2
        assert (failures, retries) == (1, 0)
    else:
        assert seen == [200, 200, 200]
        assert hits == 2 + 2 + 1  # both stale ones, then the retry on a new connection
        assert (failures, retries) == (0, 1)
