"""``outlast drill``: the command around :mod:`outlast.cli._drill`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import click

from outlast.cli._common import finite
from outlast.cli._drill import SCENARIOS, run_drill
from outlast.cli._drill._report import as_json, plot, table
from outlast.cli._drill._scenarios import NothingToRun

DEFAULT_SECONDS = 48.0


def _writable_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """The plot's path, checked before the drill runs: its folder exists and is writable."""
    if value is None:
        return None
    folder = value.parent if str(value.parent) else Path(".")
    if not folder.is_dir():
        raise click.BadParameter(f"{str(folder)!r} is not an existing folder", ctx, param)
    existed = value.exists()
    try:
        with value.open("ab"):  # appends nothing: an existing file is left as it is
            pass
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {str(value)!r}: {exc.strerror}", ctx, param
        ) from None
    if not existed:
        value.unlink(missing_ok=True)
    return value


def own_settings() -> list[str]:
    """Remove the caller's ``OUTLAST_*`` variables from this process; return their names.

    The drill compares clients at outlast's defaults: ``OUTLAST_DISABLE`` or
    ``OUTLAST_CHAOS`` in the caller's environment would otherwise reach its outlast rows.
    """
    names = sorted(name for name in os.environ if name.startswith("OUTLAST_"))
    for name in names:
        del os.environ[name]
    return names


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=8),
    callback=finite,
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
    callback=_writable_file,
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
    soon a repaired record was adopted. Nothing leaves this machine. The drill runs on
    its own settings: the caller's OUTLAST_* variables are ignored.
    """
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        raise click.UsageError("--plot needs matplotlib: pip install 'outlast[plot]'")
    ignored = own_settings()
    if ignored:
        click.echo(
            f"outlast: the drill runs on its own settings; ignoring {', '.join(ignored)}", err=True
        )
    try:
        reports = run_drill(duration, scenarios, lambda line: click.echo(line, err=True))
    except NothingToRun as exc:
        raise click.UsageError(f"{exc} (every scenario asked for was skipped)") from exc
    click.echo(as_json(reports) if as_json_flag else table(reports))
    if plot_path is not None:
        try:
            plot(reports, plot_path)
        except OSError as exc:  # the folder went away during the drill
            click.echo(f"outlast: cannot write {str(plot_path)!r}: {exc.strerror}", err=True)
            raise SystemExit(1) from None
        click.echo(f"timeline written to {plot_path}", err=True)
