"""outlast's own errors.

The tree::

    OutlastError
    ├── ConfigError        a setting (an ``OUTLAST_*`` variable or an argument) is invalid
    ├── ResolveError       a name could not be resolved and nothing usable was held for it
    │   └── InvalidHostError   the name itself is malformed; no query was sent
    └── CircuitOpenError   a circuit breaker is open; the call was not attempted

Errors raised by lower libraries (dnspython, the socket module) are translated into
these at one boundary, chained with ``raise ... from exc``. The integrations
(``outlast.http``, ``outlast.aws``) translate these in turn into their library's
exceptions so that a caller's existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "InvalidHostError",
    "OutlastError",
    "ResolveError",
]


class OutlastError(Exception):
    """The root of every error outlast raises on its own account.

    Added in 0.1.0.
    """


class ConfigError(OutlastError, ValueError):
    """A setting is invalid: the message names the setting, the value and what was expected.

    Added in 0.1.0.
    """

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"{setting}={value!r} is invalid: expected {expected}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, object, str]]:
        return type(self), (self.setting, self.value, self.expected)


class ResolveError(OutlastError):
    """A name could not be resolved, and neither a last-known-good nor a static address was held.

    ``host`` is the name as given; ``reason`` says what the providers answered.

    Added in 0.1.0.
    """

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"cannot resolve {host!r}: {reason}")

    def __reduce__(self) -> tuple[type[ResolveError], tuple[str, str]]:
        return type(self), (self.host, self.reason)


class InvalidHostError(ResolveError, ValueError):
    """The name is not a valid hostname; no query was sent.

    Added in 0.1.0.
    """


class CircuitOpenError(OutlastError):
    """A circuit breaker is open: the call was refused without being attempted.

    ``name`` is the breaker's name, ``retry_after`` the seconds until it lets a probe through.

    Added in 0.1.0.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(
            f"circuit {name!r} is open; the next probe is allowed in {retry_after:.2f}s"
        )

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str, float]]:
        return type(self), (self.name, self.retry_after)
