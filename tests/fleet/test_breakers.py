"""Shared circuit breakers on a real redis-server, against a loopback backend counting hits."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
import redis

import outlast
from outlast.fleet import Fleet

from .helpers import Backend, client, http_policy, subprocess_env, wait_for
from .redis_server import RedisServer


def origin(backend: Backend) -> str:
    return f"http://127.0.0.1:{backend.port}"


def open_through(policy: outlast.Policy, backend: Backend, failures: int = 3) -> None:
    """Process A: the backend answers 503 until A's breaker opens."""
    backend.status = 503
    with client(policy) as a:
        for _ in range(failures):
            assert a.get(backend.url).status_code == 503
        with pytest.raises(outlast.CircuitOpenError):
            a.get(backend.url)
    assert policy.for_key(origin(backend)).state == "open"


def test_a_opens_a_breaker_and_b_fails_fast_without_reaching_the_backend(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa, Fleet(redis_server.url) as fb:
        pa, pb = http_policy(fa), http_policy(fb)
        with client(pb) as b:  # B has used the origin: its breaker exists, closed
            assert b.get(backend.url).status_code == 200
        open_through(pa, backend)
        view = pb.for_key(origin(backend))
        assert wait_for(lambda: view.state == "open", 2), "B never heard that A opened"
        hits = backend.hits
        with client(pb) as b:
            for _ in range(5):
                started = time.monotonic()
                with pytest.raises(httpx.ConnectError) as caught:
                    b.get(backend.url)
                assert time.monotonic() - started < 0.5  # refused at once
                assert isinstance(caught.value, outlast.CircuitOpenError)
        assert backend.hits == hits  # B's calls never reached it


def test_a_fresh_process_fails_fast_on_a_breaker_the_fleet_opened(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa:
        open_through(http_policy(fa), backend)
        hits = backend.hits
        code = (
            "import json, outlast\n"
            "fast = 0\n"
            "with outlast.Client() as c:\n"
            "    for _ in range(5):\n"
            "        try:\n"
            f"            c.get({backend.url!r})\n"
            "        except outlast.CircuitOpenError:\n"
            "            fast += 1\n"
            "print(json.dumps(fast))\n"
        )
        # reset as long as A's: with the default (0.25 s) a probe would be due by now
        env = subprocess_env(
            redis_server.url, [("OUTLAST_RETRY_ATTEMPTS", "1"), ("OUTLAST_BREAKER_RESET", "30")]
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == 5
        assert backend.hits == hits


def test_failures_are_counted_fleet_wide_and_open_every_breaker(redis_server) -> None:
    # Three processes see one failure each; together they reach the threshold of 3.
    fleets = [Fleet(redis_server.url) for _ in range(3)]
    try:
        policies = [
            outlast.Policy(
                retry=None,
                breaker=outlast.CircuitBreaker(failures=3, reset=30, min_reset=30),
                shared=f,
            )
            for f in fleets
        ]

        def boom() -> None:
            raise ConnectionError("backend down")

        for policy in policies:
            with pytest.raises(ConnectionError):
                policy.call(boom)
        assert wait_for(lambda: all(p.state == "open" for p in policies), 3)
        for policy in policies:
            with pytest.raises(outlast.CircuitOpenError):
                policy.call(boom)
    finally:
        for fleet in fleets:
            fleet.close()


def test_concurrent_failures_open_the_fleets_breaker_exactly_once(redis_server) -> None:
    listener = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("outlast:breakers")
    fleets = [Fleet(redis_server.url) for _ in range(4)]
    try:
        config = outlast.CircuitBreaker(failures=20)
        links = [f.link("race", config, lambda state, ago: None) for f in fleets]
        threads = [
            threading.Thread(target=lambda link=link: [link.failed() for _ in range(25)])
            for link in links
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        opened: list[dict[str, object]] = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                opened.append(json.loads(message["data"]))
        assert [m["state"] for m in opened] == ["open"]
    finally:
        for fleet in fleets:
            fleet.close()
        pubsub.close()
        listener.close()


def test_the_reset_is_timed_from_when_the_fleet_opened(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa:
        open_through(http_policy(fa, reset=3.0), backend)
        time.sleep(1.0)
        with Fleet(redis_server.url) as fb:  # joins a second later
            view = http_policy(fb, reset=3.0).for_key(origin(backend))
            assert view.state == "open"
            with pytest.raises(outlast.CircuitOpenError) as caught:
                view.call(lambda: None)
            assert 1.0 < caught.value.retry_after < 2.1  # not a full reset of its own


def test_a_successful_probe_closes_the_breaker_fleet_wide(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa, Fleet(redis_server.url) as fb:
        pa, pb = http_policy(fa, reset=0.3), http_policy(fb, reset=0.3)
        view = pb.for_key(origin(backend))
        open_through(pa, backend)
        assert wait_for(lambda: view.state == "open", 2)
        backend.status = 200
        time.sleep(0.35)
        hits = backend.hits
        with client(pa) as a:
            assert a.get(backend.url).status_code == 200  # A's probe
        assert wait_for(lambda: view.state == "closed", 2), "B never heard that A closed"
        assert backend.hits == hits + 1  # B needed no probe of its own


def test_breaker_keys_are_namespaced_and_expire(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url, breaker_keep=60) as fa:
        open_through(http_policy(fa), backend)
        key = f"outlast:breaker:{origin(backend)}"
        check = redis.Redis.from_url(redis_server.url)
        try:
            assert wait_for(lambda: check.exists(key), 2)
            assert 50_000 < check.pttl(key) <= 60_000
            assert 0 < check.pttl("outlast:breakers:open") <= 60_000
        finally:
            check.close()


def test_two_forked_workers_share_a_breaker_made_before_the_fork(redis_server) -> None:
    # gunicorn --preload: the policy and its breaker are made in the parent, then each
    # worker is forked. Worker A's probe closes it; worker B must hear it, not drop the
    # change as its own (a token copied from the parent would be the same in both).
    import os
    import warnings

    def boom() -> None:
        raise ConnectionError("backend down")

    with Fleet(redis_server.url) as fleet:
        policy = outlast.Policy(
            retry=None,
            breaker=outlast.CircuitBreaker(failures=1, reset=0.3),
            shared=fleet,
            name="forked",
        ).for_key("backend")
        with pytest.raises(ConnectionError):
            policy.call(boom)
        assert policy.state == "open"
        assert wait_for(lambda: raw_state(redis_server, "backend") == "open", 5)
        read_a, write_a = os.pipe()
        pids = []
        for role in ("a", "b"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                pid = os.fork()
            if pid == 0:  # a worker: never returns into pytest
                code = 1
                try:
                    if role == "a":
                        time.sleep(0.4)  # past the reset: A's call is the probe
                        policy.call(lambda: None)
                        fleet.close()  # writes the closing before the worker exits
                        code = 0 if policy.state == "closed" else 3
                    else:
                        os.read(read_a, 1)  # A has closed it
                        code = 0 if wait_for(lambda: policy.state == "closed", 5) else 4
                finally:
                    os._exit(code)
            pids.append(pid)
            if role == "a":
                code_a = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                os.write(write_a, b"x")
        code_b = os.waitstatus_to_exitcode(os.waitpid(pids[1], 0)[1])
        os.close(read_a)
        os.close(write_a)
        assert code_a == 0
        assert code_b == 0, "worker B never heard that worker A's probe closed the breaker"


def raw_state(server: RedisServer, name: str) -> str | None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return client.hget(f"outlast:breaker:{name}", "state")
    finally:
        client.close()
