"""The resolver's invariants as properties (hypothesis), in memory and over real sockets.

For every sequence of refreshes, each with a random outcome per record type (new or
same addresses, empty, failed) or for the whole name (NXDOMAIN, failure), finishing
in a random order:

- a failure never removes a family: the addresses served for a family whose query
  failed (or, while distrusted, answered empty) are still served after it;
- an answer is never older than the one it replaces: a refresh that started before
  the answer held changes nothing;
- nothing older than TTL + STALE_TTL is served;
- a family that failed is re-asked soon.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outlast import Answer, Resolver
from outlast.dns import Failure, Negative, Outcome, Positive
from outlast.dns._providers import combine, family
from outlast.dns._table import FAILURE_BACKOFF_MAX
from outlast.testing import DNSServer

from .fronts import Front
from .scripted import ManualClock, ScriptedProvider

V4 = [("10.0.0.1",), ("10.0.0.2", "10.0.0.3")]
V6 = [("2001:db8::1",), ("2001:db8::2",)]

FAMILY_OUTCOME = st.sampled_from(["new", "same", "empty", "fail"])
WHOLE = st.sampled_from(["per-family", "per-family", "per-family", "nxdomain", "failure"])
STEP = st.tuples(
    st.floats(0, 40, allow_nan=False),  # seconds that pass before the refresh lands
    st.floats(0, 5, allow_nan=False),  # how long before landing it started
    WHOLE,
    FAMILY_OUTCOME,
    FAMILY_OUTCOME,
    st.integers(0, 1),  # which addresses a "new" answer has
    st.sampled_from([2.0, 10.0, 30.0]),  # the record's TTL
)


def _outcome(
    whole: str, v4: str, v6: str, pick: int, ttl: float, held: dict[int, tuple[str, ...]]
) -> Outcome:
    if whole == "nxdomain":
        return Negative("NXDOMAIN", 5.0, "p")
    if whole == "failure":
        return Failure("timed out", "p")
    per: dict[int, Outcome] = {}
    for fam, kind, choices in ((4, v4, V4), (6, v6, V6)):
        if kind == "fail":
            per[fam] = Failure("SERVFAIL", "p")
        elif kind == "empty":
            per[fam] = Negative("NODATA", 5.0, "p")
        else:
            same = held.get(fam) or choices[0]
            per[fam] = Positive(choices[pick] if kind == "new" else same, ttl, "p")
    return combine(per, "p")


def _served(resolver: Resolver, name: str, now: float) -> Answer | None:
    with resolver._lock:
        return resolver._serve(resolver._table.get(name), now, refresh=False)


def _by_family(answer: Answer | None) -> dict[int, set[str]]:
    result: dict[int, set[str]] = {4: set(), 6: set()}
    for address in answer.addresses if answer else ():
        result[family(address)].add(address)
    return result


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Resolver, ManualClock]]:
    clock = ManualClock()
    with Resolver(
        providers=[ScriptedProvider()], clock=clock, stale_ttl=20, keep_on_empty=1e9
    ) as resolver:
        yield resolver, clock


_names = iter(range(10**9))


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(STEP, min_size=1, max_size=12))
def test_failures_never_remove_a_family_nor_serve_what_is_too_old(
    scripted: tuple[Resolver, ManualClock],
    steps: list[tuple[float, float, str, str, str, int, float]],
) -> None:
    resolver, clock = scripted
    name = f"n{next(_names)}.example"
    stale_ttl = resolver._stale_ttl
    #: per address: (learned_at, ttl) of the newest applied positive that had it
    learned: dict[str, tuple[float, float]] = {}
    newest_generation = -math.inf
    for wait, took, whole, v4, v6, pick, ttl in steps:
        clock.advance(wait)
        now = clock()
        generation = now - took
        before = _served(resolver, name, now)
        held = {f: tuple(sorted(a)) for f, a in _by_family(before).items() if a}
        outcome = _outcome(whole, v4, v6, pick, ttl, held)
        resolver._record(name, generation, outcome)
        after = _served(resolver, name, now)
        if generation < newest_generation:
            # A refresh that started before the answer held changes nothing.
            assert after == before
            continue
        if not isinstance(outcome, Failure):
            newest_generation = generation
        if isinstance(outcome, Positive):
            for address in outcome.addresses:
                learned[address] = (now, outcome.ttl)
        failed = {4, 6} if isinstance(outcome, Failure) else set()
        if isinstance(outcome, Positive):
            failed = set(outcome.failed) | set(outcome.empty)  # empty: distrusted (keep 1e9)
        if isinstance(outcome, Negative):
            failed = {4, 6}  # distrusted as a whole
        for fam in failed:
            assert _by_family(before)[fam] <= _by_family(after)[fam], (before, after)
        for address in after.addresses if after else ():
            at, record_ttl = learned[address]
            assert now - (at + record_ttl) <= stale_ttl + 1e-9, (address, after)
        entry = resolver._table.get(name)
        if entry is not None and isinstance(outcome, Positive) and outcome.failed:
            assert entry.next_refresh_at - now <= FAILURE_BACKOFF_MAX


# -- over real sockets: random per-type faults on the fault server ----------------

FAULT = st.sampled_from([None, None, "drop", "servfail", "refused", "malformed", "truncate"])


@pytest.fixture(scope="module")
def shared_dns() -> Iterator[DNSServer]:
    with DNSServer() as server:
        yield server


@pytest.fixture(scope="module")
def shared_front(
    shared_dns: DNSServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Front]:
    with Front(shared_dns, tmp_path_factory.mktemp("front")) as front:
        yield front


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["udp", "tcp", "tls", "https"]),
    faults=st.lists(st.tuples(FAULT, FAULT), min_size=1, max_size=3),
)
def test_over_the_fault_server_no_fault_removes_a_family(
    shared_dns: DNSServer,
    shared_front: Front,
    unique_name: Callable[[str], str],
    kind: str,
    faults: list[tuple[str | None, str | None]],
) -> None:
    name = unique_name("prop")
    shared_dns.set(name, ["127.0.0.10", "2001:db8::10"], ttl=1)
    provider, verify = {
        "udp": (shared_dns.provider, True),
        "tcp": (shared_dns.tcp_provider, True),
        "tls": (shared_front.tls_provider, shared_front.ca_file),
        "https": (shared_front.doh_provider, shared_front.ca_file),
    }[kind]
    with Resolver(
        providers=[provider], verify=verify, timeout=0.2, min_ttl=0.1, max_ttl=0.1
    ) as resolver:
        assert len(resolver.resolve(name).addresses) == 2
        try:
            for a_fault, aaaa_fault in faults:
                shared_dns.fail(a_fault, name, rdtype="A")  # type: ignore[arg-type]
                shared_dns.fail(aaaa_fault, name, rdtype="AAAA")  # type: ignore[arg-type]
                time.sleep(0.12)  # expired: the next resolve refreshes under the faults
                assert set(resolver.resolve(name).addresses) == {"127.0.0.10", "2001:db8::10"}
                deadline = time.monotonic() + 5
                while any(not f.done() for f in list(resolver._inflight.values())):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                answer = resolver.resolve(name)
                assert set(answer.addresses) == {"127.0.0.10", "2001:db8::10"}, answer
        finally:
            shared_dns.fail(None, name, rdtype="A")
            shared_dns.fail(None, name, rdtype="AAAA")
