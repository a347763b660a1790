"""Run Python code where the system resolver asks a DNS server the code controls.

`run("module:function", timeout=..., **kwargs)` starts a fresh Python process under
``unshare --net --mount --propagation private``: a network namespace of its own (only a
loopback interface, which the child brings up; nothing beyond it is reachable) and a
mount namespace of its own, in which a temporary ``resolv.conf`` (``nameserver
127.0.0.1``, nothing else: glibc's defaults) is bind-mounted over ``/etc/resolv.conf``.
(If the host's ``/etc/nsswitch.conf`` sends host names anywhere but ``files dns``, such
as systemd-resolved's ``resolve``, a copy saying ``hosts: files dns`` is bind-mounted
over it the same way.) A `outlast.testing.DNSServer` answers on 127.0.0.1:53 inside the
namespace, so ``getaddrinfo`` in that process, and in every process it starts, resolves
through it exactly as a production host resolves through its nameserver: no hook, no
patch. The function is called there as ``function(Namespace(dns, tmp), **kwargs)`` and
its JSON-serialisable return value is returned by `run`.

Nothing changes on the host: the bind mount exists only in the child's mount
namespace (private propagation), files live in a temporary directory, and the child's
whole process group (servers and emulators it started included) is killed when it
returns or times out. `unavailable()` says why namespaces cannot be made (not root,
no ``unshare``, a container that forbids it), for tests to skip with.

Used by ``tests/servers/test_system_resolver_replays.py`` and by ``benchmarks/``; it imports
nothing from pytest. Needs Linux, util-linux's ``unshare`` and root (or CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

__all__ = ["NAMESERVER", "Namespace", "run", "unavailable"]

NAMESERVER = "127.0.0.1"
"""The address the namespace's ``resolv.conf`` names; its DNS server listens there on 53."""

RESOLV_CONF = f"nameserver {NAMESERVER}\n"

_UNSHARE = ("--net", "--mount", "--propagation", "private")
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_MS_BIND = 4096
_PR_SET_PDEATHSIG = 1
_TESTS = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Namespace:
    """What the function run inside the namespace is given."""

    dns: Any
    """The started `outlast.testing.DNSServer` on 127.0.0.1:53 (the system's nameserver)."""
    tmp: Path
    """A temporary directory of the run (removed afterwards)."""


@functools.cache
def unavailable() -> str | None:
    """Why `run` cannot work here, or None when it can (checked once per process)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, not {sys.platform}"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "`unshare` (util-linux) is not installed"
    try:
        done = subprocess.run(
            [unshare, *_UNSHARE, "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare {' '.join(_UNSHARE)}` could not run: {exc}"
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit status {done.returncode}"
        return f"`unshare {' '.join(_UNSHARE)}` is not permitted here (needs root): {why}"
    return None


def forbidden() -> str | None:
    """Why the namespace tests should skip: this platform forbids namespaces (not Linux,
    or ``unshare`` not permitted). A missing ``unshare`` is not a reason: util-linux is a
    package the README's command installs, so those tests fail and say so."""
    if sys.platform.startswith("linux") and shutil.which("unshare") is None:
        return None
    return unavailable()


def _search_path() -> str:
    """PYTHONPATH for the child: this outlast, the tests' helpers, then the caller's."""
    import outlast

    source = Path(outlast.__file__).resolve().parents[1]
    entries = [str(source), str(_TESTS)]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(entries))


def run(target: str, /, *, timeout: float, **kwargs: Any) -> Any:
    """Call ``module:function`` in a new network and mount namespace; return its result.

    *kwargs* and the result must be JSON-serialisable. Raises RuntimeError (with the
    child's output) if the function raised, the namespace could not be set up, or it
    ran past *timeout* seconds; everything the child started is killed either way.
    """
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="outlast-netns-") as folder:
        tmp = Path(folder)
        (tmp / "resolv.conf").write_text(RESOLV_CONF)
        (tmp / "request.json").write_text(json.dumps({"target": target, "kwargs": kwargs}))
        env = {**os.environ, "PYTHONPATH": _search_path()}
        unshare = shutil.which("unshare") or "unshare"
        with (tmp / "child.log").open("wb") as log:
            child = subprocess.Popen(
                [unshare, *_UNSHARE, sys.executable, str(Path(__file__).resolve()), folder],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: killed as one below
            )
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        output = (tmp / "child.log").read_text(errors="replace")[-6000:]
        result = tmp / "result.json"
        if not result.exists():
            raise RuntimeError(
                f"{target} in a network namespace gave no result (exit status "
                f"{child.returncode}; timeout {timeout:g} s); its output:\n{output}"
            )
        answer = json.loads(result.read_text())
        if "error" in answer:
            raise RuntimeError(f"{target} raised in the namespace:\n{answer['error']}\n{output}")
        return answer["result"]


# -- inside the namespace ---------------------------------------------------------------


def _loopback_up() -> None:
    """``ip link set lo up``, without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _libc_call(name: str, *args: Any) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _hosts_through_dns(tmp: Path) -> None:
    """Make ``hosts: files dns`` the namespace's name-service order if it is not already.

    Debian's default is that. A host whose nsswitch.conf sends names elsewhere first
    (``resolve`` for systemd-resolved, ``mdns4_minimal``) would answer through a Unix
    socket the network namespace does not cut off; inside the namespace only, its
    ``hosts:`` line becomes ``files dns`` so that resolv.conf decides.
    """
    path = Path("/etc/nsswitch.conf")
    if not path.exists():
        return  # glibc's built-in default: files, then dns
    lines = path.read_text().splitlines()
    hosts = [i for i, line in enumerate(lines) if line.split(":")[0].strip() == "hosts"]
    if all(lines[i].split(":", 1)[1].split() == ["files", "dns"] for i in hosts):
        return
    for i in hosts:
        lines[i] = "hosts: files dns"
    (tmp / "nsswitch.conf").write_text("\n".join(lines) + "\n")
    mine = str(tmp / "nsswitch.conf").encode()
    _libc_call("mount", mine, str(path).encode(), None, _MS_BIND, None)


def _child(folder: str) -> None:
    tmp = Path(folder)
    request = json.loads((tmp / "request.json").read_text())
    try:
        _libc_call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the parent
        _loopback_up()
        conf = str(tmp / "resolv.conf").encode()
        _libc_call("mount", conf, b"/etc/resolv.conf", None, _MS_BIND, None)
        if Path("/etc/resolv.conf").read_text() != RESOLV_CONF:
            raise RuntimeError("the namespace's /etc/resolv.conf is not the one mounted")
        _hosts_through_dns(tmp)
        from outlast.testing import DNSServer

        module, _, function = request["target"].partition(":")
        call = getattr(importlib.import_module(module), function)
        work = tmp / "work"
        work.mkdir()
        with DNSServer(address=NAMESERVER, port=53) as dns:
            answer: dict[str, Any] = {"result": call(Namespace(dns, work), **request["kwargs"])}
    except BaseException:
        answer = {"error": traceback.format_exc()}
    (tmp / "result.json").write_text(json.dumps(answer))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads a scenario left behind (a call still retrying) do not hold it up


if __name__ == "__main__":
    _child(sys.argv[1])
