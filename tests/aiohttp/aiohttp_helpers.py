"""Helpers for the outlast.aiohttp tests."""

from __future__ import annotations

from outlast import CircuitBreaker, Policy, Retry
from outlast.aiohttp import classify_error, classify_result


def quick_policy(attempts: int = 3, *, breaker: bool = False) -> Policy:
    """A policy with aiohttp's classifiers and millisecond backoff."""
    return Policy(
        retry=Retry(attempts=attempts, base=0.001, cap=0.005),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=30, min_reset=30) if breaker else None,
        classify_error=classify_error,
        classify_result=classify_result,
    )
