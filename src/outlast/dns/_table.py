"""The name table: what the resolver holds for each name, and how answers change it.

Pure state, no I/O, no threads of its own: the resolver calls it under its lock. Each
method returns the events to emit, so listeners are never called with the lock held.

Rules (docs/resolver.md says them for users):

- An outcome carries the generation (start time) of the refresh that produced it. An
  outcome older than the entry held is discarded: an update never replaces a newer one.
- Addresses replace what was held, and clear any suspicion.
- A negative answer (NXDOMAIN, or NODATA: no A/AAAA) for a name that has addresses is
  suspect. The addresses are kept as last-known-good (LKG) until negatives have held
  for ``keep_on_empty`` seconds; then the negative is believed.
- A negative answer for a name never seen good is cached for at most ``negative_ttl``.
- A failure (timeout, SERVFAIL, ...) says nothing about the name: nothing is cached for
  it, and what was held stays held; the next refresh is backed off.
- Nothing here deletes a name's only good copy except a negative that has held for
  ``keep_on_empty``, or the LRU bound (``size`` names).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator
from typing import Final

from cachetools import Cache, LRUCache

from outlast._events import Event
from outlast.dns._answer import Answer
from outlast.dns._events import (
    AnswerUpdated,
    EmptyAnswerAccepted,
    EmptyAnswerDistrusted,
    RefreshFailed,
)
from outlast.dns._providers import Failure, Negative, Outcome, Positive

__all__ = ["Entry", "NameTable"]

#: Fraction of a TTL after which a name in use is refreshed ahead of expiry.
PREFETCH_AT: Final = 0.85
#: While a negative is distrusted, it is checked again at least this often (seconds).
SUSPECT_RECHECK_MAX: Final = 30.0
#: First back-off (seconds) after a failed refresh of a held name; it doubles, up to the
#: TTL and at most FAILURE_BACKOFF_MAX, so a recovered provider is noticed soon.
FAILURE_BACKOFF: Final = 0.5
FAILURE_BACKOFF_MAX: Final = 30.0

NEVER: Final = -math.inf


@dataclasses.dataclass(slots=True, eq=False)
class Entry:
    """What is held for one name. Mutated only under the resolver's lock."""

    name: str
    addresses: tuple[str, ...]
    ttl: float
    source: str
    generation: float
    learned_at: float
    expires_at: float
    #: The hot path serves ``answer`` while ``now < fresh_until``.
    fresh_until: float
    #: A refresh is started on access once ``now >= next_refresh_at``.
    next_refresh_at: float
    answer: Answer
    negative: str | None = None
    suspect: str | None = None
    suspect_since: float = 0.0
    failures: int = 0
    last_error: str | None = None

    @property
    def has_addresses(self) -> bool:
        return bool(self.addresses)


class NameTable:
    """A bounded map of names to :class:`Entry`, and the rules that change it."""

    def __init__(
        self,
        *,
        size: int,
        min_ttl: float,
        max_ttl: float,
        keep_on_empty: float,
        negative_ttl: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._entries: LRUCache[str, Entry] = LRUCache(maxsize=size)
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.keep_on_empty = keep_on_empty
        self.negative_ttl = negative_ttl
        self._rand = rand

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        # Cache.__getitem__ reads without marking the entry used: a snapshot for the
        # cache file must not reorder the LRU.
        entries = self._entries
        return iter([Cache.__getitem__(entries, name) for name in list(entries)])

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def clamp(self, ttl: float) -> float:
        return max(self.min_ttl, min(self.max_ttl, ttl))

    def positive(
        self,
        name: str,
        addresses: tuple[str, ...],
        ttl: float,
        source: str,
        *,
        generation: float,
        learned_at: float,
    ) -> Entry:
        """A healthy entry holding ``addresses`` learned at ``learned_at``."""
        ttl = self.clamp(ttl)
        expires_at = learned_at + ttl
        return Entry(
            name=name,
            addresses=addresses,
            ttl=ttl,
            source=source,
            generation=generation,
            learned_at=learned_at,
            expires_at=expires_at,
            fresh_until=expires_at,
            next_refresh_at=learned_at + ttl * PREFETCH_AT,
            answer=Answer(name, addresses, stale=False, source=source, ttl=ttl),
        )

    def put(self, entry: Entry) -> None:
        self._entries[entry.name] = entry

    def apply(self, name: str, generation: float, outcome: Outcome, now: float) -> list[Event]:
        """Record the outcome of a refresh that started at ``generation``."""
        held = self._entries.get(name)
        if held is not None and held.generation > generation:
            return []  # a newer refresh already decided this name
        if isinstance(outcome, Positive):
            return self._apply_positive(name, held, generation, outcome, now)
        if isinstance(outcome, Negative):
            return self._apply_negative(name, held, generation, outcome, now)
        return self._apply_failure(name, held, outcome, now)

    def _apply_positive(
        self, name: str, held: Entry | None, generation: float, outcome: Positive, now: float
    ) -> list[Event]:
        entry = self.positive(
            name,
            outcome.addresses,
            outcome.ttl,
            outcome.source,
            generation=generation,
            learned_at=now,
        )
        self._entries[name] = entry
        if held is not None and held.addresses == entry.addresses and not held.suspect:
            return []
        return [AnswerUpdated(name, entry.addresses, entry.ttl, entry.source)]

    def _apply_negative(
        self, name: str, held: Entry | None, generation: float, outcome: Negative, now: float
    ) -> list[Event]:
        if held is not None and held.has_addresses:
            since = held.suspect_since if held.suspect else now
            if now - since < self.keep_on_empty:
                held.generation = generation
                held.fresh_until = NEVER
                held.next_refresh_at = now + self._recheck_interval(held.ttl)
                first = held.suspect is None
                held.suspect = outcome.kind
                held.suspect_since = since
                held.failures = 0
                if not first:
                    return []
                return [
                    EmptyAnswerDistrusted(
                        name, outcome.kind, held.addresses, now - since, self.keep_on_empty
                    )
                ]
            dropped = held.addresses
            events: list[Event] = [EmptyAnswerAccepted(name, outcome.kind, dropped)]
        else:
            events = []
        ttl = min(max(outcome.ttl, 0.0), self.negative_ttl)
        if ttl <= 0:
            self._entries.pop(name, None)
            return events
        self._entries[name] = Entry(
            name=name,
            addresses=(),
            ttl=ttl,
            source=outcome.source,
            generation=generation,
            learned_at=now,
            expires_at=now + ttl,
            fresh_until=NEVER,
            next_refresh_at=now + ttl,
            answer=Answer(name, (), stale=False, source=outcome.source, ttl=ttl),
            negative=outcome.kind,
        )
        return events

    def _apply_failure(
        self, name: str, held: Entry | None, outcome: Failure, now: float
    ) -> list[Event]:
        if held is not None and held.has_addresses:
            held.failures += 1
            held.last_error = outcome.error
            ceiling = min(max(held.ttl, 1.0), FAILURE_BACKOFF_MAX)
            backoff = min(FAILURE_BACKOFF * 2 ** (held.failures - 1), ceiling)
            held.next_refresh_at = now + backoff * (0.5 + self._rand() / 2)
        return [RefreshFailed(name, outcome.error)]

    def _recheck_interval(self, ttl: float) -> float:
        """How soon a distrusted negative is checked again: the TTL's cadence, jittered."""
        base = min(ttl, SUSPECT_RECHECK_MAX)
        return max(base * (0.5 + self._rand() / 2), min(self.min_ttl, base))
