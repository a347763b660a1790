"""The counter model: which event kinds feed which metrics, independent of any exporter.

Every layer reports through one event stream (:class:`outlast.Event`, each with a
stable dotted ``kind``). A :class:`Metric` says what one metric counts: its
exporter-neutral dotted name, its description, and which of the event's attributes
become labels. :data:`METRICS` maps event kinds to metrics; several kinds may feed one
metric (failovers come from the transports and from boto3). A layer that adds events
plugs in by adding rows here: nothing else changes.

A metric is a counter (each event adds one) unless it has a ``value`` function, which
makes it a gauge set to ``value(event)`` per label set (the breaker state); a
``member`` function, which makes it a gauge of how many distinct names are in a set
that events add to and take from (the names served last-known-good); or a ``sample``
function, which makes it a histogram of ``sample(event)`` (request latency). A kind
may feed several metrics: its row is then a tuple.

:class:`MetricsListener` is the hot-path part every exporter shares: one dict lookup
per event, and nothing at all for kinds no metric counts. Labels are chosen with a
bounded number of values (provider, policy key, negative kind, status class); host
names are never labels, since a resolver may hold thousands.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from outlast._events import Event

__all__ = [
    "BREAKER_STATES",
    "LATENCY_BUCKETS",
    "METRICS",
    "Counts",
    "Metric",
    "MetricsListener",
]

#: The value of the ``policy.breaker_state`` gauge for each breaker state.
BREAKER_STATES: Final[Mapping[str, float]] = MappingProxyType(
    {"closed": 0.0, "half-open": 1.0, "open": 2.0}
)

#: Upper bounds (seconds) of the request-latency histogram's buckets.
LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Most distinct names one ``member`` gauge tracks; beyond it, new names are not added.
MEMBERS_MAX: Final = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class Metric:
    """One metric, as the exporters create it.

    ``name`` is dotted and exporter-neutral (``dns.cache_hits``); Prometheus shows it as
    ``outlast_dns_cache_hits_total``, OpenTelemetry as ``outlast.dns.cache_hits``.
    ``labels`` are attribute names read from each event (``kind`` included, since every
    event has it); an event without one gets an empty label. ``value`` makes the
    metric a gauge: the value to set from an event. ``member`` makes it a gauge
    counting distinct ``event.host`` values: True adds the event's host, False takes it
    away, None leaves the set as it is. ``sample`` makes it a histogram of the value it
    returns, in ``buckets`` (upper bounds).

    Added in 0.1.0.
    """

    name: str
    description: str
    labels: tuple[str, ...] = ()
    value: Callable[[Event], float] | None = None
    member: Callable[[Event], bool | None] | None = None
    sample: Callable[[Event], float] | None = None
    buckets: tuple[float, ...] = LATENCY_BUCKETS

    @property
    def is_gauge(self) -> bool:
        return self.value is not None or self.member is not None

    @property
    def is_histogram(self) -> bool:
        return self.sample is not None

    @property
    def type(self) -> str:
        """``"counter"``, ``"gauge"`` or ``"histogram"``."""
        return "gauge" if self.is_gauge else "histogram" if self.is_histogram else "counter"


#: A row of :data:`METRICS`: the metric an event kind feeds, or the metrics.
Row = Metric | tuple[Metric, ...]


def _breaker_value(event: Event) -> float:
    return BREAKER_STATES.get(str(getattr(event, "new", "")), -1.0)


def _served_stale(event: Event) -> bool | None:
    """A stale answer served because DNS failed joins the set; a routine refresh does not."""
    reason = str(getattr(event, "reason", ""))
    return None if reason.startswith("stale: refreshing") else True


def _served_fresh(event: Event) -> bool:
    return False


def _seconds(event: Event) -> float:
    return float(getattr(event, "seconds", 0.0))


_STALE_NAMES = Metric(
    "dns.stale_names",
    "Names whose latest answer was served as last-known-good or static because DNS "
    "failed (refresh failing, empty answer distrusted, static fallback)",
    member=_served_stale,
)
_NOT_STALE = dataclasses.replace(_STALE_NAMES, member=_served_fresh)


_FAILOVERS = Metric(
    "failovers",
    "Requests moved to another address, region or endpoint after a failure; "
    "labelled with the event kind that reported it",
    ("kind",),
)

#: Event kind -> the metric it feeds (or a tuple of them). Kinds no metric counts are ignored.
METRICS: Final[Mapping[str, Row]] = MappingProxyType(
    {
        "dns.cache_hit": (
            Metric("dns.cache_hits", "Fresh answers served from memory"),
            _NOT_STALE,
        ),
        "dns.cache_miss": Metric(
            "dns.cache_misses", "Resolutions that waited for the providers: nothing usable held"
        ),
        "dns.stale_served": (
            Metric(
                "dns.stale_served",
                "Stale or last-known-good answers served (while refreshing or when providers fail)",
            ),
            _STALE_NAMES,
        ),
        "dns.static_served": (
            Metric("dns.static_served", "OUTLAST_DNS_STATIC addresses served as the last resort"),
            _STALE_NAMES,
        ),
        "dns.answer_updated": _NOT_STALE,
        "dns.lkg_serving": _STALE_NAMES,
        "dns.lkg_ended": _NOT_STALE,
        "dns.empty_distrusted": Metric(
            "dns.empty_distrusted",
            "Empty or NXDOMAIN answers for a name with a last-known-good answer, not believed",
            ("negative",),
        ),
        "dns.empty_accepted": (
            Metric(
                "dns.empty_accepted",
                "Empty or NXDOMAIN answers believed after holding for OUTLAST_DNS_KEEP_ON_EMPTY",
                ("negative",),
            ),
            _NOT_STALE,
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
        "http.request": Metric(
            "http.request_duration",
            "Seconds from sending a request through an outlast transport to its response "
            "headers (retries and backoff included), by status class (2xx ... 5xx, error)",
            ("status_class",),
            sample=_seconds,
        ),
        "fleet.unavailable": Metric(
            "fleet.unavailable", "Times Redis did not answer in time; outlast went on locally"
        ),
        "chaos.injected": Metric(
            "chaos.injected", "Faults injected by OUTLAST_CHAOS (not real)", ("fault",)
        ),
    }
)


def rows(metrics: Mapping[str, Row]) -> dict[str, tuple[Metric, ...]]:
    """The table with every row a tuple of metrics."""
    return {kind: row if isinstance(row, tuple) else (row,) for kind, row in metrics.items()}


def unique_metrics(metrics: Mapping[str, Row]) -> list[Metric]:
    """Each metric once (several kinds may feed one), in table order.

    Raises ValueError when two rows use one name with different labels or types.
    """
    seen: dict[str, Metric] = {}
    for row in rows(metrics).values():
        for metric in row:
            known = seen.setdefault(metric.name, metric)
            if known is not metric and (known.labels != metric.labels or known.type != metric.type):
                raise ValueError(f"metric {metric.name!r} is defined twice, differently")
    return list(seen.values())


class MetricsListener(abc.ABC):
    """A listener that feeds events to metrics; exporters fill in :meth:`add` and :meth:`set`.

    Cheap when installed: one dict lookup per event, label values read only for
    events that some metric counts.

    Added in 0.1.0.
    """

    __slots__ = ("_members", "_members_lock", "_metrics", "_rows")

    def __init__(self, metrics: Mapping[str, Row] = METRICS) -> None:
        unique_metrics(metrics)
        self._metrics = dict(metrics)
        self._rows = rows(metrics)
        self._members: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        self._members_lock = threading.Lock()

    @property
    def metrics(self) -> Mapping[str, Row]:
        """Event kind -> the metric it feeds (or a tuple of them)."""
        return MappingProxyType(self._metrics)

    def __call__(self, event: Event, /) -> None:
        row = self._rows.get(event.kind)
        if row is None:
            return
        for metric in row:
            names = metric.labels
            labels = tuple([str(getattr(event, name, "")) for name in names]) if names else ()
            if metric.member is not None:
                self._track(metric, labels, event, metric.member(event))
            elif metric.sample is not None:
                self.observe(metric, labels, metric.sample(event))
            elif metric.value is None:
                self.add(metric, labels)
            else:
                self.set(metric, labels, metric.value(event))

    def _track(
        self, metric: Metric, labels: tuple[str, ...], event: Event, joins: bool | None
    ) -> None:
        if joins is None:
            return
        host = str(getattr(event, "host", ""))
        key = (metric.name, labels)
        members = self._members.get(key)  # read without the lock: a hit changes nothing
        if (members is not None and host in members) == joins:
            return
        with self._members_lock:
            members = self._members.setdefault(key, set())
            if joins == (host in members) or (joins and len(members) >= MEMBERS_MAX):
                return  # no change: a hit on a name that was fresh already costs this much
            if joins:
                members.add(host)
            else:
                members.discard(host)
            size = len(members)
            self.set(metric, labels, float(size))

    @abc.abstractmethod
    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        """Add one to the counter ``metric`` for these label values."""

    @abc.abstractmethod
    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        """Set the gauge ``metric`` for these label values."""

    @abc.abstractmethod
    def observe(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        """Record ``value`` in the histogram ``metric`` for these label values."""


class Counts(MetricsListener):
    """The metrics in memory, with no dependency: for tests and quick checks.

    ``counts.value("dns.cache_hits")``, ``counts.value("dns.provider_errors",
    provider="udp://10.0.0.2")``; a counter never incremented is 0, a gauge never set
    is None. For a histogram, ``value`` is how many values were recorded and
    :meth:`samples` the values themselves.

    Added in 0.1.0.
    """

    __slots__ = ("_lock", "_samples", "_values")

    def __init__(self, metrics: Mapping[str, Row] = METRICS) -> None:
        super().__init__(metrics)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}
        self._samples: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        key = (metric.name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1.0

    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._values[(metric.name, labels)] = value

    def observe(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        key = (metric.name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + 1.0
            self._samples.setdefault(key, []).append(value)

    def _key(self, name: str, labels: Mapping[str, str]) -> tuple[Metric, tuple[str, ...]]:
        metric = next((m for m in unique_metrics(self._metrics) if m.name == name), None)
        if metric is None:
            raise KeyError(f"no metric named {name!r}")
        if set(labels) != set(metric.labels):
            raise ValueError(f"{name} takes the labels {metric.labels}, not {tuple(labels)}")
        return metric, tuple(labels[label] for label in metric.labels)

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of metric ``name`` for the given labels (all of them)."""
        metric, values = self._key(name, labels)
        with self._lock:
            held = self._values.get((name, values))
        if held is None and not metric.is_gauge:
            return 0.0
        return held

    def samples(self, name: str, **labels: str) -> list[float]:
        """The values recorded in the histogram ``name`` for the given labels."""
        _, values = self._key(name, labels)
        with self._lock:
            return list(self._samples.get((name, values), ()))

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every value held: metric name -> label values -> value."""
        result: dict[str, dict[tuple[str, ...], float]] = {}
        with self._lock:
            for (name, labels), value in self._values.items():
                result.setdefault(name, {})[labels] = value
        return result
