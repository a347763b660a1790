"""The Prometheus exporter: outlast's metrics as prometheus_client counters, gauges, histograms.

A histogram's name ends in ``_seconds`` (``outlast_http_request_duration_seconds``).

Imported only when :func:`outlast.observe.prometheus` is called; needs
``outlast[prometheus]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry

from outlast.observe._metrics import METRICS, Metric, MetricsListener, Row, unique_metrics

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
        metrics: Mapping[str, Row] = METRICS,
    ) -> None:
        super().__init__(metrics)
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self._families: dict[str, Any] = {}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        for metric in unique_metrics(metrics):
            name = f"{namespace}_{metric.name}".replace(".", "_")
            family: (
                prometheus_client.Counter | prometheus_client.Gauge | prometheus_client.Histogram
            )
            if metric.is_gauge:
                family = prometheus_client.Gauge(
                    name, metric.description, metric.labels, registry=self.registry
                )
            elif metric.is_histogram:
                family = prometheus_client.Histogram(
                    f"{name}_seconds",
                    metric.description,
                    metric.labels,
                    registry=self.registry,
                    buckets=metric.buckets,
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

    def observe(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        self._child(metric, labels).observe(value)
