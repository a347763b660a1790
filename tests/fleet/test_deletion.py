"""A deleted name stays deleted: an older shared answer never beats what a process knows."""

from __future__ import annotations

import json
import time

import pytest
import redis

import outlast
from outlast.dns import SharedAnswer
from outlast.fleet import Fleet

from .helpers import wait_for
from .redis_server import RedisServer


def held(server: RedisServer, name: str) -> dict[str, str]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return client.hgetall(f"outlast:lkg:{name}")
    finally:
        client.close()


def resolver(fault_dns: outlast.testing.DNSServer, fleet: Fleet, **options: object):
    return outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet, **options)


def test_an_accepted_deletion_is_not_re_adopted_and_reaches_the_fleet(
    redis_server, fault_dns, unique_name
) -> None:
    name = unique_name("deleted")
    fault_dns.set(name, ["127.0.0.50"], ttl=1)
    events: list[outlast.Event] = []
    with (
        Fleet(redis_server.url) as fleet,
        resolver(
            fault_dns,
            fleet,
            keep_on_empty=0.5,
            negative_ttl=0.2,
            min_ttl=0.2,
            listeners=[events.append],
        ) as a,
    ):
        assert a.resolve(name).addresses == ("127.0.0.50",)
        assert wait_for(lambda: held(redis_server, name).get("addresses") == '["127.0.0.50"]', 5)
        fault_dns.nxdomain(name)  # the name is deleted
        served_after: list[str] = []
        accepted_at = None
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # bounded: ~300 look-ups
            try:
                answer = a.resolve(name)
            except outlast.ResolveError:
                accepted_at = accepted_at or time.monotonic()
            else:
                if accepted_at is not None:
                    served_after.append(answer.source)
            time.sleep(0.02)
        assert accepted_at is not None, "the deletion was never accepted"
        assert served_after == [], f"the old address came back: {served_after[:3]}"
        assert any(isinstance(e, outlast.dns.EmptyAnswerAccepted) for e in events)
        # The fleet agrees: the shared copy is a deletion now.
        assert wait_for(lambda: held(redis_server, name).get("addresses") == "[]", 5)
    # A fresh process, its providers saying NXDOMAIN too, does not adopt the old address.
    with (
        Fleet(redis_server.url) as fresh,
        resolver(fault_dns, fresh, keep_on_empty=3600) as b,
        pytest.raises(outlast.ResolveError),
    ):
        b.resolve(name)


def test_an_older_shared_answer_never_beats_a_local_deletion(
    redis_server, fault_dns, unique_name
) -> None:
    # The fleet still holds the old answer (its deletion never reached Redis): this
    # process accepted the negative after the fleet's answer was learned, so it wins.
    name = unique_name("olddel")
    fault_dns.nxdomain(name)
    with Fleet(redis_server.url) as fleet, resolver(fault_dns, fleet, negative_ttl=0.2) as a:
        with pytest.raises(outlast.ResolveError):
            a.resolve(name)  # a negative held here, newer than what the fleet has
        old = time.time() - 30
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        raw.hset(
            f"outlast:lkg:{name}",
            mapping={
                "generation": repr(old),
                "learned_at": repr(old),
                "ttl": "60",
                "addresses": json.dumps(["127.0.0.51"]),
                "source": "udp",
            },
        )
        raw.close()
        time.sleep(0.3)  # the local negative expired: the next look-up asks the fleet
        with pytest.raises(outlast.ResolveError):
            a.resolve(name)


def test_adopting_does_not_restart_the_keep_on_empty_clock(
    redis_server, fault_dns, unique_name
) -> None:
    # The fleet last confirmed the answer 10 s ago; keep_on_empty is 5 s. A fresh
    # process whose providers say NXDOMAIN gives it up at once instead of distrusting
    # the negative for another 5 s; one confirmed 1 s ago is still served.
    gone, recent = unique_name("gone"), unique_name("recent")
    fault_dns.nxdomain(gone)
    fault_dns.nxdomain(recent)
    now = time.time()
    with Fleet(redis_server.url) as fleet:
        fleet.publish(SharedAnswer(gone, ("127.0.0.52",), 60.0, now - 10, now - 10, "udp"))
        fleet.publish(SharedAnswer(recent, ("127.0.0.53",), 60.0, now - 1, now - 1, "udp"))
        assert wait_for(lambda: held(redis_server, gone) and held(redis_server, recent), 5)
        with resolver(fault_dns, fleet, keep_on_empty=5) as fresh:
            with pytest.raises(outlast.ResolveError):
                fresh.resolve(gone)
            answer = fresh.resolve(recent)
            assert answer.addresses == ("127.0.0.53",)
            assert "NXDOMAIN distrusted" in answer.source
        # the one given up is a deletion in the fleet now
        assert wait_for(lambda: held(redis_server, gone).get("addresses") == "[]", 5)
