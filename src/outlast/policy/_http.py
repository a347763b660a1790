"""HTTP's verdicts for the policy, shared by every HTTP integration.

httpx (``outlast.http``), requests (``outlast.requests``) and aiohttp (``outlast.aiohttp``)
judge a response the same way; each only says how to read its own response and request:

- 429 is the server pacing the client: retried when safe (its ``Retry-After`` honoured),
  never held against the destination;
- every 5xx counts against the destination's breaker except 501 and 505 (the server is
  well: it does not do that method or version);
- 500, 502, 503 and 504 are retried when the request is safe to repeat (RFC 9110
  section 9.2.2: an idempotent method, or an ``Idempotency-Key`` header); 429 and 503
  carry a ``Retry-After`` (RFC 9110 section 10.2.3).

Imports nothing above ``outlast.policy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from outlast.policy._classify import Decision, parse_retry_after

__all__ = ["IDEMPOTENT_METHODS", "RETRY_STATUSES", "judge_status"]

#: Methods RFC 9110 (section 9.2.2) defines as idempotent: safe to send again.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Statuses retried when the request is safe to repeat.
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: 5xx statuses that say nothing about the destination's health.
_WELL_5XX: Final = frozenset({501, 505})
#: Statuses whose Retry-After is read.
_DELAY_HINTED: Final = frozenset({429, 503})


def judge_status(
    status: int, safe: Callable[[], bool], retry_after: Callable[[], str | None]
) -> Decision:
    """The policy's verdict on one HTTP status.

    ``safe()`` says whether the request may be sent again and ``retry_after()`` gives the
    response's ``Retry-After`` value; each is called only when the status needs it.
    """
    if status < 500 and status != 429:
        return Decision.ACCEPT
    unwell = status >= 500 and status not in _WELL_5XX
    if status not in RETRY_STATUSES:
        return Decision(unwell=unwell)
    delay = parse_retry_after(retry_after()) if status in _DELAY_HINTED else None
    return Decision(retry=safe(), unwell=unwell, delay=delay)
