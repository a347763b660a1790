"""The incidents the drill replays, each a timeline of faults over one name."""

from __future__ import annotations

import dataclasses
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Final

from outlast.cli._drill._clients import DrillClient, OutlastClient, PlainClient, Result
from outlast.cli._drill._service import Dropper, Service
from outlast.testing import DNSServer

__all__ = ["SCENARIOS", "ClientReport", "Lab", "NothingToRun", "ScenarioReport", "run_drill"]

TTL = 2  # seconds: the drill's records, short as AWS's regional endpoints' are
INTERVAL = 0.05  # seconds between one client's requests
NEW_ADDRESS = "127.0.0.3"  # where a repaired record points
#: The name's IPv6 address in ``address-dropping``: it silently drops connection attempts
#: (a broken IPv6 path, the classic case). ``127.0.0.2`` where ::1 is not available.
DEAD_ADDRESS = "::1"
DEAD_ADDRESS_V4 = "127.0.0.2"
LOAD_BIN = 0.5  # seconds per point of the backend-load curve


class NothingToRun(Exception):
    """Every scenario asked for needs a package that is not installed."""


@dataclasses.dataclass(frozen=True)
class Lab:
    """What every scenario runs against."""

    dns1: DNSServer
    dns2: DNSServer
    service: Service
    stack: ExitStack  # what a scenario starts for itself, closed with the lab

    def servers(self, *dns: DNSServer) -> list[tuple[str, int]]:
        return [(d.address, d.port) for d in dns]


@dataclasses.dataclass(frozen=True)
class ClientReport:
    requests: int
    availability: float
    p50_ms: float
    p99_ms: float
    backend_load: float
    repair_adopted_s: float | None
    timeline: list[tuple[float, bool]]
    #: Requests reaching the backend per second, per :data:`LOAD_BIN` (start s, rate).
    load: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    #: Requests reaching the backend per second during the fault.
    #: The load a storm puts on the backend: unlike ``backend_load`` (per request made),
    #: it does not grow when a client makes fewer requests (its callers wait instead).
    fault_load: float | None = None

    def as_json(self) -> dict[str, object]:
        fields = dataclasses.asdict(self)
        fields.pop("timeline")
        fields.pop("load")
        return fields


@dataclasses.dataclass(frozen=True)
class ScenarioReport:
    name: str
    title: str
    fault_window: tuple[float, float]
    clients: dict[str, ClientReport]
    #: Whether the backend's load is the point of the scenario (its plot shows it).
    show_load: bool = False


Step = tuple[float, str, Callable[[], None]]  # (fraction of the run, what, action)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    host: str
    setup: Callable[[Lab, str], list[DrillClient]]
    steps: Callable[[Lab, str], list[Step]]
    fault: tuple[float, float]
    repair_at: float | None = None
    show_load: bool = False
    #: Why the scenario cannot run here (a missing optional package), or None.
    missing: Callable[[], str | None] = lambda: None


def _three_clients(lab: Lab, *dns: DNSServer) -> list[DrillClient]:
    return [
        PlainClient("httpx", lab.servers(*dns), cache=False),
        PlainClient("httpx + TTL cache", lab.servers(*dns), cache=True),
        OutlastClient("outlast", [d.provider for d in dns]),
    ]


def _empty_record(lab: Lab, host: str) -> list[DrillClient]:
    lab.dns1.set(host, ["127.0.0.1"], ttl=TTL)
    return _three_clients(lab, lab.dns1)


def _empty_record_steps(lab: Lab, host: str) -> list[Step]:
    return [
        (0.2, "the record goes empty", lambda: lab.dns1.empty(host)),
        (0.35, "the name is gone (NXDOMAIN)", lambda: lab.dns1.nxdomain(host)),
        (
            0.55,
            f"repaired, at a new address {NEW_ADDRESS}",
            lambda: lab.dns1.set(host, [NEW_ADDRESS], ttl=TTL),
        ),
    ]


def _dynamodb(lab: Lab, host: str) -> list[DrillClient]:
    from outlast.cli._drill._aws import Boto3Client, Moto, OutlastBoto3Client

    moto = Moto()
    lab.stack.callback(moto.close)
    lab.dns1.set(host, ["127.0.0.1"], ttl=TTL)
    return [
        Boto3Client("boto3", moto, host, lab.servers(lab.dns1)),
        OutlastBoto3Client("outlast", moto, host, [lab.dns1.provider]),
    ]


def _dynamodb_steps(lab: Lab, host: str) -> list[Step]:
    return [
        (0.2, "the record goes empty", lambda: lab.dns1.empty(host)),
        (0.35, "the name is gone (NXDOMAIN)", lambda: lab.dns1.nxdomain(host)),
        (
            0.55,
            "repaired (at 127.0.0.1 again: moto listens only there)",
            lambda: lab.dns1.set(host, ["127.0.0.1"], ttl=TTL),
        ),
    ]


