"""Shared circuit breakers: the fleet's state of each breaker, kept in Redis by Lua scripts.

Per breaker name (``{ns}`` is the namespace):

- ``{ns}:breaker:{name}``, a hash: ``state`` (``open`` / ``closed``), ``opened_at``
  (milliseconds on the Redis server's clock) and ``version`` (grows with each change);
- ``{ns}:breaker:{name}:failures``: the fleet's count of consecutive failures;
- ``{ns}:breaker:{name}:probe``: the probe lease, held by the one process that probes
  after a reset (``SET NX PX``, for ``reset`` seconds: one probe per reset);
- ``{ns}:breakers:open``: a sorted set of the open breakers, for a joining process;
- channel ``{ns}:breakers``: every change, as JSON.

Each script increments and checks (or changes state) atomically on the server, takes
the time from the server (``TIME``), so every process times the reset from the same
clock, and refreshes the keys' expiry, so abandoned breakers vanish. Processes learn of
changes by subscription and by a periodic snapshot, never on the call path.

Versions are milliseconds on the server's clock. A held version more than
:data:`MAX_AHEAD_MS` ahead of the server's time (a forged ``HSET``) is ignored when the
next change is made, and a reader ignores a change whose version is that far ahead of
its own clock (a forged ``PUBLISH``): one write cannot pin a breaker's state.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from outlast.policy import CircuitBreaker

__all__ = [
    "CLOSE_SCRIPT",
    "LEASE_SCRIPT",
    "MAX_AHEAD_MS",
    "FAIL_SCRIPT",
    "OPEN_SCRIPT",
    "SNAPSHOT_SCRIPT",
    "BreakerStore",
    "Change",
    "Op",
]

#: Milliseconds a version may be ahead of the clock that checks it (server's or reader's).
MAX_AHEAD_MS: Final = 60_000

_OPEN_IT: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bump(now)
  local v = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0
  if now > v then v = now else v = v + 1 end
  redis.call('HSET', KEYS[1], 'version', v)
  return v
end
local function open_it(origin)
  local now = now_ms()
  local v = bump(now)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], 0, 'PX', ARGV[1])
  redis.call('ZADD', KEYS[3], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]))
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
  redis.call('PUBLISH', ARGV[3], cjson.encode({name=ARGV[2], state='open', opened_at=now,
             now=now, version=v, origin=origin}))
  return 1
end
-- A state whose version is far ahead of this server's clock was forged or written by
-- a runaway clock: it is forgotten, so it neither blocks nor outranks what comes next.
local held_v = tonumber(redis.call('HGET', KEYS[1], 'version'))
if held_v and held_v > now_ms() + AHEAD_MS then redis.call('DEL', KEYS[1]) end
""".replace("AHEAD_MS", str(MAX_AHEAD_MS))

#: KEYS: hash, failures, open index. ARGV: expire ms, name, channel, threshold.
FAIL_SCRIPT: Final = (
    _OPEN_IT
    + """
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if n < tonumber(ARGV[4]) then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'open' then return 0 end
return open_it('')
"""
)

#: KEYS: hash, failures, open index. ARGV: expire ms, name, channel, origin, renew (1/0).
OPEN_SCRIPT: Final = (
    _OPEN_IT
    + """
if ARGV[5] ~= '1' and redis.call('HGET', KEYS[1], 'state') == 'open' then return 0 end
return open_it(ARGV[4])
"""
)

#: KEYS: hash, failures, open index. ARGV: expire ms, name, channel, origin.
CLOSE_SCRIPT: Final = (
    _OPEN_IT
    + """
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
local now = now_ms()
local v = bump(now)
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({name=ARGV[2], state='closed', opened_at=0,
           now=now, version=v, origin=ARGV[4]}))
return 1
"""
)

