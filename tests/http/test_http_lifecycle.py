"""Components built once, shared, and freed with their owners (the composition root).

A client given no resolver uses the process's shared one (one cache, one loop thread,
one cache-file writer for every client of a configuration); nothing a client made
outlives it; hooks are registered once, not per resolver.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback_http import Backend

import outlast
from outlast import _root
from outlast.dns import _resolver
from outlast.testing import DNSServer


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fault_dns: DNSServer) -> Iterator[DNSServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", fault_dns.provider)
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "0.5")
    monkeypatch.delenv("OUTLAST_DISABLE", raising=False)
    _root.forget_shared()
    yield fault_dns
    _root.forget_shared()
    gc.collect()


def dns_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "outlast-dns"]


def open_fds() -> int | None:
    try:
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))
    except OSError:  # no /proc (macOS, Windows): the thread count alone is checked
        return None


def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# Dropped without close(), as in the report: their pooled sockets are collected, as
# plain httpx's are, with a ResourceWarning each.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_sixty_clients_used_once_and_dropped_leave_nothing_running(
    env: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("dropped")
    env.set(name, ["127.0.0.1"])
    gc.collect()
    threads_before, fds_before = len(dns_threads()), open_fds()
    with Backend() as backend:
        url = f"http://{name}:{backend.port}/"
        for _ in range(30):
            outlast.Client().get(url).raise_for_status()  # never closed

        async def once() -> None:
            response = await outlast.AsyncClient().get(url)  # never closed
            response.raise_for_status()

        for _ in range(30):
            asyncio.run(once())
        assert len(dns_threads()) <= threads_before + 1  # one shared resolver, not sixty
        assert backend.hits == 60
    gc.collect()
    assert wait_until(lambda: len(dns_threads()) == threads_before), dns_threads()
    if fds_before is not None:
        assert wait_until(lambda: (open_fds() or 0) <= fds_before), (open_fds(), fds_before)


def test_clients_of_one_configuration_share_one_resolver_and_one_policy(env: DNSServer) -> None:
    with outlast.Client() as one, outlast.Client() as two:
        first, second = one._transport, two._transport
        assert isinstance(first, outlast.Transport)
        assert isinstance(second, outlast.Transport)
        assert first.resolver is second.resolver is not None
        assert first.policy is second.policy is not None
    assert first.resolver is not None
    assert not first.resolver.closed  # clients don't own it


def test_a_changed_configuration_gets_its_own_resolver(
    env: DNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _root.shared_resolver()
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "0.7")
    after = _root.shared_resolver()
    assert after is not before
    assert _root.shared_resolver() is after


def test_a_closed_shared_resolver_is_replaced(env: DNSServer) -> None:
    first = _root.shared_resolver()
    first.close()
    assert _root.shared_resolver() is not first


def test_resolvers_register_no_hooks_of_their_own(
    monkeypatch: pytest.MonkeyPatch, fault_dns: DNSServer
) -> None:
    registered: list[object] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
    before = atexit._ncallbacks()
    for _ in range(2000):
        outlast.Resolver(providers=[fault_dns.provider]).close()
    for _ in range(200):
        outlast.Resolver(providers=[fault_dns.provider])  # dropped without close()
    gc.collect()
    assert registered == []
    assert atexit._ncallbacks() == before
    assert _resolver._live() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_after_ten_thousand_resolvers_costs_what_it_did_before(
    fault_dns: DNSServer,
) -> None:
    def fork_once() -> float:
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        elapsed = time.perf_counter() - started
        os.waitpid(pid, 0)
        return elapsed

    before = min(fork_once() for _ in range(5))
    for _ in range(10_000):
        outlast.Resolver(providers=[fault_dns.provider]).close()
    gc.collect()
    assert _resolver._live() == []  # what the fork hooks walk: nothing left
    after = min(fork_once() for _ in range(5))
    assert after < before * 5 + 0.05  # generous: a busy machine; 60 000 hooks took far longer


def test_two_clients_with_a_cache_file_leave_every_name_in_it(
    env: DNSServer,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "outlast-cache.json"
    monkeypatch.setenv("OUTLAST_DNS_CACHE_FILE", str(cache))
    names = [unique_name("first"), unique_name("second")]
    for name in names:
        env.set(name, ["127.0.0.1"])
    with Backend() as backend:
        with outlast.Client() as httpx_side:
            aws_wrap = pytest.importorskip("outlast.aws._wrap")  # the README's two clients

            boto_side = aws_wrap._default_resolver()
            httpx_side.get(f"http://{names[0]}:{backend.port}/")
            boto_side.resolve(names[1])
        _root.shared_resolver().close()  # what interpreter exit does
    held = {record["host"] for record in json.loads(cache.read_text())["names"]}
    assert set(names) <= held


def test_close_from_a_listener_on_the_resolver_thread_returns(fault_dns: DNSServer) -> None:
    fault_dns.set("svc.outlast.test", ["127.0.0.1"])
    closed = threading.Event()
    resolver: outlast.Resolver

    def listener(event: outlast.Event) -> None:
        if getattr(event, "kind", "") == "dns.answer_updated" and not closed.is_set():
            resolver.close()
            closed.set()

    resolver = outlast.Resolver(providers=[fault_dns.provider], listeners=[listener])
    started = time.monotonic()
    resolver.resolve("svc.outlast.test")
    assert closed.wait(5)
    assert time.monotonic() - started < 1.5  # it used to wait 2 s for its own loop
    assert resolver.closed
