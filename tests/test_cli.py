"""The outlast command, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from outlast.testing import DNSServer


def outlast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "outlast", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_resolve_prints_addresses_source_ttl_and_staleness() -> None:
    done = outlast("resolve", "localhost")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "127.0.0.1" in lines
    assert "source: system" in lines
    assert "ttl: 30s" in lines
    assert "stale: no" in lines


def test_resolve_json() -> None:
    done = outlast("resolve", "--json", "localhost")
    document = json.loads(done.stdout)
    assert "127.0.0.1" in document["addresses"]
    assert document["stale"] is False


def test_a_name_that_does_not_resolve_exits_1_with_one_line(fault_dns: DNSServer) -> None:
    done = outlast(
        "resolve", "no-such-name.outlast.test", env={"OUTLAST_DNS_PROVIDERS": fault_dns.provider}
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"outlast: cannot resolve 'no-such-name.outlast.test': NXDOMAIN from {fault_dns.provider}"
    ]


def test_user_errors_are_one_line_and_exit_2() -> None:
    cases = [
        (("resolve", "bad..name"), {}, "not a valid hostname"),
        (("resolve", "localhost"), {"OUTLAST_DNS_TIMEOUT": "soon"}, "OUTLAST_DNS_TIMEOUT='soon'"),
        (("resolve",), {}, "Missing argument 'NAME'"),
        (("frobnicate",), {}, "No such command"),
    ]
    for args, env, expected in cases:
        done = outlast(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("outlast: ")
        assert expected in lines[0]
        assert "Traceback" not in done.stderr
