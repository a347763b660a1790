"""One probe per reset for the whole fleet: the probe is leased from Redis."""

from __future__ import annotations

import json
import subprocess
import sys

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
