"""What outlast logs: nothing above DEBUG when nothing failed, repeated events rate-limited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest

import outlast
import outlast.aws
import outlast.dns
import outlast.http
from outlast import Event, Resolver
from outlast._events import Emitter, LogLimiter
from outlast.policy import BreakerStateChanged
from outlast.testing import DNSServer


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_at_debug() -> Iterator[_Capture]:
    """The root logger at DEBUG with a handler keeping every record."""
    root = logging.getLogger()
    capture = _Capture()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    yield capture
    root.removeHandler(capture)
    root.setLevel(level)


def _loud(capture: _Capture) -> list[str]:
    return [
        f"{r.name} {r.levelname} {r.getMessage()}"
        for r in capture.records
        if r.name.startswith("outlast") and r.levelno > logging.DEBUG
    ]


def test_nothing_above_debug_when_nothing_failed(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    http_port: int,
    root_at_debug: _Capture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "OUTLAST_DISABLE"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", fault_dns.provider)
    name = unique_name("quiet")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    url = f"http://{name}:{http_port}/"

    with outlast.Client() as client:  # a resolver and policy of its own, from the env
        assert [client.get(url).status_code for _ in range(2)] == [200, 200]

    async def twice() -> list[int]:
        async with outlast.AsyncClient() as client:
            return [(await client.get(url)).status_code for _ in range(2)]

    assert asyncio.run(twice()) == [200, 200]

    with Resolver(providers=[fault_dns.provider], listeners=[lambda e: None]) as resolver:
        assert resolver.resolve(name).addresses == ("127.0.0.1",)
        assert resolver.resolve(name.upper()).addresses == ("127.0.0.1",)

    policy = outlast.Policy(name="quiet")
    wrapped = policy(lambda: 42)
    assert [wrapped(), policy.for_key("other").call(lambda: 1)] == [42, 1]

    async def acall() -> int:
        async def one() -> int:
            return 7

        return await policy.acall(one)

    assert asyncio.run(acall()) == 7
    assert root_at_debug.records, "nothing was captured: the test would pass vacuously"
    assert _loud(root_at_debug) == []


def test_a_breaker_created_closed_is_debug_and_a_real_change_is_info() -> None:
    assert BreakerStateChanged("k", None, "closed").log_level() == logging.DEBUG
    assert BreakerStateChanged("k", "closed", "open").log_level() == logging.INFO
    assert BreakerStateChanged("k", None, "open").log_level() == logging.INFO  # fleet said so


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _emitter(
    caplog: pytest.LogCaptureFixture, seen: list[Event]
) -> tuple[Emitter, _Clock, logging.Logger]:
    logger = logging.getLogger("outlast.test_limiter")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    clock = _Clock()
    limiter = LogLimiter(60.0, clock=clock, wall=lambda: 0.0)
    return Emitter(logger, [seen.append], limiter=limiter), clock, logger


def test_a_repeated_warning_is_logged_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Event] = []
    emitter, clock, logger = _emitter(caplog, seen)
    event = outlast.aws.FailedOver("GetItem", "dynamodb", "us-east-1", "us-west-2", "refused")
    for _ in range(50):
        emitter.emit(event)
    records = [r for r in caplog.records if r.name == logger.name]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].outlast_suppressed == 0  # type: ignore[attr-defined]
    assert len(seen) == 50  # listeners (and metrics) see every one

    clock.now += 59.0
    emitter.emit(event)
    assert len([r for r in caplog.records if r.name == logger.name]) == 1
    clock.now += 2.0
    emitter.emit(event)
    records = [r for r in caplog.records if r.name == logger.name]
    assert len(records) == 2
    assert records[1].outlast_suppressed == 50  # type: ignore[attr-defined]
    assert "(50 more since 00:00:00 UTC not logged)" in records[1].getMessage()


def test_the_limit_is_per_kind_and_key(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Event] = []
    emitter, _, logger = _emitter(caplog, seen)
    for _ in range(3):
        emitter.emit(outlast.http.AddressEjected("a.test", "10.0.0.1", 443, 30.0))
        emitter.emit(outlast.http.AddressEjected("a.test", "10.0.0.2", 443, 30.0))
        emitter.emit(outlast.http.FailedOver("a.test", "10.0.0.2", 443, 2))
        emitter.emit(outlast.dns.StaticServed("a.test", "NXDOMAIN"))
        emitter.emit(outlast.dns.StaticServed("b.test", "NXDOMAIN"))
        emitter.emit(outlast.dns.ProviderEjected("udp://10.0.0.9", 5.0, "timeout"))
        emitter.emit(outlast.dns.EmptyAnswerDistrusted("a.test", "NXDOMAIN", ("1.2.3.4",), 0, 9))
    logged = [r.getMessage() for r in caplog.records if r.name == logger.name]
    # once per key; an event without throttle fields (once per outage already) each time
    assert len(logged) == 6 + 3
    assert len(seen) == 21


def test_the_limiter_forgets_the_oldest_key_beyond_its_bound() -> None:
    clock = _Clock()
    limiter = LogLimiter(60.0, max_keys=2, clock=clock)
    assert limiter.admit(("a",)) == (0, 0.0)
    assert limiter.admit(("a",)) is None
    assert limiter.admit(("b",)) is not None
    assert limiter.admit(("c",)) is not None  # "a" forgotten
    assert limiter.admit(("a",)) == (0, 0.0)


def test_the_static_fallback_warns_once_not_once_per_connection(
    fault_dns: DNSServer, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("static")  # the server holds nothing for it: NXDOMAIN
    caplog.set_level(logging.WARNING, logger="outlast.dns")
    seen: list[Event] = []
    with Resolver(
        providers=[fault_dns.provider], static={name: ["127.0.0.9"]}, listeners=[seen.append]
    ) as resolver:
        for _ in range(50):
            assert resolver.resolve(name).addresses == ("127.0.0.9",)
    warnings = [r for r in caplog.records if r.outlast_event == "dns.static_served"]  # type: ignore[attr-defined]
    assert len(warnings) == 1
    # Listeners still hear every serve: the first static answer, then the static
    # addresses held and served as last-known-good while refreshes run.
    served = [e for e in seen if isinstance(e, (outlast.dns.StaticServed, outlast.dns.StaleServed))]
    assert len(served) == 50
    assert isinstance(served[0], outlast.dns.StaticServed)


def test_a_component_built_with_chaos_armed_warns_once(
    fault_dns: DNSServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="outlast.chaos")
    env = {"OUTLAST_DNS_PROVIDERS": fault_dns.provider, "OUTLAST_CHAOS": "connect_refused=0.5"}
    seen: list[Event] = []
    with Resolver.from_env(env, listeners=[seen.append]) as resolver:
        resolver.resolve("127.0.0.1")
    monkeypatch.setenv("OUTLAST_CHAOS", "http_503=0.1@*.example.com")
    monkeypatch.delenv("OUTLAST_DISABLE", raising=False)
    with outlast.Transport(resolver=resolver, listeners=[seen.append]):
        pass
    armed = [r for r in caplog.records if r.outlast_event == "chaos.armed"]  # type: ignore[attr-defined]
    assert [(r.levelno, r.outlast_component) for r in armed] == [  # type: ignore[attr-defined]
        (logging.WARNING, "resolver"),
        (logging.WARNING, "transport"),
    ]
    assert "OUTLAST_CHAOS is armed" in armed[0].getMessage()
    assert armed[1].outlast_plan == "http_503=0.1@*.example.com"  # type: ignore[attr-defined]
    assert [e.kind for e in seen if e.kind.startswith("chaos.")] == ["chaos.armed"] * 2


def test_no_chaos_no_warning(
    fault_dns: DNSServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="outlast.chaos")
    monkeypatch.delenv("OUTLAST_CHAOS", raising=False)
    env = {"OUTLAST_DNS_PROVIDERS": fault_dns.provider}
    with Resolver.from_env(env) as resolver, outlast.Transport(resolver=resolver):
        pass
    assert [r for r in caplog.records if r.name == "outlast.chaos"] == []
