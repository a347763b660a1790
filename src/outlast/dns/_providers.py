"""DNS providers: where answers come from, and what an answer is.

A provider answers one name with an :data:`Outcome`: addresses (:class:`Positive`), an
authoritative "no such name" or "no addresses" (:class:`Negative`), or a failure to get
an answer at all (:class:`Failure`: timeout, SERVFAIL, REFUSED, network error). The
distinction matters: a failure says nothing about the name and is never cached as a
negative answer.

Do53 (UDP with TCP fallback on truncation, or TCP) uses dnspython's nameserver
classes (``_wire``, which also reads responses); DoT runs on asyncio streams
(``_dot``) and DoH over httpx (``_doh``). Those modules, and dnspython with them, are
imported only when such a provider is built: the default ``system`` provider needs none;
``system`` is the operating system's ``getaddrinfo``, run in the event loop's
executor. Providers are asynchronous and run on the resolver's background loop; they
import nothing from the rest of outlast but the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeAlias, TypeVar

T = TypeVar("T")

__all__ = [
    "FAMILIES",
    "SYSTEM_TTL",
    "Failure",
    "Negative",
    "Outcome",
    "Positive",
    "Provider",
    "SystemProvider",
    "combine",
    "describe",
    "family",
    "merge",
    "order_addresses",
]

#: The TTL given to answers from ``getaddrinfo``, which reports none.
SYSTEM_TTL: Final = 30.0
#: Threads for ``getaddrinfo`` calls at once (each blocks until the OS answers). A
#: blocked thread costs little; too few, and names that hang starve every other name.
SYSTEM_THREADS: Final = 32
#: getaddrinfo's "the name exists but has no address of this family" codes.
_EAI_NO_ADDRESSES: Final = frozenset(
    getattr(socket, code) for code in ("EAI_NODATA", "EAI_ADDRFAMILY") if hasattr(socket, code)
)


@dataclasses.dataclass(frozen=True, slots=True)
class Positive:
    """Addresses for the name.

    ``failed`` names the address families (4, 6) whose query got no answer (timeout,
    SERVFAIL, ...), ``empty`` those that answered with no addresses. Both empty (the
    default) means the answer speaks for both families. The resolver keeps the
    last-known-good addresses of a failed family, and distrusts an empty family the way
    it distrusts an empty name.
    """

    addresses: tuple[str, ...]
    ttl: float
    source: str
    failed: frozenset[int] = frozenset()
    empty: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Negative:
    """An authoritative "no": ``kind`` is ``"NXDOMAIN"`` or ``"NODATA"`` (no A/AAAA)."""

    kind: str
    ttl: float
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """No answer was had: says nothing about the name."""

    error: str
    source: str


Outcome: TypeAlias = Positive | Negative | Failure


class Provider(Protocol):
    """Something that answers A/AAAA questions for a name.

    ``lookup`` must not raise for an ordinary failure: it returns a :class:`Failure`.
    The caller bounds it with ``timeout`` too.
    """

    @property
    def name(self) -> str: ...

    async def lookup(self, host: str, timeout: float) -> Outcome: ...


def _has_ipv6_route() -> bool:
    """True when this host can route to a global IPv6 address (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.connect(("2001:db8::1", 53))
    except OSError:
        return False
    return True


_PREFER_IPV6: bool | None = None


def order_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate and interleave families (RFC 8305 section 4), preferred family first.

    IPv6 is preferred (RFC 6724) when the host has an IPv6 route; otherwise IPv4.
    """
    global _PREFER_IPV6
    if _PREFER_IPV6 is None:
        _PREFER_IPV6 = _has_ipv6_route()
    v4: list[str] = []
    v6: list[str] = []
    seen: set[str] = set()
    for text in addresses:
        ip = ipaddress.ip_address(text)
        canonical = str(ip)
        if canonical in seen:
            continue
        seen.add(canonical)
        (v6 if ip.version == 6 else v4).append(canonical)
    first, second = (v6, v4) if _PREFER_IPV6 else (v4, v6)
    ordered: list[str] = []
    for index in range(max(len(first), len(second))):
        ordered.extend(family[index] for family in (first, second) if index < len(family))
    return tuple(ordered)


#: The address families a lookup asks for: 4 (A records) and 6 (AAAA records).
FAMILIES: Final = (4, 6)


def family(address: str) -> int:
    """4 or 6: the family of an IP string (a colon means IPv6)."""
    return 6 if ":" in address else 4


def combine(outcomes: Iterable[Outcome] | Mapping[int, Outcome], source: str) -> Outcome:
    """One outcome for a name from its A and AAAA outcomes.

    ``outcomes`` maps a family (4 for A, 6 for AAAA) to the outcome of its query; a
    family missing from it (a query still unanswered at the deadline) failed. An
    iterable of outcomes (families unknown) is also accepted.

    Any addresses win (a failed AAAA does not spoil a good A), and say which families
    failed or answered empty. NXDOMAIN is about the name, so it stands even if the
    other query failed. NODATA needs both types to say so.
    """
    if isinstance(outcomes, Mapping):
        by_family: dict[int, Outcome] = {
            fam: outcomes.get(fam, Failure("no answer by the deadline", source)) for fam in FAMILIES
        }
        items: list[tuple[int | None, Outcome]] = list(by_family.items())
    else:
        items = [(None, outcome) for outcome in outcomes]
    positives: list[Positive] = []
    negatives: list[Negative] = []
    failures: list[Failure] = []
    failed: set[int] = set()
    empty: set[int] = set()
    for fam, outcome in items:
        if isinstance(outcome, Positive):
            positives.append(outcome)
        elif isinstance(outcome, Negative):
            negatives.append(outcome)
            if fam is not None:
                empty.add(fam)
        else:
            failures.append(outcome)
            if fam is not None:
                failed.add(fam)
    if positives:
        addresses = order_addresses(a for p in positives for a in p.addresses)
        return Positive(
            addresses,
            min(p.ttl for p in positives),
            source,
            frozenset(failed),
            frozenset(empty),
        )
    nxdomain = [n for n in negatives if n.kind == "NXDOMAIN"]
    if nxdomain:
        return Negative("NXDOMAIN", min(n.ttl for n in nxdomain), source)
    if failures:
        return Failure("; ".join(sorted({f.error for f in failures})), source)
    return Negative("NODATA", min((n.ttl for n in negatives), default=0.0), source)


def merge(positives: Sequence[Positive]) -> Positive:
    """One answer from partial answers of several providers: each family from the first
    provider that had addresses for it. A family no provider answered stays failed."""
    addresses: list[str] = []
    answered: set[int] = set()
    for fam in FAMILIES:
        for positive in positives:
            got = [a for a in positive.addresses if family(a) == fam]
            if got:
                addresses.extend(got)
                answered.add(fam)
                break
    empty = {f for f in FAMILIES if f not in answered and any(f in p.empty for p in positives)}
    failed = set(FAMILIES) - answered - empty
    return Positive(
        order_addresses(addresses),
        min(p.ttl for p in positives),
        positives[0].source,
        frozenset(failed),
        frozenset(empty),
    )


class SystemProvider:
    """The operating system's resolver (``getaddrinfo``), off the event loop.

    It reports no TTL; its answers are held for :data:`SYSTEM_TTL` seconds and its
    negative answers for ``OUTLAST_DNS_NEGATIVE_TTL``.
    """

    name = "system"

    def __init__(self) -> None:
        # Its own threads: a hung getaddrinfo must not hold up the loop's other work.
        # Daemon threads, one per call, at most SYSTEM_THREADS at once: a getaddrinfo
        # stuck in the operating system must not hold up interpreter exit either
        # (a ThreadPoolExecutor's workers are joined at exit, however long they hang).
        self._slots: asyncio.Semaphore | None = None
        # One getaddrinfo per (name, family) at a time: a later lookup of a name whose
        # call still hangs waits on that call instead of taking another thread, so one
        # hanging name holds at most two threads, however often it is asked.
        self._running: dict[tuple[str, int], asyncio.Future[Any]] = {}

    async def _in_thread(self, ask: Callable[[], T]) -> T:
        """``ask()`` on a daemon thread; the caller's wait may be cancelled, not the call."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(SYSTEM_THREADS)
        slots = self._slots
        await slots.acquire()
        done: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            slots.release()
            if not done.done():
                outcome()

        def run() -> None:
            try:
                result = ask()
            except BaseException as exc:  # handed to the waiter, whatever it is
                error = exc
                report = functools.partial(settle, lambda: done.set_exception(error))
            else:
                report = functools.partial(settle, lambda: done.set_result(result))
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(report)

        try:
            threading.Thread(target=run, name="outlast-getaddrinfo", daemon=True).start()
        except BaseException:
            slots.release()
            raise
        return await done

    async def lookup(self, host: str, timeout: float) -> Outcome:
        # One getaddrinfo per family, so that a family the OS cannot get (an AAAA query
        # dropped upstream) fails alone and the other's addresses still count.
        outcomes = await asyncio.gather(
            self._family(host, socket.AF_INET, timeout),
            self._family(host, socket.AF_INET6, timeout),
        )
        return combine(dict(zip(FAMILIES, outcomes, strict=True)), self.name)

    def _call(self, host: str, af: socket.AddressFamily) -> asyncio.Future[Any]:
        """The running getaddrinfo for ``(host, af)``, started if there is none."""
        key = (host, int(af))
        running = self._running.get(key)
        if running is None:
            ask = functools.partial(socket.getaddrinfo, host, None, af, socket.SOCK_STREAM)
            running = asyncio.ensure_future(self._in_thread(ask))
            self._running[key] = running

            def finished(future: asyncio.Future[Any]) -> None:
                if self._running.get(key) is future:
                    del self._running[key]
                if not future.cancelled():
                    future.exception()  # retrieved: nobody may be waiting any more

            running.add_done_callback(finished)
        return running

    async def _family(self, host: str, af: socket.AddressFamily, timeout: float) -> Outcome:
        try:
            # shield: a caller's timeout ends its wait, not the call others may share
            infos = await asyncio.wait_for(asyncio.shield(self._call(host, af)), timeout)
        except asyncio.TimeoutError:
            return Failure(f"getaddrinfo timed out after {timeout:g}s", self.name)
        except socket.gaierror as exc:
            # getaddrinfo reports no negative TTL: OUTLAST_DNS_NEGATIVE_TTL caps it.
            if exc.errno == socket.EAI_NONAME:
                return Negative("NXDOMAIN", math.inf, self.name)
            if exc.errno in _EAI_NO_ADDRESSES:
                return Negative("NODATA", math.inf, self.name)
            return Failure(f"getaddrinfo: {exc.strerror or exc}", self.name)
        except (OSError, UnicodeError) as exc:
            return Failure(f"getaddrinfo: {exc}", self.name)
        addresses = [str(info[4][0]).partition("%")[0] for info in infos if info[0] == af]
        if not addresses:
            return Negative("NODATA", math.inf, self.name)
        return Positive(order_addresses(addresses), SYSTEM_TTL, self.name)

    async def aclose(self) -> None:
        """Nothing to wait for: a call still running ends by itself on its daemon thread."""

    def forget(self) -> None:
        """After a fork: the parent's threads (and their slots) do not exist here."""
        self._slots = None
        self._running = {}


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
