"""``outlast drill``, run as a user runs it: a subprocess, on loopback only."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import outlast

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_drill_shows_outlast_riding_through_what_breaks_plain_httpx(tmp_path: Path) -> None:
    picture = tmp_path / "drill.png"
    done = outlast("drill", "--json", "--duration", "16", "--plot", str(picture))
    assert done.returncode == 0, done.stderr
    report = {s["name"]: s["clients"] for s in json.loads(done.stdout)["scenarios"]}
    assert list(report) == [
        "dns-record-empty",
        "dns-provider-blackholed",
        "address-refusing",
        "backend-503-storm",
    ]
    for scenario in ("dns-record-empty", "dns-provider-blackholed", "address-refusing"):
        outlast_name = next(name for name in report[scenario] if "outlast" in name)
        assert report[scenario][outlast_name]["availability"] >= 0.99, scenario
    assert report["dns-record-empty"]["httpx"]["availability"] <= 0.8
    assert report["dns-record-empty"]["httpx + TTL cache"]["availability"] <= 0.8
    assert report["dns-provider-blackholed"]["httpx"]["availability"] <= 0.8
    storm = report["backend-503-storm"]
    assert storm["outlast"]["backend_load"] <= 1.1
    assert storm["httpx + 3 naive retries"]["backend_load"] >= 1.5
    assert "[1/4]" in done.stderr  # progress while it runs
    assert picture.read_bytes().startswith(PNG)


def test_the_table_for_people() -> None:
    done = outlast("drill", "--duration", "8", "--scenario", "address-refusing")
    assert done.returncode == 0, done.stderr
    assert "available" in done.stdout
    assert "address-refusing" in done.stdout
    assert "outlast" in done.stdout


def test_bad_options_are_one_line_and_exit_2() -> None:
    for args in (("drill", "--duration", "1"), ("drill", "--scenario", "nope")):
        done = outlast(*args)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("outlast: ")
