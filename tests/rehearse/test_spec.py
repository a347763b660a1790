"""OUTLAST_CHAOS: what it accepts, what it refuses (naming the variable), how it rolls."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from outlast import ConfigError, Settings
from outlast.chaos import FAULTS, ChaosPlan, Rule, parse_chaos


def test_unset_or_blank_is_no_plan() -> None:
    assert Settings.from_env({}).chaos is None
    assert Settings.from_env({"OUTLAST_CHAOS": "  "}).chaos is None


def test_every_form_parses() -> None:
    spec = (
        "dns_empty=1.0@*.amazonaws.com, connect_refused=0.05, latency=0.25@0.5@API.example.com.,"
        "http_503=0,seed=7,after=1.5"
    )
    plan = Settings.from_env({"OUTLAST_CHAOS": spec}).chaos
    assert plan is not None
    assert plan.rules == (
        Rule("dns_empty", 1.0, 0.0, "*.amazonaws.com"),
        Rule("connect_refused", 0.05),
        Rule("latency", 0.5, 0.25, "api.example.com"),
        Rule("http_503", 0.0),
    )
    assert (plan.seed, plan.after) == (7, 1.5)
    assert set(FAULTS) == {
        "dns_empty",
        "dns_nxdomain",
        "dns_servfail",
        "dns_timeout",
        "connect_refused",
        "connect_timeout",
        "http_503",
        "latency",
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("dns_emtpy=1.0", "not 'dns_emtpy'"),
        ("dns_empty=1.5", "a probability from 0 to 1"),
        ("dns_empty=nan", "a probability from 0 to 1"),
        ("dns_empty", "NAME=VALUE"),
        ("dns_empty=", "NAME=VALUE"),
        ("dns_empty=0.5@", "a name pattern"),
        ("dns_empty=0.5@a b", "a name pattern"),
        ("dns_empty=0.5@x@y", "dns_empty=PROBABILITY[@PATTERN]"),
        ("latency=0.2", "latency=SECONDS@PROBABILITY"),
        ("latency=-1@0.5", "a delay in seconds"),
        ("latency=0.1@2", "a probability from 0 to 1"),
        ("seed=seven,dns_empty=1", "a whole number after seed="),
        ("after=soon,dns_empty=1", "seconds (0 or more) after after="),
        ("seed=3", "at least one fault"),
        ("dns_empty=0.1,dns_empty=0.2", "dns_empty is repeated"),
    ],
)
def test_a_bad_spec_raises_config_error_naming_outlast_chaos(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OUTLAST_CHAOS": spec})
    assert caught.value.setting == "OUTLAST_CHAOS"
    assert caught.value.value == spec
    message = str(caught.value)
    assert message.startswith(f"OUTLAST_CHAOS={spec!r} is invalid: expected ")
    assert says in message


def test_the_same_fault_may_have_different_scopes() -> None:
    plan = parse_chaos("dns_empty=1@*.amazonaws.com,dns_empty=0")
    assert plan is not None
    assert plan.roll("dns_empty", "dynamodb.us-east-1.amazonaws.com") is not None
    assert plan.roll("dns_empty", "example.com") is None  # the catch-all says 0


def test_patterns_match_names_case_and_final_dot_aside() -> None:
    rule = Rule("dns_empty", 1.0, pattern="*.amazonaws.com")
    assert rule.matches("DynamoDB.us-east-1.AmazonAWS.com.")
    assert not rule.matches("amazonaws.com.evil.net")
    assert not rule.matches("example.com")
    assert Rule("dns_empty", 1.0).matches("anything.at.all")


def test_rolls_follow_the_injected_dice() -> None:
    dice = itertools.cycle([0.01, 0.5, 0.99])
    plan = parse_chaos("connect_refused=0.5", random=lambda: next(dice))
    assert plan is not None
    fired = [plan.roll("connect_refused", "h") is not None for _ in range(6)]
    assert fired == [True, False, False, True, False, False]
    assert plan.roll("http_503", "h") is None  # not planned: no roll at all


def test_a_seed_makes_a_rehearsal_repeat() -> None:
    def run(spec: str) -> list[bool]:
        plan = parse_chaos(spec)
        assert plan is not None
        return [plan.roll("connect_refused", "h") is not None for _ in range(200)]

    first = run("connect_refused=0.3,seed=11")
    assert first == run("connect_refused=0.3,seed=11")
    assert first != run("connect_refused=0.3,seed=12")
    assert 30 <= sum(first) <= 90  # about 60 of 200


def test_after_holds_every_fault_back() -> None:
    now = [100.0]
    plan = parse_chaos("dns_empty=1,after=5", clock=lambda: now[0])
    assert plan is not None
    assert plan.roll("dns_empty", "h") is None
    now[0] = 104.9
    assert plan.roll("dns_empty", "h") is None
    now[0] = 105.0
    assert plan.roll("dns_empty", "h") is not None


def test_first_rolls_faults_in_order() -> None:
    plan = parse_chaos("dns_empty=1,dns_servfail=1", random=lambda: 0.0)
    assert plan is not None
    rule = plan.first(("dns_timeout", "dns_servfail", "dns_nxdomain", "dns_empty"), "h")
    assert rule is not None
    assert rule.fault == "dns_servfail"


def test_plans_compare_by_what_they_inject() -> None:
    assert parse_chaos("dns_empty=1") == parse_chaos(" dns_empty=1.0 ")
    assert parse_chaos("dns_empty=1") != parse_chaos("dns_empty=1,seed=2")
    assert isinstance(parse_chaos("dns_empty=1"), ChaosPlan)


def test_without_chaos_nothing_of_it_is_loaded_or_wrapped() -> None:
    code = (
        "import os, sys\n"
        "os.environ.pop('OUTLAST_CHAOS', None)\n"
        "import outlast\n"
        "client = outlast.Client()\n"
        "resolver = outlast.Resolver.from_env()\n"
        "loaded = sorted(m for m in ('outlast.chaos._dns', 'outlast.chaos._http') "
        "if m in sys.modules)\n"
        "transport = client._transport\n"
        "print(loaded, transport._parts.chaos, transport._pool._network_backend._dialer, "
        "type(resolver._pool.providers[0]).__name__)\n"
        "client.close(); resolver.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["[]", "None", "None", "SystemProvider"]
