"""The hook through which a resolver shares last-known-good answers with other processes.

The resolver knows nothing of where shared answers live: it hands every good answer to
a :class:`SharedAnswers` object's :meth:`~SharedAnswers.publish` (which must return at
once) and asks its :meth:`~SharedAnswers.lookup` (which may block briefly, so it is
called on an executor thread, never on an event loop) for a name it holds nothing for
when the providers gave nothing usable. ``outlast.fleet`` implements it over Redis.

Times here are wall-clock (Unix) seconds, so processes can compare them.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

__all__ = ["SharedAnswer", "SharedAnswers"]


@dataclasses.dataclass(frozen=True, slots=True)
class SharedAnswer:
    """A good answer as shared between processes.

    ``learned_at`` is when it was had and ``generation`` when the refresh that produced
    it started (both Unix time); an answer of an older generation never replaces a
    newer one. ``ttl`` is the record's TTL as learned (clamped).

    An answer with no ``addresses`` is a deletion: the writer accepted a negative (it
    held for ``keep_on_empty``). It replaces older answers like any other, and a lookup
    returns None for it, so nobody adopts the address the name used to have.

    Added in 0.1.0.
    """

    host: str
    addresses: tuple[str, ...]
    ttl: float
    learned_at: float
    generation: float
    source: str


class SharedAnswers(Protocol):
    """Where a resolver publishes good answers and looks up answers it lacks.

    Added in 0.1.0.
    """

    def publish(self, answer: SharedAnswer, /) -> None:
        """Share ``answer`` (or a deletion). Must return at once (called on the resolver's loop)."""

    def lookup(self, host: str, /) -> SharedAnswer | None:
        """The shared answer for ``host``, or None. May block for a short, bounded time."""
