"""The drill's boto3 scenario: moto's DynamoDB on loopback, a plain boto3 client and outlast.aws.

Needs boto3 and moto (with its server); :func:`missing` says why the scenario cannot
run otherwise. Nothing here asks anything of the machine's own resolver or of AWS:

- moto's server runs in this process on 127.0.0.1 (:class:`Moto`); a WSGI middleware
  counts the calls reaching it per client (the backend load) and closes every
  connection after its response, as the drill's HTTP service does, so that every call
  needs a new connection and therefore a fresh name lookup;
- both clients use fake credentials, region us-east-1, an explicit ``endpoint_url`` on
  a drill name, no proxies (botocore would otherwise take them from the environment),
  and ``AWS_EC2_METADATA_DISABLED``;
- the plain client (:class:`Boto3Client`) resolves with dnspython's stub resolver at
  the drill's DNS server with no cache, installed on its own HTTP session only, and
  keeps botocore's default retries (their mode and attempts depend on the installed
  botocore: :func:`baseline` says which, and the drill prints it on stderr); the
  outlast one (:class:`OutlastBoto3Client`) is
  ``outlast.aws.wrap`` with a resolver on the same DNS server.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import dns.exception
import dns.resolver

from outlast.cli._drill._clients import SLO, DrillClient, Result
from outlast.cli._drill._service import CLIENT_HEADER
from outlast.dns import Resolver

__all__ = ["REGION", "TABLE", "Boto3Client", "Moto", "OutlastBoto3Client", "baseline", "missing"]

REGION = "us-east-1"
TABLE = "drill"
KEY = {"id": {"S": "outlast"}}

_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def missing() -> str | None:
    """Why the boto3 scenario cannot run here, or None when it can."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"needs boto3 and moto[server] ({exc.name} is not installed)"
    return None


class _Counting:
    """WSGI middleware: counts calls per ``X-Drill-Client`` and closes every connection."""

    def __init__(self, app: _WSGIApp, hits: Counter[str]) -> None:
        self._app = app
        self._hits = hits

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        self._hits[environ.get("HTTP_" + CLIENT_HEADER.upper().replace("-", "_"), "?")] += 1

        def closing(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, [*kept, ("Connection", "close")], *rest)

        return self._app(environ, closing)


