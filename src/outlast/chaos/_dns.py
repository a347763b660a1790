"""Chaos at the DNS provider layer: a provider that sometimes answers like a broken one.

:class:`ChaosProvider` wraps one real provider. When the plan's dice say so, a lookup
does not reach the real provider and returns what a misbehaving one would: an empty
answer (``dns_empty``: NOERROR, no addresses), ``dns_nxdomain``, a SERVFAIL failure
(``dns_servfail``), or silence until the timeout (``dns_timeout``). The resolver above
meets these as real answers: a name with a last-known-good answer keeps it (the empty
answer is distrusted), a name never seen fails.

Imported by :meth:`outlast.Resolver.from_env` only when ``OUTLAST_CHAOS`` is set.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, cast

from outlast._chaosplan import DNS_FAULTS, ChaosPlan
from outlast._config import ProviderSpec
from outlast._events import Emitter, Listener
from outlast.chaos._events import LOGGER, ChaosArmed, FaultInjected
from outlast.dns._pool import build_provider
from outlast.dns._providers import Failure, Negative, Outcome, Provider

__all__ = ["INJECTED", "NEGATIVE_TTL", "ChaosProvider", "wrap_dns", "wrap_providers"]

#: Appended to what an injected fault reports, so errors say it was a rehearsal.
INJECTED: Final = "(injected by OUTLAST_CHAOS)"
#: The TTL of an injected empty or NXDOMAIN answer (a typical SOA minimum).
NEGATIVE_TTL: Final = 5.0


class ChaosProvider:
    """A provider that injects the plan's DNS faults in front of a real one.

    Added in 0.1.0.
    """

    def __init__(self, inner: Provider, plan: ChaosPlan, emitter: Emitter) -> None:
        self.inner = inner
        self.name = inner.name
        self._plan = plan
        self._emitter = emitter

    def __repr__(self) -> str:
        return f"<ChaosProvider {self.name} {self._plan.text!r}>"

    async def lookup(self, host: str, timeout: float) -> Outcome:
        rule = self._plan.first(DNS_FAULTS, host)
        if rule is None:
            return await self.inner.lookup(host, timeout)
        fault = rule.fault
        source = f"{self.name} {INJECTED}"
        outcome: Outcome
        if fault == "dns_empty":
            outcome = Negative("NODATA", NEGATIVE_TTL, source)
        elif fault == "dns_nxdomain":
            outcome = Negative("NXDOMAIN", NEGATIVE_TTL, source)
        elif fault == "dns_servfail":
            outcome = Failure(f"SERVFAIL {INJECTED}", source)
        else:  # dns_timeout: silence, as long as the caller is willing to wait
            outcome = Failure(f"timed out after {timeout:g}s {INJECTED}", source)
        self._emitter.emit(FaultInjected(fault, "dns", host, self.name, _describe(outcome)))
        if fault == "dns_timeout":
            await asyncio.sleep(timeout)
        return outcome

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()

    def forget(self) -> None:
        forget = getattr(self.inner, "forget", None)
        if forget is not None:
            forget()


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, Negative):
        return outcome.kind
    assert isinstance(outcome, Failure)
    return outcome.error.removesuffix(f" {INJECTED}")


def wrap_providers(
    entries: Sequence[str | ProviderSpec | Provider],
    plan: ChaosPlan,
    *,
    verify: bool | str | os.PathLike[str] = True,
    listeners: Iterable[Listener] = (),
) -> list[Provider]:
    """Each provider of ``entries`` (built as the resolver would) behind a ChaosProvider.

    Added in 0.1.0.
    """
    emitter = Emitter(LOGGER, listeners)
    built = [build_provider(entry, verify=verify) for entry in entries]
    return [ChaosProvider(provider, plan, emitter) for provider in built]


def wrap_dns(plan: ChaosPlan, options: Mapping[str, object]) -> object:
    """The ``providers`` option of :meth:`Resolver.from_env`, wrapped when DNS faults are planned.

    ``options`` are the resolver's keyword arguments (``providers``, and ``verify`` and
    ``listeners`` when given); the providers are returned as they were when the plan
    has no DNS fault.
    """
    entries = options["providers"]
    listeners = cast("Iterable[Listener]", options.get("listeners", ()))
    Emitter(LOGGER, listeners).emit(ChaosArmed("resolver", plan.text))
    if not plan.has_any(DNS_FAULTS):
        return entries
    verify = cast("bool | str | os.PathLike[str]", options.get("verify", True))
    return wrap_providers(
        cast("Sequence[str | ProviderSpec | Provider]", entries),
        plan,
        verify=verify,
        listeners=listeners,
    )
