"""`movierec check`: what is damaged and what to run (movierec.doctor)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from movierec.cli.options import echo_json, json_option, settings_options

if TYPE_CHECKING:
    from movierec.config import Settings


@click.command("check")
@click.option("--quick", is_flag=True, help="Only the cheap checks: the database and the run files exist.")
@json_option
@settings_options
def check_cmd(settings: Settings, quick: bool, as_json: bool) -> None:
    """Check the database, the published runs' files, the current CF model and the vector store.

    Prints one line per check and, for each problem, the command that recovers. Exit code 0 only when
    everything is usable. Changes nothing.
    """
    from movierec.doctor import check

    result = check(settings, full=not quick)
    if as_json:
        echo_json(result.as_dict())
    else:
        for finding in result.findings:
            click.echo(finding.line())
    if not result.ok:
        raise click.exceptions.Exit(1)


COMMANDS: list[click.Command] = [check_cmd]
