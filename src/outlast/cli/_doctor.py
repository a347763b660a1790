"""``outlast doctor``: what DNS looks like from here, provider by provider.

Every configured provider (``OUTLAST_DNS_PROVIDERS``) is asked directly, in parallel,
for each NAME (or, with no NAME, for ``localhost`` from ``system`` and the root from
a DNS server): a provider is reachable when it gives any DNS answer, NXDOMAIN
included. For each NAME the report shows what each provider answered, whether they
agree, and what the outlast resolver itself would serve, including whether it holds a
last-known-good answer (from ``OUTLAST_DNS_CACHE_FILE``, which is read from a copy so
that the doctor never writes a service's file).

It also reports whether ``OUTLAST_CHAOS`` is armed (faults are being injected) and,
with ``OUTLAST_REDIS_URL`` set, whether the fleet's Redis answers.

This module gathers and renders; the decision to exit 1 is :meth:`Report.healthy`: by
default, whether outlast can serve every NAME (fresh or last-known-good), so that a
liveness check does not replace a container that is riding out a DNS outage; with
``--strict``, whether the providers themselves resolve every NAME now.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import math
import shutil
import stat
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import click

from outlast._config import Settings, mask_url
from outlast._events import Event
from outlast._exceptions import ConfigError, ResolveError
from outlast.cli._common import check_name, exit_now, finite, load_settings
from outlast.dns import Failure, Negative, Outcome, Positive, Provider, Resolver
from outlast.dns._pool import build_provider

__all__ = [
    "FleetReport",
    "NameReport",
    "ProviderReport",
    "Report",
    "Result",
    "doctor",
    "examine",
    "render",
    "run",
]

#: What a DNS server is asked when no NAME is given: any answer proves it is reachable.
PROBE_NAME = "."
#: What ``system`` (getaddrinfo) is asked when no NAME is given.
SYSTEM_PROBE_NAME = "localhost"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One provider's answer for one name."""

    outcome: Outcome
    latency_ms: float

    @property
    def status(self) -> str:
        """``addresses``, ``NXDOMAIN``, ``NODATA`` or ``failed``."""
        if isinstance(self.outcome, Positive):
            return "addresses"
        if isinstance(self.outcome, Negative):
            return self.outcome.kind
        return "failed"

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.outcome.addresses if isinstance(self.outcome, Positive) else ()

    @property
    def error(self) -> str | None:
        return self.outcome.error if isinstance(self.outcome, Failure) else None

    @property
    def ttl(self) -> float | None:
        """Seconds; None for a failure, or no TTL at all (``system``'s negative answers)."""
        if isinstance(self.outcome, Failure) or not math.isfinite(self.outcome.ttl):
            return None
        return self.outcome.ttl

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "addresses": list(self.addresses),
            "ttl": self.ttl,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderReport:
    """Whether one provider answered at all, how fast, and why not."""

    provider: str
    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        return any(r.error is None for r in self.results)

    @property
    def latency_ms(self) -> float | None:
        answered = [r.latency_ms for r in self.results if r.error is None]
        return round(statistics.median(answered), 3) if answered else None

    @property
    def error(self) -> str | None:
        if self.ok:
            return None
        return next((r.error for r in self.results if r.error is not None), None)

    def as_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """What the outlast resolver serves for a name, and whether it came from a held LKG."""

    addresses: tuple[str, ...] = ()
    source: str | None = None
    stale: bool | None = None
    error: str | None = None
    lkg: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "addresses": list(self.addresses),
            "source": self.source,
            "stale": self.stale,
            "error": self.error,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class NameReport:
    """What every provider answered for one name, and what outlast would serve."""

    name: str
    results: dict[str, Result]
    served: Served

    @property
    def resolved(self) -> bool:
        """True when at least one provider gave addresses."""
        return any(r.addresses for r in self.results.values())

    @property
    def agree(self) -> bool:
        """True when the providers that answered gave the same answer (failures aside)."""
        answers = {
            (r.status, frozenset(r.addresses)) for r in self.results.values() if r.error is None
        }
        return len(answers) <= 1

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "answers": {p: list(r.addresses) for p, r in self.results.items()},
            "agree": self.agree,
            "resolved": self.resolved,
            "lkg": self.served.lkg,
            "results": {p: r.as_json() for p, r in self.results.items()},
            "outlast": self.served.as_json(),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class FleetReport:
    """Whether the fleet's Redis (``OUTLAST_REDIS_URL``, password masked) answered a PING."""

    url: str
    latency_ms: float | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, object]:
        return {"url": self.url, "ok": self.ok, "latency_ms": self.latency_ms, "error": self.error}


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """The whole check: providers first, then names, the fleet and chaos."""

    providers: tuple[ProviderReport, ...]
    names: tuple[NameReport, ...]
    warnings: tuple[str, ...] = ()
    fleet: FleetReport | None = None
    chaos: str | None = None
    disabled: bool = False

    def healthy(self, *, strict: bool = False) -> bool:
        """Whether the check passes.

        By default: outlast can serve every name (fresh, last-known-good or static);
        with no name there is nothing to serve, and the check passes. ``strict``: every name
        resolves through a provider now (with no name: some provider answers), and the
        fleet's Redis, when configured, answers.
        """
        if not strict:
            return all(n.served.error is None for n in self.names)
        if self.fleet is not None and not self.fleet.ok:
            return False
        if self.names:
            return all(n.resolved for n in self.names)
        return any(p.ok for p in self.providers)

    def as_json(self) -> dict[str, object]:
        return {
            "providers": [p.as_json() for p in self.providers],
            "names": [n.as_json() for n in self.names],
            "fleet": None if self.fleet is None else self.fleet.as_json(),
            "chaos": self.chaos,
            "disabled": self.disabled,
        }


