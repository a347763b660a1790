"""A provider whose answers a test sets: for the resolver's logic, where no socket is needed."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from outlast.dns import Failure, Negative, Outcome, Positive


class ScriptedProvider:
    """Answers from a table; counts lookups; can be made slow or failing per name."""

    def __init__(self, name: str = "scripted") -> None:
        self.name = name
        self.outcomes: dict[str, Outcome] = {}
        self.delay = 0.0
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def set(self, host: str, *addresses: str, ttl: float = 60.0) -> None:
        self.outcomes[host] = Positive(tuple(addresses), ttl, self.name)

    def negative(self, host: str, kind: str = "NXDOMAIN", ttl: float = 5.0) -> None:
        self.outcomes[host] = Negative(kind, ttl, self.name)

    def fail(self, host: str, error: str = "SERVFAIL") -> None:
        self.outcomes[host] = Failure(error, self.name)

    async def lookup(self, host: str, timeout: float) -> Outcome:
        with self._lock:
            self.calls[host] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.outcomes.get(host, Negative("NXDOMAIN", 5.0, self.name))


class ManualClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
