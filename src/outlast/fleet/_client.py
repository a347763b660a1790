"""The connection to Redis: short timeouts, no waiting on a Redis that is down.

:class:`Link` runs one operation at a time against a ``redis.Redis`` client built with
connect and read timeouts of at most 50 ms and no retries of its own. A failure to
reach Redis (refused, timed out, reset: :data:`OUTAGE`) marks Redis down: a warning
event is emitted once, and every operation is refused at once (:class:`Down`) until a back-off
(0.25 s, doubling up to 5 s) has passed; then the next operation tries again on a new
connection. The first success after that emits the event that says sharing resumed.
An error reply (a key of the wrong type, OOM, NOSCRIPT) is not an outage: Redis
answered, so the operation fails with :class:`Rejected` and Redis stays up.

A *refusal* is different: an error that every later operation would get too (an ACL
user without scripting, pub/sub or key rights: ``NOPERM``; a wrong password; a database
index the server does not have; a command renamed away). Redis is then marked
unavailable (the same event), backs off longer (5 s, doubling up to 60 s), and is
trusted again only once a check of everything the fleet needs passes, so a user that
may read but not run scripts does not flap between the two.

The URL's password (in the netloc or as a ``password`` / ``username`` query
parameter) never appears in a repr, an event or a log line.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from outlast._config import mask_url
from outlast._events import Event
from outlast.fleet._events import FleetRestored, FleetUnavailable

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "DEFAULT_TIMEOUT",
    "OUTAGE",
    "REFUSED_BACKOFF_MAX",
    "REFUSED_BACKOFF_MIN",
    "Down",
    "Link",
    "Rejected",
    "is_refusal",
    "mask",
    "scrub",
]

T = TypeVar("T")

#: Connect and read timeout for every Redis operation, seconds.
DEFAULT_TIMEOUT: Final = 0.05
#: After a failure, Redis is left alone this long, doubling up to BACKOFF_MAX.
BACKOFF_MIN: Final = 0.25
BACKOFF_MAX: Final = 5.0


#: After a refusal (NOPERM, bad credentials, no such database), Redis is left alone this
#: long, doubling up to REFUSED_BACKOFF_MAX: asking again soon would only be refused.
REFUSED_BACKOFF_MIN: Final = 5.0
REFUSED_BACKOFF_MAX: Final = 60.0

#: The errors that mean Redis could not be reached in time (it is then marked down).
OUTAGE: Final = (redis.ConnectionError, redis.TimeoutError, OSError)

#: Error replies, by their first words, that every later operation would get too.
_REFUSALS: Final = (
    "noperm",
    "no permissions",
    "the user executing the script can't run",
    "db index is out of range",
    "invalid db index",
    "unknown command",
    "err unknown command",
    "noauth",
    "wrongpass",
    "invalid username-password",
    "err invalid password",
)


def is_refusal(exc: BaseException) -> bool:
    """True for an error that means this client may not do what the fleet needs."""
    if isinstance(exc, (redis.exceptions.NoPermissionError, redis.AuthenticationError)):
        return True
    if not isinstance(exc, redis.RedisError):
        return False
    return str(exc).strip().lower().startswith(_REFUSALS)


class Down(Exception):
    """Redis is down or backing off: the operation was not (fully) done."""


class Rejected(Exception):
    """Redis answered with an error: the operation failed, and retrying it would too."""


#: Query parameters of a Redis URL that redis-py takes as credentials.
_SECRET_PARAMS: Final = frozenset({"password", "username"})


def _secret_params(query: str) -> list[tuple[str, str]]:
    """``(name, raw value)`` of each credential parameter in a URL's query string."""
    found = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep and unquote(name).lower() in _SECRET_PARAMS:
            found.append((name, value))
    return found


def scrub(text: str, url: str) -> str:
    """``text`` with the credentials of ``url`` (if any) replaced by ``***``.

    Those are the password in the URL's netloc and the ``password`` and ``username``
    query parameters (``redis://host/0?password=...``).
    """
    parts = urlsplit(url)
    raw = [parts.password or "", *(value for _, value in _secret_params(parts.query))]
    secrets = {s for value in raw for s in (value, unquote(value), unquote_plus(value)) if s}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def mask(url: str) -> str:
    """``url`` for showing: its password and credential query parameters masked."""
    shown = mask_url(url)
    parts = urlsplit(shown)
    if not _secret_params(parts.query):
        return shown
    query = "&".join(
        f"{name}=***" if sep and unquote(name).lower() in _SECRET_PARAMS else f"{name}{sep}{value}"
        for name, sep, value in (p.partition("=") for p in parts.query.split("&"))
    )
    return urlunsplit(parts._replace(query=query))


