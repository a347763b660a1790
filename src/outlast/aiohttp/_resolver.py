"""``outlast.aiohttp.Resolver``: aiohttp's resolver seam, answered by :class:`outlast.Resolver`.

aiohttp's ``TCPConnector`` asks an ``aiohttp.abc.AbstractResolver`` for a host's
addresses and races them itself (Happy Eyeballs, RFC 8305, through aiohappyeyeballs).
This resolver answers from outlast's (last-known-good addresses, hedged providers,
distrust of a sudden empty answer). Each result carries the original hostname in
``hostname``, which aiohttp uses for the TLS server name and certificate check.

The connector keeps its own DNS cache (``use_dns_cache=True``, ``ttl_dns_cache=10``)
in front of any resolver; :func:`outlast.aiohttp.ClientSession` turns it off, and so
must a connector built by hand (``TCPConnector(resolver=Resolver(), use_dns_cache=False)``)
or an outlast answer that changed would wait behind it.
"""

from __future__ import annotations

import socket
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult

from outlast._dial import interleave
from outlast._exceptions import ConfigError, ResolveError
from outlast.dns import Resolver as _OutlastResolver

__all__ = ["Resolver"]

_FLAGS: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class Resolver(AbstractResolver):
    """An ``aiohttp.abc.AbstractResolver`` backed by :class:`outlast.Resolver`.

    ``resolver`` defaults to the process's shared resolver (built from
    ``OUTLAST_DNS_*``). :meth:`resolve` returns the answer's addresses of the asked
    family (``AF_INET``, ``AF_INET6``, or both for ``AF_UNSPEC``), families interleaved,
    each as aiohttp's ``ResolveResult`` with ``hostname`` the name asked for; a name that
    cannot be resolved raises ``socket.gaierror`` chained to the
    :class:`~outlast.ResolveError`. :meth:`close` does not close the outlast resolver
    (it may be shared). Raises :class:`outlast.ConfigError` for a bad ``resolver``.

    Added in 0.1.0.
    """

    def __init__(self, resolver: _OutlastResolver | None = None) -> None:
        if resolver is not None and not isinstance(resolver, _OutlastResolver):
            raise ConfigError("resolver", resolver, "an outlast.Resolver or None")
        if resolver is None:
            from outlast.aiohttp._session import defaults

            resolver = defaults()[0]
        self._resolver = resolver

    @property
    def resolver(self) -> _OutlastResolver:
        """The outlast resolver answering."""
        return self._resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host`` as aiohttp's ``ResolveResult`` dicts."""
        try:
            answer = await self._resolver.aresolve(host)
        except ResolveError as exc:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: {exc}") from exc
        results: list[ResolveResult] = []
        for address in interleave(answer.addresses):
            kind = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, kind):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=kind,
                    proto=socket.IPPROTO_TCP,
                    flags=_FLAGS,
                )
            )
        if not results:
            raise socket.gaierror(
                socket.EAI_NONAME, f"{host}: no address of family {family!r} in {answer!r}"
            )
        return results

    async def close(self) -> None:
        """Nothing to release: the outlast resolver is closed by whoever made it."""
