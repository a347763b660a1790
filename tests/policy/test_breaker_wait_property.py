"""Property: waiting for a breaker never lets two probes through, nor a caller wait too long.

Callers arrive on a fake clock at scripted times, each with a patience (half its
deadline, or none) and a scripted outcome and duration for its call. A discrete-event
loop drives the breaker's waiting (:meth:`BreakerState._admission`, the one engine
under ``wait`` and ``await_``) exactly as the sync and async faces do: a pause resumes
when its time has passed, a verdict wait when its future is resolved or its time runs
out, whichever is first. In every script:

- at most one probe is in flight at any moment;
- no caller waits longer than ``max_wait`` or its own patience;
- every wait ends (the loop drains).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Callable, Generator

from hypothesis import given, settings
from hypothesis import strategies as st

from outlast import CircuitOpenError
from outlast._events import Emitter
from outlast.policy import CircuitBreaker
from outlast.policy._breaker import BreakerState, _Pause, _Verdict
from outlast.policy._events import LOGGER

from .helpers import FakeClock


@dataclasses.dataclass(frozen=True)
class Caller:
    arrive: float
    patience: float
    outcome: str  # "ok", "fail" (unwell) or "neutral" (no verdict)
    duration: float


callers = st.builds(
    Caller,
    arrive=st.integers(0, 600).map(lambda ms: ms / 1000),
    patience=st.sampled_from([0.0, 0.01, 0.04, 0.1, 0.3, math.inf]),
    outcome=st.sampled_from(["ok", "fail", "fail", "neutral"]),
    duration=st.integers(0, 120).map(lambda ms: ms / 1000),
)

breakers = st.builds(
    lambda failures, reset, first, max_wait: CircuitBreaker(
        failures=failures, reset=reset, min_reset=min(first, reset), max_wait=max_wait
    ),
    failures=st.integers(1, 3),
    reset=st.sampled_from([0.02, 0.05, 0.25]),
    first=st.sampled_from([0.01, 0.05, 0.25]),
    max_wait=st.sampled_from([0.0, 0.03, 0.25, 1.0]),
)

Steps = Generator["_Pause | _Verdict", bool, int]


class Simulation:
    def __init__(self, config: CircuitBreaker) -> None:
        self.config = config
        self.clock = FakeClock(0.0)
        self.state = BreakerState(config, "sim", self.clock, Emitter(LOGGER))
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()
        self.probes: set[int] = set()
        self.most_probes = 0
        #: (seconds waited, the most it could wait) per caller that was refused at first
        self.waits: list[tuple[float, float]] = []
        self.admitted_after_waiting = 0

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, next(self.order), action))

    def run(self, script: list[Caller]) -> None:
        for _ in range(self.config.failures):  # open at the start
            self.state.failed(0)
        for caller in script:
            self.at(caller.arrive, lambda caller=caller: self.arrive(caller))
        events = 0
        while self.queue:
            events += 1
            assert events < 100_000, "the waiting never ends"
            when, _, action = heapq.heappop(self.queue)
            self.clock.now = max(self.clock.now, when)
            action()

    def arrive(self, caller: Caller) -> None:
        try:
            token = self.state.allow()
        except CircuitOpenError as refused:
            steps = self.state._admission(refused, caller.patience)
            bound = min(caller.patience, self.config.max_wait)
            self.resume(caller, steps, None, self.clock.now, bound)
            return
        self.begin(caller, token)

    def resume(
        self, caller: Caller, steps: Steps, sent: bool | None, began: float, bound: float
    ) -> None:
        try:
            step = next(steps) if sent is None else steps.send(sent)
        except StopIteration as stop:
            self.waits.append((self.clock.now - began, bound))
            self.admitted_after_waiting += 1
            self.begin(caller, stop.value)
            return
        except CircuitOpenError:
            self.waits.append((self.clock.now - began, bound))
            return
        if isinstance(step, _Pause):
            self.at(
                self.clock.now + step.seconds,
                lambda: self.resume(caller, steps, None, began, bound),
            )
            return
        fired = [False]

        def once(heard: bool) -> None:
            if not fired[0]:
                fired[0] = True
                self.resume(caller, steps, heard, began, bound)

        step.future.add_done_callback(lambda _: self.at(self.clock.now, lambda: once(True)))
        self.at(self.clock.now + step.seconds, lambda: once(False))

    def begin(self, caller: Caller, token: int) -> None:
        if token:
            self.probes.add(token)
            self.most_probes = max(self.most_probes, len(self.probes))
        self.at(self.clock.now + caller.duration, lambda: self.finish(caller, token))

    def finish(self, caller: Caller, token: int) -> None:
        self.probes.discard(token)
        if caller.outcome == "ok":
            self.state.succeeded(token)
        elif caller.outcome == "fail":
            self.state.failed(token)
        else:
            self.state.abandoned(token)


@settings(max_examples=300, deadline=None)
@given(config=breakers, script=st.lists(callers, min_size=1, max_size=40))
def test_waiting_never_lets_two_probes_through_nor_outlasts_a_deadline(
    config: CircuitBreaker, script: list[Caller]
) -> None:
    simulation = Simulation(config)
    simulation.run(script)
    assert simulation.most_probes <= 1
    for waited, bound in simulation.waits:
        assert waited <= bound + 1e-9


def test_the_simulation_sees_waiters_let_through() -> None:
    # A healed destination: callers arriving during the opening wait and get through.
    config = CircuitBreaker(failures=1, reset=0.05, min_reset=0.05)
    simulation = Simulation(config)
    simulation.run([Caller(0.01 * i, math.inf, "ok", 0.02) for i in range(10)])
    assert simulation.admitted_after_waiting >= 5
    assert simulation.state.state == "closed"
