"""Time for the policy layer: an injectable monotonic clock, injectable sleeps, durations.

Every policy takes its time from a ``Clock`` (``time.monotonic`` unless a test injects
another) and waits through a ``Sleep`` or ``AsyncSleep``; nothing here reads the wall
clock. :func:`to_seconds` turns a ``float | timedelta`` argument into seconds or raises
:class:`~outlast.ConfigError` naming the argument.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import anyio

from outlast._exceptions import ConfigError

__all__ = ["AsyncSleep", "Clock", "Duration", "Sleep", "monotonic", "to_seconds"]

Duration: TypeAlias = "float | datetime.timedelta"
"""A span of time: seconds as a number, or a :class:`datetime.timedelta`."""

Clock: TypeAlias = Callable[[], float]
"""Returns monotonic seconds; only differences between two readings mean anything."""

Sleep: TypeAlias = Callable[[float], None]
"""Blocks the calling thread for the given seconds."""

AsyncSleep: TypeAlias = Callable[[float], Awaitable[None]]
"""Suspends the calling task for the given seconds."""

monotonic: Clock = time.monotonic
default_sleep: Sleep = time.sleep
default_async_sleep: AsyncSleep = anyio.sleep  # asyncio and trio alike


def to_seconds(setting: str, value: object, *, allow_zero: bool = True) -> float:
    """``value`` (seconds or a timedelta) as finite, non-negative seconds, or ConfigError."""
    expected = "seconds (a number or a timedelta) " + (
        "of 0 or more" if allow_zero else "greater than 0"
    )
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(setting, value, expected)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(setting, value, expected)
    return seconds
