"""One shared policy never serialises its callers, in threads or in asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
import time

from outlast.policy import CircuitBreaker, Policy, Retry, RetryBudget


def shared_policy() -> Policy:
    return Policy(retry=Retry(attempts=3), budget=RetryBudget(), breaker=CircuitBreaker())


def test_threads_are_all_inside_the_call_at_once() -> None:
    policy = shared_policy()
    together = threading.Barrier(8, timeout=10)  # breaks if callers were serialised

    def io(i: int) -> int:
        together.wait()
        time.sleep(0.05)
        return i

    results: list[int] = []
    start = time.perf_counter()
    threads = [
        threading.Thread(target=lambda i=i: results.append(policy.call(io, i))) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    elapsed = time.perf_counter() - start
    assert sorted(results) == list(range(8))
    assert elapsed < 8 * 0.05 * 0.75  # serialised callers would need 0.4 s at least


def test_keyed_views_from_many_threads_share_one_state() -> None:
    policy = shared_policy()
    together = threading.Barrier(8, timeout=10)

    def io() -> None:
        together.wait()

    threads = [
        threading.Thread(target=lambda: policy.for_key("https://api.example").call(io))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert policy.for_key("https://api.example").budget_counts() == (8, 0)


def test_asyncio_tasks_are_all_inside_the_call_at_once() -> None:
    policy = shared_policy()

    async def main() -> float:
        inside = [0]
        everyone = asyncio.Event()

        async def io() -> None:
            inside[0] += 1
            if inside[0] == 200:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)
            await asyncio.sleep(0.05)

        start = time.perf_counter()
        await asyncio.gather(*(policy.acall(io) for _ in range(200)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert elapsed < 2.0  # 200 x 50 ms one after another would take 10 s


def test_two_event_loops_in_two_threads_share_one_policy() -> None:
    policy = shared_policy()
    together = threading.Barrier(2, timeout=10)

    async def io() -> str:
        await asyncio.sleep(0)
        together.wait()  # both loops' calls are in flight at once
        return "ok"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(policy.acall(io))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == ["ok", "ok"]


def test_for_key_under_eviction_churn_from_many_threads() -> None:
    """Known keys are found without the registry's lock; evictions racing with that
    must only send a caller down the locked path, never hand it another key's state."""
    import threading

    policy = Policy(max_keys=8)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(seed: int) -> None:
        try:
            start.wait()
            for i in range(3000):
                key = f"k{(i * 7 + seed) % 12}"  # 12 keys through an 8-key registry
                view = policy.for_key(key)
                assert view.key == key
                assert view.call(int, i) == i
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
