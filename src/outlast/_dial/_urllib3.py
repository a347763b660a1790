"""urllib3's ``HTTPConnection._new_conn`` with outlast's resolution and dialling.

``outlast.aws`` (botocore sends through urllib3) and ``outlast.requests`` give their
connection classes a ``_new_conn`` that calls :func:`new_conn`: the host urllib3 would
connect to (the URL's, or the proxy's) is resolved with an outlast resolver and its
addresses are dialled healthy-first (:func:`outlast._dial.create_connection`). Errors
leave as urllib3's own (``NameResolutionError``, ``ConnectTimeoutError``,
``NewConnectionError``), chained to the cause, so botocore and requests translate them
as they always do.

Imports urllib3: only the integrations that use urllib3 import this module (the
``outlast._dial`` package itself does not).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from outlast._dial._core import AllAddressesFailed, Outliers
from outlast._dial._race import create_connection
from outlast._events import Emitter
from outlast._exceptions import ResolveError

__all__ = ["Dial", "Resolves", "connect_timeout", "new_conn"]


class _Answer(Protocol):
    @property
    def addresses(self) -> Sequence[str]: ...


class Resolves(Protocol):
    """What :func:`new_conn` resolves with: an ``outlast.Resolver``."""

    def resolve(self, host: str) -> _Answer: ...


#: Dials ``(conn, host, addresses, port)`` in place of create_connection (a rehearsal's).
Dial = Callable[[Any, str, tuple[str, ...], int], socket.socket]


def connect_timeout(timeout: object) -> float | None:
    """A urllib3 connection's connect timeout in seconds (its "default" sentinel included)."""
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout
    return socket.getdefaulttimeout()


def new_conn(
    conn: Any,
    resolver: Resolves,
    outliers: Outliers,
    emitter: Emitter,
    *,
    dial: Dial | None = None,
) -> socket.socket:
    """``HTTPConnection._new_conn`` for ``conn``: a socket to one of its host's addresses.

    ``dial`` replaces the dialling (``OUTLAST_CHAOS`` injecting connect faults). Raises
    urllib3's ``NameResolutionError`` when the name cannot be resolved,
    ``ConnectTimeoutError`` when every address timed out, ``NewConnectionError`` when
    every address failed otherwise.
    """
    host: str = conn.host  # without a trailing dot, as urllib3 uses it for TLS too
    port: int = conn.port
    try:
        answer = resolver.resolve(host)
    except ResolveError as exc:
        reason = socket.gaierror(socket.EAI_NONAME, str(exc))
        raise NameResolutionError(host, conn, reason) from exc
    addresses = tuple(answer.addresses)
    try:
        if dial is not None:
            sock = dial(conn, host, addresses, port)
        else:
            sock = create_connection(
                host,
                addresses,
                port,
                timeout=connect_timeout(conn.timeout),
                outliers=outliers,
                emitter=emitter,
                source_address=conn.source_address,
                socket_options=conn.socket_options or (),
            )
    except AllAddressesFailed as exc:
        cause = exc.errors[-1][1] if exc.errors else exc
        if exc.timed_out or (
            exc.errors and all(isinstance(e, TimeoutError) for _, e in exc.errors)
        ):
            raise ConnectTimeoutError(conn, f"{exc} (connect timeout={conn.timeout})") from cause
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from cause
    sys.audit("http.client.connect", conn, host, port)
    return sock
