"""``outlast drill``: the command around :mod:`outlast.cli._drill`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from outlast.cli._drill import SCENARIOS, run_drill
from outlast.cli._drill._report import as_json, plot, table
from outlast.cli._drill._scenarios import NothingToRun

DEFAULT_SECONDS = 48.0


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=8),
    default=DEFAULT_SECONDS,
    show_default=True,
    help="Seconds for the whole drill, shared by the scenarios.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice([s.name for s in SCENARIOS]),
    help="Run only this scenario (repeatable).",
)
@click.option("--json", "as_json_flag", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Draw a timeline of every request to this PNG file (needs outlast[plot]).",
)
def drill(
    duration: float, scenarios: tuple[str, ...], as_json_flag: bool, plot_path: Path | None
) -> None:
    """Replay cloud control-plane incidents on loopback, with and without outlast.

    Starts two DNS servers and an HTTP service on 127.0.0.0/8 and, for each incident,
    runs plain httpx (names looked up with no cache, or with a TTL-honouring cache)
    beside an outlast client, a request every 50 ms each; with boto3 and moto installed,
    also plain boto3 beside outlast.aws against moto's DynamoDB. Prints availability (a good
    answer within 1 s), p50/p99 latency, the load on the backend per request and how
    soon a repaired record was adopted. Nothing leaves this machine.
    """
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        raise click.UsageError("--plot needs matplotlib: pip install 'outlast[plot]'")
    try:
        reports = run_drill(duration, scenarios, lambda line: click.echo(line, err=True))
    except NothingToRun as exc:
        raise click.UsageError(f"{exc} (every scenario asked for was skipped)") from exc
    click.echo(as_json(reports) if as_json_flag else table(reports))
    if plot_path is not None:
        plot(reports, plot_path)
        click.echo(f"timeline written to {plot_path}", err=True)
