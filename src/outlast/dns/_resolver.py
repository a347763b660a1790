"""The resolver: last-known-good answers, served fast, refreshed in the background.

Sync and async callers share one state machine (:class:`~outlast.dns._table.NameTable`)
behind one lock that is held only while state is read or changed, never across I/O.
Lookups run on a private event loop (:class:`~outlast.dns._loop.LoopThread`), one per
name at a time (single-flight); every caller interested in that name, on any thread or
event loop, waits on the same future.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import functools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final, cast

from outlast._config import ProviderSpec, Settings, count_arg, seconds_arg
from outlast._events import Emitter, Event, Listener
from outlast._exceptions import ConfigError, ResolveError
from outlast._names import ip_literal, normalize
from outlast.dns._answer import Answer
from outlast.dns._events import (
    CacheFileFailed,
    CacheHit,
    CacheMiss,
    StaleServed,
    StaticServed,
)
from outlast.dns._loop import LoopThread
from outlast.dns._persist import CacheFileError, Record, load, save
from outlast.dns._pool import ProviderPool, build_provider
from outlast.dns._providers import (
    Failure,
    Negative,
    Outcome,
    Positive,
    Provider,
    order_addresses,
)
from outlast.dns._shared import SharedAnswer, SharedAnswers
from outlast.dns._table import NEVER, Entry, NameTable

__all__ = ["CACHE_FILE_INTERVAL", "Resolver"]

logger = logging.getLogger("outlast.dns")

#: The cache file is written at most this often (seconds), and at close.
CACHE_FILE_INTERVAL: Final = 2.0
#: How many spellings of names ("API.Example.com.") are remembered for the hot path.
ALIASES_MAX: Final = 1024
_FROM_FILE: Final = "cache file: "
_FROM_FLEET: Final = "fleet: "

_DEFAULTS = Settings.from_env({})


class Resolver:
    """Resolves names to addresses, and keeps serving the last good ones when DNS fails.

    Every argument is keyword-only and defaults to the ``OUTLAST_DNS_*`` default (see
    docs/configuration.md); :meth:`from_env` reads the variables instead. Durations are
    seconds (``float``) or ``timedelta``. ``providers`` are ``OUTLAST_DNS_PROVIDERS``
    entries (``"udp://10.0.0.2"``), parsed specs or provider objects; ``verify`` is the
    trust for DoT/DoH providers (True for the system store, or a CA bundle path);
    ``listeners`` receive every event; ``clock`` is a monotonic clock. ``shared``
    (``outlast.fleet.Fleet``, or any :class:`~outlast.dns._shared.SharedAnswers`) is told
    every good answer, off the hot path, and asked for a name this resolver holds
    nothing for when the providers give nothing usable.

    One instance is safe to share across threads and event loops. Close it (or use it
    as a context manager) to stop its background thread and write the cache file.

    Added in 0.1.0.
    """

    def __init__(
        self,
        *,
        providers: Sequence[str | ProviderSpec | Provider] | None = None,
        timeout: float | timedelta | None = None,
        hedge_delay: float | timedelta | None = None,
        min_ttl: float | timedelta | None = None,
        max_ttl: float | timedelta | None = None,
        stale_ttl: float | timedelta | None = None,
        keep_on_empty: float | timedelta | None = None,
        negative_ttl: float | timedelta | None = None,
        static: Mapping[str, Sequence[str]] | None = None,
        cache_file: str | os.PathLike[str] | None = None,
        cache_size: int | None = None,
        disable: bool = False,
        verify: bool | str | os.PathLike[str] = True,
        listeners: Iterable[Listener] = (),
        clock: Callable[[], float] = time.monotonic,
        shared: SharedAnswers | None = None,
    ) -> None:
        d = _DEFAULTS
        timeout_s = seconds_arg("timeout", timeout, d.dns_timeout, allow_zero=False)
        hedge_s = seconds_arg("hedge_delay", hedge_delay, d.dns_hedge_delay, allow_zero=True)
        min_ttl_s = seconds_arg("min_ttl", min_ttl, d.dns_min_ttl, allow_zero=True)
        max_ttl_s = seconds_arg("max_ttl", max_ttl, d.dns_max_ttl, allow_zero=False)
        if min_ttl_s > max_ttl_s:
            raise ConfigError("min_ttl", min_ttl, f"at most max_ttl ({max_ttl_s:g})")
        self._stale_ttl = seconds_arg("stale_ttl", stale_ttl, d.dns_stale_ttl, allow_zero=True)
        keep_s = seconds_arg("keep_on_empty", keep_on_empty, d.dns_keep_on_empty, allow_zero=True)
        negative_s = seconds_arg("negative_ttl", negative_ttl, d.dns_negative_ttl, allow_zero=True)
        size = count_arg("cache_size", cache_size, d.dns_cache_size, minimum=1)
        entries = d.dns_providers if providers is None else providers
        if isinstance(entries, str) or not entries:
            raise ConfigError("providers", providers, "a non-empty sequence of providers")
        built = [build_provider(entry, verify=verify) for entry in entries]

        self._clock = clock
        self._disabled = disable
        self._emitter = Emitter(logger, listeners)
        self._lock = threading.Lock()
        self._table = NameTable(
            size=size,
            min_ttl=min_ttl_s,
            max_ttl=max_ttl_s,
            keep_on_empty=keep_s,
            negative_ttl=negative_s,
        )
        self._inflight: dict[str, concurrent.futures.Future[Outcome]] = {}
        self._runner = LoopThread("outlast-dns")
        self._pool = ProviderPool(
            built, timeout=timeout_s, hedge_delay=hedge_s, clock=clock, emitter=self._emitter
        )
        self._static = _static_table(static if static is not None else d.dns_static)
        #: Names as callers wrote them ("API.example.com.") -> the name they stand for.
        self._aliases: dict[str, str] = {}
        self._cache_file = None if cache_file is None or disable else Path(cache_file)
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = NEVER
        self._cache_file_writable = True
        self._closed = False
        self._shared = None if disable else shared
        if disable:
            return  # plain getaddrinfo: no file, no thread, no hooks
        if self._cache_file is not None:
            self._load_cache_file(self._cache_file)
        weakref.finalize(self, self._runner.close)
        ref = weakref.ref(self)
        os.register_at_fork(
            before=functools.partial(_before_fork, ref),
            after_in_parent=functools.partial(_after_fork_in_parent, ref),
            after_in_child=functools.partial(_after_fork_in_child, ref),
        )
        atexit.register(_at_exit, ref)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Resolver:
        """A resolver configured by the ``OUTLAST_DNS_*`` variables (``os.environ`` by default).

        Raises :class:`~outlast.ConfigError` for a bad value. Keyword arguments (for
        example ``listeners=``) override the environment. With ``OUTLAST_REDIS_URL`` set,
        answers are shared through ``outlast.fleet`` (needs ``outlast[redis]``). With
        ``OUTLAST_CHAOS`` planning DNS faults, each provider is wrapped to inject them
        (docs/rehearsal.md).
        """
        s = Settings.from_env(environ)
        options: dict[str, object] = {
            "providers": s.dns_providers,
            "timeout": s.dns_timeout,
            "hedge_delay": s.dns_hedge_delay,
            "min_ttl": s.dns_min_ttl,
            "max_ttl": s.dns_max_ttl,
            "stale_ttl": s.dns_stale_ttl,
            "keep_on_empty": s.dns_keep_on_empty,
            "negative_ttl": s.dns_negative_ttl,
            "static": s.dns_static,
            "cache_file": s.dns_cache_file,
            "cache_size": s.dns_cache_size,
            "disable": s.disable,
        }
        if s.redis_url is not None and not s.disable and "shared" not in overrides:
            from outlast.fleet import connect  # imported only in fleet mode

            listeners = cast("Iterable[Listener]", overrides.get("listeners", ()))
            options["shared"] = connect(s.redis_url, listeners=listeners)
        options.update(overrides)
        if s.chaos is not None and not s.disable:  # OUTLAST_CHAOS: a rehearsal
            from outlast.chaos._dns import wrap_dns

            options["providers"] = wrap_dns(s.chaos, options)
        return cls(**options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        names = ",".join(p.name for p in self._pool.providers)
        return f"<Resolver providers={names!r} names={len(self._table)}>"

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------

    def resolve(self, host: str, *, timeout: float | None = None) -> Answer:
        """The addresses for ``host``.

        Served from memory when fresh; a stale answer is served at once while one
        background refresh runs. Raises :class:`~outlast.ResolveError` when nothing
        usable is held and the providers give no addresses (after ``OUTLAST_DNS_STATIC``),
        and :class:`~outlast.InvalidHostError` for a malformed name (no query is sent).
        ``timeout`` (seconds) bounds the wait for a lookup (a caller's deadline); the
        lookup itself goes on for the next caller.
        """
        if self._disabled:
            return _getaddrinfo(host)
        answer = self._hit(host)
        if answer is not None:
            return answer
        step = self._plan(host)
        if isinstance(step, Answer):
            return step
        name, future = step
        if self._runner.in_loop_thread():
            future.cancel()
            raise ResolveError(
                host,
                "resolve() was called on the resolver's own thread (from a listener or a "
                "provider) for a name it does not hold; it cannot wait for itself",
            )
        limit = self._wait_limit if timeout is None else max(0.0, min(self._wait_limit, timeout))
        try:
            outcome = future.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            outcome = Failure(f"the lookup took longer than {limit:g}s", "providers")
        except concurrent.futures.CancelledError:
            raise ResolveError(host, "the resolver was closed during the lookup") from None
        return self._after_wait(host, name, outcome)

    async def aresolve(self, host: str, *, timeout: float | None = None) -> Answer:
        """:meth:`resolve` for asyncio: never blocks the event loop."""
        if self._disabled:
            return await _agetaddrinfo(host)
        answer = self._hit(host)
        if answer is not None:
            return answer
        step = self._plan(host)
        if isinstance(step, Answer):
            return step
        name, future = step
        limit = self._wait_limit if timeout is None else max(0.0, min(self._wait_limit, timeout))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), limit)
        except asyncio.TimeoutError:
            outcome = Failure(f"the lookup took longer than {limit:g}s", "providers")
        except asyncio.CancelledError:
            if future.cancelled():  # the shared lookup, not this task, was cancelled
                raise ResolveError(host, "the resolver was closed during the lookup") from None
            raise
        return self._after_wait(host, name, outcome)

    @property
    def _wait_limit(self) -> float:
        """How long a caller waits for a lookup: the pool's own bound, and a second."""
        return self._pool.deadline + 1.0

    def close(self) -> None:
        """Stop the background thread and write the cache file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._runner.loop is not None:
            closing = self._runner.submit(self._pool.aclose())
            try:
                closing.result(timeout=2.0)
            except Exception:
                logger.warning("outlast: providers did not close cleanly", exc_info=True)
        self._runner.close()
        self._flush_handle = None
        if self._cache_file is not None and self._cache_file_writable:
            self._write_cache_file()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio: the waits and the file write run off the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    async def __aenter__(self) -> Resolver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the hot path -----------------------------------------------------------------

    def _hit(self, host: str) -> Answer | None:
        """A fresh answer held under this name (or the name it was seen to stand for)."""
        now = self._clock()
        try:
            with self._lock:
                entry = self._table.get(self._aliases.get(host, host))
        except TypeError:  # unhashable: _plan says what is wrong with it
            return None
        if entry is None or now >= entry.fresh_until:
            return None
        if now >= entry.next_refresh_at:
            with self._lock:
                self._refresh(entry.name, now)
        if self._emitter.enabled:
            self._emitter.emit(CacheHit(entry.name))
        return entry.answer

    # -- decisions --------------------------------------------------------------------

    def _plan(self, host: str) -> Answer | tuple[str, concurrent.futures.Future[Outcome]]:
        """An answer now, or the lookup to wait for. Raises for an invalid or negative name."""
        literal = ip_literal(host)
        if literal is not None:
            return Answer(literal, (literal,), stale=False, source="literal", ttl=0.0)
        name = normalize(host)
        if name != host:
            if len(self._aliases) >= ALIASES_MAX:
                self._aliases.clear()
            self._aliases[host] = name
        now = self._clock()
        with self._lock:
            entry = self._table.get(name)
            answer = self._serve(entry, now)
            if answer is None and entry is not None and entry.negative and now < entry.expires_at:
                negative: str | None = entry.negative
            else:
                negative = None
            future = None if answer is not None or negative else self._refresh(name, now)
        if answer is not None:
            if answer.stale:
                self._emit_stale(answer, entry, now)
            elif self._emitter.enabled:
                self._emitter.emit(CacheHit(name))
            return answer
        if negative is not None:
            assert entry is not None
            return self._last_resort(host, name, f"{negative} from {entry.source} (cached)")
        assert future is not None
        if self._emitter.enabled:
            self._emitter.emit(CacheMiss(name))
        return name, future

    def _serve(self, entry: Entry | None, now: float, *, refresh: bool = True) -> Answer | None:
        """What may be served from ``entry`` now, starting a refresh when one is due."""
        if entry is None or not entry.has_addresses:
            return None
        if refresh and now >= entry.next_refresh_at:
            self._refresh(entry.name, now)
        if entry.suspect is None and now < entry.expires_at:
            return entry.answer
        if entry.suspect is None and now - entry.expires_at > self._stale_ttl:
            return None  # too old to serve: the caller waits for a refresh
        if entry.suspect is not None:
            held = now - entry.suspect_since
            why = f"last-known-good: {entry.suspect} distrusted for {held:.0f}s"
        elif entry.failures:
            why = f"stale: refresh failing ({entry.last_error})"
        else:
            why = "stale: refreshing"
        source = f"{why}; from {entry.source}"
        return Answer(entry.name, entry.addresses, stale=True, source=source, ttl=entry.ttl)

    def _after_wait(self, host: str, name: str, outcome: Outcome) -> Answer:
        now = self._clock()
        with self._lock:
            entry = self._table.get(name)
            answer = self._serve(entry, now, refresh=False)
        if answer is not None:
            if answer.stale:
                self._emit_stale(answer, entry, now)
            return answer
        if isinstance(outcome, Positive):
            # Evicted or overtaken between the lookup and now: the addresses are still good.
            ttl = self._table.clamp(outcome.ttl)
            return Answer(name, outcome.addresses, stale=False, source=outcome.source, ttl=ttl)
        if entry is not None and entry.negative and now < entry.expires_at:
            reason = f"{entry.negative} from {entry.source}"
        elif isinstance(outcome, Negative):
            reason = f"{outcome.kind} from {outcome.source}"
        else:
            reason = f"no provider answered ({outcome.error})"
        return self._last_resort(host, name, reason)

    def _last_resort(self, host: str, name: str, reason: str) -> Answer:
        static = self._static.get(name)
        if static is None:
            raise ResolveError(host, reason)
        self._emitter.emit(StaticServed(name, reason))
        return Answer(name, static, stale=True, source=f"static; no answer: {reason}", ttl=0.0)

    def _emit_stale(self, answer: Answer, entry: Entry | None, now: float) -> None:
        if self._emitter.enabled:
            age = 0.0 if entry is None else now - entry.learned_at
            self._emitter.emit(StaleServed(answer.host, answer.source, age))

    # -- refreshes --------------------------------------------------------------------

    def _refresh(self, name: str, now: float) -> concurrent.futures.Future[Outcome]:
        """The lookup for ``name`` in flight, starting one if none is. Call with the lock held."""
        future = self._inflight.get(name)
        if future is None or future.done():
            future = self._runner.submit(self._lookup(name, generation=now))
            self._inflight[name] = future
        return future

    async def _lookup(self, name: str, *, generation: float) -> Outcome:
        try:
            outcome = await self._pool.lookup(name)
        except Exception as exc:  # a bug in a provider must not strand the waiters
            logger.exception("outlast: lookup of %r failed unexpectedly", name)
            outcome = Failure(f"{type(exc).__name__}: {exc}", "providers")
        if self._shared is not None and not isinstance(outcome, Positive):
            await self._adopt_shared(name)
        events = self._record(name, generation, outcome)
        for event in events:
            self._emitter.emit(event)
        return outcome

    def _record(self, name: str, generation: float, outcome: Outcome) -> list[Event]:
        now = self._clock()
        with self._lock:
            self._inflight.pop(name, None)
            events = self._table.apply(name, generation, outcome, now)
            held = self._table.get(name)
        if (
            self._shared is not None
            and isinstance(outcome, Positive)
            and held is not None
            and held.generation == generation
            and held.addresses == outcome.addresses
        ):
            self._publish(held, now)
        if self._cache_file is not None and not isinstance(outcome, Failure):
            self._schedule_cache_file()  # a confirmed answer moves learned_at on, too
        return events

    # -- fleet mode (outlast.fleet) ---------------------------------------------------

    def _publish(self, entry: Entry, now: float) -> None:
        """Hand a recorded good answer to the shared store (which must not block)."""
        assert self._shared is not None
        wall = time.time()
        answer = SharedAnswer(
            entry.name,
            entry.addresses,
            entry.ttl,
            wall - (now - entry.learned_at),
            wall - (now - entry.generation),
            entry.source,
        )
        try:
            self._shared.publish(answer)
        except Exception:
            logger.exception("outlast: publishing %r to the fleet failed", entry.name)

    async def _adopt_shared(self, name: str) -> None:
        """Providers gave nothing usable: hold the fleet's answer if this process has none."""
        assert self._shared is not None
        with self._lock:
            entry = self._table.get(name)
            if entry is not None and entry.has_addresses:
                return
        loop = asyncio.get_running_loop()
        try:  # the lookup may block briefly: never on this loop's thread
            shared = await loop.run_in_executor(None, self._shared.lookup, name)
        except Exception:
            logger.exception("outlast: looking %r up in the fleet failed", name)
            return
        if shared is None or not shared.addresses:
            return
        now, wall = self._clock(), time.time()
        with self._lock:
            entry = self._table.get(name)
            if entry is not None and entry.has_addresses:
                return
            self._hold_stale(
                name,
                shared.addresses,
                shared.ttl,
                _FROM_FLEET + shared.source.removeprefix(_FROM_FLEET),
                now - max(wall - shared.learned_at, 0.0),
                now,
            )

    def _hold_stale(
        self,
        name: str,
        addresses: Sequence[str],
        ttl: float,
        source: str,
        learned_at: float,
        now: float,
    ) -> None:
        """Hold another process's answer as stale last-known-good. Call with the lock held."""
        entry = self._table.positive(
            name,
            order_addresses(addresses),
            ttl,
            source,
            generation=NEVER,
            learned_at=learned_at,
        )
        if now - entry.expires_at > self._stale_ttl:
            return
        # Not fresh until a provider confirms it: served stale, refreshed at first use.
        entry.fresh_until = NEVER
        entry.next_refresh_at = now
        entry.answer = dataclasses.replace(entry.answer, stale=True)
        self._table.put(entry)

    # -- the cache file ---------------------------------------------------------------

    def _load_cache_file(self, path: Path) -> None:
        """Hold the file's answers as stale last-known-good, each refreshed on first use."""
        try:
            records = load(path)
        except CacheFileError as exc:
            self._cache_file_writable = exc.replaceable
            self._emitter.emit(CacheFileFailed(str(path), str(exc)))
            return
        now, wall = self._clock(), time.time()
        for record in records:
            learned_at = now - max(wall - record.learned_at, 0.0)
            source = _FROM_FILE + record.source.removeprefix(_FROM_FILE)
            self._hold_stale(record.host, record.addresses, record.ttl, source, learned_at, now)

    def _schedule_cache_file(self) -> None:
        """Called on the loop: write the file soon, at most every CACHE_FILE_INTERVAL."""
        if self._flush_handle is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_flush + CACHE_FILE_INTERVAL - self._clock())
        self._flush_handle = loop.call_later(delay, self._flush_cache_file, loop)

    def _flush_cache_file(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_handle = None
        self._last_flush = self._clock()
        loop.run_in_executor(None, self._write_cache_file)

    def _write_cache_file(self) -> None:
        assert self._cache_file is not None
        if not self._cache_file_writable:
            return
        now, wall = self._clock(), time.time()
        with self._lock:
            records = [
                Record(
                    e.name,
                    e.addresses,
                    e.ttl,
                    wall - (now - e.learned_at),
                    e.source.removeprefix(_FROM_FILE),
                )
                for e in self._table
                if e.has_addresses
            ]
        try:
            save(self._cache_file, records, now=wall)
        except CacheFileError as exc:
            self._emitter.emit(CacheFileFailed(str(self._cache_file), str(exc)))

    # -- process lifecycle ------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._inflight = {}
        self._flush_handle = None
        self._runner.after_fork_in_child()
        self._pool.after_fork_in_child()


# Fork: the lock is taken before, so a child never copies a half-made change.


def _before_fork(ref: weakref.ref[Resolver]) -> None:
    resolver = ref()
    if resolver is not None:
        resolver._lock.acquire()


def _after_fork_in_parent(ref: weakref.ref[Resolver]) -> None:
    resolver = ref()
    if resolver is not None:
        resolver._lock.release()


def _after_fork_in_child(ref: weakref.ref[Resolver]) -> None:
    resolver = ref()
    if resolver is not None:
        resolver._after_fork_in_child()


def _at_exit(ref: weakref.ref[Resolver]) -> None:
    resolver = ref()
    if resolver is not None:
        resolver.close()


def _static_table(static: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    expected = "a mapping of hostname to a list of IP addresses"
    table = {}
    for host, addresses in static.items():
        if isinstance(addresses, str) or not addresses:
            raise ConfigError("static", dict(static), expected)
        try:
            table[normalize(host)] = order_addresses(addresses)
        except ValueError as exc:  # InvalidHostError included
            raise ConfigError("static", dict(static), f"{expected} ({exc})") from None
    return table


def _getaddrinfo(host: str) -> Answer:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(host, f"getaddrinfo: {exc}") from exc
    addresses = order_addresses(str(info[4][0]).partition("%")[0] for info in infos)
    return Answer(host, addresses, stale=False, source="system (outlast disabled)", ttl=0.0)


async def _agetaddrinfo(host: str) -> Answer:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _getaddrinfo, host)
