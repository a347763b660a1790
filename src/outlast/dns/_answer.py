"""The value the resolver hands out."""

from __future__ import annotations

import dataclasses

__all__ = ["Answer"]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The addresses for a name, and how much to trust them.

    ``addresses`` are IP strings in the order to try them (families interleaved,
    RFC 8305). ``stale`` is True when the answer is not a fresh one from a provider:
    a last-known-good served while providers fail or answer "empty", a persisted
    answer, or a static last resort. ``source`` says where the addresses came from and,
    when stale, why (``"udp://10.0.0.2:53"``, ``"stale: udp://10.0.0.2:53 refreshing"``,
    ``"last-known-good: NXDOMAIN distrusted for 12s"``, ``"static"``, ``"literal"``).
    ``ttl`` is the record's time to live as learned (clamped), in seconds.

    Added in 0.1.0.
    """

    host: str
    addresses: tuple[str, ...]
    stale: bool = False
    source: str = ""
    ttl: float = 0.0
