"""outlast.fleet: share last-known-good answers and circuit breakers across processes.

Needs the extra ``outlast[redis]`` (``pip install 'outlast[redis]'``); redis is imported
here and nowhere else in outlast. Set ``OUTLAST_REDIS_URL`` and ``Resolver.from_env``,
``Policy.from_env`` and the httpx transports use it; or build a :class:`Fleet` and pass
it as ``Resolver(shared=fleet)`` and ``Policy(shared=fleet)``.

Redis is never on a request's path: what a process learns is written by a background
thread, what the fleet knows arrives by subscription, and when Redis is down or slow
everything works locally (a ``fleet.unavailable`` warning) until it answers again.
See docs/fleet.md.

Imports ``outlast._config``, ``outlast._events``, ``outlast._exceptions``,
``outlast.dns`` (the shared-answer hook) and ``outlast.policy`` (the breaker hook).
"""

from __future__ import annotations

try:
    import redis as _redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "outlast.fleet needs the redis package: pip install 'outlast[redis]'"
    ) from exc

from outlast.fleet._events import FleetAnswerFound, FleetRestored, FleetUnavailable
from outlast.fleet._fleet import Fleet, connect

__all__ = ["Fleet", "FleetAnswerFound", "FleetRestored", "FleetUnavailable", "connect"]