async def _ask(provider: Provider, host: str, timeout: float) -> Result:
    started = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(provider.lookup(host, timeout), timeout)
    except asyncio.TimeoutError:
        outcome = Failure(f"timed out after {timeout:g}s", provider.name)
    except Exception as exc:  # a provider bug is reported, not raised
        outcome = Failure(f"{type(exc).__name__}: {exc}", provider.name)
    return Result(outcome, (time.perf_counter() - started) * 1000.0)


# The resolver's events for one name's resolve() land in the list of the task asking.
_seen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "outlast_doctor_seen", default=None
)


class _Watch:
    """The resolver's listener: notes event kinds per asking task, and cache file trouble."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def __call__(self, event: Event, /) -> None:
        seen = _seen.get()
        if seen is not None:
            seen.append(event.kind)
        if event.kind == "dns.cache_file_failed":
            self.warnings.append(f"cache file: {event.fields().get('error')}")


async def _served(resolver: Resolver, name: str, *, disabled: bool) -> Served:
    seen: list[str] = []
    _seen.set(seen)  # this task's own context: other names' tasks do not see it
    try:
        answer = await resolver.aresolve(name)
    except ResolveError as exc:
        return Served(error=str(exc))
    # Served without waiting for a provider (no miss) and not from OUTLAST_DNS_STATIC:
    # the resolver held this name when the doctor started, i.e. from the cache file.
    # With OUTLAST_DISABLE=1 nothing is cached: getaddrinfo answers, and emits nothing.
    held = not disabled and "dns.cache_miss" not in seen and "dns.static_served" not in seen
    return Served(answer.addresses, answer.source, answer.stale, None, held)


async def examine(
    settings: Settings,
    names: Sequence[str],
    *,
    timeout: float,
    resolver: Resolver,
    watch: _Watch,
) -> Report:
    """Ask every provider about every name, and the resolver what it would serve."""
    providers = [(spec.text, build_provider(spec)) for spec in settings.dns_providers]
    try:
        asked: list[list[asyncio.Future[Result]]] = []
        for text, provider in providers:
            if names:
                hosts: Sequence[str] = names
            else:
                hosts = [SYSTEM_PROBE_NAME if text == "system" else PROBE_NAME]
            asked.append([asyncio.ensure_future(_ask(provider, h, timeout)) for h in hosts])
        served = [
            asyncio.ensure_future(_served(resolver, n, disabled=settings.disable)) for n in names
        ]
        await asyncio.gather(*(f for row in asked for f in row), *served)
    finally:
        for _, provider in providers:
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()
    provider_reports = tuple(
        ProviderReport(text, tuple(f.result() for f in row))
        for (text, _), row in zip(providers, asked, strict=True)
    )
    name_reports = tuple(
        NameReport(
            name,
            {text: row[index].result() for (text, _), row in zip(providers, asked, strict=True)},
            served[index].result(),
        )
        for index, name in enumerate(names)
    )
    return Report(provider_reports, name_reports, tuple(watch.warnings))


def check_fleet(url: str, timeout: float) -> FleetReport:
    """PING the fleet's Redis once, within ``timeout`` seconds (needs ``outlast[redis]``)."""
    shown = mask_url(url)
    try:
        import redis
    except ImportError:
        return FleetReport(shown, None, "the redis package is not installed: outlast[redis]")
    password = urlsplit(url).password
    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure is the report, never a traceback
        text = f"{type(exc).__name__}: {exc}"
        if password:
            text = text.replace(password, "***")
        return FleetReport(shown, None, text)
    return FleetReport(shown, round((time.perf_counter() - started) * 1000.0, 3), None)


