"""urllib3 connections that dial outlast-resolved addresses, for one adapter's pool managers.

urllib3's pool managers build pools from their ``pool_classes_by_scheme`` map; an
outlast adapter gives its pool manager (and each HTTP proxy manager) a map whose
connection classes override ``_new_conn``: the host urllib3 would connect to (the
URL's host, or the proxy's when one is used) is resolved with :class:`outlast.Resolver`,
and its addresses are dialled healthy-first with failover and ejection
(:func:`outlast._dial.create_connection`, the code ``outlast.aws`` uses for botocore).

Everything else stays urllib3's: TLS is started afterwards with the connection's
``host`` (or the tunnel's host behind a proxy), so SNI and the certificate check keep
the hostname; ``verify``, ``cert``, timeouts, socket options and source address are
the adapter's, untouched.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from outlast._dial import Outliers
from outlast._dial._urllib3 import new_conn
from outlast._events import Emitter
from outlast.dns import Resolver

__all__ = ["Dialer", "pool_classes"]


@dataclasses.dataclass(frozen=True, slots=True)
class Dialer:
    """What an adapter's connections dial with."""

    resolver: Resolver
    outliers: Outliers
    emitter: Emitter


def _new_conn(conn: Any, dialer: Dialer) -> socket.socket:
    """``HTTPConnection._new_conn``, with outlast's resolution and dialling."""
    return new_conn(conn, dialer.resolver, dialer.outliers, dialer.emitter)


class _DiallingHTTPConnection(HTTPConnection):
    """urllib3's HTTP connection, connecting to outlast-resolved addresses."""

    outlast_dialer: Dialer

    def _new_conn(self) -> socket.socket:
        return _new_conn(self, self.outlast_dialer)


class _DiallingHTTPSConnection(HTTPSConnection):
    """urllib3's HTTPS connection, connecting to outlast-resolved addresses."""

    outlast_dialer: Dialer

    def _new_conn(self) -> socket.socket:
        return _new_conn(self, self.outlast_dialer)


def pool_classes(dialer: Dialer) -> dict[str, type[Any]]:
    """Pool classes for one adapter: its dialer is a class attribute of its own classes."""
    attrs: dict[str, Any] = {"outlast_dialer": dialer}
    http_conn = type("OutlastHTTPConnection", (_DiallingHTTPConnection,), attrs)
    https_conn = type("OutlastHTTPSConnection", (_DiallingHTTPSConnection,), attrs)
    http_pool = type(
        "OutlastHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}
    )
    https_pool = type(
        "OutlastHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )
    return {"http": http_pool, "https": https_pool}
