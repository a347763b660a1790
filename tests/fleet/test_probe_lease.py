"""One probe per reset for the whole fleet: the probe is leased from Redis."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest

import outlast
from outlast.fleet import Fleet

from .helpers import SRC, Backend, http_policy, subprocess_env, wait_for
from .test_breakers import open_through, origin
from .test_trust import raw

WORKER = """
import json, sys, time
import httpx, outlast
from outlast.fleet import Fleet
from outlast.http._classify import classify_error, classify_result

url, backend = sys.argv[1], sys.argv[2]
fleet = Fleet(url)
policy = outlast.Policy(
    retry=None,
    breaker=outlast.CircuitBreaker(failures=3, reset=1.0),
    classify_error=classify_error,
    classify_result=classify_result,
    name="outlast.http",
    shared=fleet,
)
client = httpx.Client(transport=outlast.Transport(policy=policy), timeout=2.0)
print("ready", flush=True)
sys.stdin.readline()
sent = fast = 0
end = time.monotonic() + 3.5
while time.monotonic() < end:  # bounded: at most ~175 calls
    try:
        client.get(backend)
        sent += 1
    except outlast.CircuitOpenError:
        fast += 1
    time.sleep(0.02)
fleet.close()
print(json.dumps([sent, fast]), flush=True)
"""


def test_four_processes_send_one_probe_per_reset(redis_server) -> None:
    with Backend() as backend, Fleet(redis_server.url) as fa:
        open_through(http_policy(fa, reset=1.0), backend)  # the fleet holds it open
        key = f"outlast:breaker:{origin(backend)}"
        assert wait_for(lambda: raw(redis_server).hget(key, "state") == "open", 5)
        env = subprocess_env(redis_server.url)
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, redis_server.url, backend.url],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=SRC,
            )
            for _ in range(4)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                assert worker.stdout.readline().strip() == "ready"
            hits = backend.hits
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            results = []
            for worker in workers:
                out, err = worker.communicate(timeout=60)
                assert worker.returncode == 0, err
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        probes = backend.hits - hits
        resets = int(3.5 / 1.0) + 1  # each worker calls for 3.5 s; the reset is 1 s
        assert sum(sent for sent, _ in results) == probes
        assert 1 <= probes <= resets, f"{probes} probes in 3.5 s: {results}"
        assert all(fast > 50 for _, fast in results)


def test_a_lease_whose_holder_never_settles_lets_another_probe_after_reset(
    redis_server,
) -> None:
    def boom() -> None:
        raise ConnectionError("down")

    release = threading.Event()

    def hang() -> None:  # a probe whose process stalls (or died) mid-call
        release.wait(10)
        raise ConnectionError("down")

    with Fleet(redis_server.url) as fa, Fleet(redis_server.url) as fb:
        breaker = outlast.CircuitBreaker(failures=1, reset=0.5)
        pa = outlast.Policy(retry=None, breaker=breaker, shared=fa).for_key("lease")
        pb = outlast.Policy(retry=None, breaker=breaker, shared=fb).for_key("lease")
        with pytest.raises(ConnectionError):
            pa.call(boom)
        assert wait_for(lambda: pb.state == "open", 5)
        time.sleep(0.6)  # the reset passes for both
        holder = threading.Thread(target=_swallow, args=(pa, hang))
        holder.start()
        try:
            assert wait_for(lambda: pa.state == "half-open", 5), "A never took the probe"
            with pytest.raises(outlast.CircuitOpenError):
                pb.call(lambda: None)  # A holds the fleet's probe: B fails fast
            # A never settles; once its lease has run out (one reset), B may probe.
            probed = wait_for(lambda: _probes(pb), 3)
            assert probed, "B never probed after A's lease ran out"
            assert pb.state == "closed"
        finally:
            release.set()
            holder.join(10)


def _swallow(policy: outlast.Policy, fn) -> None:
    with contextlib.suppress(ConnectionError):
        policy.call(fn)


def _probes(policy: outlast.Policy) -> bool:
    try:
        policy.call(lambda: None)
    except outlast.CircuitOpenError:
        return False
    return True
