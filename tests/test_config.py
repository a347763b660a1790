"""Settings: every OUTLAST_* variable, its validation, and the documented table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from outlast import ConfigError, Settings
from outlast._config import VARIABLES, ProviderSpec, mask_url

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
