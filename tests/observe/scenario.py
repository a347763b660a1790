"""What the exporter tests drive: a real Resolver and real Policies, with known outcomes.

Every exporter test runs the same two scenarios and reads the result through its own
library's reader, so the expected numbers live here once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from outlast import CircuitBreaker, Listener, Policy, Resolver, Retry, RetryBudget
from outlast.observe import Counts
from outlast.testing import DNSServer, set_testing


class ManualClock:
    """A monotonic clock that moves only when told (TTLs expire on demand)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the expected events did not arrive in time")
        time.sleep(0.01)


def drive_resolver(
    listeners: Sequence[Listener], good: DNSServer, dead: DNSServer, name: str
) -> None:
    """The outage, on loopback: a blackholed first provider, then the record goes NXDOMAIN.

    Afterwards: 1 cache miss, 1 cache hit, 2 stale answers served, 1 NXDOMAIN
    distrusted, 2 errors and 1 ejection of ``dead.provider``, no refresh failure.
    """
    clock = ManualClock()
    watch = Counts()
    good.set(name, ["192.0.2.10"], ttl=30)
    resolver = Resolver(
        providers=[dead.provider, good.provider],
        timeout=0.3,
        hedge_delay=0.02,
        listeners=[*listeners, watch],
        clock=clock,
    )
    with resolver:
        assert resolver.resolve(name).addresses == ("192.0.2.10",)  # miss
        assert not resolver.resolve(name).stale  # hit
        good.nxdomain(name)
        clock.now += 31  # expired: served stale while the refresh runs
        assert resolver.resolve(name).stale
        wait_for(lambda: watch.value("dns.empty_distrusted", negative="NXDOMAIN") == 1)
        answer = resolver.resolve(name)  # the NXDOMAIN is distrusted: last-known-good
        assert answer.stale
        assert answer.addresses == ("192.0.2.10",)
        wait_for(lambda: watch.value("dns.provider_ejections", provider=dead.provider) == 1)


def boom() -> None:
    raise OSError("down")


def drive_policies(listeners: Sequence[Listener]) -> None:
    """Two failing calls: ``flaky`` retries twice and its breaker opens; ``tight`` has no budget.

    Afterwards: retries{flaky} 2, breaker_state{flaky} 2 (open), breaker_state{tight}
    unset (no breaker), budget_exhausted{tight} 1.
    """
    flaky = Policy(
        retry=Retry(attempts=3),
        budget=None,
        breaker=CircuitBreaker(failures=3, reset=60, min_reset=60),
        name="flaky",
        listeners=listeners,
    )
    tight = Policy(
        retry=Retry(attempts=3),
        budget=RetryBudget(ratio=0.0, floor=0.0),
        breaker=None,
        name="tight",
        listeners=listeners,
    )
    with set_testing(True):
        for policy in (flaky, tight):
            try:
                policy.call(boom)
            except OSError:
                pass
            else:  # pragma: no cover
                raise AssertionError("the call should have failed")
