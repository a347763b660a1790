"""The public surface: exactly what __all__ promises, and nothing private leaks."""

from __future__ import annotations

import subprocess
import sys
import types

import outlast
import outlast.dns


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(outlast) if not name.startswith(("_", "@"))}
    modules = {n for n in public if isinstance(getattr(outlast, n), types.ModuleType)}
    assert set(outlast.__all__) - {"__version__"} == public - modules
    assert outlast.__all__ == sorted(outlast.__all__)


def test_dns_all_is_sorted_and_complete() -> None:
    public = {n for n in vars(outlast.dns) if not n.startswith(("_", "@")) and n != "annotations"}
    assert set(outlast.dns.__all__) == public
    assert outlast.dns.__all__ == sorted(outlast.dns.__all__)


def test_error_tree() -> None:
    assert issubclass(outlast.ConfigError, outlast.OutlastError)
    assert issubclass(outlast.ResolveError, outlast.OutlastError)
    assert issubclass(outlast.CircuitOpenError, outlast.OutlastError)
    assert issubclass(outlast.InvalidHostError, outlast.ResolveError)


def test_version_comes_from_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert outlast.__version__ == version("outlast")


def test_importing_outlast_imports_no_optional_integration() -> None:
    # redis and opentelemetry are installed here (test dependencies): pybreaker would
    # import redis, and redis opentelemetry, at load time (outlast.policy._pybreaker).
    heavy = ("boto3", "botocore", "redis", "opentelemetry", "prometheus_client", "trio")
    code = (
        "import sys, outlast, outlast.dns, outlast.policy\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_survive_pickling() -> None:
    import pickle

    errors = [
        outlast.ConfigError("OUTLAST_DNS_TIMEOUT", "soon", "a number of seconds"),
        outlast.ResolveError("api.example", "NXDOMAIN"),
        outlast.InvalidHostError("a..b", "empty label"),
        outlast.CircuitOpenError("https://api.example:443", 2.5),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
