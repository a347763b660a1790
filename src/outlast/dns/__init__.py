"""outlast.dns: the last-known-good resolver.

Owns name resolution: providers (system, Do53 UDP/TCP, DoT, DoH), hedging across
them, the bounded cache with stale-while-revalidate and distrust of sudden empty
answers, static last-resort addresses and the persisted cache file.

Imports ``outlast._config``, ``outlast._events``, ``outlast._exceptions`` and
``outlast._names``; httpx only as the DoH provider's HTTP client. Never botocore,
``outlast.policy``, ``outlast.http`` or ``outlast.aws``.
"""

from __future__ import annotations

from outlast.dns._answer import Answer
from outlast.dns._events import (
    AnswerUpdated,
    CacheFileFailed,
    CacheHit,
    CacheMiss,
    EmptyAnswerAccepted,
    EmptyAnswerDistrusted,
    LastKnownGoodEnded,
    ProviderEjected,
    ProviderFailed,
    ProviderRestored,
    RefreshFailed,
    ServingLastKnownGood,
    StaleServed,
    StaticServed,
)
from outlast.dns._providers import Failure, Negative, Outcome, Positive, Provider
from outlast.dns._resolver import Resolver
from outlast.dns._shared import SharedAnswer, SharedAnswers
from outlast.dns._snapshot import NameState, ResolverSnapshot

__all__ = [
    "Answer",
    "AnswerUpdated",
    "CacheFileFailed",
    "CacheHit",
    "CacheMiss",
    "EmptyAnswerAccepted",
    "EmptyAnswerDistrusted",
    "Failure",
    "LastKnownGoodEnded",
    "NameState",
    "Negative",
    "Outcome",
    "Positive",
    "Provider",
    "ProviderEjected",
    "ProviderFailed",
    "ProviderRestored",
    "RefreshFailed",
    "Resolver",
    "ResolverSnapshot",
    "ServingLastKnownGood",
    "SharedAnswer",
    "SharedAnswers",
    "StaleServed",
    "StaticServed",
]
