"""Fleet: one process's share of the fleet's knowledge, kept in Redis off the hot path.

A :class:`Fleet` is both hooks at once: ``Resolver(shared=fleet)`` and
``Policy(shared=fleet)``. Daemon threads do all the Redis work:

- the *writer* sends what this process learned (good answers, breaker failures and
  transitions) in pipelined batches. Callers only put an item in a bounded queue and
  notify; nothing they do waits on Redis.
- the *listener* subscribes to breaker changes and takes a snapshot of the fleet's
  breakers on (re)connection and every ``RESYNC_INTERVAL`` seconds, so a missed
  message is made good and a process that joins sees what is already open.

The one blocking call is :meth:`Fleet.lookup`, which the resolver makes on an executor
thread only for a name it holds nothing for. The read itself runs on a third daemon
thread, the *reader*, and the caller waits for it at most the timeout: connecting
(resolving the Redis host's name included, which no socket timeout bounds) never
happens on the caller's thread, and until Redis has answered once it returns None at
once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import queue
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, Final, NamedTuple

import redis

from outlast._config import _redis_url, seconds_arg
from outlast._events import Emitter, Event, Listener
from outlast._exceptions import ConfigError
from outlast.dns import SharedAnswer
from outlast.fleet._breakers import (
    CLOSE_SCRIPT,
    FAIL_SCRIPT,
    LEASE_SCRIPT,
    OPEN_SCRIPT,
    SNAPSHOT_SCRIPT,
    BreakerStore,
    Change,
    Op,
)
from outlast.fleet._client import DEFAULT_TIMEOUT, OUTAGE, Down, Link, Rejected, is_refusal
from outlast.fleet._events import LOGGER, FleetAnswerFound
from outlast.fleet._lkg import PUBLISH_SCRIPT, AnswerStore
from outlast.policy import BreakerLink, CircuitBreaker

__all__ = ["FLUSH_TIMEOUT", "RESYNC_INTERVAL", "Fleet", "connect"]

#: Seconds between snapshots of the fleet's breakers.
RESYNC_INTERVAL: Final = 1.0
#: Answers waiting to be written, and breaker operations, at most (the oldest go first).
MAX_PENDING: Final = 10_000
#: Items per pipelined batch.
BATCH: Final = 500
DEFAULT_NAMESPACE: Final = "outlast"
DEFAULT_ANSWER_KEEP: Final = 86400.0
DEFAULT_BREAKER_KEEP: Final = 3600.0
#: Seconds between reports of a failure that repeats, at most.
LOG_BACKOFF_MAX: Final = 300.0
#: Seconds a process waits, before its first call, for what the fleet knows (not on a loop).
CONNECT_WAIT: Final = 0.2
#: Seconds :meth:`Fleet.close` (and interpreter exit) spends at most writing what is queued.
FLUSH_TIMEOUT: Final = 1.0


class Fleet:
    """Shares last-known-good answers and circuit breakers through Redis.

    ``url`` is ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=PATH`` and redis-py's
    other URL options apply) or ``unix://``; its password is never shown. ``timeout``
    bounds every Redis operation (at most 0.05 s). Keys live under ``namespace``:
    answers expire ``answer_keep`` seconds after they were last written, breakers
    ``breaker_keep`` seconds after their last change. ``listeners`` receive the fleet's
    events. The constructor waits up to ``connect_wait`` seconds for a first snapshot
    of the fleet's breakers (0: not at all), so a process's first call already knows
    which breakers the fleet holds open; on an event loop's thread (asyncio or trio) it
    does not wait, and the first breaker linked off the loop waits for what is left of
    that time instead. It never fails because Redis is down. :meth:`close` (also run
    at interpreter exit) writes what is still queued, for at most a second.

    Pass it as ``Resolver(shared=fleet)`` and ``Policy(shared=fleet)``; with
    ``OUTLAST_REDIS_URL`` set, ``from_env`` does so through :func:`connect`.

    Added in 0.1.0.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        answer_keep: float | timedelta = DEFAULT_ANSWER_KEEP,
        breaker_keep: float | timedelta = DEFAULT_BREAKER_KEEP,
        listeners: Iterable[Listener] = (),
        connect_wait: float | timedelta = CONNECT_WAIT,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("url", "<not shown>", "a redis://, rediss:// or unix:// URL")
        _redis_url("url", url)  # malformed (an unescaped # ? / in the password), bad port
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigError("namespace", namespace, "a non-empty name without spaces")
        timeout_s = seconds_arg("timeout", timeout, DEFAULT_TIMEOUT, allow_zero=False)
        if timeout_s > DEFAULT_TIMEOUT:
            raise ConfigError("timeout", timeout, "at most 0.05 s: Redis must never be waited on")
        keep = seconds_arg("answer_keep", answer_keep, DEFAULT_ANSWER_KEEP, allow_zero=False)
        bkeep = seconds_arg("breaker_keep", breaker_keep, DEFAULT_BREAKER_KEEP, allow_zero=False)
        wait = seconds_arg("connect_wait", connect_wait, CONNECT_WAIT, allow_zero=True)
        self._listeners: tuple[Listener, ...] = tuple(listeners)
        self._emitter = Emitter(LOGGER, self._listeners)
        self._clock = time.monotonic
        self._link = Link(
            url, timeout=timeout_s, emit=self._emit, clock=self._clock, check=self._check
        )
        self._log_write = _BackedOffLog()
        self._log_listen = _BackedOffLog()
        self._answers = AnswerStore(namespace, keep)
        self._breakers = BreakerStore(namespace, bkeep, self._clock)
        self._cond = threading.Condition()
        self._pending: dict[str, SharedAnswer] = {}
        self._ops: deque[Op] = deque(maxlen=MAX_PENDING)
        self._reads: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self._scripts = self._register_scripts()
        self._closed = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.dropped = 0
        self._threads: list[threading.Thread] = []
        self._start()
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
            os.register_at_fork(after_in_child=functools.partial(_after_fork_in_child, ref))
        weakref.finalize(self, self._stop.set)
        atexit.register(_close_at_exit, ref)
        #: Until then (monotonic), a breaker linked off an event loop waits for a snapshot.
        self._ready_by = self._clock() + wait
        if wait and not on_event_loop():
            self._ready.wait(wait)

    def _register_scripts(self) -> dict[str, Any]:
        client = self._link.client
        return {
            "publish": client.register_script(PUBLISH_SCRIPT),
            "fail": client.register_script(FAIL_SCRIPT),
            "open": client.register_script(OPEN_SCRIPT),
            "close": client.register_script(CLOSE_SCRIPT),
            "lease": client.register_script(LEASE_SCRIPT),
            "snapshot": client.register_script(SNAPSHOT_SCRIPT),
        }

    def _start(self) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write_loop, name="outlast-fleet-writer", daemon=True),
            threading.Thread(target=self._listen_loop, name="outlast-fleet-listener", daemon=True),
            threading.Thread(target=self._read_loop, name="outlast-fleet-reader", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("down" if self._link.down else "up")
        return f"<Fleet {self._link.shown_url} namespace={self._answers.namespace!r} {state}>"

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The Redis URL, password masked."""
        return self._link.shown_url

    @property
    def available(self) -> bool:
        """False while Redis is marked down (outlast works locally meanwhile)."""
        return not self._link.down

    def wait_ready(self, timeout: float) -> bool:
        """Wait until a first snapshot of the fleet's breakers is held (True) or not."""
        return self._ready.wait(timeout)

    def add_listeners(self, listeners: Iterable[Listener]) -> None:
        """Also send the fleet's events to ``listeners`` (ones already added are skipped)."""
        new = tuple(x for x in listeners if all(x is not y for y in self._listeners))
        if new:
            self._listeners += new
            self._emitter = Emitter(LOGGER, self._listeners)

    def _emit(self, event: Event) -> None:
        self._emitter.emit(event)

    def close(self, timeout: float | timedelta = FLUSH_TIMEOUT) -> None:
        """Write what is queued, then stop the threads. Idempotent.

        Answers and breaker operations not yet written are sent first, for at most
        ``timeout`` seconds in all (default 1 s); while Redis is down or backing off
        nothing is waited for and they are dropped. Called at interpreter exit too, so
        a process that lives a moment (a CLI job, a cron task) still shares what it
        learned.
        """
        if self._closed:
            return
        limit = seconds_arg("timeout", timeout, FLUSH_TIMEOUT, allow_zero=True)
        deadline = self._clock() + limit
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._reads.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - self._clock()))
        self._flush(deadline)
        self._link.close()

    def _flush(self, deadline: float) -> None:
        """Write what is queued on this thread, in batches, until ``deadline`` (monotonic)."""
        while self._clock() < deadline and self._link.usable():
            with self._cond:
                answers = [self._pending.pop(h) for h in list(self._pending)[:BATCH]]
                ops = [self._ops.popleft() for _ in range(min(len(self._ops), BATCH))]
            if not (answers or ops):
                return
            try:
                self._link.run(functools.partial(self._write, answers=answers, ops=ops))
            except Down:
                break
            except Rejected as exc:
                LOGGER.debug("outlast: Redis refused the fleet's last writes: %s", exc)
            except Exception:
                LOGGER.debug("outlast: the fleet's last writes failed", exc_info=True)
        with self._cond:
            left = len(self._pending) + len(self._ops)
            self._pending.clear()
            self._ops.clear()
        if left:
            self.dropped += left
            LOGGER.debug("outlast: %d fleet writes dropped at close", left)

    # -- answers (outlast.dns.SharedAnswers) ------------------------------------------

    def publish(self, answer: SharedAnswer, /) -> None:
        """Queue ``answer`` for writing; returns at once. Only the newest per name is kept."""
        with self._cond:
            held = self._pending.get(answer.host)
            if held is not None and held.generation > answer.generation:
                return
            if held is None and len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending[answer.host] = answer
            self._cond.notify()

    def lookup(self, host: str, /) -> SharedAnswer | None:
        """The fleet's answer for ``host``: one read, waited for at most the timeout.

        None if the fleet has none, if the read takes longer (Redis is then marked down),
        and at once while Redis is down or before it has answered once. The read runs on
        the fleet's reader thread, so a slow connect or name resolution never holds the
        caller longer. Blocks (briefly): never call it on an event loop's thread.
        """
        link = self._link
        if self._closed or not link.connected or not link.usable():
            return None
        future: Future[SharedAnswer | None] = Future()
        self._reads.put(_Read(host, future))
        try:
            answer = future.result(timeout=link.timeout)
        except TimeoutError:
            if future.cancel() or not future.done():
                link.failed(TimeoutError(f"no answer within {link.timeout:g}s"))
            return None
        except (Down, Rejected):
            return None
        if answer is not None:
            age = max(0.0, time.time() - answer.learned_at)
            self._emit(FleetAnswerFound(host, answer.addresses, age))
        return answer

    # -- breakers (outlast.policy.SharedBreakers) -------------------------------------

    def link(
        self, name: str, config: CircuitBreaker, apply: Callable[[str, float], None]
    ) -> BreakerLink:
        """Share the breaker ``name``; ``apply`` hears of the fleet's changes to it."""
        if not self._ready.is_set():
            left = self._ready_by - self._clock()
            if left > 0 and not on_event_loop():
                self._ready.wait(left)
        local = self._breakers.attach(name, config, apply)
        return _Link(self, name, local, config.failures, config.reset)

    def _queue(self, op: Op) -> None:
        if self._link.down:
            return  # counts and transitions made while Redis is down are not replayed
        with self._cond:
            self._ops.append(op)
            self._cond.notify()

    # -- the writer thread ------------------------------------------------------------

    def _write_loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            with self._cond:
                while not (self._pending or self._ops) and not stop.is_set():
                    self._cond.wait(1.0)
                if stop.is_set():
                    return
                wait = self._link.seconds_to_retry()
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                    continue
                answers = [self._pending.pop(h) for h in list(self._pending)[:BATCH]]
                ops = [self._ops.popleft() for _ in range(min(len(self._ops), BATCH))]
            try:
                self._link.run(functools.partial(self._write, answers=answers, ops=ops))
            except Down:
                with self._cond:  # keep the answers for later unless newer ones came
                    for answer in answers:
                        self._pending.setdefault(answer.host, answer)
            except Rejected as exc:  # e.g. loading the scripts refused: retrying would be too
                self._log_write.log(
                    "outlast: Redis refused a fleet write; %d answers and %d breaker"
                    " operations dropped: %s",
                    len(answers),
                    len(ops),
                    exc,
                )
            except Exception:
                self._log_write.log("outlast: fleet writer failed", exc_info=True)

    def _write(
        self,
        client: redis.Redis,
        *,
        answers: list[SharedAnswer],
        ops: list[Op],
    ) -> None:
        pipe = client.pipeline(transaction=False)
        for answer in answers:
            self._answers.write(pipe, self._scripts["publish"], answer)
        for op in ops:
            self._breakers.write(pipe, self._scripts, op)
        # One reply per item. An error reply (a key of the wrong type, OOM, NOSCRIPT) is
        # that item's alone: it is dropped, since writing it again would fail again, and
        # the others stand. Only failing to reach Redis (raised here) is an outage.
        replies = pipe.execute(raise_on_error=False)
        items: list[SharedAnswer | Op] = [*answers, *ops]
        for item, reply in zip(items, replies, strict=False):
            if isinstance(item, Op) and item.kind == "lease":
                if isinstance(reply, Exception):
                    self._breakers.lease_failed(item.name)
                else:
                    self._breakers.leased(item.name, reply)
            if isinstance(reply, redis.ResponseError) and is_refusal(reply):
                self._link.refused(reply)  # every later write would be refused too
                return
            if isinstance(reply, redis.ResponseError):
                what = (
                    f"the answer for {item.host!r}"
                    if isinstance(item, SharedAnswer)
                    else f"breaker {item.name!r} ({item.kind})"
                )
                error = self._link.scrub(f"{type(reply).__name__}: {reply}")[:300]
                self._log_write.log("outlast: Redis refused %s; dropped: %s", what, error)

    # -- the reader thread ------------------------------------------------------------

    def _read_loop(self) -> None:
        stop, reads = self._stop, self._reads
        while not stop.is_set():
            read = reads.get()
            if read is None or stop.is_set():
                return
            if not read.future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            try:
                answer = self._link.run(functools.partial(self._answers.read, host=read.host))
            except Exception as exc:
                read.future.set_exception(exc)
            else:
                read.future.set_result(answer)

    # -- the listener thread ----------------------------------------------------------

    def _listen_loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            wait = self._link.seconds_to_retry()
            if wait > 0:
                stop.wait(min(wait, 0.5))
                continue
            try:
                self._listen(stop)
            except Down:
                self._ready.set()  # nobody waits for a Redis that is down
            except Exception:
                self._log_listen.log("outlast: fleet listener failed", exc_info=True)
                stop.wait(1.0)

    def _listen(self, stop: threading.Event) -> None:
        client = self._link.client
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            try:
                pubsub.subscribe(self._breakers.channel)
            except Exception as exc:
                self._listen_failed(exc)
                raise
            self._snapshot()
            self._ready.set()
            synced = self._clock()
            while not stop.is_set():
                try:
                    message = pubsub.get_message(timeout=0.1)
                except Exception as exc:
                    self._listen_failed(exc)
                    raise
                if message is not None and message.get("type") == "message":
                    change = Change.parse(str(message.get("data")))
                    if change is not None:
                        self._breakers.receive(change)
                if self._clock() - synced >= RESYNC_INTERVAL:
                    self._snapshot()
                    synced = self._clock()
        finally:
            try:
                pubsub.close()
            except Exception:
                LOGGER.debug("outlast: closing the fleet subscription failed", exc_info=True)

    def _listen_failed(self, exc: Exception) -> None:
        """The subscription failed: an outage or a refusal marks Redis down (raises Down)."""
        if is_refusal(exc):
            self._link.refused(exc)
        elif isinstance(exc, OUTAGE):
            self._link.failed(exc)
        else:
            return
        raise Down(self._link.scrub(str(exc))) from None

    def _check(self, client: redis.Redis) -> None:
        """After a refusal: raise unless this client may do all the fleet does.

        Runs a script that reads the breakers' keys (scripting, key rights, the
        database) and subscribes to the breakers' channel (pub/sub rights).
        """
        keys, args = self._breakers.snapshot_args()
        self._scripts["snapshot"](keys=keys, args=args[:2], client=client)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._breakers.channel)
            pubsub.get_message(timeout=self._link.timeout)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _snapshot(self) -> None:
        keys, args = self._breakers.snapshot_args()
        try:
            rows = self._link.run(lambda client: self._scripts["snapshot"](keys=keys, args=args))
        except Rejected as exc:  # Redis is up; the subscription still brings changes
            self._log_listen.log("outlast: Redis refused the fleet's breaker snapshot: %s", exc)
            return
        for row in list(rows)[1:]:
            change = Change.parse(str(row))
            if change is not None:
                self._breakers.receive(change)

    # -- fork -------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition()
        self._pending = {}
        self._ops = deque(maxlen=MAX_PENDING)
        self._reads = queue.SimpleQueue()
        self._breakers.after_fork_in_child()
        self._link.after_fork_in_child()
        self._scripts = self._register_scripts()
        if not self._closed:
            self._start()


