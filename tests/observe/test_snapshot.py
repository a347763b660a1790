"""Runtime state: Resolver.snapshot(), Policy.snapshot(), reachable from a client."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

import outlast
from outlast import Resolver
from outlast.dns import NameState, ResolverSnapshot
from outlast.policy import CircuitBreaker, KeyState, PolicySnapshot
from outlast.testing import DNSServer


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_resolver_snapshot_says_which_names_are_stale_since_when_and_why(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    fresh, failing, distrusted = unique_name("fresh"), unique_name("failing"), unique_name("nx")
    for name in (fresh, failing, distrusted):
        fault_dns.set(name, ["127.0.0.1"], ttl=60)
    clock = Clock()
    with Resolver(
        providers=[fault_dns.provider], timeout=0.5, clock=clock, static={"s.test": ["127.0.0.9"]}
    ) as resolver:
        for name in (fresh, failing, distrusted):
            resolver.resolve(name)
        before = time.time()
        snap = resolver.snapshot()
        assert isinstance(snap, ResolverSnapshot)
        assert snap.stale == ()
        state = snap.get(fresh)
        assert state is not None
        assert (state.addresses, state.stale, state.stale_since) == (("127.0.0.1",), False, None)
        assert state.source == fault_dns.provider
        assert snap.static == (("s.test", ("127.0.0.9",)),)

        fault_dns.fail("servfail", failing)
        fault_dns.nxdomain(distrusted)
        clock.now += 100.0  # all three expired 40 s ago
        fault_dns.set(fresh, ["127.0.0.1"], ttl=60)
        for name in (fresh, failing, distrusted):
            assert resolver.resolve(name).stale  # served at once, refreshed behind
        _wait_for(lambda: (resolver.snapshot().get(distrusted) or state).distrusted is not None)
        _wait_for(lambda: (resolver.snapshot().get(failing) or state).last_error is not None)
        _wait_for(lambda: not (resolver.snapshot().get(fresh) or state).stale)
        snap = resolver.snapshot()

    assert {s.host for s in snap.stale} == {failing, distrusted}
    nx = snap.get(distrusted)
    assert nx is not None
    assert nx.distrusted == "NXDOMAIN"
    assert nx.addresses == ("127.0.0.1",)
    assert nx.stale_since is not None
    assert before - 1 <= nx.stale_since <= time.time()
    down = snap.get(failing)
    assert down is not None
    assert down.stale
    assert down.last_error
    assert down.stale_since == pytest.approx(snap.taken_at - 40.0, abs=1.0)  # since expiry
    assert down.learned_at == pytest.approx(snap.taken_at - 100.0, abs=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        down.stale = False  # type: ignore[misc]
    assert isinstance(down, NameState)


def test_a_policy_snapshot_says_which_breakers_are_open_since_when() -> None:
    clock = Clock()
    policy = outlast.Policy(
        name="svc",
        retry=None,
        breaker=CircuitBreaker(failures=2, reset=30.0, min_reset=30.0),
        clock=clock,
    )

    def boom() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            policy.for_key("https://db.test:443").call(boom)
    policy.for_key("https://ok.test:443").call(lambda: None)
    clock.now += 10.0
    snap = policy.snapshot()
    assert isinstance(snap, PolicySnapshot)
    assert [k.key for k in snap.keys] == ["svc", "https://db.test:443", "https://ok.test:443"]
    assert [k.key for k in snap.open] == ["https://db.test:443"]
    db = snap.get("https://db.test:443")
    assert isinstance(db, KeyState)
    assert db.state == "open"
    assert db.open_since == pytest.approx(snap.taken_at - 10.0, abs=1.0)
    assert db.retry_after == pytest.approx(20.0)
    assert db.calls is not None
    assert db.retries == 0
    ok = snap.get("https://ok.test:443")
    assert ok is not None
    assert (ok.state, ok.open_since, ok.failures) == ("closed", None, 0)
    # a derived policy (what integrations use) shares and shows the same breakers
    assert [k.key for k in policy.derive(sleep=lambda s: None).snapshot().open] == [
        "https://db.test:443"
    ]
    assert outlast.Policy(enabled=False).snapshot().keys == ()
    assert outlast.Policy(breaker=None, budget=None).snapshot().keys[0].state is None


def test_clients_expose_their_resolver_and_policy(
    fault_dns: DNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUTLAST_DISABLE", raising=False)
    with Resolver(providers=[fault_dns.provider]) as resolver:
        policy = outlast.Policy(name="mine")
        with outlast.Client(resolver=resolver, policy=policy) as client:
            assert client.resolver is resolver
            assert client.policy is policy
            assert client.resolver.snapshot().names == ()
        transport = outlast.Transport(resolver=resolver, policy=policy)
        with outlast.Client(transport=transport) as client:
            assert client.resolver is resolver
            assert client.policy is policy
        async_client = outlast.AsyncClient(resolver=resolver)
        assert async_client.resolver is resolver
        assert async_client.policy is not None
        assert async_client.policy.snapshot().name == "outlast.http"
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    with outlast.Client() as client:
        assert client.resolver is None
        assert client.policy is None
