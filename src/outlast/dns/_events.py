"""The resolver's events. Each is logged under the ``outlast.dns`` logger."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

from outlast._events import Event

__all__ = [
    "AnswerUpdated",
    "CacheFileFailed",
    "CacheHit",
    "CacheMiss",
    "EmptyAnswerAccepted",
    "EmptyAnswerDistrusted",
    "LastKnownGoodEnded",
    "ProviderEjected",
    "ProviderFailed",
    "ProviderRestored",
    "RefreshFailed",
    "ServingLastKnownGood",
    "StaleServed",
    "StaticServed",
]


@dataclasses.dataclass(frozen=True, slots=True)
class CacheHit(Event):
    """A fresh answer was served from memory. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.cache_hit"
    host: str


@dataclasses.dataclass(frozen=True, slots=True)
class CacheMiss(Event):
    """No usable answer was held; the caller waits for the providers. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.cache_miss"
    host: str


@dataclasses.dataclass(frozen=True, slots=True)
class StaleServed(Event):
    """A stale answer was served (while refreshing, or because providers failed). Added in 0.1.0."""

    kind: ClassVar[str] = "dns.stale_served"
    host: str
    reason: str
    age: float


@dataclasses.dataclass(frozen=True, slots=True)
class StaticServed(Event):
    """``OUTLAST_DNS_STATIC`` addresses were served as the last resort. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.static_served"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("host",)
    host: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class AnswerUpdated(Event):
    """A provider's answer replaced the one held. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.answer_updated"
    host: str
    addresses: tuple[str, ...]
    ttl: float
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class EmptyAnswerDistrusted(Event):
    """A name with a last-known-good answer came back empty or NXDOMAIN; the LKG is kept.

    ``negative`` is ``"NXDOMAIN"`` or ``"NODATA"``; ``held_for`` how long the negative
    has been seen; ``keep_for`` how long it is distrusted in all. Added in 0.1.0.
    """

    kind: ClassVar[str] = "dns.empty_distrusted"
    level: ClassVar[int] = logging.WARNING
    host: str
    negative: str
    kept: tuple[str, ...]
    held_for: float
    keep_for: float


@dataclasses.dataclass(frozen=True, slots=True)
class EmptyAnswerAccepted(Event):
    """A negative answer held for ``OUTLAST_DNS_KEEP_ON_EMPTY``; the LKG is dropped.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "dns.empty_accepted"
    level: ClassVar[int] = logging.WARNING
    host: str
    negative: str
    dropped: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshFailed(Event):
    """Every provider failed to answer for a name. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.refresh_failed"
    level: ClassVar[int] = logging.INFO
    throttle: ClassVar[tuple[str, ...] | None] = ("host",)
    host: str
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class ServingLastKnownGood(Event):
    """The providers fail, so a name is now served from its last-known-good addresses.

    Logged once per name per outage: ``addresses`` are those served, ``age`` how old
    they are (seconds), ``error`` why nothing newer was had. For
    a partial outage (one family's query fails) ``addresses`` are the kept family's.
    :class:`LastKnownGoodEnded` says when it is over. Added in 0.1.0.
    """

    kind: ClassVar[str] = "dns.lkg_serving"
    level: ClassVar[int] = logging.WARNING
    host: str
    addresses: tuple[str, ...]
    age: float
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class LastKnownGoodEnded(Event):
    """A name served as last-known-good (or static, or distrusted) has a real answer again.

    ``lasted`` is how long it was served so (seconds); ``source`` the provider that
    answered. Added in 0.1.0.
    """

    kind: ClassVar[str] = "dns.lkg_ended"
    level: ClassVar[int] = logging.INFO
    host: str
    lasted: float
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderFailed(Event):
    """One provider failed one query (timeout, SERVFAIL, REFUSED, network error). Added in 0.1.0."""

    kind: ClassVar[str] = "dns.provider_failed"
    provider: str
    host: str
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderEjected(Event):
    """A provider that kept failing is skipped for ``seconds``. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.provider_ejected"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("provider",)
    provider: str
    seconds: float
    error: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderRestored(Event):
    """An ejected provider answered a probe and is used again. Added in 0.1.0."""

    kind: ClassVar[str] = "dns.provider_restored"
    level: ClassVar[int] = logging.INFO
    provider: str


@dataclasses.dataclass(frozen=True, slots=True)
class CacheFileFailed(Event):
    """The cache file could not be read or written; the resolver goes on without it.

    Emitted once per failure streak (the resolver backs off and says nothing more until
    a write succeeds), so it is not rate-limited again here.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "dns.cache_file_failed"
    level: ClassVar[int] = logging.WARNING
    path: str
    error: str