class Link:
    """One process's connection to Redis (a pool; thread-safe). Never waits on a dead Redis."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        emit: Callable[[Event], None],
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[redis.Redis], object] | None = None,
    ) -> None:
        self._url = url
        #: Run before trusting Redis again after a refusal; raises if still refused.
        self.check = check
        #: The refusal Redis is marked down for, or None.
        self.refused_with: str | None = None
        self.shown_url = mask(url)
        self.timeout = timeout
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN
        #: True once an operation has succeeded (the host name resolved, a connection made).
        self.connected = False
        self.client = self._make_client()

    def _make_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self._url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            decode_responses=True,
        )

    def scrub(self, text: str) -> str:
        """``text`` with the URL's secrets masked."""
        return scrub(text, self._url)

    def __repr__(self) -> str:
        return f"<Link {self.shown_url} {'down' if self.down else 'up'}>"

    @property
    def down(self) -> bool:
        """True while Redis is marked down (until an operation succeeds again)."""
        return self._down_since is not None

    def usable(self) -> bool:
        """False while backing off: an operation now would be refused at once."""
        return self._down_since is None or self._clock() >= self._retry_at

    def seconds_to_retry(self) -> float:
        return 0.0 if self._down_since is None else max(0.0, self._retry_at - self._clock())

    def run(self, operation: Callable[[redis.Redis], T]) -> T:
        """``operation(client)``, or :class:`Down` at once while Redis is backing off."""
        if not self.usable():
            raise Down(f"redis at {self.shown_url} is down")
        if self.refused_with is not None:
            if self.check is not None:
                self._call(self.check)  # still refused: Down again, for longer
            with self._lock:
                self.refused_with = None
        result = self._call(operation)
        self.succeeded()
        return result

    def _call(self, operation: Callable[[redis.Redis], T]) -> T:
        try:
            return operation(self.client)
        except Exception as exc:
            if is_refusal(exc):
                self.refused(exc)
                raise Down(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None
            if isinstance(exc, OUTAGE):
                self.failed(exc)
                raise Down(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None
            if isinstance(exc, redis.RedisError):  # an error reply: Redis itself is up
                self.succeeded()
                raise Rejected(scrub(f"{type(exc).__name__}: {exc}", self._url)) from None
            raise

    def failed(self, exc: BaseException) -> None:
        """Record a failed operation: mark Redis down and back off."""
        self._down(exc, refused=False)

    def refused(self, exc: BaseException) -> None:
        """Record a refusal (NOPERM, bad credentials, no such database): down for longer."""
        self._down(exc, refused=True)

    def _down(self, exc: BaseException, *, refused: bool) -> None:
        now = self._clock()
        error = scrub(f"{type(exc).__name__}: {exc}", self._url)[:300]
        with self._lock:
            first = self._down_since is None
            newly_refused = refused and self.refused_with is None
            if first:
                self._down_since = now
            if first or newly_refused:
                self._backoff = REFUSED_BACKOFF_MIN if refused else BACKOFF_MIN
            else:
                ceiling = REFUSED_BACKOFF_MAX if self.refused_with or refused else BACKOFF_MAX
                self._backoff = min(self._backoff * 2, ceiling)
            if refused:
                self.refused_with = error
            self._retry_at = now + self._backoff
            retry_in = self._backoff
        if first or newly_refused:
            self._emit(FleetUnavailable(self.shown_url, error, retry_in))

    def succeeded(self) -> None:
        """Record a successful operation: sharing resumes if Redis was down."""
        self.connected = True
        if self._down_since is None or self.refused_with is not None:
            return  # a refusal is cleared only by a passing check (in run)
        with self._lock:
            if self.refused_with is not None:
                return
            since = self._down_since
            self._down_since = None
            self._backoff = BACKOFF_MIN
        if since is not None:
            self._emit(FleetRestored(self.shown_url, self._clock() - since))

    def after_fork_in_child(self) -> None:
        """A child must not share the parent's sockets: a new pool, state kept."""
        self._lock = threading.Lock()
        self.client = self._make_client()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a dead server's sockets must not raise
            self.client.close()
