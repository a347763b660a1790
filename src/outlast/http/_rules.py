"""The HTTP rules a transport keeps whatever policy it is given, and its seam into that policy.

A transport runs each request through a *view* of its policy: the same breakers,
budgets and configuration (one registry of origins, so ``policy.for_key(origin)`` shows
what the transport did), with three things added on top of the policy's own classifiers:

- a retry of a request the server may have acted on (anything but a connect-phase
  failure) is vetoed unless the request is retry-safe (idempotent method or
  ``Idempotency-Key``, and a replayable body): a ``policy=`` built with the default
  ``retry_all`` must not send a POST twice;
- an ``httpx.ProxyError`` (the proxy refused the tunnel, e.g. 407) or
  ``httpx.PoolTimeout`` (no pool connection came free) is neutral: neither retried nor
  counted by the target origin's breaker, for or against: the target was never reached;
- the policy's sleep first frees the failed response of the attempt being retried (the
  retry is certain once the policy sleeps), so no pool connection is held through the
  backoff, and none is lost if the wait is cancelled.

:func:`http_view` builds it with :meth:`Policy.derive`, reading the policy's current
classifiers and sleeps to build on.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import httpx

from outlast.http._classify import classify_result as http_classify_result
from outlast.http._classify import retry_safe
from outlast.policy import Classifier, Decision, Outcome, Policy

__all__ = ["HELD", "Held", "http_view", "quick_results", "retry_after"]

#: The request did not leave: retrying it is safe for every method.
_NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Held(Protocol):
    """What an attempt holds between tries: a response to free before the policy waits."""

    def release(self) -> None: ...

    async def arelease(self) -> None: ...


#: The attempts of the request the current thread (or task) is making.
HELD: Final[contextvars.ContextVar[Held | None]] = contextvars.ContextVar(
    "outlast.http.held", default=None
)


def _request_of(outcome: Outcome) -> httpx.Request | None:
    carrier = outcome.error if outcome.error is not None else outcome.result
    try:
        request = getattr(carrier, "request", None)
    except RuntimeError:  # an httpx error with no request attached
        return None
    return request if isinstance(request, httpx.Request) else None


def _vetoed(decision: Decision, outcome: Outcome) -> Decision:
    if not decision.retry or isinstance(outcome.error, _NEVER_SENT):
        return decision
    request = _request_of(outcome)
    if request is not None and retry_safe(request):
        return decision
    return dataclasses.replace(decision, retry=False)


def keep_error_rules(classify: Classifier) -> Classifier:
    """``classify`` with the HTTP rules for errors on top."""

    def classify_error(outcome: Outcome, /) -> Decision:
        if isinstance(outcome.error, (httpx.ProxyError, httpx.PoolTimeout)):
            return Decision.NEUTRAL  # the proxy's answer or our own pool, not the target's
        if getattr(outcome.error, "outlast_unsent", False):
            return Decision.NEUTRAL  # a retry the transport cut at the deadline: never sent
        return _vetoed(classify(outcome), outcome)

    return classify_error


def keep_result_rules(classify: Classifier) -> Classifier:
    """``classify`` with the HTTP rules for responses on top (a response was sent for)."""
    if classify is http_classify_result:  # the transports' own: one call per response
        return _http_result

    def classify_result(outcome: Outcome, /) -> Decision:
        return _vetoed(classify(outcome), outcome)

    return classify_result


def _http_result(outcome: Outcome, /) -> Decision:
    """``keep_result_rules(http_classify_result)``, answering the common response at once.

    A response below 500 other than 429 is accepted (``judge_status``'s first rule) and
    an accepted response is never vetoed: only the others take the long way.
    """
    response = outcome.result
    if isinstance(response, httpx.Response):
        status = response.status_code
        if status < 500 and status != 429:
            return Decision.ACCEPT
    return _vetoed(http_classify_result(outcome), outcome)


def _releasing(sleep: Callable[[float], None]) -> Callable[[float], None]:
    def release_then_sleep(seconds: float) -> None:
        held = HELD.get()
        if held is not None:
            held.release()
        sleep(seconds)

    return release_then_sleep


def _areleasing(asleep: Callable[[float], Awaitable[None]]) -> Callable[[float], Awaitable[None]]:
    async def release_then_sleep(seconds: float) -> None:
        held = HELD.get()
        if held is not None:
            await held.arelease()
        await asleep(seconds)

    return release_then_sleep


def http_view(policy: Policy) -> Policy:
    """``policy`` with the HTTP rules on top, sharing its breakers and budgets."""
    classify_result = policy.classify_result
    sleep, asleep = policy.sleeps
    return policy.derive(  # a derived policy shares the original's per-key state
        classify_error=keep_error_rules(policy.classify_error),
        classify_result=None if classify_result is None else keep_result_rules(classify_result),
        sleep=_releasing(sleep),
        asleep=_areleasing(asleep),
    )


def quick_results(view: Policy) -> bool:
    """Whether ``view`` retries no response below 500 but a 429: it judges responses by
    the transports' own classifier (:func:`_http_result`), or not at all."""
    classify = view.classify_result
    return classify is None or classify is _http_result


def retry_after(policy: Policy) -> float:
    """Seconds until the breaker of ``policy``'s key lets a call through."""
    return policy.retry_after()