#: KEYS: the probe lease. ARGV: origin, lease ms. Returns 0 when this origin got it (or
#: already holds it), else the milliseconds the holder keeps it (at least 1).
LEASE_SCRIPT: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then return 1 end
return left
"""

#: Seconds a caller fails fast while the fleet is asked for the probe lease.
LEASE_ASK_WAIT: Final = 0.05
#: Seconds after which a lease asked for and not answered is asked for again.
LEASE_ASK_TIMEOUT: Final = 0.5

#: KEYS: open index. ARGV: expire ms, key prefix, names to read besides the open ones.
#: Returns the server time (ms) and one JSON object per breaker found.
SNAPSHOT_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {tostring(now)}
local names = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf',
                         'LIMIT', 0, 1000)
for i = 3, #ARGV do table.insert(names, ARGV[i]) end
local seen = {}
for _, name in ipairs(names) do
  if not seen[name] then
    seen[name] = true
    local h = redis.call('HMGET', ARGV[2] .. name, 'state', 'opened_at', 'version')
    if h[1] then
      table.insert(out, cjson.encode({name=name, state=h[1], opened_at=tonumber(h[2]) or 0,
                   now=now, version=tonumber(h[3]) or 0, origin=''}))
    end
  end
end
return out
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """A breaker's state in the fleet, as told by a message or a snapshot."""

    name: str
    state: str
    opened_ago: float
    version: int
    origin: str

    @classmethod
    def parse(cls, text: str, *, now_ms: float | None = None) -> Change | None:
        """The change a message or snapshot row tells; None if malformed or from the future.

        ``now_ms`` is the reader's Unix time in milliseconds (default: now): a version
        more than :data:`MAX_AHEAD_MS` ahead of it is forged or runaway and ignored.
        """
        limit = (time.time() * 1000 if now_ms is None else now_ms) + MAX_AHEAD_MS
        try:
            data = json.loads(text)
            state = str(data["state"])
            change = cls(
                name=str(data["name"]),
                state=state,
                opened_ago=max(0.0, (float(data["now"]) - float(data["opened_at"])) / 1000),
                version=int(data["version"]),
                origin=str(data.get("origin", "")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if not change.version <= limit or not math.isfinite(change.opened_ago):
            return None
        return change if state in ("open", "closed") else None


_Ref: TypeAlias = Callable[[], "Callable[[str, float], None] | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """A breaker operation for the writer: ``fail``, ``succeed``, ``open`` or ``close``."""

    kind: str
    name: str
    origin: str
    arg: int = 0


def _same(apply: Callable[[str, float], None]) -> Callable[[str, float], None]:
    return apply


@dataclasses.dataclass(slots=True)
class _Lease:
    """This process's standing for a breaker's probe lease."""

    status: str  # "asking", "granted", "denied", "used"
    until: float  # monotonic: when an "asking" or "denied" standing lapses


@dataclasses.dataclass(slots=True)
class _Known:
    state: str
    opened_ago: float
    version: int
    seen_at: float  # monotonic


class BreakerStore:
    """The process's view of the fleet's breakers, and the keys and scripts behind it.

    ``mirror`` remembers the latest state seen per name; ``attach`` registers a local
    breaker's ``apply`` (held weakly: an evicted breaker is forgotten) and applies the
    fleet's state to it at once if the fleet has it open.
    """

    def __init__(self, namespace: str, keep: float, clock: Callable[[], float]) -> None:
        self.namespace = namespace
        self.keep_ms = max(1, int(keep * 1000))
        self.channel = f"{namespace}:breakers"
        self.index = f"{namespace}:breakers:open"
        self.prefix = f"{namespace}:breaker:"
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        #: name -> (id of the local breaker, a weak reference to its apply)
        self._appliers: dict[str, list[tuple[str, _Ref]]] = {}
        self._process = uuid.uuid4().hex[:16]
        self._leases: dict[str, _Lease] = {}
        self._leased = threading.Condition(self._lock)

    def after_fork_in_child(self) -> None:
        """A lock held by another thread at fork time would never be released here, and
        the child is a process of its own: its changes carry a new origin."""
        self._lock = threading.Lock()
        self._process = uuid.uuid4().hex[:16]
        self._leases = {}
        self._leased = threading.Condition(self._lock)

    def keys(self, name: str) -> list[str]:
        base = self.prefix + name
        return [base, base + ":failures", self.index]

    # -- writes (run by the fleet's writer thread, on a pipeline) ---------------------

    def write(self, pipe: Any, scripts: dict[str, Any], op: Op) -> None:
        name, origin, arg = op.name, op.origin, op.arg
        keys = self.keys(name)
        common: list[object] = [self.keep_ms, name, self.channel]
        if op.kind == "fail":
            scripts["fail"](keys=keys, args=[*common, arg], client=pipe)
        elif op.kind == "open":
            scripts["open"](keys=keys, args=[*common, origin, arg], client=pipe)
        elif op.kind == "close":
            scripts["close"](keys=keys, args=[*common, origin], client=pipe)
        elif op.kind == "succeed":
            pipe.delete(keys[1])
        elif op.kind == "lease":
            scripts["lease"](keys=[keys[0] + ":probe"], args=[origin, arg], client=pipe)

    # -- the probe lease ----------------------------------------------------------------

    def probe_wait(self, name: str, ask: Callable[[], None], wait: float) -> float:
        """Seconds to fail fast before a local breaker of ``name`` may probe; 0: now.

        The first caller after a reset calls ``ask`` (which queues the request for the
        lease) and waits up to ``wait`` seconds for Redis's answer (0: not at all). A
        granted lease is used up by the probe it lets through.
        """
        now = self._clock()
        with self._lock:
            held = self._leases.get(name)
            if held is None or held.status == "used" or now >= held.until:
                lease = _Lease("asking", now + LEASE_ASK_TIMEOUT)
                self._leases[name] = lease
                if len(self._leases) > 10_000:
                    for stale in list(self._leases)[:1000]:
                        del self._leases[stale]
                ask()
            else:
                lease = held
            if lease.status == "asking" and wait > 0:
                self._leased.wait_for(lambda: lease.status != "asking", wait)
                lease = self._leases.get(name, lease)
            if lease.status == "granted":
                lease.status = "used"
                return 0.0
            if lease.status == "denied":
                return max(lease.until - self._clock(), 0.001)
            return LEASE_ASK_WAIT

    def leased(self, name: str, reply: object) -> None:
        """The fleet's answer to asking for ``name``'s lease (0: granted; else ms held)."""
        now = self._clock()
        with self._lock:
            lease = self._leases.get(name)
            if lease is None or lease.status != "asking":
                return  # the state changed meanwhile: asked again when due
            if reply == 0:
                lease.status, lease.until = "granted", now + LEASE_ASK_TIMEOUT
            else:
                try:
                    held_ms = float(reply)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    held_ms = 0.0
                lease.status, lease.until = "denied", now + max(held_ms, 1.0) / 1000
            self._leased.notify_all()

    def lease_failed(self, name: str) -> None:
        """Asking for the lease failed (Redis refused it): this process may probe."""
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease.status == "asking":
                lease.status, lease.until = "granted", self._clock() + LEASE_ASK_TIMEOUT
            self._leased.notify_all()

    def forget_lease(self, name: str) -> None:
        """The breaker opened again or closed: a new reset, a new lease."""
        with self._lock:
            self._leases.pop(name, None)

    # -- what the fleet says ----------------------------------------------------------

    def attach(self, name: str, config: CircuitBreaker, apply: Callable[[str, float], None]) -> str:
        """Register a local breaker; returns its id (its changes carry :meth:`origin` of it)."""
        local = uuid.uuid4().hex[:12]
        ref: _Ref
        try:
            ref = weakref.WeakMethod(apply)
        except TypeError:  # not a bound method: held strongly
            ref = functools.partial(_same, apply)
        with self._lock:
            refs = [(o, r) for o, r in self._appliers.get(name, []) if r() is not None]
            refs.append((local, ref))
            self._appliers[name] = refs
            known = self._known.get(name)
            if known is None or known.state != "open":
                return local
            ago = known.opened_ago + (self._clock() - known.seen_at)
        apply("open", ago)
        return local

    def origin(self, local: str) -> str:
        """The origin token a local breaker's changes carry: this process's, then its id.

        The process part is new in a forked child, so workers forked from one parent
        (gunicorn ``--preload``, multiprocessing) hear each other's changes.
        """
        return f"{self._process}.{local}"

    def names(self) -> list[str]:
        """Names of the breakers this process holds (for snapshots), at most 1000."""
        with self._lock:
            gone = [n for n, refs in self._appliers.items() if all(r() is None for _, r in refs)]
            for name in gone:
                del self._appliers[name]
            return list(self._appliers)[:1000]

    def snapshot_args(self) -> tuple[list[str], list[object]]:
        return [self.index], [self.keep_ms, self.prefix, *self.names()]

    def receive(self, change: Change) -> None:
        """Apply a change from the fleet to every local breaker of that name."""
        now = self._clock()
        with self._lock:
            known = self._known.get(change.name)
            if known is not None and change.version <= known.version:
                return
            self._known[change.name] = _Known(change.state, change.opened_ago, change.version, now)
            self._leases.pop(change.name, None)
            if len(self._known) > 10_000:  # forget the oldest names seen
                for stale in list(self._known)[:1000]:
                    del self._known[stale]
            refs = self._appliers.get(change.name, [])
            # A breaker's own change is not applied back to it; other local ones hear it.
            mine = f"{self._process}."
            appliers = [r() for local, r in refs if change.origin != mine + local]
        for apply in appliers:
            if apply is not None:
                apply(change.state, change.opened_ago)