def run(settings: Settings, names: Sequence[str], *, timeout: float) -> Report:
    """:func:`examine` with a resolver configured like the service's, then closed."""
    watch = _Watch()
    with tempfile.TemporaryDirectory(prefix="outlast-doctor-") as scratch:
        cache_copy: Path | None = None
        source = settings.dns_cache_file
        if source is not None:
            cache_copy = Path(scratch) / "cache.json"
            try:
                if not stat.S_ISREG(source.stat().st_mode):
                    # /dev/zero would be copied for ever; the service refuses it anyway.
                    raise ConfigError(
                        "OUTLAST_DNS_CACHE_FILE",
                        str(source),
                        "a path for outlast's own cache file; this one exists and is not a "
                        "regular file, so the service refuses it (point the variable at "
                        "another path)",
                    )
                shutil.copyfile(source, cache_copy)
            except FileNotFoundError:
                pass  # no file yet: nothing is held
            except OSError as exc:
                watch.warnings.append(f"cache file: cannot read {source}: {exc}")
        try:
            resolver = Resolver.from_env(
                None, timeout=timeout, cache_file=cache_copy, listeners=[watch]
            )
        except ConfigError as exc:
            if source is None or exc.setting != "OUTLAST_DNS_CACHE_FILE":
                raise
            # Name the user's file, not the doctor's private copy of it.
            raise ConfigError(exc.setting, str(source), exc.expected) from None
        with resolver:
            report = asyncio.run(
                examine(settings, names, timeout=timeout, resolver=resolver, watch=watch)
            )
    fleet = None
    if settings.redis_url is not None and not settings.disable:
        fleet = check_fleet(settings.redis_url, timeout)
    chaos = None if settings.chaos is None else (settings.chaos.text or "armed")
    return dataclasses.replace(report, fleet=fleet, chaos=chaos, disabled=settings.disable)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _describe(result: Result) -> str:
    if result.error is not None:
        return f"failed: {result.error}"
    ttl = f"ttl {result.ttl:g}s"
    if result.addresses:
        return f"{', '.join(result.addresses)}  {ttl}"
    return f"{result.status}  {ttl}"


def render(report: Report) -> str:
    """The report as a table for people."""
    width = max(
        [len("PROVIDER"), len("outlast serves")] + [len(p.provider) for p in report.providers]
    )
    lines = []
    if report.disabled:
        lines += ["OUTLAST_DISABLE is set: outlast passes straight through (getaddrinfo)", ""]
    if report.chaos is not None:
        lines += [f"CHAOS ARMED (OUTLAST_CHAOS={report.chaos}): faults are being injected", ""]
    lines.append(f"{'PROVIDER':<{width}}  STATUS  LATENCY    ERROR")
    for p in report.providers:
        status = "ok" if p.ok else "FAIL"
        lines.append(
            f"{p.provider:<{width}}  {status:<6}  {_ms(p.latency_ms):<9}  {p.error or ''}".rstrip()
        )
    for n in report.names:
        verdict = "resolves" if n.resolved else "DOES NOT RESOLVE"
        answered = sum(r.error is None for r in n.results.values())
        if answered < 2:
            agree = f"{answered} of {len(n.results)} providers answered"
        else:
            agree = "providers agree" if n.agree else "PROVIDERS DISAGREE"
        lkg = "yes" if n.served.lkg else "no"
        lines += ["", f"{n.name}: {verdict}, {agree}, last-known-good held: {lkg}"]
        for provider, result in n.results.items():
            lines.append(f"  {provider:<{width}}  {_describe(result)}")
        if n.served.error is not None:
            serves = f"nothing: {n.served.error}"
        else:
            stale = " (stale)" if n.served.stale else ""
            serves = f"{', '.join(n.served.addresses)}{stale}  from {n.served.source}"
        lines.append(f"  {'outlast serves':<{width}}  {serves}")
    if report.fleet is not None:
        f = report.fleet
        state = f"ok  {_ms(f.latency_ms)}" if f.ok else f"FAIL  {f.error}"
        lines += ["", f"fleet redis {f.url}: {state}"]
    return "\n".join(lines)


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    callback=finite,
    default=None,
    metavar="SECONDS",
    help="How long each provider gets for each query (default: OUTLAST_DNS_TIMEOUT).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 unless the providers resolve every NAME now (and the fleet's Redis answers).",
)
def doctor(names: tuple[str, ...], as_json: bool, timeout: float | None, strict: bool) -> None:
    """Check every DNS provider configured by OUTLAST_* and what each answers for NAME.

    Per provider: reachable or not (any DNS answer counts, NXDOMAIN included), latency,
    error. Per NAME: each provider's answer and TTL, whether they agree, whether outlast
    holds a last-known-good answer, and what it would serve. Also whether OUTLAST_CHAOS
    is armed and whether the fleet's Redis (OUTLAST_REDIS_URL) answers.

    Exits 0 when outlast can serve every NAME, fresh or last-known-good (a liveness
    check: a process riding out a DNS outage is working), 1 otherwise. With --strict,
    exits 0 only when the providers resolve every NAME now (with no NAME: when some
    provider answers) and the fleet's Redis answers (a readiness check).
    """
    queries = [check_name(name) for name in names]
    settings = load_settings()
    report = run(settings, queries, timeout=timeout or settings.dns_timeout)
    if report.chaos is not None:
        click.echo(f"outlast: warning: OUTLAST_CHAOS is armed: {report.chaos}", err=True)
    for warning in report.warnings:
        click.echo(f"outlast: warning: {warning}", err=True)
    click.echo(json.dumps(report.as_json(), allow_nan=False) if as_json else render(report))
    sys.stdout.flush()
    exit_now(0 if report.healthy(strict=strict) else 1)
