"""A malformed Redis URL shows no part of its credentials, wherever it is echoed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import outlast
from outlast._config import Settings, mask_url
from outlast.fleet import Fleet

from .helpers import SRC

SECRET_PARTS = ("Hunter2", "SECRET", "ter2", "cd+ef", "ab/cd", "Zm9v", "YmFy")

MALFORMED = [
    "redis://:Hunter2#SECRET@redis.internal:6379/0",  # '#' ends the authority
    "redis://:Hun?ter2@redis.internal:6379/0",  # '?' ends it too
    "redis://:ab/cd+ef==@redis.internal:6379/0",  # base64 with '/'
    "redis://user:Zm9v/YmFy+==@redis.internal:6379/0",
    "rediss://:Hunter2#SECRET@redis.internal:6380/0",
    "redis://:Hunter2#SECRET",  # no host at all
    "redis://:Hunter2@redis.internal:SECRET/0",  # a port that is no number
    "redis://redis.internal:Hunter2/0",
]


def leaks(text: str) -> list[str]:
    return [part for part in SECRET_PARTS if part in text]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_shows_no_credentials(url: str) -> None:
    assert leaks(mask_url(url)) == []
    with pytest.raises(outlast.ConfigError) as caught:
        Settings.from_env({"OUTLAST_REDIS_URL": url})
    assert leaks(str(caught.value)) == [], str(caught.value)
    assert leaks(repr(caught.value.args)) == []
    with pytest.raises(outlast.ConfigError) as direct:
        Fleet(url)
    assert leaks(str(direct.value)) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@redis.internal:notaport/0", "a port from 1 to 65535"),
        ("redis://:pw@redis.internal:99999/0", "a port from 1 to 65535"),
        ("redis://:pw@redis.internal:0/0", "a port from 1 to 65535"),
        ("redis://:pw@redis.internal:6379/db0", "a database number"),
        ("redis://:Hunter2#SECRET@redis.internal:6379/0", "percent-encoded"),
    ],
)
def test_a_bad_port_or_database_is_a_config_error(url: str, expected: str) -> None:
    with pytest.raises(outlast.ConfigError) as caught:
        Settings.from_env({"OUTLAST_REDIS_URL": url})
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p%23w%3Fx%2Fy@redis.internal:6379/0",  # the same passwords, encoded
        "redis://user:p@ss:word@redis.internal:6379/0",
        "rediss://redis.internal:6380/0?password=s3cret",
        "unix:///run/redis.sock?db=0&password=s3cret",
        "redis://redis.internal",
    ],
)
def test_well_formed_urls_are_accepted(url: str) -> None:
    assert Settings.from_env({"OUTLAST_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", MALFORMED[:3])
def test_doctor_shows_no_credentials_of_a_malformed_url(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTLAST_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OUTLAST_REDIS_URL"] = url
    out = subprocess.run(
        [sys.executable, "-m", "outlast", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "OUTLAST_REDIS_URL" in out.stderr
    assert leaks(out.stdout + out.stderr) == [], out.stderr
