"""`movierec sql`: read-only SQL over the project database, for analysts and scripts.

It opens the file read-only (so it can never change anything) and, like every reader, waits briefly while
the nightly job holds its short publish lock.
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

    Example: movierec sql "SELECT query_name, count(*) FROM latest_recommendations GROUP BY 1"
    """
    import duckdb

    from movierec.db import connect
    from movierec.errors import BadInputError

    if not query.strip():
        raise BadInputError("empty SQL query")
    with connect(settings, read_only=True) as con:
        try:
            cur = con.execute(query)
        except duckdb.Error as exc:
            first_line = str(exc).splitlines()[0]
            raise BadInputError(f"SQL failed: {first_line}") from exc
        if cur.description is None:
            return
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, columns)


COMMANDS: list[click.Command] = [sql]
