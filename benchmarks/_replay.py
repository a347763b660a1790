"""What benchmarks/requests_session.py and aiohttp_session.py share.

A keep-alive HTTP/1.1 server for the latency rounds (run in another process), and the
empty-record replay with the plain client on the system resolver, run in a network
namespace (tests/netns.py, tests/system_replay.py): the record (TTL 2 s) is good for
``GOOD`` s, empty for ``EMPTY`` s, good again for ``AFTER`` s; a call every
``INTERVAL`` s on a new connection; a call that succeeds within ``WITHIN`` s counts.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import netns  # tests/netns.py: the network-namespace harness

GOOD, EMPTY, AFTER = 2.0, 10.0, 2.0
INTERVAL = 0.1
WITHIN = 2.0
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


def serve(port_out: Any) -> None:
    """Answer every request on every connection with ``RESPONSE``; send the port first."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def replay(client: str) -> dict[str, list[float | None]]:
    """The replay for ``client`` in a network namespace: per side ("plain", "outlast")
    each call's seconds, None where it failed or took over ``WITHIN``."""
    result = netns.run(
        "system_replay:replay",
        timeout=120,
        client=client,
        ttl=2,
        good=GOOD,
        empty=EMPTY,
        after=AFTER,
        interval=INTERVAL,
    )
    return {
        side: [took if error is None and took <= WITHIN else None for _, took, error in calls]
        for side, calls in result["calls"].items()
    }


def availability(client: str) -> tuple[dict[str, list[float | None]], dict[str, list[Any]]]:
    """:func:`replay`, then the 11 s call: per side ``[seconds or None, error or None]``."""
    late = netns.run("system_replay:after_empty", timeout=120, clients=[client], limit=60)
    return replay(client), late[client]


def late_line(label: str, outcome: list[Any], width: int) -> str:
    """One line for the 11 s call: how long it took and what it raised."""
    took, error = outcome
    if took is None:
        return f"  {label:<{width}} still running after 60 s"
    raised = f"then {error.partition(': ')[0]}" if error else "succeeded"
    return f"  {label:<{width}} {took * 1e3:10.1f} ms, {raised}"


def row(label: str, outcomes: list[float | None], width: int) -> str:
    """One line for the replay: the share of calls that counted, p50 and p99."""
    good = sorted(t for t in outcomes if t is not None)
    share = len(good) / len(outcomes)
    if len(good) >= 2:
        cuts = statistics.quantiles(good, n=100)
        times = f"p50 {cuts[49] * 1e3:6.1f} ms  p99 {cuts[98] * 1e3:6.1f} ms"
    else:
        times = "no successful call"
    return f"  {label:<{width}} availability {share:7.1%}   {times}"
