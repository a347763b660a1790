"""A real redis-server (the Debian package) on a free loopback port, in a temp dir.

`RedisServer` starts one, can kill it (SIGKILL, as a crash), start it again on the same
port, and make it slow (``DEBUG SLEEP``, sent without waiting for the reply).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisNotInstalled", "RedisServer", "free_port"]

BINARY = "/usr/bin/redis-server"


class RedisNotInstalled(RuntimeError):
    """redis-server is missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; use as a context manager."""

    def __init__(
        self,
        *,
        password: str | None = None,
        binary: str = BINARY,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        if not Path(binary).exists():
            raise RedisNotInstalled(
                f"redis-server is not installed ({binary} missing): apt-get install redis-server"
            )
        self.binary = binary
        self.password = password
        self.tls = tls  # (cert, key, ca) files: serve TLS only
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="outlast-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", "0" if self.tls else str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--enable-debug-command", "local",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            cert, key, ca = self.tls
            args += ["--tls-port", str(self.port), "--tls-cert-file", cert]
            args += ["--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.dir / "redis.log"
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server exited: {text[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not start listening within 10 s")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        """Start again on the same port (empty: nothing was saved)."""
        self.kill()
        self.start()

    def command(self, *args: str, timeout: float = 5.0) -> bytes:
        """Send one command with a plain socket and return the raw reply's first line."""
        parts = ([b"AUTH", self.password.encode()],) if self.password else ()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            for part in [*parts, [a.encode() for a in args]]:
                sock.sendall(_encode(part))
                reply = sock.recv(65536)
        return reply

    def sleep(self, seconds: float) -> None:
        """Make the server unresponsive for ``seconds`` (``DEBUG SLEEP``); returns at once."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        if self.password:
            sock.sendall(_encode([b"AUTH", self.password.encode()]))
            sock.recv(1024)
        sock.sendall(_encode([b"DEBUG", b"SLEEP", str(seconds).encode()]))
        self._sleeper = sock  # closed by close(); the reply is not waited for
        deadline = time.monotonic() + 1.0  # return once the server really is asleep
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                probe.settimeout(0.05)
                probe.sendall(_encode([b"ECHO", b"awake?"]))  # NOAUTH also proves awake
                try:
                    probe.recv(1024)
                except TimeoutError:
                    return
            time.sleep(0.005)
        raise RuntimeError("redis-server did not go to sleep")

    def close(self) -> None:
        self.kill()
        sleeper = getattr(self, "_sleeper", None)
        if sleeper is not None:
            sleeper.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode(parts: list[bytes]) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        out.append(f"${len(part)}\r\n".encode() + part + b"\r\n")
    return b"".join(out)
