"""Chaos under aiobotocore: in place of one send of a client's aiohttp HTTP session.

aiobotocore sends through its ``AIOHTTPSession`` (aiohttp), not botocore's urllib3, so
:mod:`outlast.chaos._urllib3` cannot reach it. ``outlast.aws.wrap`` puts
:meth:`AioInjector.wrap` around that one client's ``http_session.send`` (one attempt;
outlast's policy is outside it), which raises what the real session raises:

- ``connect_refused``: ``botocore.exceptions.EndpointConnectionError`` at once;
  ``connect_timeout``: waits out the connect timeout, then ``ConnectTimeoutError``.
  These are rolled per request, not per address (aiohttp dials the addresses itself,
  so no address is ejected);
- ``latency``: waits first; a delay as long as the read timeout ends in
  ``ReadTimeoutError`` once that has passed;
- ``http_503``: an ``AioAWSResponse`` ``503 Service Unavailable`` that was never sent,
  parsed by botocore as the service's 503.

Every injected fault emits :class:`~outlast.chaos.FaultInjected`. Imported only when
``OUTLAST_CHAOS`` plans one of these faults and an aiobotocore client is wrapped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from outlast._chaosplan import CONNECT_FAULTS, HTTP_FAULTS, ChaosPlan
from outlast._config import Settings
from outlast._events import Emitter, Listener
from outlast.chaos._events import LOGGER, FaultInjected

__all__ = ["AioInjector", "aiobotocore_chaos"]

_REFUSED: Final = "[Errno 111] Connection refused (injected by OUTLAST_CHAOS)"
_BODY: Final = b"503 Service Unavailable (injected by OUTLAST_CHAOS)\n"

Send = Callable[[Any], Awaitable[Any]]


class _Body:
    """The raw body of an injected response: what ``AioAWSResponse`` awaits."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


class AioInjector:
    """One aiobotocore client's chaos around its HTTP session's ``send``.

    Added in 0.1.0.
    """

    __slots__ = ("_plan", "emitter")

    def __init__(self, plan: ChaosPlan, listeners: Iterable[Listener] = ()) -> None:
        self._plan = plan
        self.emitter = Emitter(LOGGER, listeners)

    def wrap(self, send: Send, *, connect: float | None, read: float | None) -> Send:
        """``send`` with the plan's faults; ``connect`` / ``read`` are the timeouts (s)."""
        plan, emitter = self._plan, self.emitter

        async def chaotic(request: Any) -> Any:
            url: str = request.url
            parts = urlsplit(url)
            host = parts.hostname or ""
            target = f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}"
            rule = plan.first(CONNECT_FAULTS, host)
            if rule is not None:
                where = parts.netloc
                if rule.fault == "connect_refused":
                    emitter.emit(
                        FaultInjected(rule.fault, "connect", host, where, "connection refused")
                    )
                    refused = ConnectionRefusedError(111, _REFUSED)
                    raise EndpointConnectionError(endpoint_url=url, error=refused)
                detail = "no answer" if connect is None else f"no answer within {connect:g}s"
                emitter.emit(FaultInjected(rule.fault, "connect", host, where, detail))
                if connect is not None:
                    await anyio.sleep(connect)
                silent = TimeoutError("timed out (injected by OUTLAST_CHAOS)")
                raise ConnectTimeoutError(endpoint_url=url, error=silent)
            latency = plan.roll("latency", host)
            if latency is not None:
                delay = latency.seconds
                emitter.emit(FaultInjected("latency", "http", host, target, f"{delay:g}s added"))
                if read is not None and delay >= read:
                    await anyio.sleep(read)
                    error = TimeoutError(
                        f"no response within {read:g}s (injected by OUTLAST_CHAOS)"
                    )
                    raise ReadTimeoutError(endpoint_url=url, error=error)
                await anyio.sleep(delay)
            if plan.roll("http_503", host) is None:
                return await send(request)
            emitter.emit(FaultInjected("http_503", "http", host, target, "503 Service Unavailable"))
            from aiobotocore.awsrequest import AioAWSResponse

            headers = {
                "content-type": "text/plain",
                "content-length": str(len(_BODY)),
                "x-outlast-chaos": "http_503",
            }
            return AioAWSResponse(url, 503, headers, _Body(_BODY))

        return chaotic


def aiobotocore_chaos(settings: Settings, listeners: Iterable[Listener] = ()) -> AioInjector | None:
    """The injector for an aiobotocore client (``outlast.aws``), or None when off.

    Added in 0.1.0.
    """
    if settings.chaos is None or settings.disable:
        return None
    if not settings.chaos.has_any(CONNECT_FAULTS + HTTP_FAULTS):
        return None  # DNS faults reach the client through the resolver's providers
    return AioInjector(settings.chaos, listeners)
