"""outlast.observe: metrics exporters fed by outlast's event stream.

Owns the counter model (which event kinds feed which counters, gauges and histograms,
and with which labels) and the exporters that turn it into Prometheus or OpenTelemetry
metrics. Each exporter is a listener: pass it to ``Resolver(listeners=[...])`` and
``Policy(listeners=[...])``. :class:`Counts` keeps the same counters in memory with
no dependency, for tests and ad-hoc checks.

Imports only ``outlast._events``. prometheus_client (``outlast[prometheus]``) and
opentelemetry-api (``outlast[otel]``) are imported when :func:`prometheus` or
:func:`otel` is called, never at ``import outlast``.
"""

from __future__ import annotations

import collections.abc
import typing

from outlast.observe._metrics import (
    BREAKER_STATES,
    LATENCY_BUCKETS,
    METRICS,
    Counts,
    Metric,
    MetricsListener,
)

if typing.TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    from outlast.observe._metrics import Row
    from outlast.observe._otel import OTelListener
    from outlast.observe._prometheus import PrometheusListener

__all__ = [
    "BREAKER_STATES",
    "Counts",
    "LATENCY_BUCKETS",
    "METRICS",
    "Metric",
    "MetricsListener",
    "otel",
    "prometheus",
]

_MISSING = "this exporter needs {what}: pip install 'outlast[{extra}]'"


def prometheus(
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "outlast",
    metrics: collections.abc.Mapping[str, Row] = METRICS,
) -> PrometheusListener:
    """A listener that counts outlast's events in Prometheus metrics.

    The metrics are registered in ``registry`` (prometheus_client's default registry
    when None) at once, named ``{namespace}_{metric}`` with dots made underscores:
    ``outlast_dns_cache_hits_total``. Create one per registry and give it to every
    resolver and policy. ``metrics`` maps event kinds to what they count (default
    :data:`METRICS`). Needs ``outlast[prometheus]``.

    Added in 0.1.0.
    """
    try:
        from outlast.observe._prometheus import PrometheusListener
    except ImportError as exc:
        raise ImportError(_MISSING.format(what="prometheus_client", extra="prometheus")) from exc
    return PrometheusListener(registry, namespace=namespace, metrics=metrics)


def otel(
    meter_provider: MeterProvider | None = None,
    *,
    metrics: collections.abc.Mapping[str, Row] = METRICS,
) -> OTelListener:
    """A listener that counts outlast's events in OpenTelemetry metrics.

    Instruments are created on the ``"outlast"`` meter of ``meter_provider`` (the
    global one when None), named ``outlast.{metric}``: ``outlast.dns.cache_hits``.
    ``metrics`` maps event kinds to what they count (default :data:`METRICS`). Needs
    ``outlast[otel]``.

    Added in 0.1.0.
    """
    try:
        from outlast.observe._otel import OTelListener
    except ImportError as exc:
        raise ImportError(_MISSING.format(what="opentelemetry-api", extra="otel")) from exc
    return OTelListener(meter_provider, metrics=metrics)
