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
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final, Protocol

from outlast._async import run_in_thread, wait_future
from outlast._config import ProviderSpec, Settings, count_arg, seconds_arg
from outlast._events import Emitter, Event, Listener
from outlast._exceptions import ConfigError, ResolveError
from outlast._names import ip_literal, normalize
from outlast.dns._answer import Answer
from outlast.dns._events import (
    CacheFileFailed,
    CacheHit,
    CacheMiss,
    EmptyAnswerAccepted,
    EmptyAnswerDistrusted,
    LastKnownGoodEnded,
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
from outlast.dns._snapshot import NameState, ResolverSnapshot
from outlast.dns._table import (
    FAILURE_BACKOFF,
    FAILURE_BACKOFF_MAX,
    NEVER,
    Entry,
    NameTable,
)

__all__ = ["CACHE_FILE_INTERVAL", "Resolver"]

logger = logging.getLogger("outlast.dns")

#: The cache file is written at most this often (seconds), and at close.
CACHE_FILE_INTERVAL: Final = 2.0
#: While writes fail, the interval doubles up to this (seconds); one WARNING per streak.
CACHE_FILE_BACKOFF_MAX: Final = 300.0
#: Negatives about the whole name (not one family's NODATA).
_WHOLE: Final = frozenset({"NXDOMAIN", "NODATA"})
#: How many spellings of names ("API.Example.com.") are remembered for the hot path.
ALIASES_MAX: Final = 1024
_FROM_FILE: Final = "cache file: "
_FROM_FLEET: Final = "fleet: "

_DEFAULTS = Settings.from_env({})


class Assembly(Protocol):
    """What the composition root adds to a resolver built from the environment.

    ``outlast.dns`` imports neither the fleet nor chaos: :mod:`outlast._root` plugs them
    in through this seam (:func:`plug`), changing the keyword arguments
    :meth:`Resolver.from_env` is about to build with (``shared=``, wrapped
    ``providers=``); ``options`` already hold ``overrides``, the caller's own.
    """

    def __call__(
        self, settings: Settings, options: dict[str, object], overrides: Mapping[str, object], /
    ) -> None: ...


_assemblies: list[Assembly] = []


def plug(assembly: Assembly) -> None:
    """Let the composition root extend every :meth:`Resolver.from_env` (idempotent)."""
    if assembly not in _assemblies:
        _assemblies.append(assembly)


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
            stale_ttl=self._stale_ttl,
        )
        self._inflight: dict[str, concurrent.futures.Future[Outcome]] = {}
        self._runner = LoopThread("outlast-dns")
        self._pool = ProviderPool(
            built, timeout=timeout_s, hedge_delay=hedge_s, clock=clock, emitter=self._emitter
        )
        self._static = _static_table(static if static is not None else d.dns_static)
        #: Names as callers wrote them ("API.example.com.") -> the name they stand for.
        self._aliases: dict[str, str] = {}
        # Absolute now: a later chdir must not move the file the resolver writes.
        self._cache_file = (
            None if cache_file is None or disable else Path(cache_file).expanduser().absolute()
        )
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = NEVER
        self._cache_file_writable = True
        self._cache_file_failures = 0
        #: Names whose empty answer was believed: written to the file as deletions.
        self._dropped: dict[str, float] = {}
        #: Names served from OUTLAST_DNS_STATIC: [since, next refresh, refreshes, logged].
        self._static_mode: dict[str, list[float]] = {}
        self._closed = False
        self._shared = None if disable else shared
        if disable:
            return  # plain getaddrinfo: no file, no thread, no hooks
        if self._cache_file is not None:
            self._load_cache_file(self._cache_file)
        # Dropped without close(): the thread stops when the resolver is collected. Fork
        # and exit hooks are registered once for the module, over a weak set.
        weakref.finalize(self, self._runner.close)
        _LIVE.add(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Resolver:
        """A resolver configured by the ``OUTLAST_DNS_*`` variables (``os.environ`` by default).

        Raises :class:`~outlast.ConfigError` for a bad value. Keyword arguments (for
        example ``listeners=``) override the environment. With ``OUTLAST_REDIS_URL`` set,
        answers are shared through ``outlast.fleet`` (needs ``outlast[redis]``). With
        ``OUTLAST_CHAOS`` planning DNS faults, each provider is wrapped to inject them
        (docs/rehearsal.md). Both are wired by the composition root (:mod:`outlast._root`).

        The resolver is the caller's: close it (or use it as a context manager). The
        integrations share one per configuration instead (``outlast._root``).
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
        options.update(overrides)
        if not s.disable:
            for assembly in _assemblies:  # the fleet and chaos, plugged in by outlast._root
                assembly(s, options, overrides)
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
            # Refuse this caller alone: others may wait on the same lookup.
            raise ResolveError(
                host,
                "resolve() was called on the resolver's own thread (from a listener or a "
                "provider) for a name it does not hold; it cannot wait for itself",
            )
        limit = self._limit(timeout)
        try:
            outcome = future.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            outcome = Failure(f"the lookup took longer than {limit:g}s", "providers")
        except concurrent.futures.CancelledError:
            raise ResolveError(host, "the resolver was closed during the lookup") from None
        return self._after_wait(host, name, outcome)

    async def aresolve(self, host: str, *, timeout: float | None = None) -> Answer:
        """:meth:`resolve` for async code (asyncio or trio): never blocks the event loop."""
        if self._disabled:
            return await _agetaddrinfo(host)
        answer = self._hit(host)
        if answer is not None:
            return answer
        step = self._plan(host)
        if isinstance(step, Answer):
            return step
        name, future = step
        limit = self._limit(timeout)
        try:  # on asyncio or trio; cancelling this caller leaves the shared lookup running
            outcome = await wait_future(future, limit)
        except TimeoutError:
            outcome = Failure(f"the lookup took longer than {limit:g}s", "providers")
        except concurrent.futures.CancelledError:  # the shared lookup was cancelled
            raise ResolveError(host, "the resolver was closed during the lookup") from None
        return self._after_wait(host, name, outcome)

    def _limit(self, timeout: float | None) -> float:
        """How long this caller waits for a lookup: ``timeout`` (seconds), within the bound."""
        if timeout is None:
            return self._wait_limit
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout != timeout:
            raise ConfigError("timeout", timeout, "a number of seconds, or None")
        return max(0.0, min(self._wait_limit, timeout))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

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
            if not self._runner.in_loop_thread():  # a listener cannot wait for its own loop
                try:
                    closing.result(timeout=2.0)
                except Exception:
                    logger.warning("outlast: providers did not close cleanly", exc_info=True)
        self._runner.close()
        self._flush_handle = None
        if self._cache_file is not None and self._cache_file_writable:
            self._write_cache_file()

    async def aclose(self) -> None:
        """:meth:`close` for async code: the waits and the file write run off the event loop.

        They run on a worker thread of anyio's, never on the event loop's default executor
        (which may be busy or already shut down).
        """
        if self._closed:
            return
        await run_in_thread(self.close)

    async def __aenter__(self) -> Resolver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def snapshot(self) -> ResolverSnapshot:
        """What this resolver holds now, as frozen data: names, addresses, staleness.

        Returns an :class:`outlast.dns.ResolverSnapshot`; times in it are wall-clock.
        Reads the table under the lock briefly (no I/O) and does not reorder the cache.

        Added in 0.1.0.
        """
        with self._lock:
            now = self._clock()
            held = [dataclasses.replace(entry) for entry in self._table]  # copies, mutable
        wall = time.time()
        names = []
        for e in held:
            if not e.addresses:
                stale_since = None
            elif e.suspect is not None:
                stale_since = e.suspect_since
            elif now >= e.expires_at:
                stale_since = e.expires_at
            elif e.fresh_until == NEVER:  # from the cache file or the fleet, not yet confirmed
                stale_since = e.learned_at
            else:
                stale_since = None
            names.append(
                NameState(
                    host=e.name,
                    addresses=e.addresses,
                    source=e.source,
                    ttl=e.ttl,
                    learned_at=wall - (now - e.learned_at),
                    stale=stale_since is not None,
                    stale_since=None if stale_since is None else wall - (now - stale_since),
                    distrusted=e.suspect,
                    negative=e.negative,
                    last_error=e.last_error,
                )
            )
        static = tuple(sorted(self._static.items()))
        return ResolverSnapshot(taken_at=wall, names=tuple(names), static=static)

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
            if answer is None and negative is None and name in self._static_mode:
                # Already served from OUTLAST_DNS_STATIC: at once, refreshed in the background.
                answer = self._static_answer(name, now)
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
        if now >= entry.kept_until:
            self._table.drop_kept(entry, now)  # a kept family grew too old to serve
        if refresh and now >= entry.next_refresh_at:
            self._refresh(entry.name, now)
        if entry.suspect is None and now < entry.expires_at:
            return entry.answer
        if now - entry.expires_at > self._stale_ttl:
            return None  # too old to serve, distrusted or not: the caller waits
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
            if entry is not None and entry.origin is outcome and entry.has_addresses:
                answer: Answer | None = entry.answer  # the answer waited for, TTL 0 or not
            else:
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
        now = self._clock()
        with self._lock:
            first = name not in self._static_mode
            if first:  # from now on served at once, refreshed in the background
                first = self._table.may_warn(name, now)  # rate-limited like outages
                self._static_mode[name] = [now, now + FAILURE_BACKOFF, 1.0, float(first)]
        answer = Answer(name, static, stale=True, source=f"static; no answer: {reason}", ttl=0.0)
        if first:  # one WARNING per name until a provider answers again
            self._emitter.emit(StaticServed(name, reason))
        elif self._emitter.enabled:
            self._emitter.emit(StaleServed(name, answer.source, 0.0))
        return answer

    def _static_answer(self, name: str, now: float) -> Answer | None:
        """The static addresses of a name in static mode, starting a refresh when due.

        Call with the lock held."""
        static = self._static.get(name)
        if static is None:
            return None
        state = self._static_mode[name]
        if now >= state[1]:
            self._refresh(name, now)
            state[2] += 1
            state[1] = now + min(FAILURE_BACKOFF * 2 ** (state[2] - 1), FAILURE_BACKOFF_MAX)
        source = f"static; no answer for {now - state[0]:.0f}s"
        return Answer(name, static, stale=True, source=source, ttl=0.0)

    def _emit_stale(self, answer: Answer, entry: Entry | None, now: float) -> None:
        if self._emitter.enabled:
            age = 0.0 if entry is None else now - entry.learned_at
            self._emitter.emit(StaleServed(answer.host, answer.source, age))

    # -- refreshes --------------------------------------------------------------------

    def _refresh(self, name: str, now: float) -> concurrent.futures.Future[Outcome]:
        """The lookup for ``name`` in flight, starting one if none is. Call with the lock held."""
        future = self._inflight.get(name)
        if future is None or future.done():
            try:
                if self._closed:
                    raise RuntimeError("closed")
                future = self._runner.submit(self._lookup(name, generation=now))
            except RuntimeError:  # closed: what is held is still served, nothing is asked
                future = concurrent.futures.Future()
                future.set_result(Failure("the resolver is closed", "resolver"))
                return future
            self._inflight[name] = future
        return future

    async def _lookup(self, name: str, *, generation: float) -> Outcome:
        try:
            outcome = await self._pool.lookup(name)
        except Exception as exc:  # a bug in a provider must not strand the waiters
            logger.exception("outlast: lookup of %r failed unexpectedly", name)
            outcome = Failure(f"{type(exc).__name__}: {exc}", "providers")
        if self._shared is not None and not isinstance(outcome, Positive):
            await self._adopt_shared(name, outcome)
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
            static = None
            if isinstance(outcome, Positive) and held is not None and held.has_addresses:
                static = self._static_mode.pop(name, None)
            if self._cache_file is not None:
                for event in events:
                    if isinstance(event, EmptyAnswerAccepted) and event.negative in _WHOLE:
                        self._remember_dropped(name)
        if static is not None and static[3]:
            events.append(LastKnownGoodEnded(name, now - static[0], outcome.source))
        if (
            self._shared is not None
            and isinstance(outcome, Positive)
            and held is not None
            and held.generation == generation
            and held.addresses == outcome.addresses
        ):
            self._publish(held, now)
        elif self._shared is not None and any(isinstance(e, EmptyAnswerAccepted) for e in events):
            self._publish_deletion(name, generation, outcome.source, now)
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

    def _publish_deletion(self, name: str, generation: float, source: str, now: float) -> None:
        """Tell the fleet a negative was accepted: an answer with no addresses, so older
        shared answers are not adopted again (here or by a fresh process)."""
        assert self._shared is not None
        wall = time.time()
        deletion = SharedAnswer(name, (), 0.0, wall, wall - (now - generation), source)
        try:
            self._shared.publish(deletion)
        except Exception:
            logger.exception("outlast: publishing %r to the fleet failed", name)

    async def _adopt_shared(self, name: str, outcome: Outcome) -> None:
        """Providers gave nothing usable: hold the fleet's answer if this process has none.

        An answer older than what this process holds for the name (an accepted negative
        included) is not adopted. When the providers said the name is gone, the
        fleet's answer is held as last-known-good with that negative distrusted since
        the fleet last confirmed the answer, not since now: adopting never restarts the
        ``keep_on_empty`` clock, and an answer confirmed longer ago than that is given
        up at once (the negative is accepted, and published).
        """
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
        learned_at = now - max(wall - shared.learned_at, 0.0)
        event: Event | None = None
        with self._lock:
            entry = self._table.get(name)
            if entry is not None and (
                entry.has_addresses or entry.generation >= now - (wall - shared.generation)
            ):
                return  # this process knows as much or newer (a deletion it accepted)
            held = self._hold_stale(
                name,
                shared.addresses,
                shared.ttl,
                _FROM_FLEET + shared.source.removeprefix(_FROM_FLEET),
                learned_at,
                now,
            )
            if held is not None and isinstance(outcome, Negative):
                held.suspect = outcome.kind
                held.suspect_since = min(learned_at, now)
                keep = self._table.keep_on_empty
                if now - held.suspect_since < keep:
                    event = EmptyAnswerDistrusted(
                        name, outcome.kind, held.addresses, now - held.suspect_since, keep
                    )
        if event is not None:
            self._emitter.emit(event)

    def _hold_stale(
        self,
        name: str,
        addresses: Sequence[str],
        ttl: float,
        source: str,
        learned_at: float,
        now: float,
    ) -> Entry | None:
        """Hold another process's answer as stale last-known-good. Call with the lock held.

        Returns the entry held, or None when the answer is too old to serve.
        """
        entry = self._table.positive(
            name,
            order_addresses(addresses),
            ttl,
            source,
            generation=NEVER,
            learned_at=learned_at,
        )
        if now - entry.expires_at > self._stale_ttl:
            return None
        # Not fresh until a provider confirms it: served stale, refreshed at first use.
        entry.fresh_until = NEVER
        entry.next_refresh_at = now
        entry.answer = dataclasses.replace(entry.answer, stale=True)
        self._table.put(entry)
        return entry

    # -- the cache file ---------------------------------------------------------------

    def _load_cache_file(self, path: Path) -> None:
        """Hold the file's answers as stale last-known-good, each refreshed on first use.

        Raises ConfigError for a file that is not outlast's: it is never written over.
        """
        try:
            records, skipped = load(path, now=time.time())
        except CacheFileError as exc:
            if exc.foreign:
                raise ConfigError(
                    "OUTLAST_DNS_CACHE_FILE",
                    str(path),
                    "a path for outlast's own cache file; this file exists and is not one, "
                    "so it is left untouched (point the variable at another path)",
                ) from None
            self._cache_file_writable = exc.replaceable
            self._emitter.emit(CacheFileFailed(str(path), str(exc)))
            return
        if skipped:
            error = f"{skipped} malformed entries ignored"
            self._emitter.emit(CacheFileFailed(str(path), error))
        now, wall = self._clock(), time.time()
        for record in records:
            if not record.addresses:  # a believed deletion: remembered, not served
                self._dropped[record.host] = record.learned_at
                continue
            learned_at = now - max(wall - record.learned_at, 0.0)
            source = _FROM_FILE + record.source.removeprefix(_FROM_FILE)
            entry = self._hold_stale(
                record.host, record.addresses, record.ttl, source, learned_at, now
            )
            if entry is not None and record.suspect is not None:
                assert record.suspect_since is not None
                entry.suspect = record.suspect  # the distrust clock survives a restart
                entry.suspect_since = now - max(wall - record.suspect_since, 0.0)
                entry.outage_since = now

    def _remember_dropped(self, name: str) -> None:
        """A name's empty answer was believed: the file says so. Call with the lock held."""
        self._dropped.pop(name, None)
        self._dropped[name] = time.time()
        while len(self._dropped) > self._table.maxsize:
            del self._dropped[next(iter(self._dropped))]

    def _schedule_cache_file(self) -> None:
        """Called on the loop: write the file soon, at most every CACHE_FILE_INTERVAL.

        While writes fail the interval doubles, up to CACHE_FILE_BACKOFF_MAX."""
        if self._flush_handle is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        interval = min(CACHE_FILE_INTERVAL * 2**self._cache_file_failures, CACHE_FILE_BACKOFF_MAX)
        delay = max(0.0, self._last_flush + interval - self._clock())
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
        with self._lock:  # copy only; the records are built and serialised outside
            rows = [
                (
                    e.name,
                    e.addresses,
                    e.ttl,
                    # a kept family is as old as it is, not as old as the other's answer
                    min(k.learned_at for k in e.kept) if e.kept else e.learned_at,
                    e.source,
                    e.suspect,
                    e.suspect_since,
                )
                for e in self._table
                if e.has_addresses
            ]
            dropped = list(self._dropped.items())
        records = [
            Record(
                name,
                addresses,
                ttl,
                wall - (now - learned_at),
                source.removeprefix(_FROM_FILE),
                suspect,
                None if suspect is None else wall - (now - suspect_since),
            )
            for name, addresses, ttl, learned_at, source, suspect, suspect_since in rows
        ]
        held = {record.host for record in records}
        records.extend(
            Record(name, (), 0.0, when, "deleted") for name, when in dropped if name not in held
        )
        try:
            save(
                self._cache_file,
                records,
                now=wall,
                stale_ttl=self._stale_ttl + self._table.max_ttl,
                limit=self._table.maxsize,
            )
        except CacheFileError as exc:
            self._cache_file_failures += 1
            if self._cache_file_failures == 1:  # once per failure streak
                self._emitter.emit(CacheFileFailed(str(self._cache_file), str(exc)))
            return
        if self._cache_file_failures:
            logger.info("outlast: the cache file %s is written again", self._cache_file)
            self._cache_file_failures = 0

    # -- process lifecycle ------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._inflight = {}
        self._flush_handle = None
        self._runner.after_fork_in_child()
        self._pool.after_fork_in_child()


# Process lifecycle: one set of fork and exit hooks for the module, over a weak set of
# the resolvers alive (a resolver that was closed or collected costs a fork nothing).
_LIVE: weakref.WeakSet[Resolver] = weakref.WeakSet()


_FORKING: list[Resolver] = []


def _live() -> list[Resolver]:
    return [resolver for resolver in list(_LIVE) if not resolver._closed]


def _before_fork() -> None:
    # Each lock is taken before, so a child never copies a half-made change.
    _FORKING[:] = _live()
    for resolver in _FORKING:
        resolver._lock.acquire()


def _after_fork_in_parent() -> None:
    for resolver in _FORKING:
        resolver._lock.release()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    for resolver in _FORKING:
        resolver._after_fork_in_child()
    _FORKING.clear()


def _at_exit() -> None:
    for resolver in _live():
        resolver.close()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
atexit.register(_at_exit)


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
    literal = ip_literal(host)
    if literal is not None:  # "[::1]" as the enabled resolver takes it
        return Answer(literal, (literal,), stale=False, source="literal", ttl=0.0)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(host, f"getaddrinfo: {exc}") from exc
    addresses = order_addresses(str(info[4][0]).partition("%")[0] for info in infos)
    return Answer(host, addresses, stale=False, source="system (outlast disabled)", ttl=0.0)


async def _agetaddrinfo(host: str) -> Answer:
    return await run_in_thread(lambda: _getaddrinfo(host))
