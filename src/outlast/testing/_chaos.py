"""What the ``outlast_chaos`` fixture hands a test: a switch for ``OUTLAST_CHAOS``.

It sets the variable through a setter the fixture gives it (pytest's ``monkeypatch``),
so the change is undone after the test. This module does not import pytest.
"""

from __future__ import annotations

from collections.abc import Callable

from outlast.chaos import ChaosPlan, parse_chaos

__all__ = ["Chaos"]

VARIABLE = "OUTLAST_CHAOS"


class Chaos:
    """Sets ``OUTLAST_CHAOS`` for one test: ``outlast_chaos("dns_empty=1.0@*.amazonaws.com")``.

    The spec is validated at once (a bad one raises :class:`~outlast.ConfigError` naming
    ``OUTLAST_CHAOS``) and returned parsed. Like every ``OUTLAST_*`` variable it is read
    when a component is built (``outlast.Client()``, ``Resolver.from_env()``): set it
    before building the client the rehearsal exercises. ``clear()`` unsets it.

    Added in 0.1.0.
    """

    __slots__ = ("_delenv", "_setenv", "spec")

    def __init__(self, setenv: Callable[[str, str], None], delenv: Callable[[str], None]) -> None:
        self._setenv = setenv
        self._delenv = delenv
        #: The spec set last, or None.
        self.spec: str | None = None

    def __repr__(self) -> str:
        return f"<outlast_chaos {self.spec!r}>"

    def __call__(self, spec: str) -> ChaosPlan:
        plan = parse_chaos(spec)
        if plan is None:
            self.clear()
            raise ValueError(
                f"outlast_chaos({spec!r}): the spec is empty; use .clear() to turn chaos off"
            )
        self._setenv(VARIABLE, spec)
        self.spec = spec
        return plan

    def clear(self) -> None:
        """Unset ``OUTLAST_CHAOS`` (components built afterwards have no chaos)."""
        self._delenv(VARIABLE)
        self.spec = None
