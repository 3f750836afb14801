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


MAX_ROWS = 100_000  # default --max-rows: about 70 MB of Python rows; bigger extracts belong in pandas/DuckDB


@click.command("sql")
@click.argument("query")
@click.option(
    "--max-rows",
    type=click.IntRange(1),
    default=MAX_ROWS,
    show_default=True,
    help="Print at most this many rows; a note on stderr says when the result had more.",
)
@json_option
@settings_options
def sql(settings: Settings, query: str, max_rows: int, as_json: bool) -> None:
    """Run one read-only SQL QUERY against the movierec database and print the rows.

    Only SELECT (and EXPLAIN) over the database and the published run files: no file reads or writes
    elsewhere, no ATTACH, COPY, EXPORT or extension installs. Larger extracts: `movierec.open().sql(...)`
    returns a DataFrame, or open the database read-only with DuckDB.

    Example: movierec sql "SELECT query_name, count(*) FROM latest_recommendations GROUP BY 1"
    """
    from movierec.db import run_analyst_sql

    columns, rows, more = run_analyst_sql(settings, query, max_rows)
    if more:
        click.echo(
            f"note: showing the first {max_rows:,} rows; the result has more (add LIMIT, or --max-rows)",
            err=True,
        )
    if not columns:
        return
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    if as_json:
        echo_json(records)
    else:
        echo_table(records, columns)


COMMANDS: list[click.Command] = [sql]
