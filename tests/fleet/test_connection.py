"""The connection itself: the fixture's own failure, and rediss:// (TLS) to a real server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trustme

from outlast.dns import SharedAnswer
from outlast.fleet import Fleet

from .conftest import started
from .helpers import wait_for


def test_the_fixture_fails_with_advice_when_redis_server_is_missing() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        started(binary="/nonexistent/redis-server")


def test_rediss_shares_answers_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    server = started(tls=(str(cert), str(key), str(ca_file)), password="tls-secret")
    try:
        url = f"{server.url}?ssl_ca_certs={ca_file}"
        assert url.startswith("rediss://")
        with Fleet(url) as fleet:
            now = time.time()
            fleet.publish(SharedAnswer("tls.outlast.test", ("127.0.0.3",), 30.0, now, now, "t"))
            assert wait_for(lambda: fleet.lookup("tls.outlast.test") is not None, 5)
            assert fleet.available
            assert "tls-secret" not in repr(fleet)
        untrusted = f"{server.url}"  # no CA given: the system store does not trust it
        with Fleet(untrusted) as fleet:
            assert fleet.lookup("tls.outlast.test") is None
            assert not fleet.available
    finally:
        server.close()


def test_connect_never_blocks_an_event_loop(redis_server) -> None:
    import asyncio

    from outlast.fleet import connect

    async def build() -> float:
        started = time.monotonic()
        connect(redis_server.url)
        return time.monotonic() - started

    redis_server.sleep(1.0)  # a first snapshot could not come for a second
    assert asyncio.run(build()) < 0.1
