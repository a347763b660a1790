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
        assert time.monotonic() - started < 0.1  # publishing only queues
        started = time.monotonic()
        assert fleet.lookup("n1.outlast.test") is None  # one bounded read, then given up
        assert time.monotonic() - started < 0.25
        started = time.monotonic()
        assert fleet.lookup("n2.outlast.test") is None  # marked down: not even tried
        assert time.monotonic() - started < 0.01
        # Queued answers are written once Redis answers again.
        assert wait_for(lambda: fleet.lookup("n999.outlast.test") is not None, 10)
