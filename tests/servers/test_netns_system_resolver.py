"""The network-namespace harness (tests/netns.py) the system-resolver replays run in.

The functions without a ``test_`` prefix run inside the namespace (``netns.run``
imports this module there as ``servers.test_netns_system_resolver``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import netns

pytestmark = pytest.mark.skipif(
    netns.forbidden() is not None, reason=f"needs a network namespace: {netns.forbidden()}"
)
HERE = "servers.test_netns_system_resolver"


def look_around(ns: netns.Namespace, *, host_port: int) -> dict[str, Any]:
    ns.dns.set("only-here.outlast.test", ["127.0.0.1", "::1"], ttl=1)
    found = socket.getaddrinfo("only-here.outlast.test", 80, type=socket.SOCK_STREAM)
    try:
        socket.create_connection(("127.0.0.1", host_port), timeout=1).close()
        host_loopback = "reached"
    except OSError as exc:
        host_loopback = type(exc).__name__
    sleeper = subprocess.Popen(["sleep", "60"])
    return {
        "addresses": sorted({info[4][0] for info in found}),
        "queries": ns.dns.queries_for("only-here.outlast.test"),
        "resolv_conf": Path("/etc/resolv.conf").read_text(),
        "host_loopback": host_loopback,
        "tmp_is_private": str(ns.tmp).startswith(
            os.path.realpath(os.environ.get("TMPDIR", "/tmp"))
        ),
        "sleeper": sleeper.pid,
    }


def other_name_services(ns: netns.Namespace) -> list[str]:
    # As on a host with systemd-resolved: the namespace's nsswitch.conf asks it first.
    fake = ns.tmp / "fake-nsswitch.conf"
    fake.write_text("passwd: files\nhosts: files resolve [!UNAVAIL=return] dns\n")
    netns._libc_call("mount", str(fake).encode(), b"/etc/nsswitch.conf", None, 4096, None)
    (ns.tmp / "again").mkdir()
    netns._hosts_through_dns(ns.tmp / "again")
    return Path("/etc/nsswitch.conf").read_text().splitlines()


def fail(ns: netns.Namespace) -> None:
    raise ValueError("raised inside the namespace")


def hang(ns: netns.Namespace) -> None:
    time.sleep(60)


def _mounts_on_resolv_conf() -> list[str]:
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if " /etc/resolv.conf " in line
    ]


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # bounded
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:
            return True
        time.sleep(0.05)
    return False


def test_getaddrinfo_there_asks_its_dns_server_and_the_host_is_untouched() -> None:
    host_resolv_conf = Path("/etc/resolv.conf").read_bytes()
    host_mounts = _mounts_on_resolv_conf()
    with socket.socket() as listener:  # on the host's loopback: not the namespace's
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        seen = netns.run(f"{HERE}:look_around", timeout=30, host_port=listener.getsockname()[1])
    assert seen["addresses"] == ["127.0.0.1", "::1"]
    assert seen["queries"] >= 2  # glibc asked the namespace's server for A and AAAA
    assert seen["resolv_conf"] == "nameserver 127.0.0.1\n"
    assert seen["host_loopback"] == "ConnectionRefusedError"
    assert seen["tmp_is_private"]
    # Nothing changed outside: the host's resolv.conf and its mounts, no process left.
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv_conf
    assert _mounts_on_resolv_conf() == host_mounts
    assert _gone(seen["sleeper"])


def test_name_services_other_than_files_and_dns_are_set_aside_there() -> None:
    host_nsswitch = Path("/etc/nsswitch.conf").read_bytes()
    lines = netns.run(f"{HERE}:other_name_services", timeout=30)
    assert lines == ["passwd: files", "hosts: files dns"]
    assert Path("/etc/nsswitch.conf").read_bytes() == host_nsswitch


def test_an_error_there_is_raised_here_with_its_traceback() -> None:
    with pytest.raises(RuntimeError, match="raised inside the namespace"):
        netns.run(f"{HERE}:fail", timeout=30)


def test_a_run_past_its_timeout_is_killed() -> None:
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="gave no result"):
        netns.run(f"{HERE}:hang", timeout=1)
    assert time.monotonic() - began < 10
