"""Shared last-known-good answers: one Redis hash per name, written in generation order.

Key ``{namespace}:lkg:{name}`` holds ``addresses`` (JSON list), ``ttl``, ``learned_at``
and ``generation`` (Unix seconds) and ``source``. A Lua script writes an answer only if
no answer of a newer generation is held, so a slow writer never overwrites a newer
answer, and sets the key to expire ``keep`` seconds later (abandoned names vanish).

Times come from writers' clocks, so they are bounded by the Redis server's clock
(``TIME``) and by the reader's: a generation more than :data:`MAX_AHEAD` seconds ahead
is brought back to the server's time when written, a held one that far ahead is
overwritten as if absent, and a reader ignores an answer whose times are that far
ahead of its own clock. One bad clock or one forged ``HSET`` cannot pin an answer.

An answer with no addresses is a deletion the writer accepted (a negative that held for
``keep_on_empty``): it replaces older answers like any other, and readers take it as
"nothing to adopt".
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import redis

from outlast.dns import SharedAnswer

__all__ = ["MAX_AHEAD", "PUBLISH_SCRIPT", "AnswerStore", "parse"]

#: Seconds a shared time may be ahead of the clock that checks it (server's or reader's).
MAX_AHEAD: Final = 60.0

#: KEYS[1] the name's hash; ARGV: generation, learned_at, ttl, addresses, source, expire ms.
#: Returns 1 when written, 0 when a newer generation was held.
PUBLISH_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = now + MAX_AHEAD
local gen, gen_s = tonumber(ARGV[1]), ARGV[1]
local learned_s = ARGV[2]
if gen > limit then gen, gen_s = now, string.format('%.17g', now) end
if tonumber(learned_s) > limit then learned_s = string.format('%.17g', now) end
local held = tonumber(redis.call('HGET', KEYS[1], 'generation'))
if held and held <= limit and held > gen then
  return 0
end
redis.call('HSET', KEYS[1], 'generation', gen_s, 'learned_at', learned_s, 'ttl', ARGV[3],
           'addresses', ARGV[4], 'source', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
""".replace("MAX_AHEAD", repr(MAX_AHEAD))


class AnswerStore:
    """Reads and writes shared answers under one namespace."""

    def __init__(self, namespace: str, keep: float) -> None:
        self.namespace = namespace
        self.keep_ms = max(1, int(keep * 1000))

    def key(self, host: str) -> str:
        return f"{self.namespace}:lkg:{host}"

    def write(self, pipe: Any, script: Any, answer: SharedAnswer) -> None:
        """Queue the generation-ordered write of ``answer`` on ``pipe``."""
        script(
            keys=[self.key(answer.host)],
            args=[
                repr(answer.generation),
                repr(answer.learned_at),
                repr(answer.ttl),
                json.dumps(list(answer.addresses)),
                answer.source,
                self.keep_ms,
            ],
            client=pipe,
        )

    def read(self, client: redis.Redis, host: str) -> SharedAnswer | None:
        """The answer held for ``host``; None when there is none or it is malformed."""
        fields = client.hgetall(self.key(host))
        return parse(host, {str(k): str(v) for k, v in fields.items()}, now=time.time())


def parse(host: str, fields: Mapping[str, str], *, now: float) -> SharedAnswer | None:
    """A :class:`SharedAnswer` from a hash's fields, or None if they do not make one.

    None also for a deletion (no addresses) and for times more than :data:`MAX_AHEAD`
    seconds ahead of ``now`` (the reader's Unix time): a forged or runaway generation.
    """
    if not fields:
        return None
    try:
        addresses = tuple(str(ipaddress.ip_address(a)) for a in json.loads(fields["addresses"]))
        answer = SharedAnswer(
            host=host,
            addresses=addresses,
            ttl=float(fields["ttl"]),
            learned_at=float(fields["learned_at"]),
            generation=float(fields["generation"]),
            source=str(fields.get("source", "")),
        )
    except (KeyError, TypeError, ValueError, RecursionError):  # RecursionError: "[[[[..."
        return None
    if not addresses or not 0 <= answer.ttl < math.inf:
        return None
    limit = now + MAX_AHEAD
    if not all(math.isfinite(t) and t <= limit for t in (answer.generation, answer.learned_at)):
        return None
    return answer
