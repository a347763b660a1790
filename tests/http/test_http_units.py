"""The logic no socket is needed to prove: ordering, ejection, timeout slicing, classifying.

Plus the public face of outlast.http.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import outlast.http
from outlast._dial import (
    MIN_SLICE,
    AllAddressesFailed,
    Outliers,
    Report,
    dial_serial,
    interleave,
    plan,
)
from outlast._events import Emitter
from outlast._exceptions import ConfigError
from outlast.http import classify_error, classify_result, replayable, retry_safe
from outlast.policy import Decision, Outcome

SRC = Path(outlast.http.__file__).parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _report(outliers: Outliers) -> Report:
    return Report(Emitter(logging.getLogger("test")), "h.test", outliers)


def test_interleave_alternates_families_from_the_first() -> None:
    assert interleave(["::1", "::2", "1.1.1.1", "2.2.2.2", "3.3.3.3"]) == [
        "::1",
        "1.1.1.1",
        "::2",
        "2.2.2.2",
        "3.3.3.3",
    ]
    assert interleave(["1.1.1.1", "::1", "::2"]) == ["1.1.1.1", "::1", "::2"]
    assert interleave(["1.1.1.1", "2.2.2.2"]) == ["1.1.1.1", "2.2.2.2"]


def test_ejected_addresses_go_last_for_the_window_then_return() -> None:
    clock = FakeClock()
    outliers = Outliers(eject_for=10, clock=clock)
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert outliers.failed("10.0.0.1", 443) is True
    assert outliers.failed("10.0.0.1", 443) is False  # already ejected
    assert plan(addresses, 443, outliers) == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert plan(addresses, 80, outliers) == addresses  # per port
    clock.now += 10.01
    assert plan(addresses, 443, outliers) == addresses


def test_every_address_ejected_still_leaves_them_all_to_dial() -> None:
    outliers = Outliers(eject_for=10, clock=FakeClock())
    for address in ("10.0.0.1", "10.0.0.2"):
        outliers.failed(address, 443)
    assert plan(["10.0.0.1", "10.0.0.2"], 443, outliers) == ["10.0.0.1", "10.0.0.2"]


def test_success_restores_an_ejected_address() -> None:
    outliers = Outliers(eject_for=10, clock=FakeClock())
    outliers.failed("10.0.0.1", 443)
    assert outliers.succeeded("10.0.0.1", 443) is True
    assert plan(["10.0.0.1", "10.0.0.2"], 443, outliers) == ["10.0.0.1", "10.0.0.2"]


def test_the_connect_timeout_is_shared_go_style() -> None:
    clock = FakeClock()
    given: list[tuple[str, float | None]] = []

    def connect(address: str, budget: float | None) -> str:
        given.append((address, budget))
        assert budget is not None
        clock.now += budget  # each address uses all it was given, then times out
        raise TimeoutError("silent")

    outliers = Outliers(clock=clock)
    with pytest.raises(AllAddressesFailed) as info:
        dial_serial(
            ["a", "b", "c"], 443, 9.0, connect, (TimeoutError,), _report(outliers), clock=clock
        )
    assert given == [("a", 3.0), ("b", 3.0), ("c", 3.0)]
    assert info.value.timed_out
    given.clear()
    with pytest.raises(AllAddressesFailed):
        dial_serial(
            ["a", "b", "c"], 443, 3.0, connect, (TimeoutError,), _report(outliers), clock=clock
        )
    # Too little for three: the first gets the floor, the second what is left.
    assert given == [("a", MIN_SLICE), ("b", 1.0)]


def test_dial_serial_returns_the_first_success_and_lets_other_errors_through() -> None:
    outliers = Outliers(clock=FakeClock())

    def connect(address: str, budget: float | None) -> str:
        if address == "a":
            raise ConnectionRefusedError("refused")
        if address == "bug":
            raise KeyError("not a dial failure")
        return address

    assert dial_serial(["a", "b"], 1, None, connect, (OSError,), _report(outliers)) == "b"
    with pytest.raises(KeyError):
        dial_serial(["bug", "b"], 1, None, connect, (OSError,), _report(outliers))


def _request(method: str = "GET", **kwargs: object) -> httpx.Request:
    return httpx.Request(method, "https://api.test/", **kwargs)  # type: ignore[arg-type]


def _gen() -> Iterator[bytes]:
    yield b"x"


def test_retry_safe_needs_an_idempotent_method_or_key_and_a_replayable_body() -> None:
    assert retry_safe(_request("GET"))
    assert retry_safe(_request("DELETE"))
    assert not retry_safe(_request("POST", content=b"x"))
    assert retry_safe(_request("POST", content=b"x", headers={"Idempotency-Key": "1"}))
    assert not replayable(_request("PUT", content=_gen()))
    assert not retry_safe(_request("PUT", content=_gen()))


def _error(kind: type[httpx.RequestError], request: httpx.Request) -> Outcome:
    return Outcome(1, error=kind("boom", request=request))


def test_classify_error_by_phase() -> None:
    post = _request("POST", content=b"x")
    assert classify_error(_error(httpx.ConnectError, post)) == Decision(retry=True, unwell=True)
    assert classify_error(_error(httpx.ConnectTimeout, post)).retry
    assert not classify_error(_error(httpx.ReadTimeout, post)).retry
    assert classify_error(_error(httpx.ReadTimeout, post)).unwell
    assert classify_error(_error(httpx.RemoteProtocolError, _request("GET"))).retry
    assert classify_error(_error(httpx.PoolTimeout, _request("GET"))) == Decision.NEUTRAL


def _response(status: int, request: httpx.Request, **headers: str) -> Outcome:
    return Outcome(1, result=httpx.Response(status, headers=headers, request=request))


def test_classify_result_statuses_and_retry_after() -> None:
    get = _request("GET")
    assert classify_result(_response(200, get)) == Decision.ACCEPT
    assert classify_result(_response(404, get)) == Decision.ACCEPT
    assert classify_result(_response(500, get)) == Decision(retry=True, unwell=True)
    assert classify_result(_response(507, get)) == Decision(unwell=True)
    assert classify_result(_response(501, get)) == Decision.ACCEPT
    assert classify_result(_response(503, get, **{"retry-after": "2"})) == Decision(
        retry=True, unwell=True, delay=2.0
    )
    assert classify_result(_response(429, get, **{"retry-after": "1"})) == Decision(
        retry=True, unwell=False, delay=1.0
    )
    assert classify_result(_response(502, _request("POST", content=b"x"))) == Decision(
        retry=False, unwell=True
    )


def test_http_all_is_sorted_and_complete() -> None:
    public = {n for n in vars(outlast.http) if not n.startswith(("_", "@")) and n != "annotations"}
    assert set(outlast.http.__all__) == public
    assert outlast.http.__all__ == sorted(outlast.http.__all__)


def test_dial_module_imports_no_httpx() -> None:
    imported: set[str] = set()
    for path in (SRC.parent / "_dial").glob("*.py"):
        imported |= _top_imports(ast.parse(path.read_text()))
    assert not imported & {"httpx", "httpcore", "anyio"}


def _top_imports(tree: ast.Module) -> set[str]:
    return {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }


def test_outlast_http_imports_no_aws() -> None:
    code = (
        "import sys, outlast.http\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'outlast.aws') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("bad", [float("nan"), -1, True, "30"])
def test_outliers_refuse_an_ejection_time_that_is_not_seconds(bad: object) -> None:
    with pytest.raises(ConfigError, match="eject_for"):
        Outliers(eject_for=bad)  # type: ignore[arg-type]
