"""Hostname checks: what may be sent to a DNS provider at all."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final

import idna

from outlast._exceptions import InvalidHostError

__all__ = ["ip_literal", "normalize"]

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
#: What UTS #46 maps to a full stop: ideographic, fullwidth and halfwidth ideographic.
_DOTS = re.compile("[\u3002\uff0e\uff61]")


def ip_literal(host: str) -> str | None:
    """The canonical IP string if ``host`` is an IP literal (``[::1]`` included), else None."""
    if not isinstance(host, str):
        return None
    if host.startswith("[") and host.endswith("]"):
        text = host[1:-1]
    elif host.endswith(".") and ":" not in host:
        text = host[:-1]  # "10.0.0.1." is the address, as getaddrinfo takes it
    else:
        text = host
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _INET_ATON.match(text):  # "127.1", "2130706433", "0x7f000001": inet_aton's forms
        try:
            return socket.inet_ntoa(socket.inet_aton(text))
        except OSError:
            return None
    return None


#: The shorthand IPv4 forms getaddrinfo (inet_aton) takes as addresses, not names: one to
#: four parts, each decimal, or hexadecimal with 0x. (Octal with a leading 0 is read as
#: octal by inet_aton, as by getaddrinfo.)
_INET_ATON: Final = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


def normalize(host: str) -> str:
    """The lower-case ASCII form of ``host`` without a trailing dot.

    Internationalised names are encoded with IDNA 2008 (UTS #46 mapping). Raises
    :class:`InvalidHostError` naming what is wrong; nothing is sent for such a name.
    """
    if not isinstance(host, str):
        raise InvalidHostError(repr(host), f"expected a hostname string, got {type(host).__name__}")
    name = host
    if not name.isascii():
        # UTS #46 maps the ideographic and other full stops to "." before anything else,
        # so "example.com\u3002" ends in a dot like "example.com." does.
        name = _DOTS.sub(".", name)
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise InvalidHostError(host, "the hostname is empty")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidHostError(host, f"not a valid internationalised name ({exc})") from exc
    name = name.lower()
    if len(name) > 253:
        raise InvalidHostError(host, f"the name is {len(name)} characters long; at most 253")
    for label in name.split("."):
        if not label:
            raise InvalidHostError(host, "the name has an empty label ('..' or a leading dot)")
        if len(label) > 63:
            raise InvalidHostError(
                host, f"the label {label[:20]!r}... is {len(label)} characters long; at most 63"
            )
        if not _LABEL.fullmatch(label):  # match() lets "$" pass a trailing newline
            raise InvalidHostError(
                host,
                f"the label {label!r} may hold only letters, digits, '-' and '_', "
                "and may not begin or end with '-'",
            )
    return name
