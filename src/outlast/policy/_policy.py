"""Policy: a retry, a retry budget and a circuit breaker around sync and async callables.

A Policy is shared: every thread and every event loop may call through one instance
at once, and none waits for another (locks are held for counting and for state
changes, never around a call). Per-destination state (a breaker and a budget for each
origin or endpoint) comes from :meth:`Policy.for_key`, out of a bounded LRU registry.

The success path is one breaker check, one budget deposit and the call itself (and,
for a breaker with a failure ratio, one count in its window); the retry machinery
(tenacity) is built only after an attempt failed and may be retried.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, ParamSpec, Protocol, TypeVar, cast

import anyio

from outlast._config import Settings
from outlast._events import Emitter, Listener
from outlast._exceptions import CircuitOpenError, ConfigError
from outlast.policy._breaker import CLOSED, BreakerState, CircuitBreaker, SharedBreakers
from outlast.policy._budget import BudgetState, FloorPool, RetryBudget
from outlast.policy._classify import Classifier, Outcome, first_result, retry_all
from outlast.policy._clock import AsyncSleep, Clock, Sleep, monotonic
from outlast.policy._events import LOGGER
from outlast.policy._retry import Retry, Uniform
from outlast.policy._run import Guard, Rules, Run, aadmit, admit, judge, tell
from outlast.policy._snapshot import KeyState, PolicySnapshot


class Assembly(Protocol):
    """What the composition root adds to a policy built from the environment.

    ``outlast.policy`` never imports the fleet: :mod:`outlast._root` plugs in (:func:`plug`)
    a callable that returns the :class:`SharedBreakers` for the settings, or None.
    """

    def __call__(
        self, settings: Settings, listeners: Iterable[Listener], /
    ) -> SharedBreakers | None: ...


_assemblies: list[Assembly] = []


def plug(assembly: Assembly) -> None:
    """Let the composition root extend every :meth:`Policy.from_env` (idempotent)."""
    if assembly not in _assemblies:
        _assemblies.append(assembly)


__all__ = ["DEFAULT_MAX_KEYS", "Policy"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_KEYS: Final = 1024
DEFAULT_RETRY: Final = Retry()
DEFAULT_BUDGET: Final = RetryBudget()
DEFAULT_BREAKER: Final = CircuitBreaker()


class _Guards:
    """The per-key breakers and budgets: a bounded LRU registry, shared by derived views."""

    __slots__ = ("breaker", "budget", "floor", "lock", "max_keys", "registry", "shared")

    def __init__(
        self,
        budget: RetryBudget | None,
        breaker: CircuitBreaker | None,
        max_keys: int,
        shared: SharedBreakers | None,
    ) -> None:
        self.budget = budget
        self.breaker = breaker
        # The retries that only a budget's floor allows: one reserve for every key.
        self.floor = None if budget is None else FloorPool(budget)
        self.max_keys = max_keys
        self.shared = shared
        # Reentrant: a new guard emits its breaker's initial state to listeners, which
        # may ask for a key themselves.
        self.lock = threading.RLock()
        self.registry: OrderedDict[str, Guard] = OrderedDict()

    def make(self, key: str, rules: Rules) -> Guard:
        breaker = (
            None
            if self.breaker is None
            else BreakerState(self.breaker, key, rules.clock, rules.emitter, self.shared)
        )
        budget = None if self.budget is None else BudgetState(self.budget, rules.clock, self.floor)
        return Guard(key=key, breaker=breaker, budget=budget)

    def get(self, key: str, rules: Rules) -> Guard:
        """``key``'s guard, made (and the oldest key evicted) if need be. Under ``lock``."""
        registry = self.registry
        guard = registry.get(key)
        if guard is not None:
            registry.move_to_end(key)
            return guard
        guard = registry[key] = self.make(key, rules)
        if len(registry) > self.max_keys:
            registry.popitem(last=False)
        return guard


