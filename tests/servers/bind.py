"""A real BIND 9 authoritative server for the tests, changed with real `nsupdate`.

`BindServer` writes a named.conf and a zone file for `outlast.test.` into a
temporary directory and runs `named -g` (foreground, logging to a file) on
127.0.0.1 at free high ports: plain DNS on UDP and TCP, and, unless turned off,
DNS-over-TLS and DNS-over-HTTPS (HTTP/2, as BIND 9.18 serves it) with a certificate
from a trustme CA. Records change while clients run through `nsupdate` against
`allow-update { 127.0.0.1; }`; each change returns once BIND answers with it.

Names given to `set`, `empty` and `delete` may be relative to the zone (``"api"``)
or absolute inside it (``"api.outlast.test"``, with or without the trailing dot).

If `named` or `nsupdate` is missing, `start()` raises `BindNotInstalled`: the tests
that need BIND fail loudly rather than skip.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import trustme

__all__ = ["ZONE", "BindNotInstalled", "BindServer", "free_port"]

ZONE = "outlast.test."
TLS_HOSTNAME = "dns.outlast.test"
DEFAULT_NEGATIVE_TTL = 2
DEFAULT_TTL = 60
INSTALL_HINT = "install BIND 9: apt-get install -y bind9 bind9-dnsutils"

_START_TIMEOUT = 10.0
_CHANGE_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0
_SBIN = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/local/sbin"])
_ZONE_NAME = dns.name.from_text(ZONE)

_Addresses: TypeAlias = dict[int, set[str]]
_Check: TypeAlias = Callable[[dns.rcode.Rcode, _Addresses], bool]
"""Whether (rcode, {rdtype: addresses}) is the answer awaited."""


class BindNotInstalled(RuntimeError):
    """`named` or `nsupdate` is not on PATH."""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for UDP and TCP on 127.0.0.1")


def _which(program: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + _SBIN
    found = shutil.which(program, path=path)
    if found is None:
        raise BindNotInstalled(f"{program!r} not found on PATH; {INSTALL_HINT}")
    return found


class BindServer:
    """BIND 9 (`named`) serving the zone `outlast.test.` on loopback.

    Use as a context manager or call `start()` and `close()`.
    """

    def __init__(
        self,
        *,
        negative_ttl: int = DEFAULT_NEGATIVE_TTL,
        tls: bool = True,
        ca: trustme.CA | None = None,
    ) -> None:
        self.negative_ttl = negative_ttl
        self._tls = tls
        self._ca = ca
        self._named = ""
        self._nsupdate = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dir = Path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._port = 0
        self._tls_port = 0
        self._doh_port = 0
        self.startup_seconds = 0.0
        """How long `start()` took, named launch to first answer."""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> BindServer:
        """Write the configuration, start named and wait until it answers."""
        if self._proc is not None:
            raise RuntimeError("BindServer already started")
        self._named = _which("named")
        self._nsupdate = _which("nsupdate")
        self._tmp = tempfile.TemporaryDirectory(prefix="outlast-bind-")
        self._dir = Path(self._tmp.name)
        try:
            if self._tls:
                self._write_certificate()
            self._write_zone()
            last_error: RuntimeError | None = None
            for _ in range(3):  # a port grabbed between free_port() and named: retry
                try:
                    self._launch()
                    return self
                except RuntimeError as exc:
                    last_error = exc
                    self._stop_process()
            assert last_error is not None
            raise last_error
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop named (terminate, then kill) and remove the temporary directory."""
        self._stop_process()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BindServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BindServer 127.0.0.1:{self._port} running={self.running}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """What named has logged so far (its stderr)."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")

    # -- where it listens ----------------------------------------------------------

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The plain DNS port (UDP and TCP)."""
        return self._port

    @property
    def provider(self) -> str:
        """An ``OUTLAST_DNS_PROVIDERS`` entry: ``udp://127.0.0.1:PORT``."""
        return f"udp://127.0.0.1:{self._port}"

    @property
    def tcp_provider(self) -> str:
        return f"tcp://127.0.0.1:{self._port}"

    @property
    def tls_port(self) -> int:
        self._need_tls()
        return self._tls_port

    @property
    def tls_provider(self) -> str:
        """DoT: ``tls://127.0.0.1:PORT`` (the certificate has this IP and TLS_HOSTNAME)."""
        return f"tls://127.0.0.1:{self.tls_port}"

    @property
    def doh_port(self) -> int:
        self._need_tls()
        return self._doh_port

    @property
    def doh_provider(self) -> str:
        """DoH (HTTP/2 only): ``https://127.0.0.1:PORT/dns-query``."""
        return f"https://127.0.0.1:{self.doh_port}/dns-query"

    @property
    def ca_file(self) -> str:
        """PEM file of the CA that signed the DoT/DoH certificate."""
        self._need_tls()
        return str(self._dir / "ca.pem")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    # -- changing records while clients run -------------------------------------------

    def fqdn(self, name: str) -> str:
        """*name* made absolute inside the zone (``"api"`` -> ``"api.outlast.test."``)."""
        absolute = dns.name.from_text(name.rstrip(".") + ".")
        if absolute.is_subdomain(_ZONE_NAME):
            return absolute.to_text()
        return dns.name.from_text(name.rstrip("."), origin=_ZONE_NAME).to_text()

    def set(self, name: str, addresses: Iterable[str], ttl: int = DEFAULT_TTL) -> None:
        """Replace *name*'s A and AAAA records with *addresses* (IPv4 and IPv6)."""
        fqdn = self.fqdn(name)
        want: _Addresses = {dns.rdatatype.A: builtins.set(), dns.rdatatype.AAAA: builtins.set()}
        for text in addresses:
            ip = ipaddress.ip_address(text)
            want[dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA].add(str(ip))
        lines = [f"update delete {fqdn} {t}" for t in ("A", "AAAA", "TXT")]
        lines += [f"update add {fqdn} {ttl} A {a}" for a in sorted(want[dns.rdatatype.A])]
        lines += [f"update add {fqdn} {ttl} AAAA {a}" for a in sorted(want[dns.rdatatype.AAAA])]
        if not want[dns.rdatatype.A] and not want[dns.rdatatype.AAAA]:
            lines.append(f'update add {fqdn} {ttl} TXT "outlast: no addresses"')
        self._nsupdate_send(lines)
        self._wait_until(
            fqdn,
            lambda rcode, got: rcode == dns.rcode.NOERROR and got == want,
            f"{fqdn} -> {sorted(want[dns.rdatatype.A] | want[dns.rdatatype.AAAA])}",
        )

    def empty(self, name: str) -> None:
        """Delete *name*'s addresses but keep the name (a TXT record): NOERROR/NODATA."""
        fqdn = self.fqdn(name)
        lines = [f"update delete {fqdn} {t}" for t in ("A", "AAAA", "TXT")]
        lines.append(f'update add {fqdn} {DEFAULT_TTL} TXT "outlast: emptied"')
        self._nsupdate_send(lines)
        self._wait_until(
            fqdn,
            lambda rcode, got: rcode == dns.rcode.NOERROR and not any(got.values()),
            f"{fqdn} empty (NODATA)",
        )

    def delete(self, name: str) -> None:
        """Remove *name* entirely: NXDOMAIN."""
        fqdn = self.fqdn(name)
        self._nsupdate_send([f"update delete {fqdn}"])
        self._wait_until(fqdn, lambda rcode, got: rcode == dns.rcode.NXDOMAIN, f"{fqdn} NXDOMAIN")

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
        """Ask BIND directly (no cache in between) over UDP or TCP."""
        q = dns.message.make_query(self.fqdn(name), rdtype)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self._port, timeout=2.0)
        return dns.query.udp(q, "127.0.0.1", port=self._port, timeout=2.0)

    # -- internals -------------------------------------------------------------------

    def _need_tls(self) -> None:
        if not self._tls:
            raise RuntimeError("this BindServer was started with tls=False")

    def _write_certificate(self) -> None:
        ca = self._ca if self._ca is not None else trustme.CA()
        cert = ca.issue_cert("127.0.0.1", TLS_HOSTNAME)
        ca.cert_pem.write_to_path(str(self._dir / "ca.pem"))
        cert.private_key_pem.write_to_path(str(self._dir / "server.key"))
        with (self._dir / "server.pem").open("wb") as f:
            for pem in cert.cert_chain_pems:
                f.write(pem.bytes())

    def _write_zone(self) -> None:
        n = self.negative_ttl
        (self._dir / "outlast.test.zone").write_text(
            f"$TTL {DEFAULT_TTL}\n"
            f"@ {n} IN SOA ns.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 {n}\n"
            f"@ IN NS ns.{ZONE}\n"
            "ns IN A 127.0.0.1\n"
        )

    def _write_conf(self) -> Path:
        d = self._dir
        tls_blocks = listen_tls = ""
        if self._tls:
            tls_blocks = (
                f'tls outlast-tls {{ key-file "{d}/server.key"; cert-file "{d}/server.pem"; }};\n'
                'http outlast-http { endpoints { "/dns-query"; }; };\n'
            )
            listen_tls = (
                f"  listen-on port {self._tls_port} tls outlast-tls {{ 127.0.0.1; }};\n"
                f"  listen-on port {self._doh_port} tls outlast-tls http outlast-http"
                " { 127.0.0.1; };\n"
            )
        conf = d / "named.conf"
        conf.write_text(
            tls_blocks + "options {\n"
            f'  directory "{d}";\n'
            "  pid-file none;\n"
            "  session-keyfile none;\n"
            f"  listen-on port {self._port} {{ 127.0.0.1; }};\n"
            + listen_tls
            + "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  notify no;\n"
            "  dnssec-validation no;\n"
            "};\n"
            "controls { };\n"
            f'zone "{ZONE}" {{\n'
            "  type primary;\n"
            f'  file "{d}/outlast.test.zone";\n'
            "  allow-update { 127.0.0.1; };\n"
            "};\n"
        )
        return conf

    def _launch(self) -> None:
        self._port = free_port()
        if self._tls:
            self._tls_port = free_port()
            self._doh_port = free_port()
        conf = self._write_conf()
        self._log = self._dir / "named.log"
        began = time.monotonic()
        with self._log.open("wb") as log:
            # -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker thread
            # (enough for tests, and quicker to start). Root is fine: no -u needed.
            self._proc = subprocess.Popen(
                [self._named, "-g", "-4", "-n", "1", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = began + _START_TIMEOUT
        probe = dns.message.make_query(ZONE, "SOA")
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"named exited with status {self._proc.returncode} at start-up; "
                    f"its log:\n{self.log()}"
                )
            try:
                reply = dns.query.udp(probe, "127.0.0.1", port=self._port, timeout=0.02)
            except (dns.exception.Timeout, OSError):
                reply = None
            if reply is not None and reply.rcode() == dns.rcode.NOERROR and reply.answer:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"named did not answer on 127.0.0.1:{self._port} within "
                    f"{_START_TIMEOUT:.0f} s; its log:\n{self.log()}"
                )
            time.sleep(0.01)
        if self._tls:
            for port in (self._tls_port, self._doh_port):
                self._wait_listening(port, deadline)
        self.startup_seconds = time.monotonic() - began

    def _wait_listening(self, port: int, deadline: float) -> None:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"named is not listening on 127.0.0.1:{port}; its log:\n{self.log()}"
                    ) from None
                time.sleep(0.01)

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _nsupdate_send(self, lines: list[str]) -> None:
        if not self.running:
            raise RuntimeError(f"named is not running; its log:\n{self.log()}")
        script = "\n".join([f"server 127.0.0.1 {self._port}", f"zone {ZONE}", *lines, "send", ""])
        try:
            done = subprocess.run(
                [self._nsupdate, "-t", "5"],
                input=script.encode(),
                capture_output=True,
                timeout=_CHANGE_TIMEOUT + 5,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"nsupdate timed out; script:\n{script}") from exc
        if done.returncode != 0:
            raise RuntimeError(
                f"nsupdate failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
                f"\nscript:\n{script}"
            )

    def _wait_until(
        self,
        fqdn: str,
        ok: _Check,
        what: str,
    ) -> None:
        deadline = time.monotonic() + _CHANGE_TIMEOUT
        seen = "no answer"
        while True:
            with contextlib.suppress(dns.exception.Timeout, OSError):
                rcode, got = self._addresses(fqdn)
                if ok(rcode, got):
                    return
                seen = f"{dns.rcode.to_text(rcode)} {got}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"BIND never showed {what}; last seen: {seen}")
            time.sleep(0.02)

    def _addresses(self, fqdn: str) -> tuple[dns.rcode.Rcode, _Addresses]:
        got: _Addresses = {}
        rcode = dns.rcode.NOERROR
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            q = dns.message.make_query(fqdn, rdtype)
            reply = dns.query.udp(q, "127.0.0.1", port=self._port, timeout=1.0)
            rcode = reply.rcode()
            got[rdtype] = {rd.to_text() for rrset in reply.answer for rd in rrset}
        return rcode, got