def _dynamodb_missing() -> str | None:
    from outlast.cli._drill._aws import missing

    return missing()


def _blackholed(lab: Lab, host: str) -> list[DrillClient]:
    for server in (lab.dns1, lab.dns2):
        server.set(host, ["127.0.0.1"], ttl=TTL)
    return _three_clients(lab, lab.dns1, lab.dns2)


def _blackholed_steps(lab: Lab, host: str) -> list[Step]:
    return [
        (0.2, "the first DNS provider goes silent", lambda: lab.dns1.fail("drop")),
        (0.6, "it answers again", lambda: lab.dns1.fail(None)),
    ]


def _dead_address(lab: Lab) -> str:
    """Start the dropping listener on ::1 (or on 127.0.0.2 without IPv6); its address."""
    for address in (DEAD_ADDRESS, DEAD_ADDRESS_V4):
        try:
            dropper = Dropper(address, lab.service.port)
        except OSError:
            continue
        lab.stack.callback(dropper.close)
        return address
    raise OSError("cannot listen on ::1 or 127.0.0.2")


def _dropping(lab: Lab, host: str) -> list[DrillClient]:
    lab.dns1.set(host, ["127.0.0.1"], ttl=TTL)
    servers = lab.servers(lab.dns1)
    return [
        # As getaddrinfo does: IPv6 (AAAA) first when the host has IPv6.
        PlainClient("httpx", servers, cache=False, ipv6=True),
        PlainClient("httpx + TTL cache", servers, cache=True, ipv6=True),
        OutlastClient("outlast", [lab.dns1.provider]),
    ]


def _dropping_steps(lab: Lab, host: str) -> list[Step]:
    dead = _dead_address(lab)
    return [
        (
            0.15,
            f"the name gets an address that drops connection attempts ({dead})",
            lambda: lab.dns1.set(host, [dead, "127.0.0.1"], ttl=TTL),
        ),
        (0.75, "the dead address is removed", lambda: lab.dns1.set(host, ["127.0.0.1"], ttl=TTL)),
    ]


def _storm(lab: Lab, host: str) -> list[DrillClient]:
    lab.dns1.set(host, ["127.0.0.1"], ttl=TTL)
    servers = lab.servers(lab.dns1)
    return [
        PlainClient("httpx", servers, cache=True),
        PlainClient("httpx + 3 naive retries", servers, cache=True, attempts=3),
        OutlastClient("outlast", [lab.dns1.provider]),
    ]


def _storm_steps(lab: Lab, host: str) -> list[Step]:
    def fail() -> None:
        lab.service.status = 503

    def heal() -> None:
        lab.service.status = 200

    # Healed early enough that the breaker's probe (every OUTLAST_BREAKER_RESET, 5 s)
    # finds it well before the end: the recovery is part of what the drill shows.
    return [(0.15, "the backend answers 503 to everything", fail), (0.4, "it heals", heal)]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "dns-record-empty",
        "The DynamoDB record goes empty, then NXDOMAIN, then is repaired (October 2025)",
        "dynamodb.us-east-1.drill.test",
        _empty_record,
        _empty_record_steps,
        fault=(0.2, 0.55),
        repair_at=0.55,
    ),
    Scenario(
        "dns-provider-blackholed",
        "The first DNS provider stops answering",
        "sqs.us-east-1.drill.test",
        _blackholed,
        _blackholed_steps,
        fault=(0.2, 0.6),
    ),
    Scenario(
        "address-dropping",
        "One address of the name (its IPv6 one) silently drops connection attempts",
        "s3.us-east-1.drill.test",
        _dropping,
        _dropping_steps,
        fault=(0.15, 0.75),
    ),
    Scenario(
        "backend-503-storm",
        "The backend answers 503 to everything (load on the backend)",
        "sts.us-east-1.drill.test",
        _storm,
        _storm_steps,
        fault=(0.15, 0.4),
        show_load=True,
    ),
    Scenario(
        "dynamodb-record-empty",
        "The same DynamoDB record failure, for boto3 against moto's DynamoDB",
        "dynamodb.us-east-1.drill.test",
        _dynamodb,
        _dynamodb_steps,
        fault=(0.2, 0.55),
        missing=_dynamodb_missing,
    ),
)


@contextmanager
def lab() -> Iterator[Lab]:
    with ExitStack() as stack:
        dns1 = stack.enter_context(DNSServer(address="127.0.0.1", negative_ttl=TTL))
        dns2 = stack.enter_context(DNSServer(address="127.0.0.4", negative_ttl=TTL))
        service = Service(("127.0.0.1", NEW_ADDRESS))
        stack.callback(service.close)
        yield Lab(dns1, dns2, service, stack)


def _drive(client: DrillClient, url: str, until: float, results: list[Result]) -> None:
    while time.monotonic() < until:
        result = client.get(url)
        results.append(result)
        time.sleep(max(0.0, INTERVAL - result.latency))


