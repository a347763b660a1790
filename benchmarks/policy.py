"""Benchmarks for outlast.policy, each beside its alternative in the same process.

Run: ``PYTHONPATH=src python benchmarks/policy.py`` (about a minute on 2 cores).

1. success-path overhead: ``policy.call`` and ``@policy`` vs tenacity + pybreaker stacked;
2. 8 threads x 10 ms of I/O through one shared policy vs bare (and pybreaker's call());
3. 200 asyncio tasks x 10 ms through one shared policy vs bare;
4. amplification against a destination failing 100%, 50% and 1% of calls (virtual time);
5. the contention simulation of "Exponential Backoff And Jitter" (AWS Architecture
   Blog, 2015), in virtual time: outlast's backoff beside full jitter and no jitter;
6. ``outlast drill``'s backend-503-storm on loopback, real time: availability, backend
   load during the storm and recovery after the heal, outlast beside plain httpx and
   httpx with 3 naive retries (``--storm-only`` runs just this part).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
import threading
import time
import timeit
from collections.abc import Callable

import pybreaker
import tenacity

from outlast import CircuitOpenError
from outlast.policy import CircuitBreaker, Decision, Outcome, Policy, Retry, RetryBudget


def ratio_line(label: str, value: float, base: float, unit: str, target: str) -> None:
    print(f"  {label:<44} {value:10.3f} {unit:<8} ratio {value / base:6.3f}  ({target})")


# -- 1. success path ---------------------------------------------------------------------


def success_path() -> None:
    print("1. success-path cost per call (best of 5 runs)")

    def fn(x: int) -> int:
        return x

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5)
    stacked = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=20),
        reraise=True,
    )(breaker(fn))
    policy = Policy()
    decorated = policy(fn)

    def accept(outcome: Outcome) -> Decision:  # what an HTTP classifier says to a 200
        return Decision.ACCEPT

    # What outlast.http does per request: a result classifier, and a view per origin.
    classified = Policy(classify_result=accept)
    origin = "https://api.example:443"
    windowed = Policy(breaker=CircuitBreaker(ratio=0.5))  # counts every success

    def per_call(f: Callable[[], object], n: int) -> float:
        return min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6

    bare = per_call(lambda: fn(1), 200_000)
    alt = per_call(lambda: stacked(1), 20_000)
    call = per_call(lambda: policy.call(fn, 1), 200_000)
    deco = per_call(lambda: decorated(1), 200_000)
    result = per_call(lambda: classified.call(fn, 1), 200_000)
    keyed = per_call(lambda: classified.for_key(origin).call(fn, 1), 200_000)
    ratio = per_call(lambda: windowed.call(fn, 1), 200_000)
    print(f"  {'bare function':<44} {bare:10.3f} us")
    print(f"  {'tenacity + pybreaker stacked':<44} {alt:10.3f} us")
    ratio_line("outlast policy.call", call, alt, "us", "target <= 0.1")
    ratio_line("outlast @policy", deco, alt, "us", "target <= 0.1")
    ratio_line("outlast policy.call + classifier", result, alt, "us", "target <= 0.1")
    ratio_line("outlast for_key(origin).call + classifier", keyed, alt, "us", "target <= 0.1")
    ratio_line("outlast policy.call, breaker with ratio", ratio, alt, "us", "target <= 0.1")


# -- 2. threads --------------------------------------------------------------------------


def threads() -> None:
    print("2. 8 threads x 25 calls x 10 ms of I/O, calls per second")
    policy = Policy()
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5)

    def io() -> None:
        time.sleep(0.01)

    def run(call: Callable[[], object]) -> float:
        def work() -> None:
            for _ in range(25):
                call()

        pool = [threading.Thread(target=work) for _ in range(8)]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return 8 * 25 / (time.perf_counter() - start)

    bare = run(io)
    ours = run(lambda: policy.call(io))
    theirs = run(lambda: breaker.call(io))
    print(f"  {'bare':<44} {bare:10.1f} calls/s")
    ratio_line("outlast policy.call (shared)", ours, bare, "calls/s", "target >= 0.95")
    ratio_line("pybreaker call() (shared)", theirs, bare, "calls/s", "serialises callers")


# -- 3. asyncio --------------------------------------------------------------------------


def tasks() -> None:
    print("3. 200 asyncio tasks x 10 calls x 10 ms, calls per second")
    policy = Policy()

    async def io() -> None:
        await asyncio.sleep(0.01)

    async def bare_task() -> None:
        for _ in range(10):
            await io()

    async def policy_task() -> None:
        for _ in range(10):
            await policy.acall(io)

    async def run(task: Callable[[], object]) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(200)))  # type: ignore[misc]
        return 200 * 10 / (time.perf_counter() - start)

    bare = asyncio.run(run(bare_task))
    ours = asyncio.run(run(policy_task))
    print(f"  {'bare':<44} {bare:10.1f} calls/s")
    ratio_line("outlast policy.acall (shared)", ours, bare, "calls/s", "target >= 0.9")


# -- 4. amplification --------------------------------------------------------------------


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # waits overlap other callers: not advanced
        return None


def amplification() -> None:
    print("4. amplification: 20,000 calls at 200 calls/s (virtual time), 3 attempts each")
    print(f"  {'failure rate / configuration':<44} {'attempts/call':>14} {'success':>9}")
    for failure in (1.0, 0.5, 0.01):
        for label, make in (
            ("naive: 3 attempts, no budget, no breaker", naive_policy),
            ("outlast: budget only (ratio 0.1)", budget_policy),
            ("outlast: budget + breaker (defaults)", full_policy),
            ("outlast: ratio 0.6/min 20, failures 20", ratio_policy(20)),
            ("outlast: ratio 0.6/min 50, failures 20", ratio_policy(50)),
        ):
            attempts, success = simulate_amplification(make, failure)
            print(f"  {failure:>4.0%} {label:<39} {attempts:14.3f} {success:9.2%}")


def naive_policy(clock: VirtualClock) -> Policy:
    return Policy(budget=None, breaker=None, clock=clock, sleep=clock.sleep)


def budget_policy(clock: VirtualClock) -> Policy:
    return Policy(budget=RetryBudget(), breaker=None, clock=clock, sleep=clock.sleep)


def full_policy(clock: VirtualClock) -> Policy:
    return Policy(clock=clock, sleep=clock.sleep)


def ratio_policy(min_calls: int) -> Callable[[VirtualClock], Policy]:
    """Budget + a breaker opening at 60% unwell over 10 s, or on 20 consecutive failures."""

    def make(clock: VirtualClock) -> Policy:
        breaker = CircuitBreaker(failures=20, ratio=0.6, min_calls=min_calls)
        return Policy(breaker=breaker, clock=clock, sleep=clock.sleep)

    return make


def simulate_amplification(
    make: Callable[[VirtualClock], Policy], failure: float
) -> tuple[float, float]:
    rng = random.Random(7)
    clock = VirtualClock()
    policy = make(clock)
    attempts = successes = 0
    calls = 20_000

    def destination() -> str:
        nonlocal attempts
        attempts += 1
        if rng.random() < failure:
            raise ConnectionError("unavailable")
        return "ok"

    for i in range(calls):
        clock.now = i / 200
        try:
            policy.call(destination)
            successes += 1
        except (ConnectionError, CircuitOpenError):
            pass
    return attempts / calls, successes / calls


# -- 5. the AWS contention simulation ----------------------------------------------------

BASE, CAP = 0.005, 2.0


def no_jitter(retry: int, rng: random.Random) -> float:
    return min(CAP, BASE * 2**retry)


def full_jitter(retry: int, rng: random.Random) -> float:
    return rng.uniform(0, min(CAP, BASE * 2**retry))


OUTLAST_RETRY = Retry(attempts=1000, base=BASE, cap=CAP)


def outlast_backoff(retry: int, rng: random.Random) -> float:
    return OUTLAST_RETRY.backoff(retry)  # outlast's own draw (module random), not rng


def contention(
    clients: int, backoff: Callable[[int, random.Random], float], seed: int
) -> tuple[int, float]:
    """Clients read one row then conditionally write it; a lost race backs off and rereads.

    Each call takes |Normal(10 ms, 2 ms)| and acts on the row when it arrives. Returns
    the calls made (reads and writes), the writes alone, and the time until every
    client has written.
    """
    rng = random.Random(seed)
    version = 0
    calls = writes = 0
    done_at = 0.0
    # events: (time, order, client, kind, version read)
    queue: list[tuple[float, int, int, str, int]] = []
    order = 0
    retries = [0] * clients

    def send(at: float, client: int, kind: str, seen: int) -> None:
        nonlocal calls, order
        calls += 1
        order += 1
        heapq.heappush(
            queue, (at + abs(rng.normalvariate(0.010, 0.002)), order, client, kind, seen)
        )

    for client in range(clients):
        send(0.0, client, "read", 0)
    while queue:
        now, _, client, kind, seen = heapq.heappop(queue)
        if kind == "read":
            send(now, client, "write", version)
            writes += 1
        elif seen == version:
            version += 1
            done_at = max(done_at, now)
        else:
            delay = backoff(retries[client], rng)
            retries[client] += 1
            send(now + delay, client, "read", 0)
    return calls, writes, done_at


def herd() -> None:
    print("5. contention (AWS 'Exponential Backoff And Jitter'): 100 clients, base 5 ms, cap 2 s")
    print("   mean of 40 runs in virtual time; the blog reports full jitter ~800 calls / ~5 s,")
    print("   no jitter ~1,860 calls / ~63 s")
    results = {}
    for label, backoff in (
        ("no jitter", no_jitter),
        ("full jitter (reference)", full_jitter),
        ("outlast Retry.backoff", outlast_backoff),
    ):
        runs = [contention(100, backoff, seed) for seed in range(40)]
        results[label] = tuple(statistics.mean(r[i] for r in runs) for i in range(3))
        calls, writes, seconds = results[label]
        print(f"  {label:<32} {calls:8.0f} calls ({writes:5.0f} writes) {seconds:8.2f} s")
    ours, ref = results["outlast Retry.backoff"], results["full jitter (reference)"]
    print(
        f"  outlast / full jitter: calls {ours[0] / ref[0]:.3f}, time {ours[2] / ref[2]:.3f}"
        "  (target within 5%)"
    )


# -- 6. the 503 storm ---------------------------------------------------------------------


def storm(seconds: float = 10.0, runs: int = 3) -> None:
    """The drill's backend-503-storm, run ``runs`` times: the backend fails from 15% to 40%.

    Load is the rate of requests reaching the backend during the storm (what shedding
    spares it), beside plain httpx's rate. Hits per request made is printed too, but is
    no measure of load here: each drill client sends its next request when the last
    ends, so a client whose refused callers wait for the breaker's verdict makes fewer
    requests in the storm and shows more hits per request at the same rate of hits.
    """
    from outlast.cli._drill._scenarios import SCENARIOS, lab, run_scenario

    scenario = next(s for s in SCENARIOS if s.name == "backend-503-storm")
    fail_at, heal_at = (f * seconds for f in scenario.fault)
    print(f"6. backend-503-storm ({seconds:g} s, 503 from {fail_at:g} s to {heal_at:g} s)")
    print(f"   {runs} runs; load = requests reaching the backend per second during the storm")
    print(
        f"  {'client':<24} {'available':>10} {'load in storm':>14} {'vs plain':>9} "
        f"{'hits/request':>13} {'recovery s':>11}"
    )
    figures: dict[str, list[tuple[float, float, float, float]]] = {}
    with lab() as drill_lab:
        for _ in range(runs):
            report = run_scenario(scenario, drill_lab, seconds, lambda line: None)
            for name, client in report.clients.items():
                timeline = client.timeline
                rate = client.fault_load or 0.0  # requests/s at the backend in the storm
                made = sum(1 for t, _ in timeline if fail_at <= t < heal_at)
                per_request = rate * (heal_at - fail_at) / max(1, made)
                after = [t for t, good in timeline if good and t >= heal_at]
                recovery = (after[0] - heal_at) if after else float("inf")
                figures.setdefault(name, []).append(
                    (client.availability, rate, per_request, recovery)
                )
    plain = statistics.mean(f[1] for f in figures["httpx"])
    for name, rows in figures.items():
        available = statistics.mean(r[0] for r in rows)
        rate = statistics.mean(r[1] for r in rows)
        per_request = statistics.mean(r[2] for r in rows)
        recovery = max(r[3] for r in rows)
        print(
            f"  {name:<24} {available:9.1%} {rate:11.1f}/s {rate / plain:8.2f}x "
            f"{per_request:13.2f} {recovery:11.2f}"
        )
    print("  targets for outlast: available >= plain httpx, load <= 0.3x plain, recovery <= 1 s")


def main() -> None:
    import sys

    start = time.perf_counter()
    if "--storm-only" not in sys.argv:
        success_path()
        threads()
        tasks()
        amplification()
        herd()
    storm()
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
