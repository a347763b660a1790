"""Redis killed or made slow while requests run: none fails or waits; then sharing resumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import outlast
from outlast.fleet import Fleet, FleetRestored, FleetUnavailable

from .helpers import Backend, client, http_policy, wait_for
from .redis_server import RedisServer


def run_requests(
    seconds: float,
    fault_dns: outlast.testing.DNSServer,
    names: list[str],
    backend: Backend,
    fleet: Fleet,
    during: Callable[[], None],
) -> tuple[int, list[BaseException], float]:
    """Requests by name, a new connection each (short TTLs: refreshes and publishes go on).

    ``during`` runs in another thread a third of the way in. Returns (requests, errors,
    slowest request in seconds).
    """
    resolver = outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet)
    errors: list[BaseException] = []
    count, slowest = 0, 0.0
    timer = threading.Timer(seconds / 3, during)
    with resolver, client(http_policy(fleet), resolver, keepalive=False) as http:
        timer.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and count < 20_000:
            name = names[count % len(names)]
            started = time.monotonic()
            try:
                response = http.get(f"http://{name}:{backend.port}/")
                assert response.status_code == 200
            except Exception as exc:
                errors.append(exc)
            slowest = max(slowest, time.monotonic() - started)
            count += 1
    timer.join(10)
    return count, errors, slowest


def sharing_works(server: RedisServer, fault_dns, unique_name, fleet: Fleet) -> None:
    """A resolves a new name and opens a breaker; a new Fleet (B) sees both."""
    name = unique_name("after")
    fault_dns.set(name, ["127.0.0.20"], ttl=60)
    with outlast.Resolver(providers=[fault_dns.provider], timeout=0.2, shared=fleet) as a:
        a.resolve(name)
    with Fleet(server.url) as b:
        assert wait_for(lambda: b.lookup(name) is not None, 5), "answers are not shared again"
        with Backend() as backend:
            pa, pb = http_policy(fleet), http_policy(b)
            key = f"http://127.0.0.1:{backend.port}"
            view = pb.for_key(key)
            backend.status = 503
            with client(pa) as http:
                for _ in range(3):
                    http.get(backend.url)
            assert pa.for_key(key).state == "open"
            assert wait_for(lambda: view.state == "open", 3), "breakers are not shared again"


def test_redis_killed_mid_run_then_restarted(redis_server, fault_dns, unique_name) -> None:
    names = [unique_name("kill") for _ in range(20)]
    for name in names:
        fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[outlast.Event] = []
    with Backend() as backend, Fleet(redis_server.url, listeners=[events.append]) as fleet:
        count, errors, slowest = run_requests(
            3.0, fault_dns, names, backend, fleet, redis_server.kill
        )
        assert errors == []
        assert count > 100
        assert slowest < 0.5, f"a request waited {slowest:.3f}s"
        assert any(isinstance(e, FleetUnavailable) for e in events)
        assert not fleet.available
        redis_server.start()  # same port, empty
        assert wait_for(lambda: fleet.available, 10), "it did not reconnect by itself"
        assert any(isinstance(e, FleetRestored) for e in events)
        sharing_works(redis_server, fault_dns, unique_name, fleet)


def test_redis_made_slow_mid_run(redis_server, fault_dns, unique_name) -> None:
    names = [unique_name("slow") for _ in range(20)]
    for name in names:
        fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[outlast.Event] = []
    with Backend() as backend, Fleet(redis_server.url, listeners=[events.append]) as fleet:
        count, errors, slowest = run_requests(
            3.0, fault_dns, names, backend, fleet, lambda: redis_server.sleep(1.0)
        )
        assert errors == []
        assert count > 100
        assert slowest < 0.5, f"a request waited {slowest:.3f}s"
        assert any(isinstance(e, FleetUnavailable) for e in events)
        assert wait_for(lambda: fleet.available, 10), "it did not recover by itself"
        sharing_works(redis_server, fault_dns, unique_name, fleet)


def test_publish_and_lookup_never_wait_on_a_slow_redis(redis_server) -> None:
    from outlast.dns import SharedAnswer

    with Fleet(redis_server.url) as fleet:
        redis_server.sleep(1.0)
        now = time.time()
        started = time.monotonic()
        for i in range(1000):
            fleet.publish(SharedAnswer(f"n{i}.outlast.test", ("127.0.0.1",), 5, now, now, "t"))
        assert time.monotonic() - started < 0.5  # publishing only queues (Redis sleeps 1 s)
        started = time.monotonic()
        assert fleet.lookup("n1.outlast.test") is None  # one bounded read, then given up
        assert time.monotonic() - started < 0.25
        started = time.monotonic()
        assert fleet.lookup("n2.outlast.test") is None  # marked down: not even tried
        assert time.monotonic() - started < 0.04  # not even the bounded 0.05 s read
        # Queued answers are written once Redis answers again.
        assert wait_for(lambda: fleet.lookup("n999.outlast.test") is not None, 10)


def test_a_key_redis_refuses_is_dropped_and_is_no_outage(redis_server, caplog) -> None:
    # Keys of the wrong type (another tool, a collision): Redis answers WRONGTYPE for those
    # writes. Only they are dropped; the rest is written and Redis is not marked down.
    from outlast.dns import SharedAnswer

    redis_server.command("SET", "outlast:lkg:bad.outlast.test", "x")
    redis_server.command("HSET", "outlast:breaker:poisoned:failures", "x", "1")
    caplog.set_level("WARNING", logger="outlast.fleet")
    events: list[outlast.Event] = []
    with Fleet(redis_server.url, listeners=[events.append]) as fleet:
        breaker = outlast.CircuitBreaker(failures=10, reset=30.0)
        poisoned = fleet.link("poisoned", breaker, lambda state, ago: None)
        fine = fleet.link("fine", breaker, lambda state, ago: None)
        for round_ in range(3):  # the same poisoned items again and again
            now = time.time()
            fleet.publish(SharedAnswer("bad.outlast.test", ("127.0.0.1",), 60.0, now, now, "t"))
            good = f"good{round_}.outlast.test"
            fleet.publish(SharedAnswer(good, ("127.0.0.2",), 60.0, now, now, "t"))
            poisoned.failed()
            fine.failed()
            assert wait_for(lambda: fleet.lookup(good) is not None, 5)  # noqa: B023
        assert wait_for(
            lambda: redis_server.command("GET", "outlast:breaker:fine:failures") == b"$1\r\n3\r\n",
            5,
        )
        assert fleet.lookup("bad.outlast.test") is None  # a refused read is no outage either
        time.sleep(0.5)
        assert fleet.available
        assert not [e for e in events if isinstance(e, FleetUnavailable | FleetRestored)]
        assert "WRONGTYPE" in caplog.text
        assert "bad.outlast.test" in caplog.text
