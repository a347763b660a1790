"""The counter model: which event kinds feed which metrics, independent of any exporter.

Every layer reports through one event stream (:class:`outlast.Event`, each with a
stable dotted ``kind``). A :class:`Metric` says what one metric counts: its
exporter-neutral dotted name, its description, and which of the event's attributes
become labels. :data:`METRICS` maps event kinds to metrics; several kinds may feed one
metric (failovers come from the transports and from boto3). A layer that adds events
plugs in by adding rows here: nothing else changes.

A metric is a counter (each event adds one) unless it has a ``value`` function, which
makes it a gauge set to ``value(event)`` per label set (the breaker state).

:class:`MetricsListener` is the hot-path part every exporter shares: one dict lookup
per event, and nothing at all for kinds no metric counts. Labels are chosen with a
bounded number of values (provider, policy key, negative kind); host names are never
labels, since a resolver may hold thousands.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from outlast._events import Event

__all__ = ["BREAKER_STATES", "METRICS", "Counts", "Metric", "MetricsListener"]

#: The value of the ``policy.breaker_state`` gauge for each breaker state.
BREAKER_STATES: Final[Mapping[str, float]] = MappingProxyType(
    {"closed": 0.0, "half-open": 1.0, "open": 2.0}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Metric:
    """One metric, as the exporters create it.

    ``name`` is dotted and exporter-neutral (``dns.cache_hits``); Prometheus shows it as
    ``outlast_dns_cache_hits_total``, OpenTelemetry as ``outlast.dns.cache_hits``.
    ``labels`` are attribute names read from each event (``kind`` included, since every
    event has it); an event without one gets an empty label. ``value`` makes the
    metric a gauge: the value to set from an event.

    Added in 0.1.0.
    """

    name: str
    description: str
    labels: tuple[str, ...] = ()
    value: Callable[[Event], float] | None = None

    @property
    def is_gauge(self) -> bool:
        return self.value is not None


def _breaker_value(event: Event) -> float:
    return BREAKER_STATES.get(str(getattr(event, "new", "")), -1.0)


_FAILOVERS = Metric(
    "failovers",
    "Requests moved to another address, region or endpoint after a failure; "
    "labelled with the event kind that reported it",
    ("kind",),
)

#: Event kind -> the metric it feeds. Kinds that no metric counts are ignored.
METRICS: Final[Mapping[str, Metric]] = MappingProxyType(
    {
        "dns.cache_hit": Metric("dns.cache_hits", "Fresh answers served from memory"),
        "dns.cache_miss": Metric(
            "dns.cache_misses", "Resolutions that waited for the providers: nothing usable held"
        ),
        "dns.stale_served": Metric(
            "dns.stale_served",
            "Stale or last-known-good answers served (while refreshing or when providers fail)",
        ),
        "dns.static_served": Metric(
            "dns.static_served", "OUTLAST_DNS_STATIC addresses served as the last resort"
        ),
        "dns.empty_distrusted": Metric(
            "dns.empty_distrusted",
            "Empty or NXDOMAIN answers for a name with a last-known-good answer, not believed",
            ("negative",),
        ),
        "dns.empty_accepted": Metric(
            "dns.empty_accepted",
            "Empty or NXDOMAIN answers believed after holding for OUTLAST_DNS_KEEP_ON_EMPTY",
            ("negative",),
        ),
        "dns.refresh_failed": Metric("dns.refresh_failures", "Lookups that no provider answered"),
        "dns.provider_failed": Metric(
            "dns.provider_errors",
            "Queries a provider failed (timeout, SERVFAIL, REFUSED, network error)",
            ("provider",),
        ),
        "dns.provider_ejected": Metric(
            "dns.provider_ejections", "Providers ejected after failing repeatedly", ("provider",)
        ),
        "dns.provider_restored": Metric(
            "dns.provider_restorations", "Ejected providers that answered again", ("provider",)
        ),
        "dns.cache_file_failed": Metric(
            "dns.cache_file_errors", "Failures to read or write OUTLAST_DNS_CACHE_FILE"
        ),
        "policy.retry_scheduled": Metric(
            "policy.retries", "Retries scheduled after a failed attempt", ("key",)
        ),
        "policy.budget_exhausted": Metric(
            "policy.budget_exhausted",
            "Retries refused because the retry budget was spent",
            ("key",),
        ),
        "policy.breaker_state": Metric(
            "policy.breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ("key",),
            value=_breaker_value,
        ),
        "http.failed_over": _FAILOVERS,
        "aws.failover": _FAILOVERS,
        "http.address_ejected": Metric(
            "http.address_ejections", "Addresses tried last after a connect to them failed"
        ),
        "fleet.unavailable": Metric(
            "fleet.unavailable", "Times Redis did not answer in time; outlast went on locally"
        ),
        "chaos.injected": Metric(
            "chaos.injected", "Faults injected by OUTLAST_CHAOS (not real)", ("fault",)
        ),
    }
)


def unique_metrics(metrics: Mapping[str, Metric]) -> list[Metric]:
    """Each metric once (several kinds may feed one), in table order.

    Raises ValueError when two rows use one name with different labels or types.
    """
    seen: dict[str, Metric] = {}
    for metric in metrics.values():
        known = seen.setdefault(metric.name, metric)
        if known is not metric and (
            known.labels != metric.labels or known.is_gauge != metric.is_gauge
        ):
            raise ValueError(f"metric {metric.name!r} is defined twice, differently")
    return list(seen.values())


class MetricsListener(abc.ABC):
    """A listener that feeds events to metrics; exporters fill in :meth:`add` and :meth:`set`.

    Cheap when installed: one dict lookup per event, label values read only for
    events that some metric counts.

    Added in 0.1.0.
    """

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Mapping[str, Metric] = METRICS) -> None:
        unique_metrics(metrics)
        self._metrics = dict(metrics)

    @property
    def metrics(self) -> Mapping[str, Metric]:
        """Event kind -> the metric it feeds."""
        return MappingProxyType(self._metrics)

    def __call__(self, event: Event, /) -> None:
        metric = self._metrics.get(event.kind)
        if metric is None:
            return
        labels = tuple([str(getattr(event, name, "")) for name in metric.labels])
        if metric.value is None:
            self.add(metric, labels)
        else:
            self.set(metric, labels, metric.value(event))

    @abc.abstractmethod
    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        """Add one to the counter ``metric`` for these label values."""

    @abc.abstractmethod
    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        """Set the gauge ``metric`` for these label values."""


class Counts(MetricsListener):
    """The metrics in memory, with no dependency: for tests and quick checks.

    ``counts.value("dns.cache_hits")``, ``counts.value("dns.provider_errors",
    provider="udp://10.0.0.2")``; a counter never incremented is 0, a gauge never set
    is None.

    Added in 0.1.0.
    """

    __slots__ = ("_lock", "_values")

    def __init__(self, metrics: Mapping[str, Metric] = METRICS) -> None:
        super().__init__(metrics)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}

    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        key = (metric.name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1.0

    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._values[(metric.name, labels)] = value

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of metric ``name`` for the given labels (all of them)."""
        metric = next((m for m in self._metrics.values() if m.name == name), None)
        if metric is None:
            raise KeyError(f"no metric named {name!r}")
        if set(labels) != set(metric.labels):
            raise ValueError(f"{name} takes the labels {metric.labels}, not {tuple(labels)}")
        key = (name, tuple(labels[label] for label in metric.labels))
        with self._lock:
            held = self._values.get(key)
        if held is None and not metric.is_gauge:
            return 0.0
        return held

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every value held: metric name -> label values -> value."""
        result: dict[str, dict[tuple[str, ...], float]] = {}
        with self._lock:
            for (name, labels), value in self._values.items():
                result.setdefault(name, {})[labels] = value
        return result
