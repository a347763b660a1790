"""The ``outlast`` command group, ``outlast resolve NAME``, and the console entry point."""

from __future__ import annotations

import json
import sys

import click

from outlast._exceptions import ConfigError, InvalidHostError, ResolveError
from outlast.cli._doctor import doctor
from outlast.cli._drill_command import drill
from outlast.dns import Resolver


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="outlast")
def cli() -> None:
    """outlast: keep a service working when its cloud provider's control plane fails."""


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def resolve(name: str, as_json: bool) -> None:
    """Resolve NAME through the outlast resolver configured by OUTLAST_DNS_* variables.

    Prints the addresses in the order a client tries them, where they came from, their
    TTL and whether the answer is stale. Exits 1 when NAME cannot be resolved.
    """
    try:
        with Resolver.from_env() as resolver:
            answer = resolver.resolve(name)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except InvalidHostError as exc:
        raise click.UsageError(f"NAME {name!r} is not a valid hostname: {exc.reason}") from exc
    except ResolveError as exc:
        click.echo(f"outlast: {exc}", err=True)
        sys.exit(1)
    if as_json:
        document = {
            "host": answer.host,
            "addresses": list(answer.addresses),
            "source": answer.source,
            "ttl": answer.ttl,
            "stale": answer.stale,
        }
        click.echo(json.dumps(document))
        return
    for address in answer.addresses:
        click.echo(address)
    click.echo(f"source: {answer.source}")
    click.echo(f"ttl: {answer.ttl:g}s")
    click.echo(f"stale: {'yes' if answer.stale else 'no'}")


cli.add_command(doctor)
cli.add_command(drill)


def main(argv: list[str] | None = None) -> None:
    """The console script's entry point: a user error is one line on stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="outlast", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("outlast: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"outlast: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
