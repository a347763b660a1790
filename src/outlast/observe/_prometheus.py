"""The Prometheus exporter: outlast's metrics as prometheus_client counters and gauges.

Imported only when :func:`outlast.observe.prometheus` is called; needs
``outlast[prometheus]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

from outlast.observe._metrics import METRICS, Metric, MetricsListener, unique_metrics

__all__ = ["PrometheusListener"]


class PrometheusListener(MetricsListener):
    """Counts events in prometheus_client metrics registered in one registry.

    Build it with :func:`outlast.observe.prometheus`. Each labelled child is looked up
    once and kept, so an event costs two dict lookups and an increment.

    Added in 0.1.0.
    """

    __slots__ = ("_children", "_families", "registry")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "outlast",
        metrics: Mapping[str, Metric] = METRICS,
    ) -> None:
        super().__init__(metrics)
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self._families: dict[str, Any] = {}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        for metric in unique_metrics(metrics):
            name = f"{namespace}_{metric.name}".replace(".", "_")
            family: prometheus_client.Counter | prometheus_client.Gauge
            if metric.is_gauge:
                family = prometheus_client.Gauge(
                    name, metric.description, metric.labels, registry=self.registry
                )
            else:
                family = prometheus_client.Counter(
                    name, metric.description, metric.labels, registry=self.registry
                )
            self._families[metric.name] = family
            if not metric.labels:
                self._children[(metric.name, ())] = family

    def _child(self, metric: Metric, labels: tuple[str, ...]) -> Any:
        key = (metric.name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._families[metric.name].labels(*labels)
            self._children[key] = child
        return child

    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        self._child(metric, labels).inc()

    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        self._child(metric, labels).set(value)