class _Core:
    """What every view of one Policy shares: rules, configuration, the key registry.

    The guards (breakers and budgets) live in :class:`_Guards`, which a derived policy
    shares; each core caches its own views (a Policy bound to a key's guard), so that
    :meth:`Policy.for_key` for a known key is one short lock and two dict lookups: no
    object is built per request.
    """

    __slots__ = ("default", "enabled", "guards", "name", "rules", "views")

    def __init__(self, rules: Rules, guards: _Guards, name: str, enabled: bool) -> None:
        self.rules = rules
        self.guards = guards
        self.name = name
        self.enabled = enabled
        self.views: dict[str, Policy] = {}
        # The Policy itself, the view of its own name: pinned, never evicted, so that
        # ``for_key(name)`` and the policy share one breaker and one budget.
        self.default: Policy | None = None

    @property
    def budget(self) -> RetryBudget | None:
        return self.guards.budget

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self.guards.breaker

    def view(self, key: str) -> Policy:
        """The view bound to ``key``'s guard."""
        if key == self.name and self.default is not None:
            return self.default
        guards = self.guards
        view = self.views.get(key)
        if view is not None:  # a known key: no lock (0.3 us of every HTTP request)
            registry = guards.registry
            if registry.get(key) is view._guard:
                try:  # OrderedDict's own methods are atomic; an eviction in between
                    registry.move_to_end(key)  # only sends this call down the locked path
                except KeyError:
                    pass
                else:
                    return view
        with guards.lock:
            guard = guards.get(key, self.rules)
            view = self.views.get(key)
            if view is None or view._guard is not guard:  # new, or the key was evicted
                view = self.views[key] = _view(self, guard)
                if len(self.views) > guards.max_keys:
                    self.views = {k: v for k, v in self.views.items() if k in guards.registry}
            return view


