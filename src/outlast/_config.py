"""Settings: the one place that reads ``OUTLAST_*`` environment variables.

:meth:`Settings.from_env` reads every variable of the table in
``docs/configuration.md`` (a test keeps the two in agreement), validates each value at
start-up and returns a frozen :class:`Settings`. A bad value raises
:class:`~outlast.ConfigError` naming the variable, the value and what was expected.

Layers below the integrations take their defaults from here; nothing else in outlast
reads ``os.environ`` for an ``OUTLAST_*`` name. This module imports no layer (the
``OUTLAST_CHAOS`` parser, ``outlast._chaosplan``, imports nothing but the errors).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from outlast._chaosplan import ChaosPlan, parse_chaos
from outlast._exceptions import ConfigError, InvalidHostError
from outlast._names import normalize

__all__ = [
    "VARIABLES",
    "ProviderSpec",
    "Settings",
    "Variable",
    "count_arg",
    "disabled",
    "mask_url",
    "seconds_arg",
    "unknown_variables",
]

LOGGER: Final = logging.getLogger("outlast.config")

_SCHEMES: Final = ("udp", "tcp", "tls", "https")
_DEFAULT_PORTS: Final = {"udp": 53, "tcp": 53, "tls": 853}


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One entry of ``OUTLAST_DNS_PROVIDERS``.

    ``kind`` is ``system``, ``udp``, ``tcp``, ``tls`` or ``https``. For ``udp``, ``tcp``
    and ``tls``, ``address`` and ``port`` locate the server and ``hostname`` (``tls``
    only, written ``tls://IP:PORT#NAME``) is the name its certificate must carry. For
    ``https``, ``url`` is the DoH endpoint. ``text`` is the entry as written (for
    ``https``, with any password masked: it is what names the provider).

    Added in 0.1.0.
    """

    kind: str
    text: str
    address: str | None = None
    port: int | None = None
    hostname: str | None = None
    url: str | None = None

    @classmethod
    def parse(cls, text: str, *, setting: str = "OUTLAST_DNS_PROVIDERS") -> ProviderSpec:
        entry = text.strip()
        expected = (
            "'system', 'udp://IP[:PORT]', 'tcp://IP[:PORT]', 'tls://IP[:PORT][#NAME]' "
            "or 'https://HOST/PATH'"
        )
        if entry == "system":
            return cls(kind="system", text=entry)
        scheme, sep, rest = entry.partition("://")
        if not sep or scheme not in _SCHEMES or not rest:
            raise ConfigError(setting, text, expected)
        if scheme == "https":
            # A DoH URL may carry credentials: what is shown (errors, the provider's
            # name in answers, logs and the doctor) never has them.
            shown = mask_url(entry) if "@" in entry or "=" in entry else entry
            try:
                parts = urlsplit(entry)
            except ValueError as exc:  # e.g. an unclosed '[' around an IPv6 address
                raise ConfigError(
                    setting, shown, f"a DoH URL such as https://HOST/dns-query ({exc})"
                ) from None
            if not parts.hostname:
                raise ConfigError(setting, shown, "a DoH URL such as https://HOST/dns-query")
            try:
                parts.port  # noqa: B018 - validates the port
            except ValueError:
                raise ConfigError(setting, shown, "a DoH URL with a valid port") from None
            return cls(kind="https", text=shown, url=entry)
        hostname: str | None = None
        if "#" in rest:
            if scheme != "tls":
                raise ConfigError(setting, text, f"{expected}; '#NAME' is for tls:// only")
            rest, _, hostname = rest.partition("#")
            if not hostname:
                raise ConfigError(setting, text, "a certificate name after '#'")
            try:
                hostname = normalize(hostname)
            except InvalidHostError as exc:
                raise ConfigError(
                    setting, text, f"a certificate name after '#' ({exc.reason})"
                ) from None
        address, port = _split_host_port(rest, _DEFAULT_PORTS[scheme], setting, text)
        return cls(kind=scheme, text=entry, address=address, port=port, hostname=hostname)


def _split_host_port(rest: str, default_port: int, setting: str, text: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ConfigError(setting, text, "an IPv6 address written as [ADDRESS]:PORT")
        port_text = tail[1:] if tail else ""
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            setting, text, "an IP address (providers are dialled by address, not by name)"
        ) from None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(setting, text, "a port from 1 to 65535")
    return host, int(port_text)


