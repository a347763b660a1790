"""DNS for one botocore client: connection classes that dial the outlast-resolved addresses.

botocore sends through a ``URLLib3Session`` whose urllib3 pool managers build pools from
the session's own ``pool_classes_by_scheme`` map. :func:`install` replaces the two
entries of *that client's* map with pool classes whose connection class overrides
``_new_conn``: the host urllib3 would connect to (the endpoint, or the proxy when one
is configured) is resolved with :class:`outlast.Resolver`, and its addresses are dialled
healthy-first with failover and ejection (:func:`outlast._dial.create_connection`).

Everything else stays urllib3's and botocore's: TLS is started afterwards with the
connection's ``host`` (SNI and certificate checks keep the hostname), SigV4 signs the
URL's hostname, and the session's verify, timeouts, proxies, pool size, socket options
and client certificate are untouched because only the classes change, never the pool
managers' arguments. Nothing is patched process-wide: other clients keep botocore's
classes.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from botocore.httpsession import URLLib3Session

from outlast._dial import Outliers, Report, dial_serial, plan
from outlast._dial._urllib3 import Dial, connect_timeout, new_conn
from outlast._events import Emitter
from outlast._exceptions import ConfigError
from outlast.dns import Resolver

if TYPE_CHECKING:
    from outlast.chaos._urllib3 import Injector

__all__ = ["Dialer", "install", "installed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Dialer:
    """What a wrapped client's connections dial with (``chaos``: ``OUTLAST_CHAOS``'s injector)."""

    resolver: Resolver
    outliers: Outliers
    emitter: Emitter
    chaos: Injector | None = None


def _new_conn(conn: Any, dialer: Dialer) -> socket.socket:
    """``HTTPConnection._new_conn``, with outlast's resolution and dialling."""
    chaos = dialer.chaos
    dial = _chaotic_connection(dialer) if chaos is not None and chaos.connects else None
    return new_conn(conn, dialer.resolver, dialer.outliers, dialer.emitter, dial=dial)


def _chaotic_connection(dialer: Dialer) -> Dial:
    """:func:`outlast._dial.create_connection`, asking the chaos injector before each address."""
    chaos = dialer.chaos
    assert chaos is not None

    def dial(conn: Any, host: str, addresses: tuple[str, ...], port: int) -> socket.socket:
        options = tuple(conn.socket_options or ())

        def connect(address: str, timeout: float | None) -> socket.socket:
            chaos.connect(host, address, port, timeout)
            sock = socket.create_connection((address, port), timeout, conn.source_address)
            try:
                for option in options:
                    sock.setsockopt(*option)
            except OSError:
                sock.close()
                raise
            return sock

        report = Report(dialer.emitter, host, dialer.outliers)
        ordered = plan(addresses, port, dialer.outliers)
        timeout = connect_timeout(conn.timeout)
        return dial_serial(ordered, port, timeout, connect, (OSError,), report)

    return dial


class _DiallingHTTPConnection(AWSHTTPConnection):  # type: ignore[misc]
    """botocore's HTTP connection, connecting to outlast-resolved addresses."""

    outlast_dialer: Dialer

    def _new_conn(self) -> socket.socket:
        return _new_conn(self, self.outlast_dialer)


class _DiallingHTTPSConnection(AWSHTTPSConnection):  # type: ignore[misc]
    """botocore's HTTPS connection, connecting to outlast-resolved addresses."""

    outlast_dialer: Dialer

    def _new_conn(self) -> socket.socket:
        return _new_conn(self, self.outlast_dialer)


class _ChaoticHTTPConnectionPool(AWSHTTPConnectionPool):  # type: ignore[misc]
    """botocore's HTTP pool, each attempt going through ``OUTLAST_CHAOS``'s injector."""

    outlast_chaos: Injector

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.outlast_chaos.urlopen(
            self,
            method,
            url,
            lambda: super(_ChaoticHTTPConnectionPool, self).urlopen(method, url, *args, **kwargs),
        )


class _ChaoticHTTPSConnectionPool(AWSHTTPSConnectionPool):  # type: ignore[misc]
    """botocore's HTTPS pool, each attempt going through ``OUTLAST_CHAOS``'s injector."""

    outlast_chaos: Injector

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return self.outlast_chaos.urlopen(
            self,
            method,
            url,
            lambda: super(_ChaoticHTTPSConnectionPool, self).urlopen(method, url, *args, **kwargs),
        )


def _pool_classes(dialer: Dialer) -> dict[str, type[Any]]:
    """Pool classes for one client: its dialer is a class attribute of its own classes."""
    attrs: dict[str, Any] = {"outlast_dialer": dialer}
    http_conn = type("OutlastHTTPConnection", (_DiallingHTTPConnection,), attrs)
    https_conn = type("OutlastHTTPSConnection", (_DiallingHTTPSConnection,), attrs)
    http_base: type[Any] = AWSHTTPConnectionPool
    https_base: type[Any] = AWSHTTPSConnectionPool
    pool_attrs: dict[str, Any] = {}
    if dialer.chaos is not None and dialer.chaos.responds:
        http_base, https_base = _ChaoticHTTPConnectionPool, _ChaoticHTTPSConnectionPool
        pool_attrs["outlast_chaos"] = dialer.chaos
    http_pool = type(
        "OutlastHTTPConnectionPool", (http_base,), {"ConnectionCls": http_conn, **pool_attrs}
    )
    https_pool = type(
        "OutlastHTTPSConnectionPool", (https_base,), {"ConnectionCls": https_conn, **pool_attrs}
    )
    return {"http": http_pool, "https": https_pool}


def installed(session: Any) -> Dialer | None:
    """The dialer installed on ``session``, or None."""
    classes = getattr(session, "_pool_classes_by_scheme", None)
    if not isinstance(classes, dict):
        return None
    pool = classes.get("https")
    conn = getattr(pool, "ConnectionCls", None)
    dialer = getattr(conn, "outlast_dialer", None)
    return dialer if isinstance(dialer, Dialer) else None


def install(session: Any, dialer: Dialer) -> None:
    """Make ``session`` (one client's ``URLLib3Session``) dial through ``dialer``.

    The session's map of pool classes is shared by its pool manager and its proxy
    managers (built now or later), so updating it in place covers both. Pools already
    built are dropped (their idle connections closed) so that every new connection
    goes through outlast.
    """
    if not isinstance(session, URLLib3Session):
        raise ConfigError(
            "client._endpoint.http_session",
            session,
            "botocore's URLLib3Session (outlast.aws cannot resolve for other HTTP sessions)",
        )
    classes = session._pool_classes_by_scheme
    classes.update(_pool_classes(dialer))
    managers = [session._manager, *session._proxy_managers.values()]
    for manager in managers:
        manager.pool_classes_by_scheme = classes
        manager.clear()
