"""Azurite (the Azure Storage emulator, npm package ``azurite``) on loopback for the Azure tests.

``.ci/run`` installs it into ``.ci/node_modules``; ``AZURITE_BIN`` names another
``azurite-blob`` executable. The fixture fails, never skips, when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))

from azurite_account import TLS_NAME

_LISTENING = re.compile(r"listens on https?://127\.0\.0\.1:(\d+)")


def _executable() -> str:
    named = os.environ.get("AZURITE_BIN")
    if named:
        return named
    return str(
        Path(__file__).resolve().parents[2] / ".ci" / "node_modules" / ".bin" / "azurite-blob"
    )


@contextlib.contextmanager
def _azurite(location: Path, *extra: str) -> Iterator[int]:
    executable = _executable()
    if not os.path.exists(executable):
        pytest.fail(f"Azurite is not installed at {executable}: run .ci/run's npm step")
    process = subprocess.Popen(
        [
            executable,
            "--blobHost", "127.0.0.1",
            "--blobPort", "0",
            "--location", str(location),
            "--disableTelemetry",  # it would reach the network otherwise
            "--disableProductStyleUrl",  # dotted host names are not account names
            "--loose",
            "--skipApiVersionCheck",  # the SDK may be newer than the emulator
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = None
        for _ in range(50):  # bounded: a few lines before it listens
            line = process.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
                break
        if port is None:
            pytest.fail("Azurite did not start listening")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A started Azurite blob service on 127.0.0.1 (HTTP); yields its port."""
    with _azurite(tmp_path_factory.mktemp("azurite")) as port:
        yield port


@pytest.fixture(scope="module")
def azurite_tls(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[int]:
    """Azurite over HTTPS with a certificate for ``TLS_NAME`` from ``ca``; yields its port."""
    folder = tmp_path_factory.mktemp("azurite-tls")
    leaf = ca.issue_cert(TLS_NAME)
    leaf.private_key_pem.write_to_path(str(folder / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    extra = ("--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem"))
    with _azurite(folder / "data", *extra) as port:
        yield port
