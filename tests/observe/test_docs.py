"""docs/observability.md says what the code does: every event and every metric."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import outlast.aws
import outlast.chaos
import outlast.dns
import outlast.fleet
import outlast.http
import outlast.policy
from outlast import Event
from outlast.observe import METRICS, Metric

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def _events() -> list[type[Event]]:
    found = []
    for module in (
        outlast.dns,
        outlast.policy,
        outlast.http,
        outlast.aws,
        outlast.fleet,
        outlast.chaos,
    ):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event:
                found.append(obj)
    return found


def test_the_event_catalogue_matches_the_events() -> None:
    rows = re.findall(
        r"^\| `([a-z_.]+)` \| `(\w+)` \| ([^|]+) \| ([A-Z]+) \|", DOC.read_text(), re.M
    )
    documented = {
        kind: (cls, re.findall(r"`(\w+)`", fields), level) for kind, cls, fields, level in rows
    }
    expected = {
        e.kind: (e.__name__, [f.name for f in dataclasses.fields(e)], logging.getLevelName(e.level))
        for e in _events()
    }
    assert documented == expected


def test_the_metrics_table_matches_the_model() -> None:
    rows = re.findall(
        r"^\| `(outlast_\w+)` / `(outlast\.[\w.]+)` \| (\w+) \|([^|]*)\|([^|]+)\|",
        DOC.read_text(),
        re.M,
    )
    documented = {
        otel_name.removeprefix("outlast."): (
            prom_name,
            kind,
            tuple(re.findall(r"`(\w+)`", labels)),
            set(re.findall(r"`([a-z_]+\.[a-z_]+)`", fed_by)),
        )
        for prom_name, otel_name, kind, labels, fed_by in rows
    }
    expected: dict[str, tuple[str, str, tuple[str, ...], set[str]]] = {}
    suffixes = {"gauge": "", "counter": "_total", "histogram": "_seconds"}
    for event_kind, row in METRICS.items():
        for metric in row if isinstance(row, tuple) else (row,):
            assert isinstance(metric, Metric)
            prom = "outlast_" + metric.name.replace(".", "_") + suffixes[metric.type]
            entry = expected.setdefault(metric.name, (prom, metric.type, metric.labels, set()))
            entry[3].add(event_kind)
    assert documented == expected
