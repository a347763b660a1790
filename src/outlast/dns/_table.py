"""The name table: what the resolver holds for each name, and how answers change it.

Pure state, no I/O, no threads of its own: the resolver calls it under its lock. Each
method returns the events to emit, so listeners are never called with the lock held.

Rules (docs/resolver.md says them for users):

- An outcome carries the generation (start time) of the refresh that produced it. An
  outcome older than the entry held is discarded: an update never replaces a newer one.
- Addresses replace what was held, and clear any suspicion.
- A failure never removes addresses. An answer with addresses for one family whose
  other family's query failed keeps that family's last-known-good addresses (``kept``)
  until they are older than TTL + ``stale_ttl``, and is re-asked soon (backed off like
  a failure). A family that answered empty while the other has addresses is distrusted
  like an empty name: its addresses are kept until the empty answers have held for
  ``keep_on_empty``.
- Nothing older than TTL + ``stale_ttl`` is kept as last-known-good, on any path.
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

import collections
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
    LastKnownGoodEnded,
    RefreshFailed,
    ServingLastKnownGood,
)
from outlast.dns._providers import (
    Failure,
    Negative,
    Outcome,
    Positive,
    family,
    order_addresses,
)

__all__ = ["Entry", "Kept", "NameTable"]

#: Fraction of a TTL after which a name in use is refreshed ahead of expiry.
PREFETCH_AT: Final = 0.85
#: While a negative is distrusted, it is checked again at least this often (seconds).
SUSPECT_RECHECK_MAX: Final = 30.0
#: First back-off (seconds) after a failed refresh of a held name; it doubles, up to the
#: TTL (but at least 1 s) and at most FAILURE_BACKOFF_MAX, so a recovered provider is
#: noticed soon. A partial answer (one family failed) is backed off the same way.
FAILURE_BACKOFF: Final = 0.5
FAILURE_BACKOFF_MAX: Final = 30.0
#: An outage WARNING (``dns.lkg_serving``) is logged at most once per name this often
#: (seconds), and at most OUTAGE_WARNINGS_MAX times across names in that interval.
OUTAGE_WARNING_INTERVAL: Final = 60.0
OUTAGE_WARNINGS_MAX: Final = 20

NEVER: Final = -math.inf


_FAMILY_TYPE: Final = {4: "A", 6: "AAAA"}


@dataclasses.dataclass(frozen=True, slots=True)
class Kept:
    """One family's last-known-good addresses, kept while its query fails or is empty.

    ``reason`` is the failure, or ``"NODATA"``; ``empty_since`` is when the family was
    first answered empty (the distrust clock), None while it only fails.
    """

    family: int
    addresses: tuple[str, ...]
    ttl: float
    learned_at: float
    reason: str
    empty_since: float | None


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
    #: Families whose last-known-good addresses are part of ``addresses`` though the
    #: latest answer did not confirm them; dropped at ``kept_until``.
    kept: tuple[Kept, ...] = ()
    kept_until: float = math.inf
    #: Consecutive refreshes that were partial (a family failed).
    partials: int = 0
    #: The outcome this entry was built from (identity: "is this the answer I waited for").
    origin: object = None
    #: When the name started being served as last-known-good in this outage (None: not).
    outage_since: float | None = None
    #: Whether this outage's start was logged (so its end is logged too).
    outage_logged: bool = False

    @property
    def has_addresses(self) -> bool:
        return bool(self.addresses)


def _answer(entry: Entry) -> Answer:
    """The answer an entry's addresses make: stale, and saying so, while families are kept."""
    if not entry.kept:
        return Answer(entry.name, entry.addresses, stale=False, source=entry.source, ttl=entry.ttl)
    why = "; ".join(f"{_FAMILY_TYPE[k.family]} {k.reason}" for k in entry.kept)
    source = f"partial: last-known-good {why}; from {entry.source}"
    return Answer(entry.name, entry.addresses, stale=True, source=source, ttl=entry.ttl)


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
        stale_ttl: float = math.inf,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._entries: LRUCache[str, Entry] = LRUCache(maxsize=size)
        self.stale_ttl = stale_ttl
        self._warned: dict[str, float] = {}
        self._warnings: collections.deque[float] = collections.deque()
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

    def may_warn(self, name: str, now: float) -> bool:
        """Whether an outage of ``name`` starting now may log its WARNING.

        At most one per name every OUTAGE_WARNING_INTERVAL seconds (a flapping provider
        does not log each flap), and OUTAGE_WARNINGS_MAX across all names in that time
        (an outage of 10 000 names does not log 10 000 lines at once).
        """
        last = self._warned.get(name)
        if last is not None and now - last < OUTAGE_WARNING_INTERVAL:
            return False
        window = self._warnings
        while window and now - window[0] >= OUTAGE_WARNING_INTERVAL:
            window.popleft()
        if len(window) >= OUTAGE_WARNINGS_MAX:
            return False
        window.append(now)
        self._warned.pop(name, None)
        self._warned[name] = now
        if len(self._warned) > self.maxsize:
            del self._warned[next(iter(self._warned))]
        return True

    def too_old(self, learned_at: float, ttl: float, now: float) -> bool:
        """True when an answer learned at ``learned_at`` may no longer be served."""
        return now - (learned_at + ttl) > self.stale_ttl

    def _apply_positive(
        self, name: str, held: Entry | None, generation: float, outcome: Positive, now: float
    ) -> list[Event]:
        events: list[Event] = []
        kept: list[Kept] = []
        if held is not None and held.has_addresses and not self._expired(held, now):
            for fam in sorted(outcome.failed | outcome.empty):
                kept_one = self._keep(name, held, fam, outcome, now, events)
                if kept_one is not None:
                    kept.append(kept_one)
        addresses = outcome.addresses
        if kept:
            addresses = order_addresses(addresses + tuple(a for k in kept for a in k.addresses))
        entry = self.positive(
            name,
            addresses,
            outcome.ttl,
            outcome.source,
            generation=generation,
            learned_at=now,
        )
        entry.origin = outcome
        if outcome.failed:  # re-ask the failed family soon, backed off
            entry.partials = held.partials + 1 if held is not None else 1
            entry.next_refresh_at = min(
                entry.next_refresh_at, now + self._backoff(entry.ttl, entry.partials)
            )
        if kept:
            entry.kept = tuple(kept)
            entry.kept_until = min(k.learned_at + k.ttl + self.stale_ttl for k in kept)
            entry.fresh_until = min(entry.fresh_until, entry.kept_until)
            if any(k.empty_since is not None for k in kept):
                entry.next_refresh_at = min(
                    entry.next_refresh_at, now + self._recheck_interval(entry.ttl)
                )
            entry.answer = _answer(entry)
        failed_kept = [k for k in kept if k.empty_since is None]
        if held is not None and held.outage_since is not None:
            entry.outage_since = held.outage_since
            entry.outage_logged = held.outage_logged
        if failed_kept and entry.outage_since is None:
            entry.outage_since = now
            entry.outage_logged = self.may_warn(name, now)
            if entry.outage_logged:
                events.append(
                    ServingLastKnownGood(
                        name,
                        tuple(a for k in failed_kept for a in k.addresses),
                        now - min(k.learned_at for k in failed_kept),
                        "; ".join(f"{_FAMILY_TYPE[k.family]}: {k.reason}" for k in failed_kept),
                    )
                )
        elif not kept and entry.outage_since is not None:
            if entry.outage_logged:
                events.append(LastKnownGoodEnded(name, now - entry.outage_since, outcome.source))
            entry.outage_since = None
            entry.outage_logged = False
        self._entries[name] = entry
        if held is not None and held.addresses == entry.addresses and not held.suspect:
            return events
        return [*events, AnswerUpdated(name, entry.addresses, entry.ttl, entry.source)]

    def _keep(
        self,
        name: str,
        held: Entry,
        fam: int,
        outcome: Positive,
        now: float,
        events: list[Event],
    ) -> Kept | None:
        """What to keep of ``held``'s ``fam`` addresses when ``outcome`` has none of them."""
        addresses = tuple(a for a in held.addresses if family(a) == fam)
        if not addresses:
            return None
        prev = next((k for k in held.kept if k.family == fam), None)
        learned_at, ttl = (prev.learned_at, prev.ttl) if prev else (held.learned_at, held.ttl)
        if self.too_old(learned_at, ttl, now):
            return None
        if fam in outcome.failed:
            since = prev.empty_since if prev is not None else None
            return Kept(fam, addresses, ttl, learned_at, "query failed", since)
        kind = f"NODATA ({_FAMILY_TYPE[fam]})"
        if prev is not None and prev.empty_since is not None:
            since = prev.empty_since
        else:
            since = held.suspect_since if held.suspect else now
        if now - since >= self.keep_on_empty:
            events.append(EmptyAnswerAccepted(name, kind, addresses))
            return None
        if prev is None or prev.empty_since is None:
            events.append(
                EmptyAnswerDistrusted(name, kind, addresses, now - since, self.keep_on_empty)
            )
        return Kept(fam, addresses, ttl, learned_at, "answered empty", since)

    def drop_kept(self, entry: Entry, now: float) -> None:
        """Drop the kept families that have grown too old to serve (``now >= kept_until``)."""
        keep = tuple(k for k in entry.kept if not self.too_old(k.learned_at, k.ttl, now))
        dropped = {a for k in entry.kept if k not in keep for a in k.addresses}
        entry.addresses = tuple(a for a in entry.addresses if a not in dropped)
        entry.kept = keep
        entry.kept_until = min(
            (k.learned_at + k.ttl + self.stale_ttl for k in keep), default=math.inf
        )
        entry.fresh_until = min(entry.expires_at, entry.kept_until) if not entry.suspect else NEVER
        entry.answer = _answer(entry)

    def _expired(self, held: Entry, now: float) -> bool:
        return self.too_old(held.learned_at, held.ttl, now)

    def _backoff(self, ttl: float, streak: int) -> float:
        ceiling = min(max(ttl, 1.0), FAILURE_BACKOFF_MAX)
        backoff: float = min(FAILURE_BACKOFF * 2.0 ** (streak - 1), ceiling)
        return backoff * (0.5 + self._rand() / 2)

    def _apply_negative(
        self, name: str, held: Entry | None, generation: float, outcome: Negative, now: float
    ) -> list[Event]:
        if held is not None and held.has_addresses and not self._expired(held, now):
            since = held.suspect_since if held.suspect else now
            if now - since < self.keep_on_empty:
                held.generation = generation
                held.fresh_until = NEVER
                held.next_refresh_at = now + self._recheck_interval(held.ttl)
                first = held.suspect is None
                held.suspect = outcome.kind
                held.suspect_since = since
                held.failures = 0
                if held.outage_since is None:
                    held.outage_since = now
                    held.outage_logged = first
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
            held.next_refresh_at = now + self._backoff(held.ttl, held.failures)
            if (
                held.outage_since is None
                and now >= held.expires_at
                and not self._expired(held, now)
            ):
                # Served stale from now on: one WARNING for this name and this outage.
                held.outage_since = now
                held.outage_logged = self.may_warn(name, now)
                if held.outage_logged:
                    return [
                        RefreshFailed(name, outcome.error),
                        ServingLastKnownGood(
                            name, held.addresses, now - held.learned_at, outcome.error
                        ),
                    ]
        return [RefreshFailed(name, outcome.error)]

    def _recheck_interval(self, ttl: float) -> float:
        """How soon a distrusted negative is checked again: the TTL's cadence, jittered."""
        base = min(ttl, SUSPECT_RECHECK_MAX)
        return max(base * (0.5 + self._rand() / 2), min(self.min_ttl, base))
