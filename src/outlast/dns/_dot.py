"""DNS over TLS (RFC 7858) on asyncio streams.

One TLS connection per lookup carries the A and AAAA queries together (pipelined,
matched by message id) and is closed afterwards, whatever happened. The server's
certificate must carry ``#NAME`` from the provider entry, or else its IP address.
(dnspython's asyncio DoT leaves its socket open when the handshake fails, which is why
outlast has its own.)
"""

from __future__ import annotations

import asyncio
import os
import ssl

import dns.message
import dns.rdatatype

from outlast._config import ProviderSpec
from outlast.dns._providers import FAMILIES, Failure, Outcome, combine, describe
from outlast.dns._wire import interpret

__all__ = ["DoTProvider"]


def ssl_context(
    verify: bool | str | os.PathLike[str], *, alpn: str | None = "dot"
) -> ssl.SSLContext:
    """A client context: the system's trust store, a CA bundle, or (False) no checks."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=os.fspath(verify))
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    return context


class DoTProvider:
    """A ``tls://IP[:PORT][#NAME]`` provider."""

    def __init__(self, spec: ProviderSpec, *, verify: bool | str | os.PathLike[str] = True) -> None:
        assert spec.address is not None
        assert spec.port is not None
        self.spec = spec
        self.name = spec.text
        self._address = spec.address
        self._port = spec.port
        self._server_hostname = spec.hostname or spec.address
        self._context = ssl_context(verify)

    def __repr__(self) -> str:
        return f"<DoTProvider {self.name}>"

    async def lookup(self, host: str, timeout: float) -> Outcome:
        # The responses are recorded as they arrive: at the deadline (or when the
        # connection breaks) what arrived is combined, and only the missing type failed.
        outcomes: dict[int, Outcome] = {}
        try:
            await asyncio.wait_for(self._lookup(host, outcomes), timeout)
        except asyncio.TimeoutError:
            error = f"timed out after {timeout:g}s"
        except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
            error = describe(exc)
        else:
            return combine(outcomes, self.name)
        if not outcomes:
            return Failure(error, self.name)
        for fam in FAMILIES:
            outcomes.setdefault(fam, Failure(error, self.name))
        return combine(outcomes, self.name)

    async def _lookup(self, host: str, outcomes: dict[int, Outcome]) -> None:
        queries = {
            fam: dns.message.make_query(host, rdtype, use_edns=0, payload=1232)
            for fam, rdtype in ((4, dns.rdatatype.A), (6, dns.rdatatype.AAAA))
        }
        reader, writer = await asyncio.open_connection(
            self._address, self._port, ssl=self._context, server_hostname=self._server_hostname
        )
        try:
            for query in queries.values():
                wire = query.to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            malformed: list[Failure] = []
            while len(outcomes) + len(malformed) < len(queries):
                length = int.from_bytes(await reader.readexactly(2), "big")
                try:
                    response = dns.message.from_wire(await reader.readexactly(length))
                except Exception as exc:  # one malformed reply, whose is unknown
                    malformed.append(Failure(f"malformed reply: {describe(exc)}", self.name))
                    continue
                for fam, query in queries.items():
                    if isinstance(response, dns.message.QueryMessage) and query.is_response(
                        response
                    ):
                        rdtype = query.question[0].rdtype
                        outcomes[fam] = interpret(response, rdtype, self.name)
            for fam in queries:
                if malformed:
                    outcomes.setdefault(fam, malformed[0])
        finally:
            # No TLS close_notify exchange: servers (BIND among them) may not answer it
            # until their idle timeout, and a DNS exchange has nothing left to protect.
            writer.transport.abort()
