"""How the drill's results are shown: a table, JSON, and a timeline plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from outlast.cli._drill._scenarios import ScenarioReport

__all__ = ["as_json", "plot", "table"]


def table(reports: list[ScenarioReport]) -> str:
    header = (
        f"{'scenario / client':34s} {'available':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'backend load':>12s} {'repair adopted':>14s}"
    )
    lines = [header, "-" * len(header)]
    for report in reports:
        lines.append(report.name)
        for name, client in report.clients.items():
            adopted = "-"
            if report.name == "dns-record-empty":
                adopted = (
                    "never"
                    if client.repair_adopted_s is None
                    else (f"{client.repair_adopted_s:.1f} s")
                )
            lines.append(
                f"  {name:32s} {client.availability * 100:8.1f}% {client.p50_ms:8.1f} "
                f"{client.p99_ms:8.1f} {client.backend_load:11.2f}x {adopted:>14s}"
            )
        if report.show_load:  # the storm: the load on the backend is the point
            lines.append(_fault_load(report))
    return "\n".join(lines)


def _fault_load(report: ScenarioReport) -> str:
    """One line: each client's requests per second at the backend during the fault."""
    rates = {name: c.fault_load for name, c in report.clients.items()}
    first = next(iter(rates.values()))
    shown = []
    for name, rate in rates.items():
        if rate is None:
            continue
        ratio = f" ({rate / first:.2f}x)" if first and name != next(iter(rates)) else ""
        shown.append(f"{name} {rate:.1f}{ratio}")
    return "  requests/s at the backend during the fault: " + ", ".join(shown)


def as_json(reports: list[ScenarioReport]) -> str:
    document: dict[str, Any] = {
        "scenarios": [
            {
                "name": r.name,
                "title": r.title,
                "fault_window_s": list(r.fault_window),
                "clients": {name: c.as_json() for name, c in r.clients.items()},
            }
            for r in reports
        ]
    }
    return json.dumps(document, indent=2)


def plot(reports: list[ScenarioReport], path: Path) -> None:
    """Each client's requests over time (green: good, red: failed), the fault shaded.

    Where the backend's load is the point (the 503 storm), a second axis draws the
    requests per second that reach the backend from each client. Every panel has a
    legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(len(reports), 1, figsize=(10, 2.4 * len(reports)), squeeze=False)
    for axis, report in zip(axes[:, 0], reports, strict=True):
        names = list(report.clients)
        axis.axvspan(*report.fault_window, color="0.85")
        for row, name in enumerate(names):
            timeline = report.clients[name].timeline
            good = [t for t, ok in timeline if ok]
            bad = [t for t, ok in timeline if not ok]
            axis.scatter(good, [row] * len(good), s=4, color="tab:green", marker="|")
            axis.scatter(bad, [row] * len(bad), s=4, color="tab:red", marker="|")
        axis.set_yticks(range(len(names)), names)
        axis.set_ylim(-0.6, len(names) - 0.4)
        axis.set_title(report.title, fontsize=9, loc="left")
        axis.set_xlabel("seconds", fontsize=8)
        handles: list[Any] = [
            Line2D([], [], color="tab:green", marker="|", linestyle="", label="good answer"),
            Line2D([], [], color="tab:red", marker="|", linestyle="", label="failed or > 1 s"),
            Patch(color="0.85", label="fault"),
        ]
        if report.show_load:
            load_axis = axis.twinx()
            for index, name in enumerate(names):
                points = report.clients[name].load
                (line,) = load_axis.step(
                    [t for t, _ in points],
                    [rate for _, rate in points],
                    where="post",
                    color=f"C{index + 4}",
                    linewidth=1.2,
                    label=f"backend load: {name}",
                )
                handles.append(line)
            load_axis.set_ylabel("requests/s at the backend", fontsize=8)
            load_axis.set_ylim(bottom=0)
        axis.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.08, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
