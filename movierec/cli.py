"""The root `movierec` command. Each stage package contributes its commands (a `COMMANDS` list in its
`cli` module); those modules import only click at load time, so `movierec --help` stays fast."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from movierec import __version__
from movierec.errors import MovierecError

STAGE_CLI_MODULES = ("ingest.cli", "ingest.vector_cli", "cf.cli", "batch.cli", "movierec.sql_cli")


class MovierecGroup(click.Group):
    """Turns our own exceptions into a one-line error and exit code 1, wherever they are raised."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MovierecError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=MovierecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="movierec")
def main() -> None:
    """movierec: nightly personalised recommendations for saved text queries.

    Pipeline: ingest (MovieLens -> DuckDB), embed (movie text -> Qdrant), train (Keras CF model),
    batch run (saved queries x users -> DuckDB tables). `movierec nightly` runs all of it.
    """


for _module in STAGE_CLI_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
