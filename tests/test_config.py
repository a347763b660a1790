"""Settings: every OUTLAST_* variable, its validation, and the documented table."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import outlast
import outlast._config
from outlast import ConfigError, Policy, Resolver, Settings
from outlast._config import VARIABLES, ProviderSpec, mask_url, unknown_variables

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def documented_table() -> dict[str, str]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\|\s*`(OUTLAST_[A-Z_]+)`\s*\|.*\|\s*(.+?)\s*\|$", line)
        if match:
            rows[match.group(1)] = match.group(2).strip("`")
    return rows


def test_docs_table_lists_exactly_the_variables_the_code_reads() -> None:
    table = documented_table()
    assert list(table) == [var.name for var in VARIABLES]
    for var in VARIABLES:
        assert table[var.name] == (var.default or "none"), var.name


def test_every_settings_field_comes_from_one_variable() -> None:
    import dataclasses

    fields = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(fields) == sorted(var.field for var in VARIABLES)


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.dns_providers == (ProviderSpec(kind="system", text="system"),)
    assert settings.dns_timeout == 1.0
    assert settings.dns_hedge_delay == 0.15
    assert (settings.dns_min_ttl, settings.dns_max_ttl) == (1, 3600)
    assert settings.dns_stale_ttl == 86400
    assert settings.dns_keep_on_empty == 3600
    assert settings.dns_negative_ttl == 5
    assert settings.dns_static == {}
    assert settings.dns_cache_file is None
    assert settings.dns_cache_size == 10000
    assert (settings.retry_attempts, settings.retry_base, settings.retry_cap) == (3, 0.05, 20)
    assert settings.retry_budget == 0.1
    assert (settings.breaker_failures, settings.breaker_reset) == (5, 0.25)
    assert settings.redis_url is None
    assert settings.chaos is None
    assert settings.disable is False


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLAST_DNS_TIMEOUT", "0.25")
    assert Settings.from_env().dns_timeout == 0.25


def test_providers_parse_every_form() -> None:
    raw = (
        "system, udp://10.0.0.2, tcp://10.0.0.2:5353, tls://[2606:4700::1111]:853#one.one.one.one,"
        "https://dns.example/dns-query"
    )
    specs = Settings.from_env({"OUTLAST_DNS_PROVIDERS": raw}).dns_providers
    assert [s.kind for s in specs] == ["system", "udp", "tcp", "tls", "https"]
    assert (specs[1].address, specs[1].port) == ("10.0.0.2", 53)
    assert (specs[2].address, specs[2].port) == ("10.0.0.2", 5353)
    assert (specs[3].address, specs[3].port, specs[3].hostname) == (
        "2606:4700::1111",
        853,
        "one.one.one.one",
    )
    assert specs[4].url == "https://dns.example/dns-query"


def test_static_table() -> None:
    settings = Settings.from_env({"OUTLAST_DNS_STATIC": "Api.Example.=10.0.0.1|::1;db=10.0.0.9"})
    assert settings.dns_static == {"api.example": ("10.0.0.1", "::1"), "db": ("10.0.0.9",)}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("OUTLAST_DNS_TIMEOUT", "soon", "a number of seconds greater than 0"),
        ("OUTLAST_DNS_TIMEOUT", "0", "a number of seconds greater than 0"),
        ("OUTLAST_DNS_TIMEOUT", "nan", "a number of seconds greater than 0"),
        ("OUTLAST_DNS_HEDGE_DELAY", "-1", "a number of seconds (0 or more)"),
        ("OUTLAST_DNS_CACHE_SIZE", "0", "a whole number of at least 1"),
        ("OUTLAST_DNS_CACHE_SIZE", "1e3", "a whole number of at least 1"),
        ("OUTLAST_RETRY_ATTEMPTS", "three", "a whole number of at least 1"),
        ("OUTLAST_RETRY_BUDGET", "1.5", "a fraction from 0 to 1"),
        ("OUTLAST_DISABLE", "maybe", "1 or 0"),
        ("OUTLAST_DNS_PROVIDERS", "8.8.8.8", "'system', 'udp://IP[:PORT]'"),
        ("OUTLAST_DNS_PROVIDERS", "udp://dns.google", "an IP address"),
        ("OUTLAST_DNS_PROVIDERS", "udp://10.0.0.1:99999", "a port from 1 to 65535"),
        ("OUTLAST_DNS_PROVIDERS", "udp://10.0.0.1#name", "'#NAME' is for tls:// only"),
        ("OUTLAST_DNS_PROVIDERS", " , ", "at least one provider"),
        ("OUTLAST_DNS_STATIC", "api.example", "'host=ip|ip;host2=ip'"),
        ("OUTLAST_DNS_STATIC", "api.example=not-an-ip", "'not-an-ip' is not an IP address"),
        ("OUTLAST_DNS_MIN_TTL", "7200", "at most OUTLAST_DNS_MAX_TTL (3600)"),
        ("OUTLAST_RETRY_BASE", "30", "at most OUTLAST_RETRY_CAP (20)"),
        ("OUTLAST_REDIS_URL", "http://cache:6379", "a redis://, rediss:// or unix:// URL"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_was_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is invalid: expected")
    assert expected in message
    assert caught.value.setting == name


def test_cache_file_may_not_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OUTLAST_DNS_CACHE_FILE=.*a file path"):
        Settings.from_env({"OUTLAST_DNS_CACHE_FILE": str(tmp_path)})


def test_redis_password_never_shown() -> None:
    settings = Settings.from_env({"OUTLAST_REDIS_URL": "rediss://app:s3cret@cache:6380/0"})
    assert settings.redis_url == "rediss://app:s3cret@cache:6380/0"
    assert "s3cret" not in repr(settings)
    assert "rediss://app:***@cache:6380/0" in repr(settings)
    assert mask_url("redis://cache:6379") == "redis://cache:6379"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OUTLAST_REDIS_URL": "http://app:s3cret@cache"})
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OUTLAST_REDIS_URL": "redis//:s3cret@cache"})
    assert "s3cret" not in str(caught.value)
    query = Settings.from_env({"OUTLAST_REDIS_URL": "redis://cache:6379/0?password=s3cret&db=1"})
    assert "s3cret" not in repr(query)
    assert mask_url("redis://cache/0?password=s3cret&db=1") == "redis://cache/0?password=***&db=1"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.dns_timeout = 2.0  # type: ignore[misc]


def test_static_hosts_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OUTLAST_DNS_STATIC": "bad host=10.0.0.1"})
    assert "OUTLAST_DNS_STATIC" in str(caught.value)
    assert "'bad host'" in str(caught.value)


# -- the kill switch: OUTLAST_DISABLE is read first and alone -------------------------

#: A bad value for every variable but OUTLAST_DISABLE: none may stop the kill switch.
BAD = {
    "OUTLAST_DNS_PROVIDERS": "https://[::1/dns-query",
    "OUTLAST_DNS_TIMEOUT": "abc",
    "OUTLAST_DNS_HEDGE_DELAY": "-1",
    "OUTLAST_DNS_MIN_TTL": "nan",
    "OUTLAST_DNS_MAX_TTL": "0",
    "OUTLAST_DNS_STALE_TTL": "later",
    "OUTLAST_DNS_KEEP_ON_EMPTY": "-5",
    "OUTLAST_DNS_NEGATIVE_TTL": "inf",
    "OUTLAST_DNS_STATIC": "bad host=x",
    "OUTLAST_DNS_CACHE_FILE": "/",
    "OUTLAST_DNS_CACHE_SIZE": "0",
    "OUTLAST_RETRY_ATTEMPTS": "three",
    "OUTLAST_RETRY_BASE": "-1",
    "OUTLAST_RETRY_CAP": "x",
    "OUTLAST_RETRY_DEADLINE": "soon",
    "OUTLAST_RETRY_BUDGET": "2",
    "OUTLAST_BREAKER_FAILURES": "0",
    "OUTLAST_BREAKER_RESET": "0",
    "OUTLAST_REDIS_URL": "redis://:s3cret@[::1",
    "OUTLAST_CHAOS": "bogus",
}


def test_every_variable_has_a_bad_value_in_the_kill_switch_table() -> None:
    assert set(BAD) == {var.name for var in VARIABLES} - {"OUTLAST_DISABLE"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_value_is_refused_when_enabled(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: BAD[name]})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("flag", ["1", "true", "yes", "on", " ON "])
def test_disable_ignores_every_other_variable(flag: str) -> None:
    settings = Settings.from_env({**BAD, "OUTLAST_DISABLE": flag})
    assert settings.disable is True
    assert dataclasses.replace(settings, disable=False) == Settings.from_env({})


def test_a_bad_disable_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match="OUTLAST_DISABLE='maybe'"):
        Settings.from_env({"OUTLAST_DISABLE": "maybe", "OUTLAST_DNS_TIMEOUT": "abc"})
    with pytest.raises(ConfigError, match="OUTLAST_DNS_TIMEOUT"):
        Settings.from_env({"OUTLAST_DISABLE": "0", "OUTLAST_DNS_TIMEOUT": "abc"})


def test_disabled_resolver_and_policy_from_env_pass_through() -> None:
    env = {**BAD, "OUTLAST_DISABLE": "1"}
    with Resolver.from_env(env) as resolver:
        answer = resolver.resolve("localhost")
    assert answer.source == "system (outlast disabled)"
    policy = Policy.from_env(env)
    calls = []

    def fail() -> None:
        calls.append(1)
        raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        policy.call(fail)
    assert calls == [1]  # no retry: the policy passes straight through


def test_disabled_entry_points_read_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in BAD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    assert Settings.from_env().disable is True
    with Resolver.from_env() as resolver:
        assert resolver.resolve("localhost").source == "system (outlast disabled)"
    Policy.from_env()
    with outlast.Client() as client:
        assert client is not None
    asyncio.run(outlast.AsyncClient().aclose())


def test_disabled_aws_wrap_returns_the_client_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    import outlast.aws

    for name, value in BAD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    make_request = client._endpoint.make_request
    assert outlast.aws.wrap(client) is client
    assert client._endpoint.make_request == make_request


# -- unknown OUTLAST_* names -----------------------------------------------------------


def test_unknown_variables_name_the_closest_known_one() -> None:
    env = {
        "OUTLAST_DNS_TIMOUT": "5",
        "OUTLAST_DISABLED": "1",
        "OUTLAST_FROBNICATE": "1",
        "OUTLAST_DNS_TIMEOUT": "2",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        "unknown variable OUTLAST_DISABLED is ignored; did you mean OUTLAST_DISABLE?",
        "unknown variable OUTLAST_DNS_TIMOUT is ignored; did you mean OUTLAST_DNS_TIMEOUT?",
        "unknown variable OUTLAST_FROBNICATE is ignored (see docs/configuration.md)",
    ]
    assert unknown_variables({var.name: "x" for var in VARIABLES}) == []


def test_an_unknown_variable_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outlast._config, "_warned", set())  # once per process: a fresh one
    name = "OUTLAST_RETRY_ATTEMTPS"
    with caplog.at_level(logging.WARNING, logger="outlast.config"):
        Settings.from_env({name: "5"})
        Settings.from_env({name: "5"})
    messages = [r.getMessage() for r in caplog.records if r.name == "outlast.config"]
    assert messages == [f"unknown variable {name} is ignored; did you mean OUTLAST_RETRY_ATTEMPTS?"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_no_warning_for_known_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="outlast"):
        Settings.from_env({"OUTLAST_DNS_TIMEOUT": "2"})
    assert caplog.records == []


def test_a_parser_gap_is_a_config_error_that_shows_no_value() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"OUTLAST_REDIS_URL": "redis://:s3cret@[::1"})
    assert caught.value.setting == "OUTLAST_REDIS_URL"
    assert "s3cret" not in str(caught.value)


# -- invariants over any text: the kill switch always wins; a bad value is a ConfigError -

_ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_VALUES = st.dictionaries(
    st.sampled_from(sorted(BAD)), _ANY_TEXT | st.sampled_from(list(BAD.values()))
)


@settings(max_examples=200, deadline=None)
@given(values=_VALUES, flag=st.sampled_from(["1", "true", "YES", " on "]))
def test_disable_wins_over_any_values(values: dict[str, str], flag: str) -> None:
    assert Settings.from_env({**values, "OUTLAST_DISABLE": flag}).disable is True


@settings(max_examples=300, deadline=None)
@given(values=_VALUES)
def test_any_value_gives_settings_or_a_config_error_never_another_exception(
    values: dict[str, str],
) -> None:
    error: ConfigError | None = None
    try:
        Settings.from_env(values)
    except ConfigError as exc:
        error = exc
    assert error is None or error.setting in values or error.setting.startswith("OUTLAST_")


@settings(max_examples=200, deadline=None)
@given(
    password=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16),
    scheme=st.sampled_from(["redis", "rediss", "http", "", "redis:"]),
    host=st.sampled_from(["cache", "[::1", "[::1]", "cache:abc", "cache:99999", "", "[x]:1"]),
)
def test_a_redis_password_is_never_in_an_error(password: str, scheme: str, host: str) -> None:
    raw = f"{scheme}://app:{password}@{host}/0"
    error = ""
    try:
        Settings.from_env({"OUTLAST_REDIS_URL": raw})
    except ConfigError as exc:
        error = str(exc)
    assert password not in error


@pytest.mark.parametrize(
    "entry",
    [
        "https://user:s3cret@dns.example/dns-query",
        "https://dns.example/dns-query?token=s3cret",
        "https://user:s3cret@dns.example:99x/dns-query",  # a bad port: the error shows it
    ],
)
def test_a_doh_urls_credentials_are_never_shown(entry: str) -> None:
    # Found by b2: the DoH URL as written named the provider, so its password was in
    # every "cannot resolve" message, the doctor's table, logs and events.
    if "99x" in entry:
        with pytest.raises(outlast.ConfigError) as caught:
            ProviderSpec.parse(entry)
        assert "s3cret" not in str(caught.value)
        return
    spec = ProviderSpec.parse(entry)
    assert "s3cret" not in spec.text
    assert spec.url == entry  # still sent to the server
    resolver = outlast.Resolver(providers=[spec])
    try:
        assert all("s3cret" not in p.name for p in resolver._pool.providers)
    finally:
        resolver.close()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("OUTLAST_DNS_STATIC", "a.test=10.0.0.1;A.test.=10.0.0.2", "appears twice"),
        ("OUTLAST_DNS_PROVIDERS", "tls://127.0.0.1#bad name", "certificate name"),
    ],
)
def test_inputs_the_core_breaker_found(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Settings.from_env({name: value})


def test_a_retry_cap_past_a_day_is_refused() -> None:
    with pytest.raises(ConfigError, match="cap"):
        outlast.Retry(base=1e308, cap=1e308)
    with pytest.raises(ConfigError, match="cap"):
        outlast.Policy.from_env({"OUTLAST_RETRY_CAP": "1e308", "OUTLAST_RETRY_BASE": "1"})