class Policy:
    """Retries under a budget behind a circuit breaker, for sync and async callables.

    ``retry``, ``budget`` and ``breaker`` are configuration values (None turns that
    part off); the defaults match the ``OUTLAST_*`` defaults, and :meth:`from_env`
    reads the environment. ``classify_error`` decides what an exception means
    (default: every ``Exception`` is transient); ``classify_result``, if given, does the
    same for returned values (an integration's "HTTP 503"). ``listeners`` receive the
    policy's events. ``clock``, ``sleep``, ``asleep`` and ``uniform`` are injectable for
    tests. ``max_keys`` bounds the per-destination registry of :meth:`for_key`.
    ``shared`` (``outlast.fleet.Fleet``) shares the breakers with other processes.

    Use it as ``policy.call(fn, *args)``, ``await policy.acall(afn, *args)``, or as a
    decorator on a ``def`` or ``async def``.

    Added in 0.1.0.
    """

    __slots__ = ("_core", "_guard", "_limit")

    _core: _Core
    _guard: Guard | None
    _limit: float | None

    def __init__(
        self,
        *,
        retry: Retry | None = DEFAULT_RETRY,
        budget: RetryBudget | None = DEFAULT_BUDGET,
        breaker: CircuitBreaker | None = DEFAULT_BREAKER,
        classify_error: Classifier = retry_all,
        classify_result: Classifier | None = None,
        listeners: Iterable[Listener] = (),
        name: str = "default",
        max_keys: int = DEFAULT_MAX_KEYS,
        enabled: bool = True,
        clock: Clock = monotonic,
        sleep: Sleep = time.sleep,
        asleep: AsyncSleep = anyio.sleep,
        uniform: Uniform = random.uniform,
        shared: SharedBreakers | None = None,
    ) -> None:
        for setting, value, kind in (
            ("retry", retry, Retry),
            ("budget", budget, RetryBudget),
            ("breaker", breaker, CircuitBreaker),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(setting, value, f"an outlast.{kind.__name__} or None")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError("max_keys", max_keys, "a whole number of at least 1")
        if not callable(classify_error):
            raise ConfigError("classify_error", classify_error, "a callable Classifier")
        if classify_result is not None and not callable(classify_result):
            raise ConfigError("classify_result", classify_result, "a callable Classifier or None")
        rules = Rules(
            retry=retry,
            classify_error=classify_error,
            classify_result=classify_result,
            clock=clock,
            sleep=sleep,
            asleep=asleep,
            uniform=uniform,
            emitter=Emitter(LOGGER, listeners),
        )
        guards = _Guards(budget, breaker, max_keys, shared)
        self._core = core = _Core(rules, guards, name, enabled)
        self._guard = guards.make(name, rules) if enabled else None
        self._limit = None
        core.default = self

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        classify_error: Classifier = retry_all,
        classify_result: Classifier | None = None,
        listeners: Iterable[Listener] = (),
        name: str = "default",
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> Policy:
        """A Policy configured by ``OUTLAST_*`` (``os.environ`` unless ``environ`` is given).

        With ``OUTLAST_DISABLE=1`` the policy passes every call straight through. With
        ``OUTLAST_REDIS_URL`` set, its breakers are shared through ``outlast.fleet``
        (needs ``outlast[redis]``), wired by the composition root (:mod:`outlast._root`).
        """
        settings = Settings.from_env(environ)
        shared: SharedBreakers | None = None
        if not settings.disable:
            for assembly in _assemblies:  # the fleet, plugged in by outlast._root
                shared = assembly(settings, listeners) or shared
        return cls(
            retry=Retry.from_settings(settings),
            budget=RetryBudget.from_settings(settings),
            breaker=CircuitBreaker.from_settings(settings),
            classify_error=classify_error,
            classify_result=classify_result,
            listeners=listeners,
            name=name,
            max_keys=max_keys,
            enabled=not settings.disable,
            shared=shared,
        )

    # -- what it is ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The policy's name (its default key)."""
        return self._core.name

    @property
    def key(self) -> str:
        """The key whose breaker and budget this view uses."""
        return self._core.name if self._guard is None else self._guard.key

    @property
    def enabled(self) -> bool:
        """False for a pass-through policy (``OUTLAST_DISABLE=1`` or ``enabled=False``)."""
        return self._core.enabled

    @property
    def retry(self) -> Retry | None:
        """The retry configuration (None: never retry)."""
        return self._core.rules.retry

    @property
    def budget(self) -> RetryBudget | None:
        """The retry budget configuration (None: no budget)."""
        return self._core.budget

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker configuration (None: no breaker)."""
        return self._core.breaker

    @property
    def classify_error(self) -> Classifier:
        """What an exception means (see :meth:`derive` to build on it)."""
        return self._core.rules.classify_error

    @property
    def classify_result(self) -> Classifier | None:
        """What a returned value means, or None: every result is a success."""
        return self._core.rules.classify_result

    @property
    def sleeps(self) -> tuple[Callable[[float], None], Callable[[float], Awaitable[None]]]:
        """The sync and async sleeps between attempts (see :meth:`derive`)."""
        rules = self._core.rules
        return rules.sleep, rules.asleep

    @property
    def state(self) -> str | None:
        """This key's breaker state: ``"closed"``, ``"open"``, ``"half-open"``; None if none."""
        guard = self._guard
        if guard is None or guard.breaker is None:
            return None
        return guard.breaker.state

    def budget_counts(self) -> tuple[int, int] | None:
        """(calls, retries) this key's budget counts in its current window; None if none."""
        guard = self._guard
        if guard is None or guard.budget is None:
            return None
        return guard.budget.counts()

    def __repr__(self) -> str:
        core = self._core
        return (
            f"Policy(name={core.name!r}, key={self.key!r}, retry={core.rules.retry!r}, "
            f"budget={core.budget!r}, breaker={core.breaker!r}, enabled={core.enabled!r})"
        )

    # -- per destination -------------------------------------------------------------

    def for_key(self, key: str) -> Policy:
        """This policy bound to ``key``'s own breaker and budget (an origin, an endpoint).

        Keys live in a bounded LRU registry; a key evicted from it starts afresh
        (closed, empty budget) when next asked for. The policy's own ``name`` is the
        key of the policy itself: ``for_key(name)`` shares its breaker and budget, and
        is never evicted. The returned view keeps the state
        it was handed, so ask again per request rather than holding views for long.
        """
        if not isinstance(key, str):
            raise ConfigError("key", key, "a string naming a destination")
        core = self._core
        if not core.enabled:
            return _view(core, None)
        view = core.views.get(key)  # _Core.view's known key, inlined: one call fewer
        if view is not None:
            registry = core.guards.registry
            if registry.get(key) is view._guard:
                try:
                    registry.move_to_end(key)
                except KeyError:  # evicted meanwhile: the locked path below
                    pass
                else:
                    return view
        return core.view(key)

    def _keyed(self) -> Callable[[str], Policy]:
        """:meth:`for_key` for an integration's hot path: keys it built, not checked.

        An enabled policy's answer for a known key is the same view each time until the
        key is evicted, so a caller may hold a view and compare it with the answer.
        """
        core = self._core
        if not core.enabled:
            passthrough = _view(core, None)
            return lambda key: passthrough
        return core.view

    def _held(self) -> tuple[OrderedDict[str, Guard], Guard] | None:
        """Where this view's guard is held: the registry and the guard, for a caller
        that keeps the view and checks ``registry.get(key) is guard`` (then touches the
        key, as :meth:`for_key` does) instead of asking again. None if it never goes
        stale (a pass-through view, or the policy's own name, which is pinned).
        """
        core, guard = self._core, self._guard
        if guard is None or self is core.default:
            return None
        return core.guards.registry, guard

    def _gate(self) -> float | None:
        """For an integration's hot path, the start of a call whose first attempt it
        makes itself, outside :meth:`acall` (one coroutine frame fewer per request).

        Returns when the call began (the policy's clock), counted in the budget, when
        the first attempt may go now: the policy is enabled and the breaker (if any) is
        closed. Returns None, having done nothing, when the call must go through
        :meth:`call` / :meth:`acall` instead (a pass-through view, or a breaker that is
        not closed: it may refuse, wait or make the caller its probe).
        After the attempt, tell the policy with :meth:`_accepted` (a result that needs
        no look) or :meth:`_afollow` (anything else).
        """
        guard = self._guard
        if guard is None:
            return None
        breaker = guard.breaker
        if breaker is not None and breaker._storage.state != CLOSED:
            return None
        now = self._core.rules.clock()
        if guard.budget is not None:
            guard.budget.deposit(now)
        return now

    def _accepted(self) -> None:
        """After :meth:`_gate`: the first attempt's result is a success, as the policy's
        result classifier would judge it (the caller knows it would: its own)."""
        breaker = self._guard.breaker if self._guard is not None else None
        # breaker.succeeded only when there is something to reset: :meth:`acall`'s rule
        if breaker is not None and (breaker._storage.counter or breaker.window is not None):
            breaker.succeeded(0)

    async def _afollow(
        self,
        started: float,
        first: Outcome,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """After :meth:`_gate`: the rest of the call whose first attempt ended in
        ``first`` (an error, or a result for the classifier to judge), as :meth:`acall`
        goes on from there. Returns the result or raises the error the call ends with;
        retries call ``fn(*args)``."""
        guard = self._guard
        assert guard is not None  # _gate returned a time: an enabled view
        run: Run[T] | None = _retrying(self._core.rules, guard, started, self._limit, first)
        if run is not None:
            return await run.arun(fn, args, {})
        if first.error is not None:
            raise first.error
        return cast(T, first.result)

    def derive(
        self,
        *,
        classify_error: Classifier | None = None,
        classify_result: Classifier | None = None,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> Policy:
        """This policy with other classifiers or sleeps, sharing its breakers and budgets.

        An integration adds its own rules on top of a user's policy this way: what the
        derived policy does to a destination's breaker or budget, the original sees
        (``policy.for_key(origin).state``), and the other way round. An argument left
        None keeps the original's.

        Added in 0.1.0.
        """
        core = self._core
        rules = core.rules
        changes: dict[str, Any] = {}
        if classify_error is not None:
            changes["classify_error"] = classify_error
        if classify_result is not None:
            changes["classify_result"] = classify_result
        if sleep is not None:
            changes["sleep"] = sleep
        if asleep is not None:
            changes["asleep"] = asleep
        derived = _Core(dataclasses.replace(rules, **changes), core.guards, core.name, core.enabled)
        view = _view(derived, self._guard)
        if self._guard is None or self._guard.key == core.name:
            derived.default = view
        return view

    def snapshot(self) -> PolicySnapshot:
        """Every key's breaker and budget now, as frozen data (:class:`PolicySnapshot`).

        Covers the policy's own name and each key of :meth:`for_key` held in the
        registry (shared with derived policies). Locks are held only to copy state.
        Times in it are wall-clock. Empty for a pass-through policy.

        Added in 0.1.0.
        """
        core = self._core
        default = core.default._guard if core.default is not None else self._guard
        with core.guards.lock:
            guards = [default] + [g for g in core.guards.registry.values() if g is not default]
        clock = core.rules.clock
        keys = []
        for guard in guards:
            if guard is None:
                continue
            breaker, budget = guard.breaker, guard.budget
            state, failures, open_since, wait = None, 0, None, 0.0
            if breaker is not None:
                with breaker._lock:
                    now, wall = clock(), time.time()
                    state, failures, opened = breaker.state, breaker.failures, breaker._opened_at
                if state != "closed":
                    open_since = wall if opened is None else wall - (now - opened)
                wait = breaker.retry_after()
            calls, retries = (None, None) if budget is None else budget.counts()
            keys.append(KeyState(guard.key, state, failures, open_since, wait, calls, retries))
        return PolicySnapshot(core.name, time.time(), tuple(keys))

    def within(self, seconds: float | None) -> Policy:
        """This view with a deadline for each call: at most ``seconds``, waits included.

        The call's own attempt is never cut short (bound it with its own timeout); no
        retry is made whose wait would end past the deadline, and a destination's hint
        (``Decision.delay``) longer than what remains returns the outcome at once. The
        tighter of this and ``Retry.deadline`` applies. None: only ``Retry.deadline``.
        Raises :class:`~outlast.ConfigError` for a value that is not seconds above 0.

        Added in 0.1.0.
        """
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not seconds > 0
            or seconds != seconds
        ):
            raise ConfigError("seconds", seconds, "a number of seconds greater than 0, or None")
        view = _view(self._core, self._guard)
        view._limit = None if seconds is None else float(seconds)
        return view

    def retry_after(self) -> float:
        """Seconds until this policy's breaker (for its key) lets a call through; 0 if closed.

        Added in 0.1.0.
        """
        guard = self._guard
        if guard is None or guard.breaker is None:
            return 0.0
        return guard.breaker.retry_after()

    def _force(self, state: str | None) -> None:
        guard = self._guard
        if guard is None:
            raise ConfigError(
                "policy",
                self,
                "an enabled policy (this one passes every call straight through: "
                "OUTLAST_DISABLE=1 or enabled=False, so there is no breaker to pin)",
            )
        if guard.breaker is None:
            raise ConfigError("policy", self, "a policy with a circuit breaker (breaker=None)")
        guard.breaker.force(state)

    # -- calling ---------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` under the policy and return its result.

        Raises ``fn``'s own error when it fails for good, or
        :class:`~outlast.CircuitOpenError` when the breaker refuses the first attempt.
        """
        guard = self._guard
        if guard is None:
            return fn(*args, **kwargs)
        rules = self._core.rules
        breaker = guard.breaker
        try:
            probe = 0 if breaker is None else breaker.allow()
        except CircuitOpenError as refused:  # open: it may let this call through soon
            probe, now = admit(rules, refused, breaker, self._limit)  # waits, or raises
        else:
            now = rules.clock()
        if guard.budget is not None:
            guard.budget.deposit(now)
        if probe:  # rare: the probe's first attempt is made by the retry loop itself
            return Run[T](rules, guard, now, self._limit, None, probe).run(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            run: Run[T] | None = _retrying(rules, guard, now, self._limit, Outcome(1, error=exc))
            if run is None:
                raise
            return run.run(fn, args, kwargs)
        classify = rules.classify_result
        if classify is None:
            # breaker.failures, read straight from its storage: two calls fewer per success
            if breaker is not None and (breaker._storage.counter or breaker.window is not None):
                breaker.succeeded(0)
            return result
        first = first_result(result)  # inline: a Run is built only for a result to retry
        decision = classify(first)
        if decision.retry and rules.retry is not None:
            return Run[T](rules, guard, now, self._limit, first, 0, decision).run(fn, args, kwargs)
        if breaker is not None and not decision.neutral:  # _settled, inlined: every response
            if decision.unwell:
                breaker.failed(0)
            elif breaker._storage.counter or breaker.window is not None:
                breaker.succeeded(0)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under the policy and return its result.

        A cancelled call (cancellation is not an ``Exception``) is not counted as a failure.
        """
        guard = self._guard
        if guard is None:
            return await fn(*args, **kwargs)
        rules = self._core.rules
        breaker = guard.breaker
        try:
            probe = 0 if breaker is None else breaker.allow()
        except CircuitOpenError as refused:  # open: it may let this call through soon
            probe, now = await aadmit(rules, refused, breaker, self._limit)  # waits, or raises
        else:
            now = rules.clock()
        if guard.budget is not None:
            guard.budget.deposit(now)
        if probe:
            return await Run[T](rules, guard, now, self._limit, None, probe).arun(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            run: Run[T] | None = _retrying(rules, guard, now, self._limit, Outcome(1, error=exc))
            if run is None:
                raise
            return await run.arun(fn, args, kwargs)
        classify = rules.classify_result
        if classify is None:
            if breaker is not None and (breaker._storage.counter or breaker.window is not None):
                breaker.succeeded(0)
            return result
        first = first_result(result)
        decision = classify(first)
        if decision.retry and rules.retry is not None:
            again = Run[T](rules, guard, now, self._limit, first, 0, decision)
            return await again.arun(fn, args, kwargs)
        if breaker is not None and not decision.neutral:  # _settled, inlined: every response
            if decision.unwell:
                breaker.failed(0)
            elif breaker._storage.counter or breaker.window is not None:
                breaker.succeeded(0)
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a ``def`` or ``async def`` so every call goes through the policy."""
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(afn, *args, **kwargs)

            return cast(Callable[P, T], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return wrapper


def _view(core: _Core, guard: Guard | None) -> Policy:
    """A Policy sharing ``core``, bound to ``guard``."""
    view = object.__new__(Policy)
    view._core = core
    view._guard = guard
    view._limit = None
    return view


def _retrying(
    rules: Rules, guard: Guard, started: float, limit: float | None, first: Outcome
) -> Run[Any] | None:
    """After a first attempt that failed (or needs a look): the Run that retries it.

    None when the outcome is final; the breaker has then been told what it showed.
    """
    decision = judge(rules, first)
    if decision.retry and rules.retry is not None:
        return Run(rules, guard, started, limit, first, 0, decision)
    tell(guard.breaker, decision, 0)
    return None
