"""The cache file is the user's disk: never a foreign file, merged, locked, bounded."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from outlast import ConfigError, Event, ResolveError, Resolver
from outlast.dns import CacheFileFailed, EmptyAnswerAccepted
from outlast.dns._persist import load
from outlast.testing import DNSServer

from .scripted import ScriptedProvider


def settle(resolver: Resolver) -> None:
    deadline = time.monotonic() + 10
    while any(not f.done() for f in list(resolver._inflight.values())):
        assert time.monotonic() < deadline, "a lookup never finished"
        time.sleep(0.005)


def hosts(path: Path) -> dict[str, tuple[str, ...]]:
    records, skipped = load(path)
    assert skipped == 0
    return {r.host: r.addresses for r in records}


@pytest.mark.parametrize(
    "content",
    [
        b"[server]\nport = 8080\n",
        b'{"name": "my-app", "version": "1.2.3"}',
        b"\x00\xff binary",
        b"[1, 2]",
        b'{"version": 1, "names": [{"host": "a',  # no marker, not parseable: not ours
    ],
)
def test_a_foreign_file_is_left_byte_for_byte_and_mode_for_mode(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "settings.ini"
    path.write_bytes(content)
    path.chmod(0o640)
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with pytest.raises(ConfigError, match="OUTLAST_DNS_CACHE_FILE") as caught:
        Resolver(providers=[provider], cache_file=path)
    assert "left untouched" in str(caught.value)
    env = {"OUTLAST_DNS_CACHE_FILE": str(path), "OUTLAST_DNS_PROVIDERS": "udp://127.0.0.1:9"}
    with pytest.raises(ConfigError, match="OUTLAST_DNS_CACHE_FILE"):
        Resolver.from_env(env)
    assert path.read_bytes() == content
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_outlast_resolve_never_touches_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    path.write_text("secret = 1\n")
    path.chmod(0o644)
    env = {
        **os.environ,
        "OUTLAST_DNS_CACHE_FILE": str(path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "outlast", "resolve", "localhost"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "OUTLAST_DNS_CACHE_FILE" in done.stderr
    assert path.read_text() == "secret = 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_mode_of_outlasts_own_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("api.example")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file: private
    path.chmod(0o644)  # the operator shares it with a sidecar
    provider.set("other.example", "10.0.0.2")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("other.example")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert set(hosts(path)) == {"api.example", "other.example"}


@pytest.mark.parametrize(
    "bad",
    [
        {"ttl": int("1" + "0" * 400)},  # OverflowError for float()
        {"learned_at": int("1" + "0" * 400)},
        {"ttl": "NaN"},
        {"ttl": float("inf")},
        {"learned_at": float("inf")},
        {"ttl": True},
        {"addresses": "10.0.0.1"},
        {"addresses": ["not-an-ip"]},
        {"host": ["a"]},
        {"host": "bad name!"},
        {"suspect": "MAYBE", "suspect_since": 1.0},
        {"suspect": "NXDOMAIN"},
        {"source": {"a": 1}},
    ],
)
def test_malformed_entries_are_ignored_with_a_warning(
    tmp_path: Path, bad: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    good = {"host": "good.example", "addresses": ["10.0.0.1"], "ttl": 60, "learned_at": now}
    broken = {**good, "host": "broken.example", **bad}
    path = tmp_path / "cache.json"
    document = {"format": "outlast-dns-cache", "version": 1, "written_at": now}
    text = json.dumps({**document, "names": [good, broken]}, allow_nan=True)
    path.write_text(text)
    dark = ScriptedProvider()
    dark.fail("good.example")
    with Resolver(providers=[dark], cache_file=path) as resolver:  # never raises
        assert resolver.resolve("good.example").addresses == ("10.0.0.1",)
    assert "1 malformed entries ignored" in caplog.text


def test_two_resolvers_sharing_a_file_end_with_the_union_newest_per_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.json"
    first, second = ScriptedProvider("first"), ScriptedProvider("second")
    first.set("a.example", "10.0.0.1")
    first.set("shared.example", "10.0.0.10")
    second.set("b.example", "10.0.0.2")
    second.set("shared.example", "10.0.0.20")
    one = Resolver(providers=[first], cache_file=path)
    two = Resolver(providers=[second], cache_file=path)
    one.resolve("a.example")
    one.resolve("shared.example")
    time.sleep(0.05)
    two.resolve("b.example")
    two.resolve("shared.example")  # learned later: newer
    two.close()
    one.close()  # the last writer holds the older answer for shared.example
    held = hosts(path)
    assert held == {
        "a.example": ("10.0.0.1",),
        "b.example": ("10.0.0.2",),
        "shared.example": ("10.0.0.20",),
    }


_WRITER = textwrap.dedent(
    """
    import sys, time
    from outlast import Resolver
    provider, path, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    with Resolver(providers=[provider], cache_file=path) as resolver:
        for i in range(20):
            resolver.resolve(f"{prefix}{i}.outlast.test")
            resolver._write_cache_file()  # as often as possible: racing the other process
    """
)


def test_two_processes_writing_one_file_end_with_the_union(
    tmp_path: Path, fault_dns: DNSServer
) -> None:
    path = tmp_path / "cache.json"
    for prefix in ("p", "q"):
        for i in range(20):
            fault_dns.set(f"{prefix}{i}.outlast.test", [f"10.0.{ord(prefix) - 100}.{i + 1}"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, fault_dns.provider, str(path), prefix], env=env
        )
        for prefix in ("p", "q")
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    held = hosts(path)
    assert set(held) == {f"{p}{i}.outlast.test" for p in "pq" for i in range(20)}


def test_a_process_restarting_often_still_accepts_a_deletion_after_keep_on_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.json"
    provider = ScriptedProvider()
    provider.set("gone.example", "10.0.0.1", ttl=1)
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("gone.example")
    provider.negative("gone.example", "NXDOMAIN", ttl=1)  # the name is really deleted
    keep = 1.5
    started = time.monotonic()
    accepted_at = None
    events: list[Event] = []
    errors: list[str] = []
    for _ in range(12):  # a crash loop: each process lives about 0.4 s
        with Resolver(
            providers=[provider], cache_file=path, keep_on_empty=keep, listeners=[events.append]
        ) as resolver:
            try:
                resolver.resolve("gone.example")
            except ResolveError as exc:
                errors.append(str(exc))
                accepted_at = time.monotonic()
                break
            settle(resolver)
            time.sleep(0.3)
    assert all("NXDOMAIN" in error for error in errors)
    assert accepted_at is not None, "the deletion was never accepted"
    assert accepted_at - started <= keep + 1.5
    assert any(isinstance(e, EmptyAnswerAccepted) for e in events) or "gone.example" not in hosts(
        path
    )
    with (
        Resolver(providers=[provider], cache_file=path) as resolver,
        pytest.raises(ResolveError, match="NXDOMAIN"),
    ):
        resolver.resolve("gone.example")  # the next restart does not bring it back


def test_a_failing_write_warns_once_per_streak_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"
    events: list[Event] = []
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(
        providers=[provider], cache_file=folder / "cache.json", listeners=[events.append]
    ) as resolver:
        resolver.resolve("api.example")
        deadline = time.monotonic() + 5
        while not (folder / "cache.json").exists():  # the first write, in the background
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (folder / "cache.json").unlink()
        folder.rmdir()
        folder.write_text("the folder became a file")
        for _ in range(5):
            resolver._write_cache_file()
        assert sum(isinstance(e, CacheFileFailed) for e in events) == 1
        assert resolver._cache_file_failures == 5  # the next write waits 2 s * 2**5
        folder.unlink()
        resolver._write_cache_file()  # healed: the streak ends
        assert resolver._cache_file_failures == 0
        (folder / "cache.json").unlink()
        folder.rmdir()
        folder.write_text("broken again")
        resolver._write_cache_file()
        assert sum(isinstance(e, CacheFileFailed) for e in events) == 2  # a new streak
        folder.unlink()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2


def test_the_file_is_serialised_outside_the_resolver_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outlast.dns import _resolver

    provider = ScriptedProvider()
    for i in range(50):
        provider.set(f"n{i}.example", "10.0.0.1")
    resolver = Resolver(providers=[provider], cache_file=tmp_path / "cache.json")
    for i in range(50):
        resolver.resolve(f"n{i}.example")
    seen: list[bool] = []
    real_record, real_save = _resolver.Record, _resolver.save

    def record(*args: object) -> object:
        seen.append(resolver._lock.locked())
        return real_record(*args)  # type: ignore[arg-type]

    def save(*args: object, **kwargs: object) -> None:
        seen.append(resolver._lock.locked())
        real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_resolver, "Record", record)
    monkeypatch.setattr(_resolver, "save", save)
    hits: list[float] = []

    def hit() -> None:  # cache hits keep flowing while the file is written
        for _ in range(200):
            started = time.perf_counter()
            resolver.resolve("n1.example")
            hits.append(time.perf_counter() - started)

    thread = threading.Thread(target=hit)
    thread.start()
    resolver._write_cache_file()
    thread.join()
    resolver.close()
    assert seen
    assert not any(seen)  # neither built nor written under the lock
    assert len(hits) == 200


def test_the_portable_lock_file_excludes_and_is_broken_when_stale(tmp_path: Path) -> None:
    from outlast.dns._persist import STALE_LOCK, _exclusive_file

    lock = tmp_path / "cache.json.lock"
    order: list[str] = []
    with _exclusive_file(lock):
        waiter = threading.Thread(target=lambda: _hold(lock, order))
        waiter.start()
        time.sleep(0.1)
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first done", "second"]
    assert not lock.exists()  # removed after use
    lock.write_text("")  # left by a process that died
    old = time.time() - STALE_LOCK - 1
    os.utime(lock, (old, old))
    with _exclusive_file(lock):
        pass  # taken over, not waited for
    assert not lock.exists()


def _hold(lock: Path, order: list[str]) -> None:
    from outlast.dns._persist import _exclusive_file

    with _exclusive_file(lock):
        order.append("second")


def _start_in_thread(path: Path) -> tuple[threading.Thread, list[BaseException]]:
    """Resolver(cache_file=path) on a daemon thread: a hang fails the test, not the suite."""
    caught: list[BaseException] = []

    def start() -> None:
        provider = ScriptedProvider()
        provider.set("api.example", "10.0.0.1")
        try:
            with Resolver(providers=[provider], cache_file=path) as resolver:
                resolver.resolve("api.example")
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    thread.join(10)
    return thread, caught


def test_a_fifo_is_refused_at_once_and_left_a_fifo(tmp_path: Path) -> None:
    # Found by b2: reading a FIFO blocked Resolver() (and `outlast resolve`) forever.
    path = tmp_path / "pipe"
    os.mkfifo(path)
    thread, caught = _start_in_thread(path)
    if thread.is_alive():  # unblock the stuck open() before failing
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail("Resolver(cache_file=FIFO) blocked on opening the FIFO")
    assert len(caught) == 1, caught
    assert isinstance(caught[0], ConfigError), caught
    assert "OUTLAST_DNS_CACHE_FILE" in str(caught[0])
    assert stat.S_ISFIFO(path.lstat().st_mode)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod needs root")
def test_a_character_device_like_dev_null_is_refused_and_never_replaced(tmp_path: Path) -> None:
    # Found by b2: OUTLAST_DNS_CACHE_FILE=/dev/null read as an empty (new) cache file,
    # and the first write renamed a regular file over the system's /dev/null.
    path = tmp_path / "null"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    thread, caught = _start_in_thread(path)
    assert not thread.is_alive()
    assert len(caught) == 1, caught
    assert isinstance(caught[0], ConfigError), caught
    assert stat.S_ISCHR(path.lstat().st_mode)


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symbolic_link_survives_writes_which_go_to_its_target(
    tmp_path: Path, dangling: bool
) -> None:
    # Found by b2: the atomic rename replaced the operator's symbolic link by a file.
    target = tmp_path / "volume" / "cache.json"
    target.parent.mkdir()
    link = tmp_path / "cache.json"
    link.symlink_to(target)
    if not dangling:
        provider = ScriptedProvider()
        provider.set("old.example", "10.0.0.9")
        with Resolver(providers=[provider], cache_file=target) as resolver:
            resolver.resolve("old.example")
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=link) as resolver:
        resolver.resolve("api.example")
    assert link.is_symlink()
    assert link.resolve() == target
    expected = {"api.example"} if dangling else {"api.example", "old.example"}
    assert set(hosts(target)) == expected


def test_a_record_dated_in_the_future_neither_wins_merges_nor_outlives_its_age(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by b2: a record stamped by a clock ahead of this one (a VM booted with a
    # wrong clock, a host sharing the file over NFS) won every merge, so fresh answers
    # were never written, and every restart loaded it as just learned: the old address
    # was served, by every process, for as long as the clock stayed behind.
    now = time.time()
    future = {
        "host": "api.example",
        "addresses": ["10.0.0.9"],
        "ttl": 60,
        "learned_at": now + 10 * 86400,
        "source": "udp://skewed",
    }
    path = tmp_path / "cache.json"
    document = {"format": "outlast-dns-cache", "version": 1, "written_at": now}
    path.write_text(json.dumps({**document, "names": [future]}))
    dark = ScriptedProvider()
    dark.fail("api.example")
    with Resolver(providers=[dark], cache_file=path) as resolver, pytest.raises(ResolveError):
        resolver.resolve("api.example")  # not served as last-known-good
    assert "1 malformed entries ignored" in caplog.text
    path.write_text(json.dumps({**document, "names": [future]}))
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert hosts(path) == {"api.example": ("10.0.0.1",)}


def test_a_relative_path_stays_where_it_was_named_after_a_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by b2: OUTLAST_DNS_CACHE_FILE=cache.json was written to the directory the
    # process was in at close (a daemon that chdir's to / wrote /cache.json).
    (tmp_path / "app").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    env = {"OUTLAST_DNS_CACHE_FILE": "cache.json", "OUTLAST_DNS_STATIC": "api.example=10.0.0.1"}
    with Resolver.from_env(env) as resolver:
        monkeypatch.chdir(tmp_path / "other")
        assert resolver.resolve("localhost").addresses
    assert (tmp_path / "app" / "cache.json").exists()
    assert not (tmp_path / "other" / "cache.json").exists()


def test_close_returns_while_another_process_holds_the_directory_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by b2: flock() on the cache file's directory waited without bound, so a
    # hung writer elsewhere (or `flock(1)` on the directory) made close() hang for ever.
    fcntl = pytest.importorskip("fcntl")
    from outlast.dns import _persist

    monkeypatch.setattr(_persist, "LOCK_TIMEOUT", 0.3)
    held = os.open(tmp_path, os.O_RDONLY)  # another open file description: a rival
    fcntl.flock(held, fcntl.LOCK_EX)
    events: list[Event] = []
    try:
        provider = ScriptedProvider()
        provider.set("api.example", "10.0.0.1")
        resolver = Resolver(
            providers=[provider], cache_file=tmp_path / "cache.json", listeners=[events.append]
        )
        resolver.resolve("api.example")
        closing = threading.Thread(target=resolver.close, daemon=True)
        began = time.monotonic()
        closing.start()
        closing.join(20)
        took = time.monotonic() - began
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    assert not closing.is_alive(), "close() waited for the lock without bound"
    assert took < 15
    assert any(isinstance(e, CacheFileFailed) for e in events)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_a_write_by_root_keeps_the_files_owner(tmp_path: Path) -> None:
    # Found by b2: root running `outlast resolve` in a service's environment replaced
    # the service's 0600 cache file by a root-owned one the service could not read.
    path = tmp_path / "cache.json"
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("api.example")
    os.chown(path, 65534, 65534)  # the service's user
    provider.set("other.example", "10.0.0.2")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("other.example")
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert set(hosts(path)) == {"api.example", "other.example"}
