"""`movierec sql`: read-only SQL over the project database, for analysts and scripts.

It opens the file read-only and confined (movierec.db.confine): only SELECT statements, reading the
database and the published run files, nothing else on disk or the network. Like every reader it waits
briefly while the nightly job holds its short publish lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from movierec.cli.options import echo_json, echo_table, json_option, settings_options

if TYPE_CHECKING:
    from movierec.config import Settings


@click.command("sql")
@click.argument("query")
@json_option
@settings_options
def sql(settings: Settings, query: str, as_json: bool) -> None:
    """Run a read-only SQL QUERY against the movierec database and print the rows.

    Only SELECT (and EXPLAIN) over the database and the published run files: no file reads or writes
    elsewhere, no ATTACH, COPY, EXPORT or extension installs.

    Example: movierec sql "SELECT query_name, count(*) FROM latest_recommendations GROUP BY 1"
    """
    from movierec.db import run_analyst_sql

    columns, rows = run_analyst_sql(settings, query)
    if not columns:
        return
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    if as_json:
        echo_json(records)
    else:
        echo_table(records, columns)


COMMANDS: list[click.Command] = [sql]
