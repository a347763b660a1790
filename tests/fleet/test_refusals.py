"""A Redis that refuses what the fleet needs is unavailable, says so once, and logs little."""

from __future__ import annotations

import logging
import time

import pytest
import redis

import outlast
from outlast.dns import SharedAnswer
from outlast.fleet import Fleet, FleetRestored, FleetUnavailable

from .helpers import wait_for
from .redis_server import RedisServer


def acl_user(server: RedisServer, name: str, *rules: str) -> str:
    """Create ``name`` (password ``pw``) with ``rules``; its URL."""
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", *rules)
    finally:
        admin.close()
    return f"redis://{name}:pw@127.0.0.1:{server.port}/0"


CASES = {
    "no scripting": ("~*", "&*", "+@all", "-@scripting"),
    "no pub/sub": ("~*", "resetchannels", "+@all", "-@pubsub"),
    "no rights at all": (),
    "no keys": ("&*", "+@all"),
    "no TIME inside scripts": ("~*", "&*", "+@read", "+@write", "+@scripting", "+@pubsub"),
}


@pytest.mark.parametrize("rules", CASES.values(), ids=CASES.keys())
def test_an_acl_user_without_the_rights_it_needs_means_unavailable(
    redis_server, rules, caplog
) -> None:
    url = acl_user(redis_server, "limited", *rules)
    events: list[outlast.Event] = []
    caplog.set_level(logging.DEBUG, logger="outlast.fleet")
    policy_fleet = Fleet(url, listeners=[events.append], connect_wait=0.5)
    try:
        policy = outlast.Policy(
            retry=None,
            breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60),
            shared=policy_fleet,
        ).for_key("k")

        def boom() -> None:
            raise ConnectionError("down")

        deadline = time.monotonic() + 3  # bounded: ~150 operations of every kind
        while time.monotonic() < deadline:
            now = time.time()
            policy_fleet.publish(
                SharedAnswer("acl.outlast.test", ("127.0.0.1",), 60, now, now, "t")
            )
            policy_fleet.lookup("acl.outlast.test")
            with pytest.raises((ConnectionError, outlast.CircuitOpenError)):
                policy.call(boom)
            policy._force(None)
            time.sleep(0.02)
        assert not policy_fleet.available
        unavailable = [e for e in events if isinstance(e, FleetUnavailable)]
        assert len(unavailable) == 1, events
        assert any(w in unavailable[0].error.lower() for w in ("perm", "can't run"))
        assert "pw" not in unavailable[0].error
        assert not [e for e in events if isinstance(e, FleetRestored)], "it flapped"
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(loud) <= 3, [r.getMessage() for r in loud]
        assert not [r for r in loud if r.exc_info and r.levelno >= logging.ERROR]
    finally:
        policy_fleet.close()


def test_a_database_the_server_does_not_have_means_unavailable(redis_server) -> None:
    events: list[outlast.Event] = []
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    with Fleet(url, listeners=[events.append]) as fleet:
        now = time.time()
        fleet.publish(SharedAnswer("db.outlast.test", ("127.0.0.1",), 60, now, now, "t"))
        assert wait_for(lambda: not fleet.available, 3)
        unavailable = [e for e in events if isinstance(e, FleetUnavailable)]
        assert len(unavailable) == 1
        assert "DB index" in unavailable[0].error


def test_rights_granted_later_restore_the_fleet(redis_server, monkeypatch) -> None:
    from outlast.fleet import _client

    monkeypatch.setattr(_client, "REFUSED_BACKOFF_MIN", 0.3)
    url = acl_user(redis_server, "later", "~*", "&*", "+@all", "-@scripting")
    events: list[outlast.Event] = []
    with Fleet(url, listeners=[events.append]) as fleet:
        assert wait_for(lambda: not fleet.available, 3)
        acl_user(redis_server, "later", "~*", "&*", "+@all")
        assert wait_for(lambda: fleet.available, 10), "never trusted again"
        now = time.time()
        fleet.publish(SharedAnswer("later.outlast.test", ("127.0.0.9",), 60, now, now, "t"))
        assert wait_for(lambda: fleet.lookup("later.outlast.test") is not None, 5)
    kinds = [type(e) for e in events if isinstance(e, (FleetUnavailable, FleetRestored))]
    assert kinds == [FleetUnavailable, FleetRestored]


def test_the_documented_acl_is_enough(redis_server) -> None:
    # docs/fleet.md: the rights a fleet user needs, and no more.
    rules = ("~outlast:*", "&outlast:*", "+@read", "+@write", "+@scripting", "+@pubsub", "+time")
    url = acl_user(redis_server, "app", *rules)
    events: list[outlast.Event] = []
    with Fleet(url, listeners=[events.append]) as fleet:
        now = time.time()
        fleet.publish(SharedAnswer("doc.outlast.test", ("127.0.0.8",), 60, now, now, "t"))
        assert wait_for(lambda: fleet.lookup("doc.outlast.test") is not None, 5)
        policy = outlast.Policy(
            retry=None,
            breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60),
            shared=fleet,
        ).for_key("doc")
        with pytest.raises(ConnectionError):
            policy.call(_boom)
        admin = redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
        try:
            assert wait_for(lambda: admin.hget("outlast:breaker:doc", "state") == "open", 5)
        finally:
            admin.close()
        assert fleet.available
    assert not [e for e in events if isinstance(e, FleetUnavailable)]


def _boom() -> None:
    raise ConnectionError("down")
