"""What an outcome means: retry it or not, does it count against the breaker, how long to wait.

A :class:`Classifier` receives an :class:`Outcome` (the attempt's exception or result)
and returns a :class:`Decision`. The policy layer knows nothing of HTTP; integrations
write classifiers that translate their library's outcomes, using :class:`Phase` to say
where a request failed (urllib3's distinction) and :func:`parse_retry_after` for a
server's delay hint.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
import time
from collections.abc import Callable
from typing import ClassVar, Final, Protocol

__all__ = [
    "Classifier",
    "Decision",
    "Outcome",
    "Phase",
    "parse_retry_after",
    "retry_all",
    "retry_on",
]


class Phase(enum.Enum):
    """Where a request failed.

    ``CONNECT``: the destination never saw the request (refused, DNS, TLS handshake),
    so retrying is always safe. ``READ``: the request was sent and the destination may
    have acted on it, so only idempotent work may be retried.

    Added in 0.1.0.
    """

    CONNECT = "connect"
    READ = "read"

    def retryable(self, *, idempotent: bool) -> bool:
        """Whether a failure in this phase may be retried."""
        return self is Phase.CONNECT or idempotent


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A classifier's verdict on one attempt.

    ``retry``: the attempt may be retried. ``unwell``: the outcome says the destination
    is unwell and counts against its circuit breaker (a business error such as a 404
    does not). ``delay``: the destination's own hint of how long to wait, in seconds;
    the policy waits that long instead of its jittered delay, and does not retry at
    all when the hint is longer than ``Retry.cap`` or than the call's deadline leaves.
    ``neutral``: the outcome says nothing about the destination (a local pool timeout,
    a proxy's refusal): the breaker neither counts it nor resets its count, and a
    half-open probe that ends this way is freed for another caller, not settled.

    Added in 0.1.0.
    """

    retry: bool = False
    unwell: bool = False
    delay: float | None = None
    neutral: bool = False

    ACCEPT: ClassVar[Decision]
    """A success or a business error: returned or raised as is, the destination is well."""
    TRANSIENT: ClassVar[Decision]
    """A transient failure of the destination: retry it, and count it."""
    NEUTRAL: ClassVar[Decision]
    """Not the destination's doing: returned or raised as is, and the breaker ignores it."""

    @classmethod
    def failure(cls, phase: Phase, *, idempotent: bool, delay: float | None = None) -> Decision:
        """A failure of the destination in ``phase``: always counted, retried when safe."""
        return cls(retry=phase.retryable(idempotent=idempotent), unwell=True, delay=delay)


Decision.ACCEPT = Decision()
Decision.TRANSIENT = Decision(retry=True, unwell=True)
Decision.NEUTRAL = Decision(neutral=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: ``error`` if it raised, else ``result``.

    ``attempt`` counts from 1 (the first call).

    Added in 0.1.0.
    """

    attempt: int
    error: Exception | None = None
    result: object = None


_new = object.__new__
_set_attempt: Callable[[Outcome, int], None] = vars(Outcome)["attempt"].__set__
_set_error: Callable[[Outcome, None], None] = vars(Outcome)["error"].__set__
_set_result: Callable[[Outcome, object], None] = vars(Outcome)["result"].__set__


def first_result(result: object) -> Outcome:
    """``Outcome(1, result=result)`` for the success path, in under half the time.

    The frozen dataclass's ``__init__`` (keywords, defaults, ``object.__setattr__``)
    cost 0.5 us here, and every HTTP response goes through a result classifier; the
    slots' own setters build the same value.
    """
    outcome: Outcome = _new(Outcome)
    _set_attempt(outcome, 1)
    _set_error(outcome, None)
    _set_result(outcome, result)
    return outcome


class Classifier(Protocol):
    """Decides what an outcome means. Must be cheap, must not raise.

    Added in 0.1.0.
    """

    def __call__(self, outcome: Outcome, /) -> Decision: ...


#: Errors that say the calling code is wrong, not that the destination is unwell: a
#: call with the wrong arguments, a typo, a failed assertion. Retrying repeats them,
#: and counting them would open a healthy destination's breaker.
PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
    ImportError,
    SyntaxError,
)


def retry_all(outcome: Outcome, /) -> Decision:
    """The default for errors: every ``Exception`` is transient, retried and counted.

    Except a programming error (``TypeError``, ``AttributeError``, ``NameError``,
    ``AssertionError``, ``NotImplementedError``, ``ImportError``, ``SyntaxError``):
    the code is wrong, not the destination, so it is raised at once, neither retried
    nor counted by the breaker (:attr:`Decision.NEUTRAL`).

    Added in 0.1.0.
    """
    if isinstance(outcome.error, PROGRAMMING_ERRORS):
        return Decision.NEUTRAL
    return Decision.TRANSIENT


def retry_on(*errors: type[Exception]) -> Classifier:
    """A classifier that treats ``errors`` as transient and every other error as business.

    Added in 0.1.0.
    """

    def classify(outcome: Outcome, /) -> Decision:
        if isinstance(outcome.error, errors):
            return Decision.TRANSIENT
        return Decision.ACCEPT

    return classify


#: RFC 9110's delay-seconds (``1*DIGIT``), with a decimal fraction tolerated.
_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Every HTTP-date form RFC 9110 (section 5.6.7) requires is read: IMF-fixdate
    (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form and asctime
    (``Sun Nov  6 08:49:37 1994``), the last two taken as UTC as the RFC says.

    ``now`` is the current POSIX time (for an HTTP-date; ``time.time()`` by default).
    Returns None for a missing or unreadable value (``1e3``, ``inf``, digits of another
    script, a negative number); a date in the past gives 0.
    For ``x-amz-retry-after`` (milliseconds) divide by 1000 before use.

    Added in 0.1.0.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):  # ASCII digits only: not "1e3", "inf" or other scripts
        return float(text)
    if text[:1].isdigit() or text[:1] in "+-.":
        return None  # a number RFC 9110's delay-seconds does not allow
    try:
        import email.utils  # only for a Retry-After given as a date

        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime (or "-0000"): HTTP dates are always UTC (RFC 9110 5.6.7)
        when = when.replace(tzinfo=datetime.timezone.utc)
    if now is None:
        now = time.time()
    return max(0.0, when.timestamp() - now)