def run_scenario(
    scenario: Scenario, lab: Lab, seconds: float, say: Callable[[str], None]
) -> ScenarioReport:
    host = scenario.host
    lab.service.hits.clear()
    lab.service.arrivals.clear()
    clients = scenario.setup(lab, host)
    url = f"http://{host}:{lab.service.port}/"
    started = time.monotonic()
    until = started + seconds
    results: dict[str, list[Result]] = {c.name: [] for c in clients}
    threads = [
        threading.Thread(target=_drive, args=(c, url, until, results[c.name]), daemon=True)
        for c in clients
    ]
    for thread in threads:
        thread.start()
    for fraction, what, action in scenario.steps(lab, host):
        time.sleep(max(0.0, started + fraction * seconds - time.monotonic()))
        action()
        say(f"    {time.monotonic() - started:5.1f}s  {what}")
    for thread in threads:
        thread.join(timeout=seconds + 30)
    for client in clients:
        client.close()
    repair = None if scenario.repair_at is None else started + scenario.repair_at * seconds
    hits = {c.name: (lab.service.hits if c.backend is None else c.backend)[c.name] for c in clients}
    window = (scenario.fault[0] * seconds, scenario.fault[1] * seconds)
    reports = {}
    arrivals = list(lab.service.arrivals)
    for c in clients:
        inside = sum(
            1 for at, name in arrivals if name == c.name and window[0] <= at - started < window[1]
        )
        reports[c.name] = dataclasses.replace(
            _report(results[c.name], hits[c.name], started, repair),
            load=_load(arrivals, c.name, started, seconds),
            fault_load=round(inside / (window[1] - window[0]), 2),
        )
    lab.service.status = 200
    return ScenarioReport(scenario.name, scenario.title, window, reports, scenario.show_load)


def _load(
    arrivals: list[tuple[float, str]], client: str, started: float, seconds: float
) -> list[tuple[float, float]]:
    """Requests from ``client`` reaching the backend per second, per :data:`LOAD_BIN`."""
    bins = [0] * max(1, math.ceil(seconds / LOAD_BIN))
    for at, name in list(arrivals):
        index = int((at - started) / LOAD_BIN)
        if name == client and 0 <= index < len(bins):
            bins[index] += 1
    return [(round(i * LOAD_BIN, 3), count / LOAD_BIN) for i, count in enumerate(bins)]


def _report(results: list[Result], hits: int, started: float, repair: float | None) -> ClientReport:
    latencies = sorted(r.latency * 1000 for r in results) or [0.0]
    # Availability is a share of time: each request weighs what it took (at least the
    # 50 ms between requests), so one 2 s wait counts as 2 s of unavailability.
    weights = [max(r.latency, INTERVAL) for r in results]
    good = sum(w for w, r in zip(weights, results, strict=True) if r.ok)
    adopted = None
    if repair is not None:
        moved = [r for r in results if r.at >= repair and r.served_by == NEW_ADDRESS]
        if moved:
            adopted = round(moved[0].at + moved[0].latency - repair, 2)
    return ClientReport(
        requests=len(results),
        availability=round(good / sum(weights), 4) if results else 0.0,
        p50_ms=round(statistics.median(latencies), 1),
        p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        backend_load=round(hits / len(results), 2) if results else 0.0,
        repair_adopted_s=adopted,
        timeline=[(round(r.at - started, 3), r.ok) for r in results],
    )


#: The shortest scenario whose table shows its incident (seconds): the time after the
#: repair (45 % of it) must leave a 2 s TTL room to expire and be refreshed.
MEANINGFUL_SECONDS: Final = 8.0


def run_drill(
    seconds: float, names: tuple[str, ...], say: Callable[[str], None]
) -> list[ScenarioReport]:
    chosen = []
    for scenario in SCENARIOS:
        if names and scenario.name not in names:
            continue
        reason = scenario.missing()
        if reason is None:
            chosen.append(scenario)
        else:
            say(f"[skipped] {scenario.name}: {reason}")
    if not chosen:
        raise NothingToRun("no scenario can run here")
    each = seconds / len(chosen)
    if each < MEANINGFUL_SECONDS:
        # The timelines are fractions of a scenario: too short a one ends before a 2 s
        # TTL expires or a 5 s connect timeout passes, and its table shows no incident.
        say(
            f"outlast: warning: {each:.1f} s per scenario is too short to show the incidents "
            f"(the record's TTL is 2 s, a dropped connection waits 5 s); give each at least "
            f"{MEANINGFUL_SECONDS:g} s: --duration {MEANINGFUL_SECONDS * len(chosen):g}, "
            "or fewer --scenario"
        )
    reports = []
    with lab() as drill_lab:
        for index, scenario in enumerate(chosen, 1):
            say(f"[{index}/{len(chosen)}] {scenario.title} ({each:.0f}s)")
            reports.append(run_scenario(scenario, drill_lab, each, say))
    return reports
