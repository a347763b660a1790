"""Asking several providers: hedging, and ejecting the ones that keep failing.

Providers are asked in the configured order. If the one asked last has not answered
within the hedge delay, the next is asked as well; a failure moves on to the next at
once. The first real answer (addresses, or an authoritative negative) wins. Queries
that lost the race are left to finish in the background so that a provider that
never answers is still seen to time out, and is ejected.

A partial answer (addresses for one family, while the other family's query failed)
is not a failure: it is held while the others are asked, for at most one more hedge
delay, and then what arrived is combined (``merge``), each family from the first
provider that had it. A provider bounds each of its queries by the timeout itself, so
a dropped AAAA query never discards the A answer; the pool's own bound is a little
longer (``GRACE``), for providers that do not.

A provider with ``EJECT_AFTER`` consecutive failures is skipped for a growing interval
(``EJECT_BASE`` doubling up to ``EJECT_MAX``). When the interval has passed it is asked
again in its place; one good answer restores it, one more failure ejects it for longer.
A provider is not ejected when no other is usable, and if every provider is ejected
the one due back soonest is asked anyway: the pool never gives up on all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Final

from outlast._config import ProviderSpec
from outlast._events import Emitter
from outlast._exceptions import ConfigError
from outlast.dns._events import ProviderEjected, ProviderFailed, ProviderRestored
from outlast.dns._providers import (
    Failure,
    Negative,
    Outcome,
    Positive,
    Provider,
    SystemProvider,
    merge,
)

__all__ = [
    "EJECT_AFTER",
    "EJECT_BASE",
    "EJECT_MAX",
    "GRACE",
    "ProviderPool",
    "build_provider",
]

EJECT_AFTER: Final = 2
EJECT_BASE: Final = 5.0
EJECT_MAX: Final = 300.0
#: The pool waits this much longer than the timeout for a provider's own bounded answer.
GRACE: Final = 0.25


@dataclasses.dataclass(slots=True)
class _Health:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0


class ProviderPool:
    """Runs one name's lookup across providers. Lives on the resolver's event loop."""

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        timeout: float,
        hedge_delay: float,
        clock: Callable[[], float],
        emitter: Emitter,
    ) -> None:
        if not providers:
            raise ValueError("at least one provider is needed")
        self.providers = tuple(providers)
        self.timeout = timeout
        self.hedge_delay = hedge_delay
        self._clock = clock
        self._emitter = emitter
        self._health = {id(p): _Health() for p in self.providers}
        self._stragglers: set[asyncio.Task[Outcome]] = set()

    @property
    def deadline(self) -> float:
        """The longest one lookup can take."""
        return self.hedge_delay * len(self.providers) + self.timeout + GRACE

    def order(self) -> list[Provider]:
        """Providers to ask, in order: the ejected ones left out, but never all of them."""
        now = self._clock()
        usable = [p for p in self.providers if self._health[id(p)].ejected_until <= now]
        if usable:
            return usable
        return [min(self.providers, key=lambda p: self._health[id(p)].ejected_until)]

    async def lookup(self, host: str) -> Outcome:
        providers = self.order()
        failures: list[Failure] = []
        partials: list[Positive] = []
        pending: set[asyncio.Task[Outcome]] = set()
        started = 0
        loop = asyncio.get_running_loop()
        settle_by = math.inf  # once a partial answer is held: when to stop waiting

        def ask_next() -> None:
            nonlocal started
            pending.add(asyncio.ensure_future(self._ask(providers[started], host)))
            started += 1

        ask_next()
        while pending:
            more = started < len(providers)
            timeout = self.hedge_delay if more else None
            if partials:
                left = max(settle_by - loop.time(), 0.0)
                timeout = left if timeout is None else min(timeout, left)
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                outcome = task.result()
                if isinstance(outcome, Positive) and outcome.failed:
                    if not partials:
                        settle_by = loop.time() + self.hedge_delay
                    partials.append(outcome)
                elif isinstance(outcome, Negative) and partials:
                    continue  # addresses already had outweigh a later "no such name"
                elif not isinstance(outcome, Failure):
                    self._leave_running(pending)
                    return outcome
                else:
                    failures.append(outcome)
            if partials and loop.time() >= settle_by:
                break
            if more:  # the hedge delay passed, or a provider failed: ask the next one too
                ask_next()
        if partials:
            self._leave_running(pending)
            return merge(partials)
        errors = "; ".join(f"{f.source}: {f.error}" for f in failures)
        return Failure(errors, "providers")

    def _leave_running(self, tasks: set[asyncio.Task[Outcome]]) -> None:
        for task in tasks:
            self._stragglers.add(task)
            task.add_done_callback(self._stragglers.discard)

    async def _ask(self, provider: Provider, host: str) -> Outcome:
        try:
            outcome = await asyncio.wait_for(
                provider.lookup(host, self.timeout), self.timeout + GRACE
            )
        except asyncio.TimeoutError:
            outcome = Failure(f"timed out after {self.timeout:g}s", provider.name)
        except Exception as exc:
            outcome = Failure(f"{type(exc).__name__}: {exc}", provider.name)
        self._record(provider, host, outcome)
        return outcome

    def _record(self, provider: Provider, host: str, outcome: Outcome) -> None:
        health = self._health[id(provider)]
        if not isinstance(outcome, Failure):
            if health.ejections:
                self._emitter.emit(ProviderRestored(provider.name))
            health.failures = 0
            health.ejections = 0
            health.ejected_until = 0.0
            return
        health.failures += 1
        if self._emitter.enabled:
            self._emitter.emit(ProviderFailed(provider.name, host, outcome.error))
        now = self._clock()
        others_usable = any(
            self._health[id(p)].ejected_until <= now for p in self.providers if p is not provider
        )
        if health.failures >= EJECT_AFTER and health.ejected_until <= now and others_usable:
            seconds = min(EJECT_BASE * 2**health.ejections, EJECT_MAX)
            health.ejections += 1
            health.ejected_until = now + seconds
            self._emitter.emit(ProviderEjected(provider.name, seconds, outcome.error))

    async def aclose(self) -> None:
        """Cancel queries still running and close the providers' connections."""
        for task in list(self._stragglers):
            task.cancel()
        for provider in self.providers:
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()

    def after_fork_in_child(self) -> None:
        """The parent's loop and its tasks do not exist in a child."""
        self._stragglers = set()
        for provider in self.providers:
            forget = getattr(provider, "forget", None)
            if forget is not None:
                forget()


def build_provider(
    entry: str | ProviderSpec | Provider, *, verify: bool | str | os.PathLike[str] = True
) -> Provider:
    """A provider from an ``OUTLAST_DNS_PROVIDERS`` entry, a parsed spec, or a provider."""
    if isinstance(entry, str):
        entry = ProviderSpec.parse(entry, setting="providers")
    if not isinstance(entry, ProviderSpec):
        if not (isinstance(getattr(entry, "name", None), str) and callable(entry.lookup)):
            raise ConfigError(
                "providers",
                entry,
                "an OUTLAST_DNS_PROVIDERS entry, a ProviderSpec, or a provider "
                "(an object with a .name and an async .lookup(host, timeout))",
            )
        return entry
    if entry.kind == "system":
        return SystemProvider()
    if entry.kind == "https":
        from outlast.dns._doh import DoHProvider  # httpx: imported only for a DoH provider

        return DoHProvider(entry, verify=verify)
    if entry.kind == "tls":
        from outlast.dns._dot import DoTProvider  # dnspython: imported for such providers only

        return DoTProvider(entry, verify=verify)
    from outlast.dns._wire import NameserverProvider  # likewise

    return NameserverProvider(entry)
