"""The connection itself: the fixture's own failure, and rediss:// (TLS) to a real server."""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest
import trustme

from outlast.dns import SharedAnswer
from outlast.fleet import Fleet

from .conftest import started
from .helpers import wait_for


def test_the_fixture_fails_with_advice_when_redis_server_is_missing() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        started(binary="/nonexistent/redis-server")


def test_rediss_shares_answers_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    server = started(tls=(str(cert), str(key), str(ca_file)), password="tls-secret")
    try:
        url = f"{server.url}?ssl_ca_certs={ca_file}"
        assert url.startswith("rediss://")
        with Fleet(url) as fleet:
            now = time.time()
            fleet.publish(SharedAnswer("tls.outlast.test", ("127.0.0.3",), 30.0, now, now, "t"))
            assert wait_for(lambda: fleet.lookup("tls.outlast.test") is not None, 5)
            assert fleet.available
            assert "tls-secret" not in repr(fleet)
        untrusted = f"{server.url}"  # no CA given: the system store does not trust it
        with Fleet(untrusted) as fleet:
            assert fleet.lookup("tls.outlast.test") is None
            assert not fleet.available
    finally:
        server.close()


def test_connect_never_blocks_an_event_loop(redis_server) -> None:
    import asyncio

    from outlast.fleet import connect

    async def build() -> float:
        started = time.monotonic()
        connect(redis_server.url)
        return time.monotonic() - started

    redis_server.sleep(1.0)  # a first snapshot could not come for a second
    assert asyncio.run(build()) < 0.1


def test_lookup_never_waits_on_resolving_a_named_redis_host(redis_server, monkeypatch) -> None:
    # The system resolver is broken (the outage outlast is for): resolving the Redis host's
    # name takes seconds, and no socket timeout bounds it. The patch resolves the name to
    # 127.0.0.1 itself; the system resolver is never asked.
    name = "redis.fleet.test"
    real = socket.getaddrinfo
    slow = threading.Event()  # set: resolving `name` hangs until `release` (2 s at most)
    release = threading.Event()

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == name:
            if slow.is_set():
                release.wait(2.0)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = redis_server.url.replace("127.0.0.1", name)
    slow.set()
    try:
        with Fleet(url, connect_wait=0) as fleet:
            time.sleep(0.3)  # the fleet's threads are stuck resolving; a back-off passes
            started = time.monotonic()
            assert fleet.lookup("named.outlast.test") is None  # never connected: no wait
            assert time.monotonic() - started < 0.5  # not the 2 s hang
            slow.clear()
            release.set()
            now = time.time()
            fleet.publish(SharedAnswer("named.outlast.test", ("127.0.0.4",), 30.0, now, now, "t"))
            assert wait_for(lambda: fleet.lookup("named.outlast.test") is not None, 10)
            # Connected once; now the name is slow again and the connection is lost.
            release.clear()
            slow.set()
            fleet._link.client.connection_pool.disconnect()
            started = time.monotonic()
            assert fleet.lookup("named.outlast.test") is None
            assert time.monotonic() - started < 0.5  # not the 2 s hang
            slow.clear()
            release.set()
            assert wait_for(lambda: fleet.lookup("named.outlast.test") is not None, 10)
    finally:
        release.set()


def test_a_forked_child_gets_new_locks(redis_server) -> None:
    # Another thread holds the fleet's locks when the process forks: the child's copies
    # would stay locked for good, so the child must make new ones.
    from outlast.fleet import _fleet

    with Fleet(redis_server.url) as fleet:
        held, done = threading.Event(), threading.Event()

        def hold() -> None:
            with fleet._breakers._lock, _fleet._connect_lock:
                held.set()
                done.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(5)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 1
                try:
                    locks = (fleet._breakers._lock, _fleet._connect_lock)
                    code = 0 if all(lock.acquire(timeout=2) for lock in locks) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
        finally:
            done.set()
            holder.join(5)
        assert os.waitstatus_to_exitcode(status) == 0
