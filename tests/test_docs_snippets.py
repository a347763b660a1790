"""Every fenced ``python`` block in README.md and docs/*.md runs as pasted.

Each block is an item of its own (``README.md:35``). A block runs in a fresh Python
process, the way a reader pastes it into a file, in a small offline world:

- every hostname the block names resolves to 127.0.0.1 through a fake DNS server on
  loopback (``OUTLAST_DNS_PROVIDERS``); the operating system's resolver knows no name
  but ``localhost`` (a ``sitecustomize`` module makes ``getaddrinfo`` fail for any
  other), so nothing a block does can reach beyond this machine; AWS has a region and
  dummy credentials;
- its top-level statements run one by one, and a statement that fails only because
  the network is off-limits here (a refused connection, a name no server knows, an
  unreachable Redis) is noted and the next statement runs: a later statement that
  needed its result then fails (``NameError``), so a placeholder cannot hide;
- a block that defines ``test_*`` functions is a pytest module and runs under pytest,
  with the outlast plugin's fixtures.

A block that is a fragment on purpose (it shows one call among others, or binds a
fixed port) is marked by the line ``<!-- snippet: fragment -->`` just above its fence;
it must still compile (top-level ``await`` allowed).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outlast.testing import DNSServer

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
FRAGMENT = "<!-- snippet: fragment -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
HOSTNAME = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|internal|test|org|net)\b")


@dataclasses.dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            line = text.count("\n", 0, match.start()) + 1
            found.append(Snippet(path, line, match.group(1), before == FRAGMENT))
    return found


ALL = snippets()

#: Run inside the child process: the block's statements one by one.
RUNNER = r"""
import ast, sys, traceback

OFFLINE = [OSError, ConnectionError, TimeoutError]
for module, name in [
    ("httpx", "TransportError"),
    ("outlast", "ResolveError"),
    ("outlast", "CircuitOpenError"),
    ("botocore.exceptions", "EndpointConnectionError"),
    ("botocore.exceptions", "ConnectTimeoutError"),
    ("redis.exceptions", "ConnectionError"),
]:
    try:
        OFFLINE.append(getattr(__import__(module, fromlist=[name]), name))
    except ImportError:
        pass
OFFLINE = tuple(OFFLINE)

path = sys.argv[1]
source = open(path).read()
tree = ast.parse(source, path)
namespace = {"__name__": "__main__", "__file__": path}
for statement in tree.body:
    code = compile(ast.Module([statement], []), path, "exec")
    try:
        exec(code, namespace)
    except OFFLINE as exc:
        print(f"offline at line {statement.lineno}: {type(exc).__name__}: {exc}", file=sys.stderr)
"""


#: Installed as ``sitecustomize`` in the child: the OS resolver is offline.
OFFLINE_RESOLVER = r"""
import ipaddress
import socket

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name == "localhost":
        return _getaddrinfo(host, *args, **kwargs)
    try:
        ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: offline (docs snippet test)") from None
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


@pytest.fixture(scope="module")
def world() -> Iterator[DNSServer]:
    with DNSServer() as server:
        yield server


def environment(server: DNSServer, code: str, site: Path) -> dict[str, str]:
    (site / "sitecustomize.py").write_text(OFFLINE_RESOLVER)
    for name in set(HOSTNAME.findall(code)):
        server.set(name, ["127.0.0.1"])
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OUTLAST_", "AWS_")) and k.lower() not in ("http_proxy", "https_proxy")
    }
    return {
        **base,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(site), base.get("PYTHONPATH")])),
        "OUTLAST_DNS_PROVIDERS": server.provider,
        "OUTLAST_DNS_TIMEOUT": "0.5",
        "OUTLAST_RETRY_ATTEMPTS": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "*",
    }


def is_pytest_module(code: str) -> bool:
    tree = ast.parse(code)
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for node in tree.body
    )


def test_there_are_snippets_and_few_fragments() -> None:
    assert len(ALL) >= 15
    fragments = [s.id for s in ALL if s.fragment]
    assert len(fragments) <= len(ALL) // 3, fragments


@pytest.mark.parametrize("snippet", ALL, ids=[s.id for s in ALL])
def test_the_snippet_runs_as_pasted(snippet: Snippet, world: DNSServer, tmp_path: Path) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if snippet.fragment else 0
    compile(snippet.code, snippet.id, "exec", flags=flags)  # a fragment must still parse
    if snippet.fragment:
        return
    site = tmp_path / "site"
    site.mkdir()
    env = environment(world, snippet.code, site)
    if is_pytest_module(snippet.code):
        module = tmp_path / "test_snippet.py"
        module.write_text(snippet.code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)]
    else:
        module = tmp_path / "snippet.py"
        module.write_text(snippet.code)
        runner = tmp_path / "run_snippet.py"
        runner.write_text(RUNNER)
        command = [sys.executable, str(runner), str(module)]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{snippet.id}\n{done.stdout}\n{done.stderr}"
