"""The public testing mode: users' own tests turn backoff off and pin breakers, no patching.

``set_testing(True)`` makes every policy skip its backoff sleeps (the retry events
still report the delay that would have been waited) and, with ``attempts=``, caps the
attempts per call. ``force_open(policy)`` and ``force_closed(policy)`` pin the breaker
of a policy's key. Each returns an object that also works as a context manager and
undoes the change on exit.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from outlast._exceptions import ConfigError
from outlast.policy._breaker import CLOSED, OPEN

if TYPE_CHECKING:
    from outlast.policy._policy import Policy

__all__ = ["force_closed", "force_open", "is_testing", "set_testing"]


@dataclasses.dataclass(frozen=True, slots=True)
class TestingMode:
    """What testing mode changes: sleeps are skipped; ``attempts`` caps attempts if set."""

    attempts: int | None


_lock: Final = threading.Lock()
_mode: list[TestingMode | None] = [None]


def current() -> TestingMode | None:
    """The active testing mode, or None (read on every retry, never on the success path)."""
    return _mode[0]


class _Undo:
    """Returned by the testing functions; as a context manager it undoes them on exit."""

    __slots__ = ("_undo",)

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo = undo

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._undo()


class _Restore:
    __slots__ = ("_previous",)

    def __init__(self, previous: TestingMode | None) -> None:
        self._previous = previous

    def __call__(self) -> None:
        with _lock:
            _mode[0] = self._previous


def set_testing(testing: bool, *, attempts: int | None = None) -> _Undo:
    """Turn testing mode on or off for every policy in the process.

    In testing mode no policy sleeps between attempts. ``attempts`` (at least 1), if
    given, caps the attempts per call: ``attempts=1`` turns retries off. Use it as a
    context manager to restore the previous mode on exit::

        with outlast.testing.set_testing(True, attempts=2):
            ...

    Added in 0.1.0.
    """
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ConfigError("attempts", attempts, "a whole number of at least 1, or None")
    with _lock:
        previous = _mode[0]
        _mode[0] = TestingMode(attempts=attempts) if testing else None
    return _Undo(_Restore(previous))


def is_testing() -> bool:
    """Whether testing mode is on.

    Added in 0.1.0.
    """
    return _mode[0] is not None


class _Release:
    __slots__ = ("_policy",)

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def __call__(self) -> None:
        self._policy._force(None)


def force_open(policy: Policy) -> _Undo:
    """Pin the breaker of ``policy``'s key open: every call fails with CircuitOpenError.

    No probe is let through until :func:`force_closed` or the end of the ``with`` block
    (which closes the breaker again).

    Added in 0.1.0.
    """
    policy._force(OPEN)
    return _Undo(_Release(policy))


def force_closed(policy: Policy) -> _Undo:
    """Pin the breaker of ``policy``'s key closed: failures are not counted against it.

    The end of the ``with`` block (if used as one) releases the pin.

    Added in 0.1.0.
    """
    policy._force(CLOSED)
    return _Undo(_Release(policy))
