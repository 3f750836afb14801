"""Options many commands share, defined once so names, help and defaults cannot drift."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from typing import Any

import click

from movierec.limits import MAX_ID, MAX_LIST, MAX_SEED


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf (a plain FloatRange lets nan through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv != rv or rv in (float("inf"), float("-inf")):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return rv


class IdArgs(click.Command):
    """A command whose arguments are ids: `recommend -5 ...` is a negative id, not an unknown option
    (click's "No such option '-5'" pointed at the wrong mistake). Option values (`--alpha -0.1`) are
    untouched: click takes the token after an option as its value."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.NoSuchOption as exc:
            # click names only the first character of "-12" (a cluster of short options): the token itself.
            bad = next((a for a in args if re.fullmatch(r"-\d+(\.\d*)?", a)), None)
            if bad is not None and exc.option_name == bad[:2]:
                raise click.UsageError(
                    f"{bad} is not an id: ids are whole numbers from 1 to {MAX_ID:,} (a text or title "
                    "that starts with '-' goes after `--`)",
                    ctx,
                ) from None
            raise


# The ranges of numeric options, from movierec.limits (the library checks the same numbers).
# Ids, years and the lengths of saved queries and `recommend` are checked by the library (the same
# message for Python callers); these types serve the options only the CLI checks.
ID = click.IntRange(1, MAX_ID)  # user and movie ids are DuckDB INTEGER
LIST_LENGTH = click.IntRange(1, MAX_LIST)
SEED = click.IntRange(0, MAX_SEED)
MAX_SYNTH_RATINGS = 100_000_000  # 4x ml-25m; more would not fit in memory


def settings_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --home/--db/--qdrant-url/--model flags and pass a ready `settings: Settings` instead."""

    @click.option("--home", type=click.Path(file_okay=False), help="Data directory [env MOVIEREC_HOME].")
    @click.option("--db", type=click.Path(dir_okay=False), help="DuckDB file [env MOVIEREC_DB].")
    @click.option("--qdrant-url", help="Qdrant server URL; default is the embedded store [env QDRANT_URL].")
    @click.option("--model", "model_name", help="sentence-transformers model [env MOVIEREC_MODEL].")
    @functools.wraps(f)
    def wrapper(
        *args: Any,
        home: str | None,
        db: str | None,
        qdrant_url: str | None,
        model_name: str | None,
        **kw: Any,
    ) -> Any:
        from movierec.config import Settings  # pydantic costs ~0.2 s: not at `--help`

        kw["settings"] = Settings.load(home=home, db=db, qdrant_url=qdrant_url, model=model_name)
        return f(*args, **kw)

    return wrapper


ENGINES = ("local", "ray")  # movierec.config.Settings.engine; here so that `--help` needs no pydantic


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--engine/--ray-address for the commands that run the batch; folded into `settings` (flag > env >
    movierec.toml). Apply below `settings_options`."""

    @click.option(
        "--engine", type=click.Choice(ENGINES),
        help="Score here (local) or in tasks on a Ray cluster (ray, extra `movierec[ray]`) "
        "[env MOVIEREC_ENGINE; default local].",
    )  # fmt: skip
    @click.option(
        "--ray-address",
        help="Ray cluster to run on, HOST:PORT of its head (GCS) or ray://HOST:10001; default: a local "
        "cluster of this machine's cores [env MOVIEREC_RAY_ADDRESS or RAY_ADDRESS].",
    )
    @functools.wraps(f)
    def wrapper(*args: Any, settings: Any, engine: str | None, ray_address: str | None, **kw: Any) -> Any:
        from movierec.errors import BadInputError

        settings = settings.replace(engine=engine, ray_address=ray_address)
        if ray_address and settings.engine != "ray":
            raise BadInputError("--ray-address is for the Ray engine: add --engine ray")
        return f(*args, settings=settings, **kw)

    return wrapper


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--genre/--exclude-genre/--year-min/--year-max: the payload filters of search, queries and recommend."""
    for opt in reversed(
        [
            click.option(
                "--genre", "genres", multiple=True, help="Only movies with any of these genres (repeatable)."
            ),
            click.option(
                "--exclude-genre",
                "exclude_genres",
                multiple=True,
                help="Skip movies with this genre (repeatable).",
            ),
            click.option("--year-min", type=int, help="Released in or after this year."),
            click.option("--year-max", type=int, help="Released in or before this year."),
        ]
    ):
        f = opt(f)
    return f


alpha_option = click.option(
    "--alpha", type=float, default=None,
    help="Weight of query similarity in the score, 0..1; alpha + |popularity weight| <= 1, so at most 0.9 "
    "with the default discount (MOVIEREC_POPULARITY_WEIGHT=0 and --alpha 1: similarity only) "
    "[default: the alpha setting (MOVIEREC_ALPHA or movierec.toml), 0.1 unless set].",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        from movierec.cli.tflogs import filter_tensorflow_logs

        filter_tensorflow_logs(quiet=True)
    return value


quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    callback=_quiet,
    help="No progress output (nor TensorFlow's logs) on stderr.",
)


def echo_json(data: Any) -> None:
    """JSON to stdout, one document, stable key order. Strict JSON: a NaN or infinity (an analyst's
    `ln(0)`) is null, since `NaN` and `-Infinity` are not JSON and break `jq` and most parsers."""
    click.echo(json.dumps(_finite(data), indent=2, default=str, ensure_ascii=False, allow_nan=False))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def echo_table(rows: list[dict[str, Any]], columns: list[str], headers: dict[str, str] | None = None) -> None:
    """An aligned plain-text table on stdout (tabulate): numbers right-aligned, floats to 3 places, lists
    joined by |."""
    from tabulate import tabulate

    headers = headers or {}
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    titles = [headers.get(c, c) for c in columns]
    click.echo(tabulate(cells, headers=titles, disable_numparse=True, colalign=_align(rows, columns)))


def _align(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    def numeric(c: str) -> bool:
        values = [r.get(c) for r in rows if r.get(c) is not None]
        return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)

    return ["right" if numeric(c) else "left" for c in columns]


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    return str(value)
