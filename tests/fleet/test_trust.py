"""Nothing forged, runaway or older wins: generations and versions are bounded by clocks."""

from __future__ import annotations

import json
import time

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import outlast
from outlast.dns import SharedAnswer
from outlast.fleet import Fleet

from .helpers import Backend, client, http_policy, wait_for
from .redis_server import RedisServer
from .test_breakers import open_through, origin


def raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_a_forged_generation_neither_serves_nor_pins_an_address(redis_server) -> None:
    name = "poison.outlast.test"
    r = raw(redis_server)
    r.hset(
        f"outlast:lkg:{name}",
        mapping={
            "generation": "1e18",
            "learned_at": str(time.time()),
            "ttl": "60",
            "addresses": json.dumps(["203.0.113.66"]),
            "source": "forged",
        },
    )
    with Fleet(redis_server.url) as fleet:
        assert fleet.lookup(name) is None  # a fresh process never adopts it
        now = time.time()
        fleet.publish(SharedAnswer(name, ("127.0.0.40",), 60.0, now, now, "udp"))
        assert wait_for(lambda: fleet.lookup(name) is not None, 5), "the legitimate write lost"
        answer = fleet.lookup(name)
        assert answer is not None
        assert answer.addresses == ("127.0.0.40",)
    r.close()


def test_a_writer_whose_clock_runs_ahead_cannot_pin_its_answer(redis_server) -> None:
    name = "ahead.outlast.test"
    now = time.time()
    with Fleet(redis_server.url) as fast, Fleet(redis_server.url) as honest:
        fast.publish(SharedAnswer(name, ("127.0.0.41",), 60.0, now + 86400, now + 86400, "t"))
        assert wait_for(lambda: honest.lookup(name) is not None, 5)
        held = float(raw(redis_server).hget(f"outlast:lkg:{name}", "generation") or 0)
        assert held <= time.time() + 1  # brought back to the server's clock
        time.sleep(0.01)
        later = time.time()
        honest.publish(SharedAnswer(name, ("127.0.0.42",), 60.0, later, later, "t"))
        assert wait_for(
            lambda: (a := honest.lookup(name)) is not None and a.addresses == ("127.0.0.42",), 5
        ), "a later honest answer lost to a clock running a day ahead"


def test_a_forged_version_does_not_pin_a_breaker(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa, Fleet(redis_server.url) as fb:
        pa, pb = http_policy(fa, reset=0.3), http_policy(fb, reset=0.3)
        key = origin(backend)
        view = pb.for_key(key)
        assert wait_for(lambda: fb.wait_ready(0), 5)
        r = raw(redis_server)
        forged = {"name": key, "state": "open", "opened_at": 0, "now": 0, "origin": ""}
        r.publish("outlast:breakers", json.dumps({**forged, "version": 10**18}))
        r.hset(f"outlast:breaker:{key}", mapping={"state": "open", "version": "1e18"})
        time.sleep(1.5)  # a message and at least one snapshot
        assert view.state == "closed", "a forged version was believed"
        # The legitimate changes still reach B: open, then closed by A's probe.
        open_through(pa, backend)
        assert wait_for(lambda: view.state == "open", 5), "B never heard that A opened"
        backend.status = 200
        time.sleep(0.35)
        with client(pa) as a:
            assert a.get(backend.url).status_code == 200
        assert pa.for_key(key).state == "closed"
        assert wait_for(lambda: view.state == "closed", 5), "B never heard A's probe close it"
        version = float(r.hget(f"outlast:breaker:{key}", "version") or 0)
        assert version <= time.time() * 1000 + 1000
        r.close()


def test_a_forged_version_in_a_message_is_ignored_by_the_parser() -> None:
    from outlast.fleet._breakers import Change

    now = time.time() * 1000
    message = {"name": "n", "state": "open", "opened_at": now, "now": now, "origin": ""}
    assert Change.parse(json.dumps({**message, "version": int(now)})) is not None
    assert Change.parse(json.dumps({**message, "version": 10**18})) is None
    assert Change.parse(json.dumps({**message, "version": 1e400})) is None


def test_resolver_ignores_a_forged_answer_when_providers_are_dark(
    redis_server, fault_dns, unique_name
) -> None:
    name = unique_name("forged")
    r = raw(redis_server)
    r.hset(
        f"outlast:lkg:{name}",
        mapping={
            "generation": str(time.time() + 10**9),
            "learned_at": str(time.time() + 10**9),
            "ttl": "60",
            "addresses": json.dumps(["203.0.113.66"]),
            "source": "forged",
        },
    )
    r.close()
    fault_dns.fail("drop")
    with (
        Fleet(redis_server.url) as fleet,
        outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet) as res,
    ):
        try:
            answer = res.resolve(name)
        except outlast.ResolveError:
            return
        raise AssertionError(f"a forged answer was served: {answer}")


# -- the invariant, over any sequence of writes ---------------------------------------

# Offsets from now: in the past (honest, older), or far ahead (forged or runaway). One
# a little ahead but within the allowance is believed and would rightly win.
_OFFSET = st.floats(-1e6, 0) | st.floats(120, 1e6) | st.floats(1e6, 1e18)
_WRITE = st.tuples(st.sampled_from(["publish", "hset"]), _OFFSET)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(writes=st.lists(_WRITE, max_size=8))
def test_after_any_writes_an_honest_newer_answer_wins(redis_server, writes) -> None:
    # Whatever was written before (honest or forged, any clock skew, directly or through
    # the script), no time held is far ahead of the server's clock once the script has
    # run, the reader never returns one that far ahead, and a later honest answer wins.
    from outlast.fleet._lkg import MAX_AHEAD, PUBLISH_SCRIPT, AnswerStore

    r = raw(redis_server)
    store = AnswerStore("prop", 60.0)
    script = r.register_script(PUBLISH_SCRIPT)
    name = "prop.outlast.test"
    r.delete(store.key(name))
    try:
        for i, (kind, offset) in enumerate(writes):
            now = time.time()
            answer = SharedAnswer(name, (f"127.0.3.{i}",), 60.0, now, now + offset, "t")
            if kind == "publish":
                store.write(r, script, answer)
            else:
                r.hset(
                    store.key(name),
                    mapping={
                        "generation": repr(answer.generation),
                        "learned_at": repr(now + offset),
                        "ttl": "60",
                        "addresses": json.dumps(list(answer.addresses)),
                        "source": "forged",
                    },
                )
            read = store.read(r, name)
            assert read is None or read.generation <= time.time() + MAX_AHEAD
        time.sleep(0.002)
        now = time.time()
        honest = SharedAnswer(name, ("127.0.0.99",), 60.0, now, now, "udp")
        store.write(r, script, honest)
        held = float(r.hget(store.key(name), "generation") or "nan")
        assert held <= time.time() + MAX_AHEAD
        read = store.read(r, name)
        assert read is not None
        assert read.addresses == ("127.0.0.99",), writes
    finally:
        r.close()


def test_a_malformed_shared_answer_is_none_never_an_exception() -> None:
    # Found by b2: a deeply nested "addresses" raised RecursionError out of the
    # parser, and a TTL of "inf" was taken as an answer good for ever.
    from outlast.fleet._lkg import parse

    now = time.time()
    good = {"addresses": '["10.0.0.1"]', "ttl": "60", "learned_at": "1", "generation": "1"}
    assert parse("a.example", good, now=now) is not None
    for bad in ({"addresses": "[" * 100_000 + "]" * 100_000}, {"ttl": "inf"}, {"ttl": "nan"}):
        assert parse("a.example", {**good, **bad}, now=now) is None, bad
