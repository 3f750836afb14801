"""CLI of the batch stage: saved queries, `batch run` / `batch report`, `recommend`, `show`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from movierec.cli.options import (
    ID,
    IdArgs,
    alpha_option,
    echo_json,
    echo_table,
    engine_options,
    filter_options,
    format_cell,
    json_option,
    quiet_option,
    settings_options,
)

if TYPE_CHECKING:
    from movierec.config import Settings

# --------------------------------------------------------------------------- saved queries


def _query_options(f: Any, for_update: bool = False) -> Any:
    default = None if for_update else True
    opts = [
        filter_options,
        click.option(
            "--candidates", type=int, default=None if for_update else 250, show_default=default,
            help="Movies fetched from the vector store and reranked per user.",
        ),
        click.option("--top-n", type=int, default=None if for_update else 10, show_default=default,
                     help="Length of each user's list."),
        click.option("--user", "users", type=int, multiple=True, help="Only these users (default: all)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def _update_options(f: Any) -> Any:
    return _query_options(f, for_update=True)


@click.group("queries")
def queries_group() -> None:
    """Saved queries: the searches the nightly batch answers for every user."""


@queries_group.command("add")
@click.argument("name")
@click.argument("text")
@_query_options
@settings_options
def queries_add(settings: Settings, name: str, text: str, **fields: Any) -> None:
    """Save a query NAME searching for TEXT.

    Example: movierec queries add zombies "zombie films" --genre Horror
    """
    from movierec.batch.queries import SavedQuery, add_query
    from movierec.db import connect

    users = tuple(fields.pop("users")) or None
    q = SavedQuery(name=name, text=text, users=users, **{k: (tuple(v) if isinstance(v, tuple) else v)
                                                          for k, v in fields.items()})  # fmt: skip
    with connect(settings) as con:
        saved = add_query(con, q)
    click.echo(f"saved query {saved.name!r}")


@queries_group.command("update")
@click.argument("name")
@click.option("--text", help="New search text.")
@_update_options
@click.option("--all-users", is_flag=True, help="Serve every user again (drop the --user list).")
@click.option("--no-genres", is_flag=True, help="Drop the genre filter.")
@click.option("--no-exclude-genres", is_flag=True, help="Drop the excluded genres.")
@click.option("--no-years", is_flag=True, help="Drop the year range.")
@settings_options
def queries_update(
    settings: Settings,
    name: str,
    text: str | None,
    all_users: bool,
    no_genres: bool,
    no_exclude_genres: bool,
    no_years: bool,
    **fields: Any,
) -> None:
    """Change some fields of saved query NAME; options not given stay as they are."""
    from movierec.batch.queries import clear_fields, update_query
    from movierec.db import connect, transaction

    changes: dict[str, Any] = {
        "text": text,
        "genres": tuple(fields["genres"]) or None,
        "exclude_genres": tuple(fields["exclude_genres"]) or None,
        "year_min": fields["year_min"],
        "year_max": fields["year_max"],
        "candidates": fields["candidates"],
        "top_n": fields["top_n"],
        "users": tuple(fields["users"]) or None,
    }
    # A flag that drops a field and an option that sets it, together: which one was meant is unknowable.
    for flag, on, options in (
        ("--all-users", all_users, (("--user", changes["users"]),)),
        ("--no-genres", no_genres, (("--genre", changes["genres"]),)),
        ("--no-exclude-genres", no_exclude_genres, (("--exclude-genre", changes["exclude_genres"]),)),
        ("--no-years", no_years, (("--year-min", changes["year_min"]), ("--year-max", changes["year_max"]))),
    ):
        given = [opt for opt, value in options if value is not None]
        if on and given:
            raise click.UsageError(f"{flag} and {given[0]} contradict each other: give one of them")
    clear = [f for f, flag in (("users", all_users), ("genres", no_genres),
                               ("exclude_genres", no_exclude_genres), ("year_min", no_years),
                               ("year_max", no_years)) if flag]  # fmt: skip
    with connect(settings) as con, transaction(con):
        clear_fields(con, name, clear)
        update_query(con, name, **changes)
    click.echo(f"updated query {name!r}")


@queries_group.command("list")
@json_option
@settings_options
def queries_list(settings: Settings, as_json: bool) -> None:
    """List saved queries."""
    from movierec.batch.queries import list_queries
    from movierec.db import connect

    with connect(settings, read_only=True) as con:
        qs = [q.to_dict() for q in list_queries(con)]
    if as_json:
        echo_json(qs)
    elif not qs:
        click.echo("no saved queries; add one with `movierec queries add NAME TEXT`", err=True)
    else:
        for q in qs:
            q["users"] = "all" if q["users"] is None else len(q["users"])
        echo_table(qs, ["name", "enabled", "text", "genres", "exclude_genres", "year_min", "year_max",
                   "candidates", "top_n", "users"])  # fmt: skip


@queries_group.command("show")
@click.argument("name")
@json_option
@settings_options
def queries_show(settings: Settings, name: str, as_json: bool) -> None:
    """Print one saved query."""
    from movierec.batch.queries import get_query
    from movierec.db import connect

    with connect(settings, read_only=True) as con:
        q = get_query(con, name).to_dict()
    if as_json:
        echo_json(q)
    else:
        for key, value in q.items():
            click.echo(f"{key:15} {'all' if key == 'users' and value is None else format_cell(value)}")


@queries_group.command("remove")
@click.argument("name")
@settings_options
def queries_remove(settings: Settings, name: str) -> None:
    """Delete saved query NAME (lists already published stay with their runs)."""
    from movierec.batch.queries import remove_query
    from movierec.db import connect

    with connect(settings) as con:
        remove_query(con, name)
    click.echo(f"removed query {name!r}")


def _toggle(enabled: bool) -> click.Command:
    @click.argument("name")
    @settings_options
    def command(settings: Settings, name: str) -> None:
        from movierec.batch.queries import set_enabled
        from movierec.db import connect

        with connect(settings) as con:
            set_enabled(con, name, enabled)
        click.echo(f"{'enabled' if enabled else 'disabled'} query {name!r}")

    command.__doc__ = f"{'Include' if enabled else 'Skip'} saved query NAME in the nightly batch."
    return click.command("enable" if enabled else "disable")(command)


queries_group.add_command(_toggle(True))
queries_group.add_command(_toggle(False))


# --------------------------------------------------------------------------- batch


@click.group("batch")
def batch_group() -> None:
    """The nightly batch: every saved query x every user, published to DuckDB."""


@batch_group.command("run")
@alpha_option
@json_option
@quiet_option
@settings_options
@engine_options
def batch_run(settings: Settings, alpha: float | None, as_json: bool, quiet: bool) -> None:
    """Score every enabled saved query for its users and publish the lists in one transaction.

    With --engine ray the scoring runs as tasks on a Ray cluster; the driver (this process) still encodes,
    fetches candidates and publishes.
    """
    from movierec.batch.run import run_batch

    summary = run_batch(settings, alpha=alpha, progress=not quiet)
    if as_json:
        echo_json(summary.to_dict())
    else:
        click.echo(summary.line())


@batch_group.command("report", cls=IdArgs)
@click.argument("run_id", type=ID, required=False)
@click.option("--chart", type=click.Path(dir_okay=False), help="Also write a PNG chart of the metrics.")
@json_option
@settings_options
def batch_report(settings: Settings, run_id: int | None, chart: str | None, as_json: bool) -> None:
    """Quality of a run's lists per query (default: the latest successful run), and once later ingests
    bring new ratings, what its users did next: hit rate and precision against one list for everyone."""
    from movierec.batch.report import report, write_chart
    from movierec.catalog import LIKED_RATING

    rep = report(settings, run_id)
    if chart:
        write_chart(rep, chart)
        click.echo(f"chart written to {chart}", err=True)
    if as_json:
        echo_json(rep)
        return
    run = rep["run"]
    click.echo(
        f"run {run['run_id']} ({run['status']}, {run['finished_at']}): {run['n_rows'] or 0:,} rows, "
        f"{run['n_users'] or 0:,} users, model {run['cf_model_version']}, alpha {run['alpha']}"
    )
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    echo_table(rep["queries"], ["query", "candidates_found", "users_served", "genre_precision",
                           "personalisation", "coverage", "distinct_movies"])  # fmt: skip
    since = rep["since"]
    if since and since["ratings"]:
        click.echo(
            f"\nwhat users did next: {since['ratings']:,} ratings by {since['users']:,} users in "
            f"{since['ingests']} ingest(s) since the run; hit rate = the list holds a film the user then "
            f"rated >= {LIKED_RATING:g}; same list = the run's most-listed films for the query, given to "
            "everyone"
        )
        echo_table([{"query": q["query"], "active users": q["active_since"], "hit rate": q["hit_rate_since"],
                     "same list hit rate": q["same_list_hit_rate_since"], "precision": q["precision_since"]}
                    for q in rep["queries"]],
                   ["query", "active users", "hit rate", "same list hit rate", "precision"])  # fmt: skip


# --------------------------------------------------------------------------- ad hoc


@click.command("recommend", cls=IdArgs)
@click.argument("user_id", type=int)
@click.argument("text")
@click.option("--top-n", type=int, default=10, show_default=True)
@click.option("--candidates", type=int, default=250, show_default=True)
@filter_options
@alpha_option
@json_option
@settings_options
def recommend_cmd(settings: Settings, user_id: int, text: str, as_json: bool, **kw: Any) -> None:
    """Personalised list for USER_ID and TEXT, computed now exactly as the nightly batch would."""
    from movierec.batch.recommend import recommend
    from movierec.embedder import language_notice

    if notice := language_notice(settings.model, text):
        click.echo(f"note: {notice}", err=True)
    res = recommend(settings, user_id, text, **kw)
    if res.notice:
        click.echo(f"note: {res.notice}", err=True)
    if not res.items:  # as `search` says it (an empty table alone looked like a failure)
        click.echo(
            "note: no movies to recommend: none matches the filters, or the user rated them all", err=True
        )
    if as_json:
        keys = ("rank", "movie_id", "title", "year", "genres", "score", "similarity", "source")
        echo_json([{k: item[k] for k in keys} for item in res.items])
        return
    if res.history:
        click.echo(f"User {user_id}'s highest-rated movies:")
        history = [{**h, "rating": f"{h['rating']:.1f}"} for h in res.history]
        echo_table(history, ["rating", "movie_id", "title", "genres"])
        click.echo("")
    click.echo(f"Recommended for user {user_id}: {text}")
    echo_table(res.items, ["rank", "movie_id", "title", "genres", "score", "similarity", "source"])


@click.command("show", cls=IdArgs)
@click.argument("user_id", type=int)
@click.option("--query", help="Only this saved query.")
@json_option
@settings_options
def show_cmd(settings: Settings, user_id: int, query: str | None, as_json: bool) -> None:
    """The lists the last successful batch run published for USER_ID."""
    from movierec.batch.recommend import show

    items = show(settings, user_id, query)
    if as_json:
        keys = ("query", "rank", "movie_id", "title", "year", "genres", "score", "similarity", "source",
                "because_movie_id", "because_title")  # fmt: skip
        echo_json([{k: item[k] for k in keys} for item in items])
        return
    click.echo(f"run {items[0]['run_id']}")
    for item in items:
        item["because"] = f"because you liked {item['because_title']}" if item["because_title"] else ""
    echo_table(items, ["query", "rank", "movie_id", "title", "genres", "score", "source", "because"])


COMMANDS: list[click.Command] = [queries_group, batch_group, recommend_cmd, show_cmd]
