"""outlast: keep a Python service working when its cloud provider's control plane fails.

The public names live here; every module behind them is private. Importing outlast
loads its core (the resolver, the policies and the composition root that wires them,
:mod:`outlast._root`); the httpx faces (``Client``, ``Transport`` and their async
twins) load on first use, and the optional integrations (``outlast.aws``,
``outlast.fleet``, ``outlast.observe``) only when imported or configured.
"""

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from outlast import _root  # noqa: F401  # plugs the fleet and chaos into the seams
from outlast._config import Settings
from outlast._events import Event, Listener
from outlast._exceptions import (
    CircuitOpenError,
    ConfigError,
    InvalidHostError,
    OutlastError,
    ResolveError,
)
from outlast.dns import Answer, Resolver
from outlast.policy import CircuitBreaker, Policy, Retry, RetryBudget

if _TYPE_CHECKING:
    from outlast.http import AsyncClient, AsyncTransport, Client, Transport

    __version__: str

_LAZY = frozenset({"AsyncClient", "AsyncTransport", "Client", "Transport"})


def __getattr__(name: str) -> _Any:
    """The httpx faces and ``__version__``, made on first use (``import outlast`` stays light)."""
    if name == "__version__":  # importlib.metadata costs tens of ms: read it when asked
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("outlast")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0.0.0+unknown"
        globals()[name] = value
        return value
    if name in _LAZY:
        from outlast import http

        value = getattr(http, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'outlast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


# A library logs; the application decides where logs go (logging HOWTO).
_logging.getLogger("outlast").addHandler(_logging.NullHandler())


__all__ = [
    "Answer",
    "AsyncClient",
    "AsyncTransport",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ConfigError",
    "Event",
    "InvalidHostError",
    "Listener",
    "OutlastError",
    "Policy",
    "ResolveError",
    "Resolver",
    "Retry",
    "RetryBudget",
    "Settings",
    "Transport",
    "__version__",
]
