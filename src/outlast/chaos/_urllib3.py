"""Chaos under botocore: where urllib3 dials an address and where a pool sends a request.

boto3 sends through botocore's ``URLLib3Session``; ``outlast.aws.wrap`` gives a client's
session its own urllib3 connection and pool classes, and with ``OUTLAST_CHAOS`` set
they ask an :class:`Injector` here, so a rehearsal reaches boto3 at the layer where
the real failures occur:

- ``connect_refused`` / ``connect_timeout``: :meth:`Injector.connect` runs before each
  address is dialled and raises what a refused connect raises
  (``ConnectionRefusedError``) at once, or waits out the connect time it was given
  and raises ``TimeoutError``. outlast's dialler meets them as real failures: the
  address is reported and ejected, the next one is tried; urllib3 and botocore turn
  the end of it into ``EndpointConnectionError`` / ``ConnectTimeoutError``.
- ``latency`` / ``http_503``: :meth:`Injector.urlopen` runs in place of one
  ``HTTPConnectionPool.urlopen`` (one attempt; outlast's policy is outside it). A delay
  as long as the read timeout ends in urllib3's ``ReadTimeoutError`` once that has
  passed, as a slow server's would; ``http_503`` answers ``503 Service Unavailable``
  without sending the request, and botocore parses it as a 503 from the service.

Every injected fault emits :class:`~outlast.chaos.FaultInjected` (logger
``outlast.chaos``). Imported only when ``OUTLAST_CHAOS`` is set.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from urllib3.exceptions import ReadTimeoutError
from urllib3.response import HTTPResponse

from outlast._chaosplan import CONNECT_FAULTS, HTTP_FAULTS, ChaosPlan
from outlast._config import Settings
from outlast._events import Emitter, Listener
from outlast.chaos._events import LOGGER, FaultInjected

__all__ = ["Injector", "urllib3_chaos"]

_REFUSED: Final = "[Errno 111] Connection refused (injected by OUTLAST_CHAOS)"
_TIMED_OUT: Final = "timed out (injected by OUTLAST_CHAOS)"
_BODY: Final = b"503 Service Unavailable (injected by OUTLAST_CHAOS)\n"


class Injector:
    """One boto3 client's chaos: a check before each dial and a stand-in for each attempt.

    ``connects`` / ``responds`` say whether the plan has connect / HTTP faults (the
    client's classes skip the hooks otherwise). ``sleep`` is injectable for tests.

    Added in 0.1.0.
    """

    __slots__ = ("_plan", "_sleep", "connects", "emitter", "responds")

    def __init__(
        self,
        plan: ChaosPlan,
        listeners: Iterable[Listener] = (),
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._plan = plan
        self._sleep = sleep
        self.emitter = Emitter(LOGGER, listeners)
        self.connects = plan.has_any(CONNECT_FAULTS)
        self.responds = plan.has_any(HTTP_FAULTS)

    @property
    def plan(self) -> ChaosPlan:
        return self._plan

    def connect(self, host: str, address: str, port: int, timeout: float | None) -> None:
        """Before ``address`` of ``host`` is dialled: raise an injected failure, or return."""
        rule = self._plan.first(CONNECT_FAULTS, host)
        if rule is None:
            return
        if rule.fault == "connect_refused":
            self.emitter.emit(
                FaultInjected(
                    rule.fault, "connect", host, f"{address}:{port}", "connection refused"
                )
            )
            raise ConnectionRefusedError(111, _REFUSED)
        detail = "no answer" if timeout is None else f"no answer within {timeout:g}s"
        self.emitter.emit(FaultInjected(rule.fault, "connect", host, f"{address}:{port}", detail))
        if timeout is not None:
            self._sleep(timeout)
        raise TimeoutError(_TIMED_OUT)

    def urlopen(
        self,
        pool: Any,
        method: str,
        url: str,
        send: Callable[[], HTTPResponse],
    ) -> HTTPResponse:
        """One attempt through ``pool`` (``send()`` does it), with latency and 503 injected."""
        host: str = pool.host
        target = f"{method} {pool.scheme}://{host}:{pool.port}{url.split('?', 1)[0]}"
        latency = self._plan.roll("latency", host)
        if latency is not None:
            delay = latency.seconds
            self.emitter.emit(FaultInjected("latency", "http", host, target, f"{delay:g}s added"))
            read = getattr(getattr(pool, "timeout", None), "read_timeout", None)
            if isinstance(read, (int, float)) and delay >= read:
                self._sleep(read)
                raise ReadTimeoutError(
                    pool, url, f"Read timed out. (read timeout={read:g}, injected by OUTLAST_CHAOS)"
                )
            self._sleep(delay)
        if self._plan.roll("http_503", host) is None:
            return send()
        self.emitter.emit(
            FaultInjected("http_503", "http", host, target, "503 Service Unavailable")
        )
        return HTTPResponse(
            body=io.BytesIO(_BODY),
            headers={
                "content-type": "text/plain",
                "content-length": str(len(_BODY)),
                "x-outlast-chaos": "http_503",
            },
            status=503,
            reason="Service Unavailable",
            preload_content=False,
            decode_content=False,
            request_method=method,
            request_url=url,
        )


def urllib3_chaos(settings: Settings, listeners: Iterable[Listener] = ()) -> Injector | None:
    """The urllib3-level injector for a boto3 client (``outlast.aws``), or None when off.

    Added in 0.1.0.
    """
    if settings.chaos is None or settings.disable:
        return None
    if not settings.chaos.has_any(CONNECT_FAULTS + HTTP_FAULTS):
        return None  # DNS faults reach boto3 through the resolver's providers
    return Injector(settings.chaos, listeners)
