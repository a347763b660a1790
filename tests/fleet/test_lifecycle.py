"""A process's whole life is covered: it loads what the fleet knows before its first
call, and what it learned reaches Redis when it closes or exits, however short it lived."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import redis

from outlast.dns import SharedAnswer
from outlast.fleet import Fleet
from outlast.fleet._fleet import on_event_loop

from .helpers import Backend, http_policy, subprocess_env
from .redis_server import RedisServer, free_port
from .test_breakers import open_through, origin


def held(server: RedisServer, name: str) -> dict[str, str]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return client.hgetall(f"outlast:lkg:{name}")
    finally:
        client.close()


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out


def test_a_process_that_exits_right_after_resolving_serves_a_fresh_one(
    redis_server, fault_dns, unique_name
) -> None:
    # A CLI job: resolves and exits at once, without closing anything.
    name = unique_name("short")
    fault_dns.set(name, ["127.0.0.30"], ttl=60)
    env = subprocess_env(
        redis_server.url,
        [("OUTLAST_DNS_PROVIDERS", fault_dns.provider), ("OUTLAST_DNS_TIMEOUT", "0.2")],
    )
    run(f"import outlast\noutlast.Resolver.from_env().resolve({name!r})\n", env)
    assert held(redis_server, name), "the short-lived process published nothing"
    # Its writer thread may well have sent it before exit; one that had no time to
    # (here: one that never runs) leaves it to the flush at exit.
    other = unique_name("shorter")
    fault_dns.set(other, ["127.0.0.30"], ttl=60)
    code = (
        "import outlast\n"
        "from outlast.fleet._fleet import Fleet\n"
        "Fleet._write_loop = lambda self: None\n"
        f"outlast.Resolver.from_env().resolve({other!r})\n"
    )
    run(code, env)
    assert held(redis_server, other), "the flush at exit wrote nothing"

    fault_dns.fail("drop")  # every provider dead for the fresh process
    code = (
        "import json, outlast\n"
        "r = outlast.Resolver.from_env()\n"
        f"print(json.dumps([r.resolve(n).source for n in ({name!r}, {other!r})]))\n"
    )
    sources = json.loads(run(code, env).stdout)
    assert all(source.startswith("fleet: ") for source in sources), sources


def test_close_writes_what_is_queued(redis_server) -> None:
    fleet = Fleet(redis_server.url)
    fleet._stop.set()  # the writer would write them first: leave them all to close()
    with fleet._cond:
        fleet._cond.notify_all()
    fleet._threads[0].join(5)
    now = time.time()
    for i in range(600):  # more than one batch
        fleet.publish(SharedAnswer(f"q{i}.outlast.test", ("127.0.0.1",), 60.0, now, now, "t"))
    fleet._stop.clear()  # close() starts from a running fleet
    started = time.monotonic()
    fleet.close()
    assert time.monotonic() - started < 1.5
    assert held(redis_server, "q0.outlast.test")
    assert held(redis_server, "q599.outlast.test")


def test_close_never_waits_long_on_a_dead_or_slow_redis(redis_server) -> None:
    now = time.time()
    dead = Fleet(f"redis://127.0.0.1:{free_port()}/0", connect_wait=0)
    slow = Fleet(redis_server.url, connect_wait=0)
    redis_server.sleep(5.0)
    for fleet in (dead, slow):
        for i in range(2000):
            fleet.publish(SharedAnswer(f"d{i}.outlast.test", ("127.0.0.1",), 60.0, now, now, "t"))
        started = time.monotonic()
        fleet.close()
        assert time.monotonic() - started < 1.5, fleet


def test_a_process_exits_within_a_second_when_redis_is_dead(fault_dns, unique_name) -> None:
    name = unique_name("deadexit")
    fault_dns.set(name, ["127.0.0.31"], ttl=60)
    env = subprocess_env(
        f"redis://127.0.0.1:{free_port()}/0",
        [("OUTLAST_DNS_PROVIDERS", fault_dns.provider), ("OUTLAST_DNS_TIMEOUT", "0.2")],
    )
    code = (
        "import time, outlast\n"
        f"outlast.Resolver.from_env().resolve({name!r})\n"
        "import atexit\n"
        "atexit.register(lambda: print(time.monotonic()))\n"  # runs last: after the fleet's
    )
    started = time.monotonic()
    run(code, env)
    assert time.monotonic() - started < 10  # interpreter start-up included, on a busy box


def test_event_loops_are_detected_for_asyncio_and_trio() -> None:
    import asyncio

    import trio

    async def probe() -> bool:
        return on_event_loop()

    assert not on_event_loop()
    assert asyncio.run(probe())
    assert trio.run(probe)


def test_a_fleet_made_under_trio_does_not_block_the_loop(redis_server) -> None:
    import trio

    from outlast.fleet import connect

    async def build() -> float:
        started = time.monotonic()
        connect(redis_server.url)
        return time.monotonic() - started

    redis_server.sleep(1.0)  # a first snapshot could not come for a second
    assert trio.run(build) < 0.1


def test_a_breaker_linked_off_the_loop_waits_for_the_fleets_snapshot(
    redis_server, monkeypatch
) -> None:
    # The fleet holds a breaker open; a fleet made on an event loop could not wait for
    # it, but the first breaker linked on an ordinary thread does.
    import asyncio

    with Backend() as backend, Fleet(redis_server.url) as writer:
        open_through(http_policy(writer), backend)

        snapshot = Fleet._snapshot

        def late(self: Fleet) -> None:  # a snapshot that takes a while to come
            time.sleep(0.3)
            snapshot(self)

        monkeypatch.setattr(Fleet, "_snapshot", late)

        async def make() -> Fleet:
            return Fleet(redis_server.url, connect_wait=3.0)

        fleet = asyncio.run(make())
        try:
            assert http_policy(fleet).for_key(origin(backend)).state == "open"
        finally:
            fleet.close()
