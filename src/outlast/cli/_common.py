"""What every ``outlast`` command shares: input checks, settings, warnings, and the exit.

A user error is one ``outlast:`` line on stderr and exit 2, raised before any work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from typing import NoReturn
from urllib.parse import urlsplit

import click

from outlast._config import Settings
from outlast._exceptions import ConfigError, InvalidHostError
from outlast._names import ip_literal, normalize

__all__ = ["check_name", "exit_now", "finite", "load_settings", "show_warnings"]


def check_name(name: str, *, allow_ip: bool = False) -> str:
    """``name`` normalised, or a usage error saying why it is not a hostname."""
    if ip_literal(name) is not None:
        if allow_ip:
            return name
        raise click.UsageError(f"NAME {name!r} is an IP address; give a hostname")
    try:
        return normalize(name)
    except InvalidHostError as exc:
        raise click.UsageError(f"NAME {name!r} is not a valid hostname: {exc.reason}") from exc


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback refusing ``nan`` and ``inf`` (which click's ``FloatRange`` lets by)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number of seconds", ctx, param)
    return value


def load_settings() -> Settings:
    """``Settings.from_env()``, with a bad value turned into a usage error (value masked)."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if settings.redis_url is not None:
        try:
            urlsplit(settings.redis_url).port  # noqa: B018 - validates the port
        except ValueError:
            raise click.UsageError(
                str(ConfigError("OUTLAST_REDIS_URL", "<not shown>", "a port from 1 to 65535"))
            ) from None
    return settings


class _OneLine(logging.Handler):
    """Shows a WARNING from ``outlast.config`` as one ``outlast: warning:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"outlast: warning: {record.getMessage()}", err=True)
        except Exception:
            self.handleError(record)


def show_warnings() -> None:
    """Route configuration warnings (an unknown ``OUTLAST_*`` name) to stderr, once."""
    logger = logging.getLogger("outlast.config")
    if not any(isinstance(h, _OneLine) for h in logger.handlers):
        handler = _OneLine(logging.WARNING)
        logger.addHandler(handler)


def exit_now(code: int) -> NoReturn:
    """Flush and end the process with ``code``.

    A normal exit: exit hooks run (a fleet's queued writes are flushed, a cache file
    written). A ``getaddrinfo`` stuck in the operating system cannot hold the command
    past its ``--timeout``: the ``system`` provider asks on daemon threads, which
    interpreter exit does not wait for.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (``| head``)
            stream.flush()
    raise SystemExit(code)
