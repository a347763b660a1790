"""What a resolver holds, as plain frozen data: :meth:`outlast.Resolver.snapshot`.

Times are wall-clock (seconds since the epoch, ``time.time()``), so they can be logged,
shown on a status page or compared across processes.
"""

from __future__ import annotations

import dataclasses

__all__ = ["NameState", "ResolverSnapshot"]


@dataclasses.dataclass(frozen=True, slots=True)
class NameState:
    """One name the resolver holds.

    ``addresses`` are what would be served (empty for a cached negative answer, whose
    kind is ``negative``: ``"NXDOMAIN"`` or ``"NODATA"``). ``stale`` is True when they
    are served as last-known-good rather than fresh: past their TTL while refreshes
    fail, an empty answer distrusted (``distrusted`` holds its kind), or loaded from the
    cache file or the fleet and not yet confirmed. ``stale_since`` is when that began
    (None while fresh); ``learned_at`` when a provider last gave these addresses;
    ``source`` where they came from; ``last_error`` the latest refresh failure.

    Added in 0.1.0.
    """

    host: str
    addresses: tuple[str, ...]
    source: str
    ttl: float
    learned_at: float
    stale: bool
    stale_since: float | None
    distrusted: str | None
    negative: str | None
    last_error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolverSnapshot:
    """Every name a resolver holds, at ``taken_at``, and its static last-resort table.

    ``static`` maps names to their ``OUTLAST_DNS_STATIC`` addresses.

    Added in 0.1.0.
    """

    taken_at: float
    names: tuple[NameState, ...]
    static: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def stale(self) -> tuple[NameState, ...]:
        """The names served as last-known-good now."""
        return tuple(state for state in self.names if state.stale)

    def get(self, host: str) -> NameState | None:
        """The state of ``host`` (normalised: lower case, no trailing dot), or None."""
        return next((state for state in self.names if state.host == host), None)