def mask_url(url: str) -> str:
    """``url`` with any password (in the user part or the query) replaced by ``***``.

    A URL that is not well formed shows no part of its credentials: a password holding
    ``#``, ``?`` or ``/`` (common in base64) ends the authority early, so an ``@`` found
    past it means the split cannot be trusted; then only the scheme and what follows
    the last ``@`` (the host) are shown.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return _masked_malformed(url)
    if parts.fragment or url.count("@") != parts.netloc.count("@"):
        return _masked_malformed(url)
    try:
        parts.port  # noqa: B018 - a port that is no number may be a password's tail
    except ValueError:
        return _masked_malformed(url)
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    elif "@" in netloc:
        netloc = f"***@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{key}=***" if key.lower() in _SECRET_PARAMS else f"{key}{sep}{value}"
        for key, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _masked_malformed(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest or not scheme.isalnum():
        return "<not shown: not a valid URL>"
    host = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    name, colon, port = host.rpartition(":")
    if colon and not port.isdigit():  # not a port: perhaps a password's tail
        host = name if "]" not in port else host
    return f"{scheme}://***@{host}"


_SECRET_PARAMS: Final = frozenset({"password", "pass", "pwd", "token", "secret"})


# Parsers: each takes (variable name, raw text) and returns the value or raises ConfigError.


def _seconds_expected(allow_zero: bool) -> str:
    return "a number of seconds " + ("(0 or more)" if allow_zero else "greater than 0")


def _check_seconds(name: str, shown: object, value: float, *, allow_zero: bool) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, shown, _seconds_expected(allow_zero))
    return float(value)


def _seconds(*, allow_zero: bool) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, raw, _seconds_expected(allow_zero)) from None
        return _check_seconds(name, raw, value, allow_zero=allow_zero)

    return parse


def _deadline(name: str, raw: str) -> float | None:
    """Seconds greater than 0, or empty / ``none`` for no deadline of its own."""
    if not raw.strip() or raw.strip().lower() == "none":
        return None
    return _seconds(allow_zero=False)(name, raw)


def _count(minimum: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        expected = f"a whole number of at least {minimum}"
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, raw, expected) from None
        if value < minimum:
            raise ConfigError(name, raw, expected)
        return value

    return parse


def _fraction(name: str, raw: str) -> float:
    expected = "a fraction from 0 to 1 (0.1 allows retries up to 10% of calls)"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, raw, expected) from None
    if not 0 <= value <= 1:
        raise ConfigError(name, raw, expected)
    return value


def _flag(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, raw, "1 or 0 (also true/false, yes/no, on/off)")


def _providers(name: str, raw: str) -> tuple[ProviderSpec, ...]:
    entries = [part for part in raw.split(",") if part.strip()]
    if not entries:
        raise ConfigError(name, raw, "at least one provider, e.g. 'system,udp://1.1.1.1'")
    return tuple(ProviderSpec.parse(part, setting=name) for part in entries)


def _static(name: str, raw: str) -> Mapping[str, tuple[str, ...]]:
    expected = "'host=ip|ip;host2=ip' with IP addresses"
    table: dict[str, tuple[str, ...]] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        host, sep, addresses = item.partition("=")
        if not sep or not host.strip():
            raise ConfigError(name, raw, expected)
        try:
            host = normalize(host.strip())
        except InvalidHostError as exc:
            raise ConfigError(name, raw, f"{expected}; {exc.host!r}: {exc.reason}") from None
        ips = tuple(part.strip() for part in addresses.split("|") if part.strip())
        if not ips:
            raise ConfigError(name, raw, f"{expected}; {host!r} has no address")
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ConfigError(name, raw, f"{expected}; {ip!r} is not an IP address") from None
        if host in table:
            raise ConfigError(
                name, raw, f"{expected}; {host!r} appears twice (list every address once)"
            )
        table[host] = ips
    return table


def _path(name: str, raw: str) -> Path | None:
    if not raw.strip():
        return None
    # Absolute now: a process that later changes directory still writes where it was told.
    path = Path(raw).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(name, raw, "a file path, not a directory")
    return path


def _redis_url(name: str, raw: str) -> str | None:
    """A Redis URL redis-py will read as written, or ConfigError showing no credentials."""
    if not raw.strip():
        return None
    expected = "a redis://, rediss:// or unix:// URL"
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise ConfigError(name, mask_url(raw), expected) from None
    shown = mask_url(raw)
    if parts.scheme in ("redis", "rediss", "unix") and (
        parts.fragment or raw.count("@") != parts.netloc.count("@")
    ):
        raise ConfigError(
            name,
            shown,
            f"{expected} whose password has its reserved characters (# ? / @ :) "
            "percent-encoded (%23 %3F %2F %40 %3A)",
        )
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        # A value with no recognisable URL shape may hold a password where it cannot be
        # found and masked: it is not shown at all.
        shown = shown if parts.scheme and parts.netloc else "<not shown>"
        raise ConfigError(name, shown, expected)
    if parts.scheme == "unix":
        return raw
    if not parts.hostname:
        raise ConfigError(name, shown, f"{expected} with a host (redis://HOST:6379/0)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if (port is not None and not 0 < port < 65536) or parts.netloc.endswith(":"):
        raise ConfigError(name, shown, "a port from 1 to 65535 after the host")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ConfigError(name, shown, "a database number after the host (redis://HOST:6379/0)")
    return raw


def _chaos(name: str, raw: str) -> ChaosPlan | None:
    return parse_chaos(raw)  # its errors name OUTLAST_CHAOS


@dataclasses.dataclass(frozen=True, slots=True)
class Variable:
    """One ``OUTLAST_*`` variable: its name, the Settings field it fills, its default."""

    name: str
    field: str
    default: str | None
    parse: Callable[[str, str], Any]


VARIABLES: Final[tuple[Variable, ...]] = (
    Variable("OUTLAST_DNS_PROVIDERS", "dns_providers", "system", _providers),
    Variable("OUTLAST_DNS_TIMEOUT", "dns_timeout", "1.0", _seconds(allow_zero=False)),
    Variable("OUTLAST_DNS_HEDGE_DELAY", "dns_hedge_delay", "0.15", _seconds(allow_zero=True)),
    Variable("OUTLAST_DNS_MIN_TTL", "dns_min_ttl", "1", _seconds(allow_zero=True)),
    Variable("OUTLAST_DNS_MAX_TTL", "dns_max_ttl", "3600", _seconds(allow_zero=False)),
    Variable("OUTLAST_DNS_STALE_TTL", "dns_stale_ttl", "86400", _seconds(allow_zero=True)),
    Variable("OUTLAST_DNS_KEEP_ON_EMPTY", "dns_keep_on_empty", "3600", _seconds(allow_zero=True)),
    Variable("OUTLAST_DNS_NEGATIVE_TTL", "dns_negative_ttl", "5", _seconds(allow_zero=True)),
    Variable("OUTLAST_DNS_STATIC", "dns_static", None, _static),
    Variable("OUTLAST_DNS_CACHE_FILE", "dns_cache_file", None, _path),
    Variable("OUTLAST_DNS_CACHE_SIZE", "dns_cache_size", "10000", _count(1)),
    Variable("OUTLAST_RETRY_ATTEMPTS", "retry_attempts", "3", _count(1)),
    Variable("OUTLAST_RETRY_BASE", "retry_base", "0.05", _seconds(allow_zero=True)),
    Variable("OUTLAST_RETRY_CAP", "retry_cap", "20", _seconds(allow_zero=True)),
    Variable("OUTLAST_RETRY_BUDGET", "retry_budget", "0.1", _fraction),
    Variable("OUTLAST_RETRY_DEADLINE", "retry_deadline", None, _deadline),
    Variable("OUTLAST_BREAKER_FAILURES", "breaker_failures", "5", _count(1)),
    Variable("OUTLAST_BREAKER_RESET", "breaker_reset", "0.25", _seconds(allow_zero=False)),
    Variable("OUTLAST_REDIS_URL", "redis_url", None, _redis_url),
    Variable("OUTLAST_CHAOS", "chaos", None, _chaos),
    Variable("OUTLAST_DISABLE", "disable", "0", _flag),
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every ``OUTLAST_*`` setting, validated. Build one with :meth:`from_env`.

    Added in 0.1.0.
    """

    dns_providers: tuple[ProviderSpec, ...]
    dns_timeout: float
    dns_hedge_delay: float
    dns_min_ttl: float
    dns_max_ttl: float
    dns_stale_ttl: float
    dns_keep_on_empty: float
    dns_negative_ttl: float
    dns_static: Mapping[str, tuple[str, ...]]
    dns_cache_file: Path | None
    dns_cache_size: int
    retry_attempts: int
    retry_base: float
    retry_cap: float
    retry_budget: float
    retry_deadline: float | None
    breaker_failures: int
    breaker_reset: float
    redis_url: str | None = dataclasses.field(repr=False)
    chaos: ChaosPlan | None
    disable: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``OUTLAST_*`` variable (``os.environ`` by default).

        ``OUTLAST_DISABLE`` is read first and alone: when it is set, every other variable
        is ignored (a bad value included) and the defaults are returned with
        ``disable=True``, so the kill switch works whatever else is wrong. An unknown
        ``OUTLAST_*`` name is logged once as a WARNING on ``outlast.config``, naming the
        closest known one.
        """
        env = os.environ if environ is None else environ
        if disabled(env):
            return dataclasses.replace(cls.from_env({}), disable=True)
        _warn_unknown(env)
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None:
                raw = var.default or ""
            try:
                values[var.field] = var.parse(var.name, raw)
            except ConfigError:
                raise
            except ValueError:  # a parser's gap: the value may hold a secret, so it is not shown
                raise ConfigError(
                    var.name, "<not shown>", "a valid value (docs/configuration.md)"
                ) from None
        if values["dns_min_ttl"] > values["dns_max_ttl"]:
            raise ConfigError(
                "OUTLAST_DNS_MIN_TTL",
                env.get("OUTLAST_DNS_MIN_TTL", "1"),
                f"at most OUTLAST_DNS_MAX_TTL ({values['dns_max_ttl']:g})",
            )
        if values["retry_base"] > values["retry_cap"]:
            raise ConfigError(
                "OUTLAST_RETRY_BASE",
                env.get("OUTLAST_RETRY_BASE", "0.05"),
                f"at most OUTLAST_RETRY_CAP ({values['retry_cap']:g})",
            )
        return cls(**values)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "redis_url"
        )
        redis = None if self.redis_url is None else mask_url(self.redis_url)
        return f"Settings({shown}, redis_url={redis!r})"


def disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``OUTLAST_DISABLE`` is set, read alone: no other variable can stop the switch.

    Raises :class:`ConfigError` only for a bad ``OUTLAST_DISABLE`` itself.
    """
    env = os.environ if environ is None else environ
    return bool(_flag("OUTLAST_DISABLE", env.get("OUTLAST_DISABLE", "0")))


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per ``OUTLAST_*`` name in ``environ`` that outlast does not read.

    Each names the closest known variable when one is close (a misspelling).
    """
    env = os.environ if environ is None else environ
    return [_unknown_message(name) for name in sorted(_unknown_names(env))]


_KNOWN: Final = frozenset(var.name for var in VARIABLES)
_SUFFIXES: Final = [var.name.removeprefix("OUTLAST_") for var in VARIABLES]


def _unknown_names(env: Mapping[str, str]) -> set[str]:
    return {name for name in env if name.startswith("OUTLAST_") and name not in _KNOWN}


def _unknown_message(name: str) -> str:
    import difflib  # only when a name is misspelt

    close = difflib.get_close_matches(name.removeprefix("OUTLAST_"), _SUFFIXES, n=1, cutoff=0.6)
    hint = f"; did you mean OUTLAST_{close[0]}?" if close else " (see docs/configuration.md)"
    return f"unknown variable {name} is ignored{hint}"


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_unknown(env: Mapping[str, str]) -> None:
    """Log each unknown name once per process (the check costs a set lookup after that)."""
    unknown = _unknown_names(env)
    if not unknown:
        return
    with _warned_lock:
        new = sorted(unknown - _warned)
        _warned.update(new)
    for name in new:
        LOGGER.warning("%s", _unknown_message(name))


def seconds_arg(
    setting: str, value: float | timedelta | None, default: float, *, allow_zero: bool
) -> float:
    """A duration argument in seconds (``float`` or ``timedelta``), validated like its variable.

    ``None`` means ``default``. Raises :class:`ConfigError` naming ``setting``.
    """
    if value is None:
        return default
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(setting, value, "a number of seconds or a datetime.timedelta")
    return _check_seconds(setting, value, seconds, allow_zero=allow_zero)


def count_arg(setting: str, value: int | None, default: int, *, minimum: int) -> int:
    """A whole-number argument, validated like its variable. ``None`` means ``default``."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(setting, value, f"a whole number of at least {minimum}")
    return value