class _BackedOffLog:
    """A failure that repeats is logged (WARNING) at most once per interval: 1 s at
    first, doubling up to 5 minutes, with the count of the others; those go to DEBUG."""

    __slots__ = ("_interval", "_lock", "_next", "_suppressed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._interval = 1.0
        self._suppressed = 0

    def log(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            loud = now >= self._next
            if loud:
                suppressed, self._suppressed = self._suppressed, 0
                self._next = now + self._interval
                self._interval = min(self._interval * 2, LOG_BACKOFF_MAX)
            else:
                self._suppressed += 1
        if not loud:
            LOGGER.debug(message, *args, exc_info=exc_info)
            return
        if suppressed:
            message += " (and %d more like it since the last report)"
            args = (*args, suppressed)
        LOGGER.warning(message, *args, exc_info=exc_info)


class _Read(NamedTuple):
    """A look-up for the reader thread; its caller waits on ``future``."""

    host: str
    future: Future[SharedAnswer | None]


class _Link:
    """One local breaker's line to the fleet: every method queues and returns."""

    __slots__ = ("_fleet", "_lease_ms", "_local", "_name", "_threshold")

    def __init__(self, fleet: Fleet, name: str, local: str, threshold: int, reset: float) -> None:
        self._fleet = fleet
        self._name = name
        self._local = local
        self._threshold = threshold
        self._lease_ms = max(1, int(reset * 1000))

    @property
    def _origin(self) -> str:  # read at each change: a forked child's is its own
        return self._fleet._breakers.origin(self._local)

    def failed(self) -> None:
        self._fleet._queue(Op("fail", self._name, self._origin, self._threshold))

    def succeeded(self) -> None:
        self._fleet._queue(Op("succeed", self._name, self._origin))

    def opened(self, *, probe: bool) -> None:
        self._fleet._breakers.forget_lease(self._name)
        self._fleet._queue(Op("open", self._name, self._origin, 1 if probe else 0))

    def closed(self) -> None:
        self._fleet._breakers.forget_lease(self._name)
        self._fleet._queue(Op("close", self._name, self._origin))

    def probe_wait(self) -> float:
        """0 if this process may probe now; else seconds to fail fast (see BreakerLink).

        The probe is leased from Redis for ``reset`` seconds: one process of the fleet
        probes per reset. While Redis is unavailable every process decides alone.
        """
        fleet = self._fleet
        if fleet._closed or fleet._link.down:
            return 0.0
        op = Op("lease", self._name, self._origin, self._lease_ms)
        wait = 0.0 if on_event_loop() else 2 * fleet._link.timeout
        return fleet._breakers.probe_wait(self._name, functools.partial(fleet._queue, op), wait)


def _close_at_exit(ref: weakref.ref[Fleet]) -> None:
    fleet = ref()
    if fleet is not None:
        fleet.close()


def _after_fork_in_child(ref: weakref.ref[Fleet]) -> None:
    fleet = ref()
    if fleet is not None:
        fleet._after_fork_in_child()


_connected: dict[str, Fleet] = {}
_connect_lock = threading.Lock()


def _new_connect_lock_in_child() -> None:
    # A thread of the parent may have held it at fork time: the child's copy is locked
    # for good, and connect() (from_env in the child) would deadlock.
    global _connect_lock
    _connect_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_connect_lock_in_child)


def connect(url: str, *, listeners: Iterable[Listener] = ()) -> Fleet:
    """This process's :class:`Fleet` for ``url``, made on first use with default options.

    ``Resolver.from_env`` and ``Policy.from_env`` call it when ``OUTLAST_REDIS_URL`` is
    set, so a process's resolvers and policies share one connection. ``listeners`` are
    added to the fleet's. Called on an event loop's thread (an ``AsyncClient`` made in
    a coroutine, under asyncio or trio), it does not wait for the first snapshot: the
    loop is never blocked.

    Added in 0.1.0.
    """
    with _connect_lock:
        fleet = _connected.get(url)
        if fleet is None or fleet._closed:
            fleet = Fleet(url, listeners=listeners, connect_wait=CONNECT_WAIT)
            _connected[url] = fleet
        else:
            fleet.add_listeners(listeners)
        return fleet


def on_event_loop() -> bool:
    """True on a thread that runs an event loop (asyncio or trio): it must never block.

    Uses sniffio (which knows asyncio, trio and the libraries that register with it),
    and asks asyncio and trio directly as well: a callback run by ``loop.call_soon`` is
    on the loop's thread but in no task.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return True
    try:
        import sniffio
    except ImportError:  # pragma: no cover - sniffio comes with outlast[redis]
        return False
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True
