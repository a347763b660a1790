"""A per-request ``middlewares=`` on an outlast session keeps outlast's policy.

aiohttp lets a request's ``middlewares=`` replace the session's (3.12+); outlast's
policy is the session's last middleware, so ``session.get(url, middlewares=(auth,))``
silently dropped retries and the breaker for that request (a 503 then 200 came back as
503, one hit). The invariant, whatever middlewares a request names (some, none): the
request goes through outlast's policy, innermost, after the request's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp_helpers import quick_policy
from loopback_http import Backend

from outlast import Resolver
from outlast.aiohttp import ClientSession
from outlast.testing import DNSServer


@pytest.mark.parametrize("own", ["one", "none"])
def test_a_requests_own_middlewares_keep_outlasts_policy(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    own: str,
) -> None:
    name = unique_name("mw")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    seen: list[str] = []

    async def tag(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        seen.append(request.method)
        request.headers["X-Tag"] = "1"
        response: aiohttp.ClientResponse = await handler(request)
        return response

    middlewares = (tag,) if own == "one" else ()

    async def main(port: int) -> int:
        async with (
            ClientSession(resolver=resolver_for(), policy=quick_policy()) as session,
            session.get(f"http://{name}:{port}/", middlewares=middlewares) as response,
        ):
            return response.status

    with Backend() as server:
        server.script.extend([503])
        assert asyncio.run(main(server.port)) == 200
        assert server.hits == 2
        if own == "one":
            assert seen == ["GET"]  # the request's middleware runs once, outside outlast
            assert all(headers.get("x-tag") == "1" for _, _, headers in server.requests)
