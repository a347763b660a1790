"""The OpenTelemetry exporter: outlast's metrics as OpenTelemetry instruments.

Counters are synchronous ``Counter`` instruments, histograms ``Histogram`` instruments
(unit ``s``, outlast's buckets given as advice); gauges are observable gauges whose
callback reports the last value set for each label set. Only opentelemetry-api is
used: the application chooses the SDK, readers and exporters. Imported only when
:func:`outlast.observe.otel` is called; needs ``outlast[otel]``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
)
from opentelemetry.util.types import Attributes

from outlast.observe._metrics import METRICS, Metric, MetricsListener, Row, unique_metrics

__all__ = ["OTelListener"]


def _outlast_version() -> str:
    try:
        return version("outlast")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


class OTelListener(MetricsListener):
    """Counts events in instruments of the ``"outlast"`` meter.

    Build it with :func:`outlast.observe.otel`. Attribute dicts are built once per
    label set and kept.

    Added in 0.1.0.
    """

    __slots__ = ("_attributes", "_counters", "_gauge_lock", "_gauges", "_histograms")

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        metrics: Mapping[str, Row] = METRICS,
    ) -> None:
        super().__init__(metrics)
        provider = otel_metrics.get_meter_provider() if meter_provider is None else meter_provider
        meter = provider.get_meter("outlast", _outlast_version())
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self._gauge_lock = threading.Lock()
        self._attributes: dict[tuple[str, tuple[str, ...]], Attributes] = {}
        for metric in unique_metrics(metrics):
            name = f"outlast.{metric.name}"
            if metric.is_gauge:
                self._gauges[metric.name] = {}
                meter.create_observable_gauge(
                    name, callbacks=[_Observe(self, metric)], description=metric.description
                )
            elif metric.is_histogram:
                self._histograms[metric.name] = _histogram(meter, name, metric)
            else:
                self._counters[metric.name] = meter.create_counter(
                    name, description=metric.description
                )

    def _attrs(self, metric: Metric, labels: tuple[str, ...]) -> Attributes:
        key = (metric.name, labels)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = dict(zip(metric.labels, labels, strict=True))
            self._attributes[key] = attributes
        return attributes

    def add(self, metric: Metric, labels: tuple[str, ...]) -> None:
        self._counters[metric.name].add(1, self._attrs(metric, labels))

    def set(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        with self._gauge_lock:
            self._gauges[metric.name][labels] = value

    def observe(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        self._histograms[metric.name].record(value, self._attrs(metric, labels))

    def observations(self, metric: Metric) -> list[Observation]:
        """The gauge's current values, one observation per label set."""
        with self._gauge_lock:
            values = list(self._gauges[metric.name].items())
        return [Observation(value, self._attrs(metric, labels)) for labels, value in values]


def _histogram(meter: Meter, name: str, metric: Metric) -> Histogram:
    try:  # bucket advice: opentelemetry-api 1.23 and later
        return meter.create_histogram(
            name,
            unit="s",
            description=metric.description,
            explicit_bucket_boundaries_advisory=list(metric.buckets),
        )
    except TypeError:  # pragma: no cover - an older API: the SDK's default buckets
        return meter.create_histogram(name, unit="s", description=metric.description)


class _Observe:
    """The callback of one observable gauge."""

    __slots__ = ("_listener", "_metric")

    def __init__(self, listener: OTelListener, metric: Metric) -> None:
        self._listener = listener
        self._metric = metric

    def __call__(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._listener.observations(self._metric)
