"""Shared last-known-good answers on a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import redis

import outlast
from outlast.dns import SharedAnswer
from outlast.fleet import Fleet, FleetAnswerFound

from .helpers import subprocess_env, wait_for
from .redis_server import RedisServer


def held(server: RedisServer, name: str) -> dict[str, str]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return client.hgetall(f"outlast:lkg:{name}")
    finally:
        client.close()


def learn(server: RedisServer, fault_dns: outlast.testing.DNSServer, name: str) -> None:
    """Process A: resolves ``name`` and shares it."""
    with (
        Fleet(server.url) as fleet,
        outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet) as a,
    ):
        assert sorted(a.resolve(name).addresses) == ["127.0.0.10", "127.0.0.11"]
        assert wait_for(lambda: held(server, name), 5), "A's answer never reached Redis"


def test_a_fresh_resolver_gets_the_fleets_answer_when_providers_are_dark(
    redis_server, fault_dns, unique_name
) -> None:
    name = unique_name("api")
    fault_dns.set(name, ["127.0.0.10", "127.0.0.11"], ttl=60)
    learn(redis_server, fault_dns, name)
    fault_dns.fail("drop")

    alone = outlast.Resolver(providers=[fault_dns.provider], timeout=0.2)
    with alone, pytest.raises(outlast.ResolveError):  # what B would get without the fleet
        alone.resolve(name)

    events: list[outlast.Event] = []
    with (
        Fleet(redis_server.url, listeners=[events.append]) as fleet,
        outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet) as b,
    ):
        answer = b.resolve(name)
        again = b.resolve(name)  # held now: no second trip to Redis needed
    assert sorted(answer.addresses) == ["127.0.0.10", "127.0.0.11"]
    assert answer.stale
    assert "fleet: " in answer.source
    assert again.addresses == answer.addresses
    assert next(e for e in events if isinstance(e, FleetAnswerFound)).host == name


def test_a_fresh_resolver_distrusts_an_empty_answer_the_fleet_contradicts(
    redis_server, fault_dns, unique_name
) -> None:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.10", "127.0.0.11"], ttl=60)
    learn(redis_server, fault_dns, name)
    fault_dns.nxdomain(name)  # the October 2025 record: suddenly empty
    with (
        Fleet(redis_server.url) as fleet,
        outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet) as b,
    ):
        answer = b.resolve(name)
    assert sorted(answer.addresses) == ["127.0.0.10", "127.0.0.11"]
    assert answer.stale
    assert "NXDOMAIN distrusted" in answer.source


def test_a_fresh_process_resolves_from_the_fleet(redis_server, fault_dns, unique_name) -> None:
    name = unique_name("proc")
    fault_dns.set(name, ["127.0.0.10", "127.0.0.11"], ttl=60)
    learn(redis_server, fault_dns, name)
    fault_dns.fail("drop")
    code = (
        "import json, outlast\n"
        f"a = outlast.Resolver.from_env().resolve({name!r})\n"
        "print(json.dumps([list(a.addresses), a.stale, a.source]))\n"
    )
    env = subprocess_env(
        redis_server.url,
        [("OUTLAST_DNS_PROVIDERS", fault_dns.provider), ("OUTLAST_DNS_TIMEOUT", "0.2")],
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    addresses, stale, source = json.loads(out.stdout)
    assert sorted(addresses) == ["127.0.0.10", "127.0.0.11"]
    assert stale
    assert "fleet: " in source


def test_an_older_generation_never_overwrites_a_newer_answer(redis_server) -> None:
    # Two processes' writers race: every answer carries its generation; the newest wins.
    now = time.time()
    answers = [
        SharedAnswer("race.outlast.test", (f"127.0.1.{i % 250}",), 60.0, now, now - 200 + i, "t")
        for i in range(200)
    ]
    newest = answers[-1]
    fleets = [Fleet(redis_server.url), Fleet(redis_server.url)]
    try:

        def write(fleet: Fleet, mine: list[SharedAnswer]) -> None:
            for answer in mine:
                fleet.publish(answer)
                time.sleep(0.0005)

        order = answers[::-1]  # the newest first: every later write is older
        threads = [
            threading.Thread(target=write, args=(fleets[0], order[0::2])),
            threading.Thread(target=write, args=(fleets[1], order[1::2])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        marker = SharedAnswer("marker.outlast.test", ("127.0.0.1",), 60.0, now, now, "t")
        for fleet in fleets:  # each writer is FIFO: once its marker is in, so is the rest
            fleet.publish(marker)
        assert wait_for(lambda: held(redis_server, "marker.outlast.test"), 5)
        time.sleep(0.1)
        assert fleets[0].lookup("race.outlast.test") == newest
    finally:
        for fleet in fleets:
            fleet.close()


def test_answer_keys_are_namespaced_and_expire(redis_server) -> None:
    now = time.time()
    with Fleet(redis_server.url, namespace="team-a", answer_keep=120) as fleet:
        fleet.publish(SharedAnswer("exp.outlast.test", ("127.0.0.5",), 30.0, now, now, "t"))
        client = redis.Redis.from_url(redis_server.url)
        try:
            assert wait_for(lambda: client.exists("team-a:lkg:exp.outlast.test"), 5)
            assert 110_000 < client.pttl("team-a:lkg:exp.outlast.test") <= 120_000
        finally:
            client.close()
    with Fleet(redis_server.url) as other:  # another namespace does not see it
        assert other.lookup("exp.outlast.test") is None


def test_lookup_runs_off_the_resolvers_loop_and_publish_on_it(fault_dns, unique_name) -> None:
    name, other = unique_name("hook"), unique_name("hook")
    fault_dns.set(name, ["127.0.0.7"], ttl=60)
    seen: dict[str, str] = {}

    class Recorder:
        def publish(self, answer: SharedAnswer, /) -> None:
            seen["publish"] = threading.current_thread().name

        def lookup(self, host: str, /) -> SharedAnswer | None:
            seen["lookup"] = threading.current_thread().name
            return SharedAnswer(host, ("127.0.0.8",), 30.0, time.time() - 5, 0.0, "udp://x")

    with outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=Recorder()) as r:
        assert r.resolve(name).addresses == ("127.0.0.7",)
        answer = r.resolve(other)  # no record at all: the fleet's answer is used
    assert answer.addresses == ("127.0.0.8",)
    assert answer.stale
    assert seen["publish"] == "outlast-dns"  # publish only queues (Fleet.publish)
    assert seen["lookup"] != "outlast-dns"  # the blocking read is on an executor thread


def test_the_password_is_never_shown(fault_dns, unique_name, caplog) -> None:
    from .conftest import started

    secret = "s3cret-pw-9f"
    server = started(password=secret)
    try:
        caplog.set_level("DEBUG", logger="outlast")
        events: list[outlast.Event] = []
        with Fleet(server.url, listeners=[events.append]) as fleet:
            assert secret not in repr(fleet)
            assert secret not in fleet.url
            now = time.time()
            fleet.publish(SharedAnswer("pw.outlast.test", ("127.0.0.9",), 30.0, now, now, "t"))
            assert wait_for(lambda: fleet.lookup("pw.outlast.test") is not None, 5)
        wrong = server.url.replace(secret, "wrong-" + secret[::-1])
        with Fleet(wrong, listeners=[events.append]) as bad:
            assert bad.lookup("pw.outlast.test") is None
            assert not bad.available
        settings = outlast.Settings.from_env({"OUTLAST_REDIS_URL": server.url})
        assert secret not in repr(settings)
        shown = " ".join([caplog.text, *(e.describe() for e in events)])
        assert "fleet.unavailable" in shown
        assert secret not in shown
        assert secret[::-1] not in shown
    finally:
        server.close()


def test_a_password_in_the_query_string_is_never_shown(caplog) -> None:
    from .conftest import started

    secret = "s3cret-q-4c"
    server = started(password=secret)
    try:
        caplog.set_level("DEBUG", logger="outlast")
        events: list[outlast.Event] = []
        url = f"redis://127.0.0.1:{server.port}/0?username=default&password={secret}"
        with Fleet(url, listeners=[events.append]) as fleet:
            assert secret not in repr(fleet)
            assert secret not in fleet.url
            assert "username=default" not in fleet.url
            now = time.time()
            fleet.publish(SharedAnswer("q.outlast.test", ("127.0.0.9",), 30.0, now, now, "t"))
            assert wait_for(lambda: fleet.lookup("q.outlast.test") is not None, 5)
        user, wrong = "outlast-user-7e", "wrong-" + secret[::-1]
        bad_url = f"redis://127.0.0.1:{server.port}/0?username={user}&password={wrong}"
        with Fleet(bad_url, listeners=[events.append]) as bad:
            assert wait_for(lambda: not bad.available, 5)
            shown = " ".join([repr(bad), bad.url, caplog.text, *(e.describe() for e in events)])
        assert "fleet.unavailable" in shown
        for hidden in (secret, wrong, user):
            assert hidden not in shown
    finally:
        server.close()
