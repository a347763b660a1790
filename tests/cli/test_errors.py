"""Every bad input to the ``outlast`` command: one ``outlast:`` line, exit 2, before any work.

Also the kill switch through the command, the warning for a misspelt ``OUTLAST_*``
name, JSON that is JSON, and a ``--timeout`` that bounds the command even when the
operating system's ``getaddrinfo`` hangs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import SRC, outlast

SECRET = "s3cret"

#: Makes getaddrinfo hang for *.hang.test and answer NXDOMAIN for *.nx.test, in the
#: command's process only (a sitecustomize module on its PYTHONPATH).
FAKE_GETADDRINFO = """
import socket
import time

_real = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".hang.test"):
        time.sleep(30)
    if isinstance(host, str) and host.endswith(".nx.test"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


@pytest.fixture
def fake_getaddrinfo(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(FAKE_GETADDRINFO)
    return {"PYTHONPATH": os.pathsep.join([str(SRC), str(folder)])}


BAD_INPUTS = [
    (("resolve", "bad..name"), {}, "not a valid hostname"),
    (("resolve", "bad name!"), {"OUTLAST_DISABLE": "1"}, "not a valid hostname"),
    (("resolve", "bad name!"), {"OUTLAST_DNS_TIMEOUT": "abc"}, "not a valid hostname"),
    (("resolve", "localhost"), {"OUTLAST_DNS_TIMEOUT": "soon"}, "OUTLAST_DNS_TIMEOUT='soon'"),
    (("resolve", "localhost"), {"OUTLAST_DISABLE": "maybe"}, "OUTLAST_DISABLE='maybe'"),
    (
        ("resolve", "localhost"),
        {"OUTLAST_REDIS_URL": f"redis://:{SECRET}@[::1"},
        "OUTLAST_REDIS_URL",
    ),
    (
        ("resolve", "localhost"),
        {"OUTLAST_REDIS_URL": f"redis://:{SECRET}@cache:port"},
        "OUTLAST_REDIS_URL",
    ),
    (
        ("doctor",),
        {"OUTLAST_REDIS_URL": f"redis://app:{SECRET}@cache:63x79/0"},
        "OUTLAST_REDIS_URL",
    ),
    (
        ("doctor",),
        {"OUTLAST_DNS_PROVIDERS": "https://[::1/dns-query"},
        "OUTLAST_DNS_PROVIDERS='https://[::1/dns-query'",
    ),
    (("doctor",), {"OUTLAST_CHAOS": "bogus"}, "OUTLAST_CHAOS"),
    (("doctor", "--timeout", "nan"), {}, "--timeout"),
    (("doctor", "--timeout", "inf"), {}, "--timeout"),
    (("drill", "--duration", "nan"), {}, "--duration"),
    (("drill", "--duration", "inf"), {}, "--duration"),
    (("drill", "--plot", "/no/such/dir/x.png"), {}, "--plot"),
    (("drill", "--scenario", "nope"), {}, "--scenario"),
    (("resolve",), {}, "Missing argument 'NAME'"),
    (("frobnicate",), {}, "No such command"),
]


@pytest.mark.parametrize(("args", "env", "expected"), BAD_INPUTS)
def test_a_bad_input_is_one_line_exit_2_and_no_secret(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    started = time.monotonic()
    done = outlast(*args, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, (args, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("outlast: ")
    assert expected in lines[0]
    assert SECRET not in done.stderr + done.stdout
    assert done.stdout == ""
    assert elapsed < 20  # before any work: a drill would take at least 8 s per scenario


def test_the_kill_switch_wins_over_every_other_bad_variable() -> None:
    env = {
        "OUTLAST_DISABLE": "1",
        "OUTLAST_DNS_TIMEOUT": "abc",
        "OUTLAST_CHAOS": "bogus",
        "OUTLAST_REDIS_URL": f"redis://:{SECRET}@[::1",
    }
    done = outlast("resolve", "localhost", env=env)
    assert done.returncode == 0, done.stderr
    assert "source: system (outlast disabled)" in done.stdout.splitlines()
    assert done.stderr == ""


def test_a_misspelt_variable_is_named_with_the_closest_known_one() -> None:
    done = outlast("resolve", "localhost", env={"OUTLAST_DNS_TIMOUT": "5"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "outlast: warning: unknown variable OUTLAST_DNS_TIMOUT is ignored; "
        "did you mean OUTLAST_DNS_TIMEOUT?"
    ]


def test_doctor_json_has_no_infinity(fake_getaddrinfo: dict[str, str]) -> None:
    # getaddrinfo reports no TTL: a negative answer from `system` has none to show.
    done = outlast("doctor", "--json", "--timeout", "2", "x.nx.test", env=fake_getaddrinfo)
    assert done.returncode == 1, done.stderr
    assert "Infinity" not in done.stdout
    document = json.loads(done.stdout, parse_constant=lambda c: pytest.fail(c))
    result = document["names"][0]["results"]["system"]
    assert result["status"] == "NXDOMAIN"
    assert result["ttl"] is None


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("doctor", "--timeout", "0.5", "x.hang.test"), {}),
        (("doctor", "--json", "--timeout", "0.5", "x.hang.test"), {}),
        (("resolve", "x.hang.test"), {"OUTLAST_DNS_TIMEOUT": "0.5"}),
    ],
)
def test_the_timeout_bounds_the_command_when_getaddrinfo_hangs(
    args: tuple[str, ...], env: dict[str, str], fake_getaddrinfo: dict[str, str]
) -> None:
    started = time.monotonic()
    done = outlast(*args, env={**fake_getaddrinfo, **env})
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 10, elapsed  # getaddrinfo hangs for 30 s; the command must not wait


def test_the_drill_runs_on_its_own_settings() -> None:
    env = {"OUTLAST_DISABLE": "1", "OUTLAST_CHAOS": "dns_servfail=1.0,connect_refused=1.0"}
    done = outlast(
        "drill", "--json", "--scenario", "dns-provider-blackholed", "--duration", "8", env=env
    )
    assert done.returncode == 0, done.stderr
    assert (
        "outlast: the drill runs on its own settings; ignoring OUTLAST_CHAOS, OUTLAST_DISABLE"
        in done.stderr.splitlines()
    )
    [scenario] = json.loads(done.stdout)["scenarios"]
    assert scenario["clients"]["outlast"]["availability"] >= 0.99


def test_output_into_a_closed_pipe_is_not_a_traceback() -> None:
    command = f"{subprocess.list2cmdline(['python3', '-m', 'outlast', '--help'])} | head -c 1"
    base = {k: v for k, v in os.environ.items() if not k.startswith("OUTLAST_")}
    done = subprocess.run(
        command,
        shell=True,
        capture_output=True,
        text=True,
        env={**base, "PYTHONPATH": str(SRC)},
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("kind", ["foreign", "fifo"])
@pytest.mark.parametrize("command", ["doctor", "resolve"])
def test_a_cache_file_the_service_refuses_is_named_as_the_user_wrote_it(
    tmp_path: Path, kind: str, command: str
) -> None:
    # Found by b2: the doctor named its private copy (/tmp/outlast-doctor-*/cache.json)
    # for a foreign file, passed (exit 0) a FIFO the service refuses, and copied
    # /dev/zero until the disk was full.
    path = tmp_path / "app.conf"
    if kind == "foreign":
        path.write_text("secret = 1\n")
    else:
        os.mkfifo(path)
    done = outlast(command, "localhost", env={"OUTLAST_DNS_CACHE_FILE": str(path)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"outlast: OUTLAST_DNS_CACHE_FILE={str(path)!r} is invalid")
    assert "outlast-doctor" not in done.stderr
