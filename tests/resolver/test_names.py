"""Hostname checks: a malformed name is refused before any query is sent."""

from __future__ import annotations

import pytest

from outlast import InvalidHostError, ResolveError, Resolver
from outlast._names import ip_literal, normalize

from .scripted import ScriptedProvider


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("", "the hostname is empty"),
        (".", "the hostname is empty"),
        ("a..b", "empty label"),
        (".a.b", "empty label"),
        ("a" * 64 + ".example", "is 64 characters long; at most 63"),
        (".".join(["abcdefghi"] * 26), "at most 253"),
        ("exa mple.com", "may hold only letters, digits"),
        ("-lead.example", "may not begin or end with '-'"),
        ("trail-.example", "may not begin or end with '-'"),
        ("semi;colon.example", "may hold only letters, digits"),
        # found by b2: a regex "$" matched before a final newline, which was then sent
        ("api.example\n", "may hold only letters, digits"),
        ("localhost\n", "may hold only letters, digits"),
    ],
)
def test_invalid_names_raise_a_clear_error_and_send_nothing(host: str, why: str) -> None:
    provider = ScriptedProvider()
    with Resolver(providers=[provider]) as resolver:
        with pytest.raises(InvalidHostError, match="cannot resolve") as caught:
            resolver.resolve(host)
        assert why in caught.value.reason
        assert isinstance(caught.value, ResolveError)
        assert isinstance(caught.value, ValueError)
    assert provider.calls.total() == 0


def test_names_are_lower_cased_without_the_trailing_dot() -> None:
    assert normalize("API.Example.COM.") == "api.example.com"
    assert normalize("_srv.example") == "_srv.example"


def test_internationalised_names_are_idna_encoded() -> None:
    assert normalize("bücher.example") == "xn--bcher-kva.example"
    with pytest.raises(InvalidHostError, match="internationalised"):
        normalize("a\u200db.example")


def test_ip_literals() -> None:
    assert ip_literal("127.0.0.1") == "127.0.0.1"
    assert ip_literal("[::1]") == "::1"
    assert ip_literal("2001:DB8::1") == "2001:db8::1"
    assert ip_literal("example.com") is None


def test_an_ip_literal_returns_itself_without_a_query() -> None:
    provider = ScriptedProvider()
    with Resolver(providers=[provider]) as resolver:
        answer = resolver.resolve("10.1.2.3")
    assert answer.addresses == ("10.1.2.3",)
    assert answer.source == "literal"
    assert not answer.stale
    assert provider.calls.total() == 0


def test_a_non_string_is_refused() -> None:
    with Resolver(providers=[ScriptedProvider()]) as resolver, pytest.raises(InvalidHostError):
        resolver.resolve(b"example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize("dot", ["\u3002", "\uff0e", "\uff61"])
def test_uts46_full_stops_are_dots(dot: str) -> None:
    assert normalize(f"example.com{dot}") == "example.com"
    assert normalize(f"api{dot}example{dot}com") == "api.example.com"
    assert normalize(f"bücher{dot}example") == "xn--bcher-kva.example"


def test_an_ipv4_literal_with_a_trailing_dot_is_a_literal() -> None:
    assert ip_literal("10.0.0.1.") == "10.0.0.1"
    assert ip_literal("::1.") is None
    provider = ScriptedProvider()
    with Resolver(providers=[provider]) as resolver:
        assert resolver.resolve("10.0.0.1.").addresses == ("10.0.0.1",)
    assert provider.calls.total() == 0


@pytest.mark.parametrize("disable", [False, True])
@pytest.mark.parametrize(("host", "address"), [("[::1]", "::1"), ("127.0.0.1", "127.0.0.1")])
def test_literals_are_the_same_with_outlast_disabled(
    disable: bool, host: str, address: str
) -> None:
    with Resolver(providers=[ScriptedProvider()], disable=disable) as resolver:
        assert resolver.resolve(host).addresses == (address,)
