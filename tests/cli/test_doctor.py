"""``outlast doctor``, run as a subprocess against DNS servers on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.redis_server import RedisNotInstalled, RedisServer
from outlast import Resolver
from outlast.testing import DNSServer

from .conftest import outlast

TIMEOUT = "0.3"


def doctor_json(
    providers: list[str], *names: str, strict: bool = False, **env: str
) -> tuple[int, dict[str, object]]:
    done = outlast(
        "doctor",
        "--json",
        "--timeout",
        TIMEOUT,
        *(["--strict"] if strict else []),
        *names,
        env={"OUTLAST_DNS_PROVIDERS": ",".join(providers), **env},
    )
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return done.returncode, document


def test_a_good_and_a_blackholed_provider(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("api")
    fault_dns.set(name, ["192.0.2.10"], ttl=45)
    code, report = doctor_json([blackhole.provider, fault_dns.provider], name)
    assert code == 0
    dead, good = report["providers"]  # type: ignore[misc]
    assert dead["provider"] == blackhole.provider
    assert dead["ok"] is False
    assert dead["latency_ms"] is None
    assert "timed out" in dead["error"]
    assert good["provider"] == fault_dns.provider
    assert good["ok"] is True
    assert isinstance(good["latency_ms"], float)
    assert 0 < good["latency_ms"] < 300
    assert good["error"] is None
    [entry] = report["names"]  # type: ignore[misc]
    assert entry["name"] == name
    assert entry["answers"] == {fault_dns.provider: ["192.0.2.10"], blackhole.provider: []}
    assert entry["agree"] is True
    assert entry["resolved"] is True
    assert entry["lkg"] is False
    assert entry["results"][fault_dns.provider]["ttl"] == 45
    assert entry["results"][blackhole.provider]["status"] == "failed"
    assert entry["outlast"]["addresses"] == ["192.0.2.10"]


def test_exit_1_when_a_name_resolves_through_no_provider(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    good, gone = unique_name("good"), unique_name("gone")
    fault_dns.set(good, ["192.0.2.11"])
    code, report = doctor_json([blackhole.provider, fault_dns.provider], good, gone)
    assert code == 1
    statuses = {n["name"]: n["results"][fault_dns.provider]["status"] for n in report["names"]}  # type: ignore[attr-defined]
    assert statuses == {good: "addresses", gone: "NXDOMAIN"}
    # NXDOMAIN is an answer: the server is reachable even though the name is gone.
    assert [p["ok"] for p in report["providers"]] == [False, True]  # type: ignore[attr-defined]


def test_without_names_strict_says_whether_any_provider_answers(
    fault_dns: DNSServer, blackhole: DNSServer
) -> None:
    code, report = doctor_json([blackhole.provider], strict=True)
    assert code == 1
    assert report == {
        "providers": [
            {
                "provider": blackhole.provider,
                "ok": False,
                "latency_ms": None,
                "error": f"timed out after {TIMEOUT}s",
            }
        ],
        "names": [],
        "fleet": None,
        "chaos": None,
        "disabled": False,
    }
    # Not strict: with no name there is nothing outlast must serve.
    assert doctor_json([blackhole.provider])[0] == 0
    code, report = doctor_json([blackhole.provider, fault_dns.provider], strict=True)
    assert code == 0
    assert [p["ok"] for p in report["providers"]] == [False, True]  # type: ignore[attr-defined]


def test_a_failing_server_is_not_reachable_but_nxdomain_is(
    fault_dns: DNSServer, other_dns: DNSServer
) -> None:
    other_dns.fail("servfail")
    code, report = doctor_json([fault_dns.provider, other_dns.provider])
    assert code == 0
    providers = report["providers"]
    assert [p["ok"] for p in providers] == [True, False]  # type: ignore[attr-defined]
    assert providers[1]["error"] == "SERVFAIL"  # type: ignore[index]


def test_providers_that_disagree(
    fault_dns: DNSServer, other_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("split")
    fault_dns.set(name, ["192.0.2.20"])
    other_dns.nxdomain(name)
    code, report = doctor_json([fault_dns.provider, other_dns.provider], name)
    assert code == 0  # one provider is enough
    [entry] = report["names"]  # type: ignore[misc]
    assert entry["agree"] is False
    assert entry["answers"] == {fault_dns.provider: ["192.0.2.20"], other_dns.provider: []}
    other_dns.set(name, ["192.0.2.20"])
    _, report = doctor_json([fault_dns.provider, other_dns.provider], name)
    assert report["names"][0]["agree"] is True  # type: ignore[index]


def test_a_last_known_good_answer_from_the_cache_file(
    fault_dns: DNSServer, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    held, other = unique_name("held"), unique_name("other")
    cache = tmp_path / "outlast-cache.json"
    fault_dns.set(held, ["192.0.2.30"], ttl=300)
    fault_dns.set(other, ["192.0.2.31"])
    with Resolver(providers=[fault_dns.provider], cache_file=cache) as resolver:
        resolver.resolve(held)
    before = cache.read_bytes()
    fault_dns.nxdomain(held)  # the outage: the record is gone, the LKG is not
    code, report = doctor_json([fault_dns.provider], held, other, OUTLAST_DNS_CACHE_FILE=str(cache))
    # A liveness check passes: outlast serves `held` from its last-known-good answer.
    assert code == 0
    by_name = {n["name"]: n for n in report["names"]}  # type: ignore[attr-defined]
    assert by_name[held]["lkg"] is True
    assert by_name[held]["answers"] == {fault_dns.provider: []}
    assert by_name[held]["outlast"]["addresses"] == ["192.0.2.30"]
    assert by_name[other]["lkg"] is False
    assert cache.read_bytes() == before  # the doctor never writes the service's file
    # --strict (readiness): no provider resolves `held` any more.
    code, _ = doctor_json(
        [fault_dns.provider], held, other, strict=True, OUTLAST_DNS_CACHE_FILE=str(cache)
    )
    assert code == 1
    assert cache.read_bytes() == before


def test_the_table_for_people(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("api")
    fault_dns.set(name, ["192.0.2.40"], ttl=60)
    done = outlast(
        "doctor",
        name,
        "--timeout",
        TIMEOUT,
        env={"OUTLAST_DNS_PROVIDERS": f"{fault_dns.provider},{blackhole.provider}"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "STATUS", "LATENCY", "ERROR"]
    assert lines[1].split()[:2] == [fault_dns.provider, "ok"]
    assert lines[2].split()[:3] == [blackhole.provider, "FAIL", "-"]
    assert f"timed out after {TIMEOUT}s" in lines[2]
    assert f"{name}: resolves, 1 of 2 providers answered, last-known-good held: no" in lines
    assert f"  {fault_dns.provider}  192.0.2.40  ttl 60s" in lines


def test_user_errors_are_one_line_and_exit_2(fault_dns: DNSServer) -> None:
    cases = [
        (("doctor", "bad..name"), {}, "not a valid hostname"),
        (("doctor", "192.0.2.1"), {}, "is an IP address"),
        (("doctor", "--timeout", "0"), {}, "--timeout"),
        (("doctor",), {"OUTLAST_DNS_PROVIDERS": "ftp://x"}, "OUTLAST_DNS_PROVIDERS='ftp://x'"),
    ]
    for args, env, expected in cases:
        done = outlast(*args, env={"OUTLAST_DNS_PROVIDERS": fault_dns.provider, **env})
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("outlast: ")
        assert expected in lines[0]


def test_the_fleet_redis_health_is_reported_and_strict_needs_it(fault_dns: DNSServer) -> None:
    try:
        server = RedisServer(password="s3cret-pw").start()
    except RedisNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        code, report = doctor_json([fault_dns.provider], strict=True, OUTLAST_REDIS_URL=server.url)
        assert code == 0
        fleet = report["fleet"]
        assert isinstance(fleet, dict)
        assert fleet["ok"] is True
        assert fleet["url"] == server.url.replace("s3cret-pw", "***")
        assert isinstance(fleet["latency_ms"], float)
    finally:
        server.close()
    code, report = doctor_json([fault_dns.provider], strict=True, OUTLAST_REDIS_URL=server.url)
    assert code == 1  # readiness: the fleet's Redis is down
    fleet = report["fleet"]
    assert isinstance(fleet, dict)
    assert fleet["ok"] is False
    assert fleet["error"]
    assert "s3cret-pw" not in json.dumps(report)
    # Liveness: outlast works locally while Redis is down.
    assert doctor_json([fault_dns.provider], OUTLAST_REDIS_URL=server.url)[0] == 0


def test_chaos_armed_is_said_first(fault_dns: DNSServer) -> None:
    plan = "dns_servfail=1.0@*.drill.test"
    code, report = doctor_json([fault_dns.provider], OUTLAST_CHAOS=plan)
    assert code == 0
    assert report["chaos"] == plan
    done = outlast(
        "doctor",
        "--timeout",
        TIMEOUT,
        env={"OUTLAST_DNS_PROVIDERS": fault_dns.provider, "OUTLAST_CHAOS": plan},
    )
    assert done.stdout.splitlines()[0].startswith(f"CHAOS ARMED (OUTLAST_CHAOS={plan})")
    assert f"outlast: warning: OUTLAST_CHAOS is armed: {plan}" in done.stderr.splitlines()
    assert doctor_json([fault_dns.provider])[1]["chaos"] is None


def test_the_kill_switch_is_said_and_wins_over_bad_variables() -> None:
    env = {"OUTLAST_DISABLE": "1", "OUTLAST_DNS_TIMEOUT": "abc", "OUTLAST_CHAOS": "bogus"}
    done = outlast("doctor", "--timeout", "2", "localhost", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("OUTLAST_DISABLE is set")
    assert "from system (outlast disabled)" in done.stdout
    done = outlast("doctor", "--json", "--timeout", "2", env=env)
    assert json.loads(done.stdout)["disabled"] is True
