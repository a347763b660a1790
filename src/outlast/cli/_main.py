"""The ``outlast`` command group, ``outlast resolve NAME``, and the console entry point."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from outlast._exceptions import ConfigError, InvalidHostError, ResolveError
from outlast.cli._common import check_name, exit_now, load_settings, show_warnings
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
    query = check_name(name, allow_ip=True)  # before any work, whatever OUTLAST_* says
    load_settings()
    try:
        with Resolver.from_env() as resolver:
            answer = resolver.resolve(query)
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


#: click >= 8.2 raises this for a group run with no command (older click prints the help).
_NO_ARGS: tuple[type[BaseException], ...] = tuple(
    filter(None, [getattr(click.exceptions, "NoArgsIsHelpError", None)])
)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script's entry point: a user error is one line on stderr and exit 2.

    Ends the process with :func:`~outlast.cli._common.exit_now`, so that no worker
    thread left in a hung ``getaddrinfo`` holds it past the command's timeout.
    """
    show_warnings()
    code: int | str | None = 0
    try:
        result = cli.main(args=argv, prog_name="outlast", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code
    except click.exceptions.Abort:
        click.echo("outlast: aborted", err=True)
        code = 130
    except click.ClickException as exc:
        if isinstance(exc, _NO_ARGS):  # plain `outlast`: the help, not an error line
            click.echo(exc.format_message(), err=True)
        else:
            click.echo(f"outlast: {exc.format_message()}", err=True)
        code = exc.exit_code
    except ConfigError as exc:  # a setting only a later step could check
        click.echo(f"outlast: {exc}", err=True)
        code = 2
    if code is None:
        code = 0
    elif not isinstance(code, int):
        click.echo(f"outlast: {code}", err=True)
        code = 1
    exit_now(code)
