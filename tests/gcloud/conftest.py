"""A Cloud Storage emulator (PyPI ``gcp-storage-emulator``) on loopback for the Google tests.

It runs as a subprocess: its in-process server thread is not a daemon and would keep
the test process alive.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))

from servers.bind import free_port


@pytest.fixture(autouse=True)
def _no_background_bucket_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-cloud-storage reads a bucket's metadata on a daemon thread of its own (for
    its telemetry attributes), with DEFAULT_RETRY: up to 120 s after a test ends. Off."""
    monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[int]:
    """A started Cloud Storage emulator on 127.0.0.1 (in memory); yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start"),
            *("--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # bounded by the deadline
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the Cloud Storage emulator did not start listening")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
