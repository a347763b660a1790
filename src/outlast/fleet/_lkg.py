"""Shared last-known-good answers: one Redis hash per name, written in generation order.

Key ``{namespace}:lkg:{name}`` holds ``addresses`` (JSON list), ``ttl``, ``learned_at``
and ``generation`` (Unix seconds) and ``source``. A Lua script writes an answer only if
no answer of a newer generation is held, so a slow writer never overwrites a newer
answer, and sets the key to expire ``keep`` seconds later (abandoned names vanish).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Final

import redis

from outlast.dns import SharedAnswer

__all__ = ["PUBLISH_SCRIPT", "AnswerStore"]

#: KEYS[1] the name's hash; ARGV: generation, learned_at, ttl, addresses, source, expire ms.
#: Returns 1 when written, 0 when a newer generation was held.
PUBLISH_SCRIPT: Final = """
local held = redis.call('HGET', KEYS[1], 'generation')
if held and tonumber(held) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'learned_at', ARGV[2], 'ttl', ARGV[3],
           'addresses', ARGV[4], 'source', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""


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
        return parse(host, {str(k): str(v) for k, v in fields.items()})


def parse(host: str, fields: Mapping[str, str]) -> SharedAnswer | None:
    """A :class:`SharedAnswer` from a hash's fields, or None if they do not make one."""
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
    except (KeyError, TypeError, ValueError):
        return None
    if not addresses or not answer.ttl >= 0:
        return None
    return answer