class Moto:
    """moto's server in this process on 127.0.0.1, with a table holding one item."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
        self.hits: Counter[str] = Counter()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        wsgi = self._server._server  # werkzeug's server, to put the middleware in front
        assert wsgi is not None
        wsgi.app = _Counting(wsgi.app, self.hits)
        self.port = self._server.get_host_and_port()[1]
        setup = _new_client("setup", f"http://127.0.0.1:{self.port}")
        setup.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        setup.put_item(TableName=TABLE, Item={**KEY, "says": {"S": "still here"}})
        setup.close()

    def close(self) -> None:
        self._server.stop()


def _session() -> Any:
    """A boto3 session with fake credentials that never looks for any elsewhere."""
    import boto3

    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    return boto3.session.Session(
        aws_access_key_id="drill",
        aws_secret_access_key="drill",
        region_name=REGION,
    )


def _new_client(name: str, endpoint_url: str) -> Any:
    """A DynamoDB client at ``endpoint_url`` whose every request names the drill client."""
    from botocore.config import Config

    client = _session().client(
        "dynamodb",
        endpoint_url=endpoint_url,
        config=Config(proxies={}),  # not the environment's proxies: the drill stays local
    )

    def identify(request: Any, **_: Any) -> None:
        request.headers[CLIENT_HEADER] = name

    client.meta.events.register("before-send.dynamodb", identify)
    return client


def _connect_timeout(timeout: object) -> float | None:
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout
    return socket.getdefaulttimeout()  # urllib3's "default" sentinel


def _install_dnspython(client: Any, servers: list[tuple[str, int]]) -> None:
    """Make ``client``'s connections look names up with dnspython at ``servers``, no cache.

    The addresses are tried in order, as ``socket.create_connection`` does. Only this
    client's HTTP session changes (the pool classes of its own pool manager).
    """
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [address for address, _ in servers]
    resolver.nameserver_ports = dict(servers)

    def new_conn(conn: Any) -> socket.socket:
        try:
            answer = resolver.resolve(conn.host, "A")
        except dns.exception.DNSException as exc:
            reason = socket.gaierror(socket.EAI_NONAME, str(exc))
            raise NameResolutionError(conn.host, conn, reason) from exc
        error: OSError = OSError("no address")
        for rdata in answer:
            try:
                sock = socket.create_connection(
                    (rdata.address, conn.port),
                    timeout=_connect_timeout(conn.timeout),
                    source_address=conn.source_address,
                )
            except OSError as exc:
                error = exc
                continue
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            return sock
        raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")

    attrs = {"_new_conn": new_conn}
    http_conn = type("DrillHTTPConnection", (AWSHTTPConnection,), attrs)
    https_conn = type("DrillHTTPSConnection", (AWSHTTPSConnection,), attrs)
    session = client._endpoint.http_session
    classes = session._pool_classes_by_scheme
    classes["http"] = type("DrillPool", (AWSHTTPConnectionPool,), {"ConnectionCls": http_conn})
    classes["https"] = type(
        "DrillHTTPSPool", (AWSHTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )
    session._manager.pool_classes_by_scheme = classes
    session._manager.clear()


class _Boto3DrillClient(DrillClient):
    """A drill client making ``get_item`` calls; the URL it is given is ignored."""

    def __init__(self, name: str, client: Any, moto: Moto) -> None:  # boto3's, not httpx
        self.name = name
        self.backend = moto.hits
        self._boto3 = client

    def get(self, url: str) -> Result:
        from botocore.exceptions import BotoCoreError, ClientError

        started = time.monotonic()
        ok = False
        try:
            item = self._boto3.get_item(TableName=TABLE, Key=KEY)
            ok = "Item" in item
        except (BotoCoreError, ClientError):
            pass
        latency = time.monotonic() - started
        return Result(started, ok and latency <= SLO, latency, None)

    def close(self) -> None:
        self._boto3.close()


def _max_attempts(client: Any) -> int | None:
    """The attempts per call botocore's retry handler on ``client`` allows (None: unknown)."""
    name = client.meta.service_model.service_id.hyphenize()
    item = client.meta.events._emitter._unique_id_handlers.get(f"retry-config-{name}")
    handler = item.get("handler") if isinstance(item, dict) else None
    owner = getattr(handler, "__self__", handler)
    legacy = getattr(getattr(owner, "_checker", None), "_max_attempts", None)  # retryhandler
    if isinstance(legacy, int):
        return legacy
    policy = getattr(owner, "_retry_policy", None)  # retries.standard (standard, adaptive)
    checker = getattr(getattr(policy, "_retry_checker", None), "_max_attempts_checker", None)
    standard = getattr(checker, "_max_attempts", None)
    return standard if isinstance(standard, int) else None


def baseline(client: Any) -> str:
    """What the plain boto3 client retries with: botocore's version, retry mode, attempts."""
    import botocore

    mode = (client.meta.config.retries or {}).get("mode", "unknown")
    attempts = _max_attempts(client)
    most = "an unknown number of" if attempts is None else f"up to {attempts}"
    service = client.meta.service_model.service_id
    return f"botocore {botocore.__version__}, {mode} retry mode, {most} attempts per {service} call"


class Boto3Client(_Boto3DrillClient):
    """Plain boto3: dnspython's stub resolver with no cache, botocore's default retries.

    ``baseline`` says which botocore and retry mode that is (it changes between
    releases); the drill prints it.
    """

    def __init__(self, name: str, moto: Moto, host: str, servers: list[tuple[str, int]]) -> None:
        client = _new_client(name, f"http://{host}:{moto.port}")
        _install_dnspython(client, servers)
        self.baseline = baseline(client)
        print(f"drill: the {name} client: {self.baseline}", file=sys.stderr)
        super().__init__(name, client, moto)


class OutlastBoto3Client(_Boto3DrillClient):
    """``outlast.aws.wrap`` with the drill's DNS server as provider, every other default."""

    def __init__(self, name: str, moto: Moto, host: str, providers: list[str]) -> None:
        from outlast.aws import classify_error, classify_result, wrap
        from outlast.policy import Policy

        self._resolver = Resolver(providers=providers)
        policy = Policy.from_env({}, classify_error=classify_error, classify_result=classify_result)
        client = _new_client(name, f"http://{host}:{moto.port}")
        super().__init__(name, wrap(client, resolver=self._resolver, policy=policy), moto)

    def close(self) -> None:
        super().close()
        self._resolver.close()
