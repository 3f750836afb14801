"""`movierec embed` and `movierec search`: thin click commands over ingest.embed and ingest.search.

Only click and light modules are imported here; torch and sentence-transformers load inside the
commands, so `movierec --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from movierec.cli.options import (
    LIST_LENGTH,
    echo_json,
    echo_table,
    filter_options,
    json_option,
    quiet_option,
    settings_options,
)

if TYPE_CHECKING:
    from movierec.config import Settings

BATCH_SIZE = 64


@click.command()
@settings_options
@click.option(
    "--batch-size",
    type=LIST_LENGTH,
    default=BATCH_SIZE,
    show_default=True,
    help="Texts per model forward pass.",
)
@click.option(
    "--with-tags/--without-tags",
    default=True,
    show_default=True,
    help="User tags in the movie texts: the 5 most frequent (counted over users) in the title text, "
    "every tag in the keyword vector.",
)
@click.option(
    "--rebuild", is_flag=True, help="Re-embed every movie into a new store that replaces the old one."
)
@json_option
@quiet_option
def embed(
    settings: Settings, batch_size: int, with_tags: bool, rebuild: bool, as_json: bool, quiet: bool
) -> None:
    """Embed every movie's title and genres into the vector store (incremental).

    Only new or changed movies are embedded and upserted; movies gone from the catalogue are removed.
    A store built by another model is rebuilt (--rebuild forces it, e.g. for a damaged store): the new
    store is built beside the old one and switched in at the end. Uses the embedded Qdrant Edge store
    under HOME, or the Qdrant server at --qdrant-url / QDRANT_URL.
    """
    from movierec.ingest.embed import embed_movies

    summary = embed_movies(
        settings, batch_size=batch_size, with_tags=with_tags, progress=not quiet, rebuild=rebuild
    )
    if as_json:
        echo_json(summary.as_dict())
    else:
        click.echo(summary.line())


@click.command()
@settings_options
@click.argument("text")
@click.option("--limit", "-n", type=int, default=10, show_default=True, help="Number of movies.")
@filter_options
@json_option
def search(
    settings: Settings,
    text: str,
    limit: int,
    genres: tuple[str, ...],
    exclude_genres: tuple[str, ...],
    year_min: int | None,
    year_max: int | None,
    as_json: bool,
) -> None:
    """Movies whose title and genres are closest in meaning to TEXT.

    Example: movierec search "space adventure" --genre Sci-Fi --year-min 1980
    """
    from movierec.embedder import language_notice
    from movierec.ingest.search import search as run_search
    from movierec.store import SearchFilter

    if notice := language_notice(settings.model, text):
        click.echo(f"note: {notice}", err=True)

    flt = SearchFilter(genres=genres, exclude_genres=exclude_genres, year_min=year_min, year_max=year_max)
    rows = run_search(settings, text, limit=limit, flt=flt)
    if as_json:
        echo_json(rows)
    elif rows:
        ranked = [{"rank": i, **row} for i, row in enumerate(rows, 1)]
        columns = ["rank", "movie_id", "title", "genres", "score"]
        echo_table(ranked, columns, headers={"movie_id": "movie id", "score": "similarity"})
    else:
        click.echo("no movies match the filters", err=True)


COMMANDS: list[click.Command] = [embed, search]
