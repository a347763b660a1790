"""Every public exception round-trips through pickle (a worker process can raise it).

The walk finds every exception class in the public modules' ``__all__``; each must have
a sample here, so a new public error cannot slip in unpickled.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Iterator

import httpx
import pytest

MODULES = (
    "outlast",
    "outlast.dns",
    "outlast.policy",
    "outlast.http",
    "outlast.aws",
    "outlast.requests",
    "outlast.aiohttp",
    "outlast.fleet",
    "outlast.chaos",
    "outlast.observe",
    "outlast.testing",
)


def _public_errors() -> Iterator[tuple[str, type[BaseException]]]:
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an integration whose extra is not installed
            continue
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                yield f"{module_name}.{name}", value


def _samples() -> dict[str, Callable[[], BaseException]]:
    import outlast

    request = httpx.Request("GET", "https://api.example.test/v1/items?x=1")
    samples: dict[str, Callable[[], BaseException]] = {
        "outlast.OutlastError": lambda: outlast.OutlastError("boom"),
        "outlast.ConfigError": lambda: outlast.ConfigError("OUTLAST_X", "y", "a number"),
        "outlast.ResolveError": lambda: outlast.ResolveError("a.test", "NXDOMAIN"),
        "outlast.InvalidHostError": lambda: outlast.InvalidHostError("a..test", "empty label"),
        "outlast.CircuitOpenError": lambda: outlast.CircuitOpenError("svc", 1.5),
    }

    def http_open() -> BaseException:
        from outlast.http import CircuitOpenError

        return CircuitOpenError("https://api.example.test:443", 2.5, request=request)

    def aws_open() -> BaseException:
        from outlast.aws import CircuitOpenError

        return CircuitOpenError(
            name="dynamodb:us-east-1:h", retry_after=1.0, endpoint_url="https://h/"
        )

    def requests_open() -> BaseException:
        import requests

        from outlast.requests import CircuitOpenError

        prepared = requests.Request("GET", "https://api.example.test/v1").prepare()
        return CircuitOpenError("https://api.example.test:443", 2.5, request=prepared)

    def aiohttp_open() -> BaseException:
        from outlast.aiohttp import CircuitOpenError

        return CircuitOpenError("https://api.example.test:443", 2.5)

    samples["outlast.http.CircuitOpenError"] = http_open
    samples["outlast.aws.CircuitOpenError"] = aws_open
    samples["outlast.requests.CircuitOpenError"] = requests_open
    samples["outlast.aiohttp.CircuitOpenError"] = aiohttp_open
    return samples


ERRORS = sorted(dict(_public_errors()).items())


@pytest.mark.parametrize(("name", "cls"), ERRORS, ids=[n for n, _ in ERRORS])
def test_every_public_exception_round_trips_through_pickle(
    name: str, cls: type[BaseException]
) -> None:
    samples = _samples()
    assert name in samples, f"{name} is public: give it a sample here"
    error = samples[name]()
    assert type(error) is cls
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    for attribute in ("name", "retry_after", "host", "reason", "setting", "value", "expected"):
        if hasattr(error, attribute):
            assert getattr(copy, attribute) == getattr(error, attribute), attribute
    if isinstance(error, httpx.RequestError):
        assert isinstance(copy, httpx.RequestError)
        assert copy.request.url == error.request.url
        assert copy.request.method == error.request.method


def test_the_walk_found_the_errors_it_must() -> None:
    names = {n for n, _ in ERRORS}
    assert {"outlast.CircuitOpenError", "outlast.http.CircuitOpenError"} <= names


def test_an_http_circuit_error_comes_back_from_a_worker_process() -> None:
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        future = pool.submit(_raise_in_worker)
        from outlast.http import CircuitOpenError

        with pytest.raises(CircuitOpenError) as info:
            future.result(timeout=60)
    assert info.value.name == "https://w.test:443"
    assert info.value.request.url == "https://w.test/"


def _raise_in_worker() -> None:
    from outlast.http import CircuitOpenError

    raise CircuitOpenError(
        "https://w.test:443", 1.0, request=httpx.Request("GET", "https://w.test/")
    )
