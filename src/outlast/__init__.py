"""outlast: keep a Python service working when its cloud provider's control plane fails.

The public names live here; every module behind them is private.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

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
from outlast.http import AsyncClient, AsyncTransport, Client, Transport
from outlast.policy import CircuitBreaker, Policy, Retry, RetryBudget

# A library logs; the application decides where logs go (logging HOWTO).
_logging.getLogger("outlast").addHandler(_logging.NullHandler())

try:
    __version__ = _version("outlast")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

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
