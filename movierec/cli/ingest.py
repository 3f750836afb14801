"""`movierec ingest DIR` and `movierec data synth DIR`: thin click commands over movierec.ingest."""

from __future__ import annotations

from pathlib import Path

import click

from movierec.cli.options import (
    ID,
    MAX_SYNTH_RATINGS,
    SEED,
    echo_json,
    json_option,
    quiet_option,
    settings_options,
)

# movierec.ingest.formats.FORMATS, declared here so `--help` needs no pyarrow; tests/test_cli.py compares.
FORMAT_CHOICES = ("csv", "dat", "100k")


@click.command("ingest")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    help="Force the layout: csv (ml-latest, ml-20m/25m/32m), dat (ml-1m, ml-10m), 100k. Default: detect.",
)
@click.option(
    "--skip-bad-rows", is_flag=True, help="Load the valid rows; report bad ones instead of failing."
)
@settings_options
@json_option
@quiet_option
def ingest_command(
    directory: str, fmt: str | None, skip_bad_rows: bool, settings, as_json: bool, quiet: bool
):
    """Load a MovieLens directory DIRECTORY into DuckDB (movies, ratings, tags, links).

    Idempotent: re-ingesting the same snapshot changes nothing; a newer snapshot updates changed rows.
    Any bad row aborts the whole load with FILE:LINE and leaves the database as it was, unless
    --skip-bad-rows.
    """
    from movierec.ingest.load import ingest_dir

    report = ingest_dir(settings, directory, fmt=fmt, skip_bad_rows=skip_bad_rows, progress=not quiet)
    if as_json:
        echo_json(report.to_dict())
        return
    new = sum(report.new.values())
    updated = sum(report.updated.values())
    click.echo(
        f"{report.movies:,} movies, {report.ratings:,} ratings from {report.users:,} users, "
        f"{report.tags:,} tags, {report.links:,} links in {settings.db_path}"
    )
    click.echo(f"{report.format} format, {new:,} rows new, {updated:,} updated, in {report.seconds:.1f} s")
    if report.skipped:
        click.echo(f"skipped {report.skipped:,} bad rows:")
        for reason, n in report.skipped_reasons.items():
            click.echo(f"  {n:>9,}  {reason}")


@click.group("data")
def data_group() -> None:
    """Data sets for tests and benchmarks."""


@data_group.command("synth")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--users", type=ID, default=610, show_default=True)
@click.option("--movies", type=ID, default=9742, show_default=True)
@click.option("--ratings", type=click.IntRange(1, MAX_SYNTH_RATINGS), default=100836, show_default=True)
@click.option("--tags", type=click.IntRange(0, MAX_SYNTH_RATINGS), help="Tag rows (default: ratings / 25).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Write into a directory that is not empty (never a data home).")
@json_option
def synth_command(
    directory: str,
    users: int,
    movies: int,
    ratings: int,
    tags: int | None,
    seed: int,
    force: bool,
    as_json: bool,
) -> None:
    """Write a synthetic MovieLens-shaped data set (movies.csv, ratings.csv, tags.csv) to DIRECTORY.

    Ratings come from a planted low-rank taste model (see ingest.synth.planted_truth) with long-tail
    popularity; the same arguments and seed give identical files. ml-25m size: --users 162541
    --movies 62423 --ratings 25000095.
    """
    from dataclasses import asdict

    from movierec.ingest.synth import synthesize

    _check_target(Path(directory), force)
    report = synthesize(directory, users=users, movies=movies, ratings=ratings, seed=seed, tags=tags)
    if as_json:
        echo_json(asdict(report))
    else:
        click.echo(
            f"wrote {report.movies:,} movies, {report.ratings:,} ratings from {report.users:,} users, "
            f"{report.tags:,} tags to {report.directory}"
        )


HOME_MARKERS = ("movierec.duckdb", "qdrant", "models", "movierec.runs")


def _check_target(directory: Path, force: bool) -> None:
    """Never overwrite files without a word: a non-empty directory needs --force, and a movierec data
    directory is refused even then (its CSVs would be mixed with the database and the store)."""
    from movierec.errors import BadInputError

    if not directory.is_dir():
        return
    entries = sorted(p.name for p in directory.iterdir())
    marker = next((m for m in HOME_MARKERS if m in entries), None)
    if marker:
        raise BadInputError(f"{directory} holds {marker}: it is a movierec data directory; pick another")
    if entries and not force:
        raise BadInputError(
            f"{directory} is not empty ({len(entries)} entries, e.g. {entries[0]}): pick an empty or new "
            "directory, or pass --force to overwrite movies.csv, ratings.csv and tags.csv"
        )


COMMANDS: list[click.Command] = [ingest_command, data_group]
