"""`movierec train`, `evaluate`, `similar` and `model show`: thin click commands over movierec.cf."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from movierec.cli.options import (
    LIST_LENGTH,
    SEED,
    FiniteFloat,
    IdArgs,
    echo_json,
    echo_table,
    json_option,
    quiet_option,
    settings_options,
)

OBJECTIVES = ("implicit", "rating")  # movierec.cf.train.OBJECTIVES; tests/test_cli.py checks they agree
WEIGHTS = ("log", "linear")  # movierec.cf.train.WEIGHTS; likewise


def hyperparam_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Training flags shared by `train` and `evaluate`, one per `movierec.cf.HyperParams` field (declared
    here so that `--help` needs no numpy; tests/test_cli.py checks names and choices against the dataclass).
    Unset flags keep the dataclass defaults."""
    options = [
        click.option("--objective", type=click.Choice(OBJECTIVES),
                     help="implicit: rated vs unrated movies, fitted by ALS (default, ranks better); "
                          "rating: regress the scaled rating by SGD (the reference design)."),
        click.option("--dim", type=click.IntRange(1, 4096), help="Embedding size (default 64)."),
        click.option("--iterations", type=click.IntRange(1, 1000), help="ALS sweeps (implicit; default 10)."),
        click.option("--reg", type=FiniteFloat(min=0), help="ALS regularisation (implicit; 30)."),
        click.option("--reg-exp", type=FiniteFloat(min=0, max=2),
                     help="Regularisation grows as (a row's ratings)^reg-exp, over its mean (implicit; "
                          "default 0: the same for every user and movie)."),
        click.option("--confidence", type=FiniteFloat(min=0, min_open=True),
                     help="ALS confidence of a rating r: 1 + confidence * log(1 + r), or confidence * r "
                          "with --weight linear (implicit; default 1)."),
        click.option("--weight", type=click.Choice(WEIGHTS),
                     help="How a rating's confidence grows with it: log (default) or linear (implicit)."),
        click.option("--like", type=FiniteFloat(min=0, max=5),  # ratings are 0.5..5 (ingest checks)
                     help="Ratings below it say 'does not prefer' (implicit; default 3; 0: all prefer)."),
        click.option("--cg-steps", type=click.IntRange(1, 100), help="CG steps per ALS solve (default 3)."),
        click.option("--update-iterations", type=click.IntRange(1, 1000),
                     help="ALS sweeps of an incremental update (default 2)."),
        click.option("--update-share", type=FiniteFloat(min=0, max=1),
                     help="An update re-solves a known movie when this share of its ratings changed (0.02)."),
        click.option("--epochs", type=click.IntRange(1, 10_000),
                     help="Most epochs (rating; early stopping)."),
        click.option("--batch-size", type=click.IntRange(1, 10**7),
                     help="Rating objective; default: about 100 steps per epoch."),
        click.option("--lr", type=FiniteFloat(min=0, min_open=True), help="Adam step (rating)."),
        click.option("--l2", type=FiniteFloat(min=0), help="L2 on embeddings, biases (rating)."),
        click.option("--seed", type=SEED, help="Random seed (initialisation, sampling, validation split)."),
        click.option("--tune/--no-tune", default=None,
                     help="Implicit full fit: first choose like, weight, confidence, reg, reg-exp, dim, "
                          "iterations, recency and the profile weight on a validation split of the ratings "
                          "(default; flags given fix their value). --no-tune: use the given values and "
                          "defaults."),
        click.option("--profile-weight", type=FiniteFloat(min=0, max=10),
                     help="Weight of the content side: each user's liked films' text profile, in units of "
                          "their CF score's spread (implicit; needs `movierec embed`; tuned by default, "
                          "0 with --no-tune: CF alone)."),
        click.option("--recency", type=FiniteFloat(min=0, max=10),
                     help="A rating's weight decays as exp(-recency x its age in the user's history: the "
                          "share of their ratings made on a later day) (implicit; tuned by default, 0 with "
                          "--no-tune: every rating alike)."),
    ]  # fmt: skip

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        given = {n: kw.pop(n) for n in HYPERPARAM_FLAGS}
        kw["hyperparams"] = {n: v for n, v in given.items() if v is not None}
        return f(*args, **kw)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _flag_names(decorate: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(p.name for p in decorate(lambda: None).__click_params__)


HYPERPARAM_FLAGS = _flag_names(hyperparam_options)


@click.command()
@settings_options
@hyperparam_options
@click.option(
    "--update",
    is_flag=True,
    help="Start from the current model: re-solve only the users and movies with new ratings "
    "(falls back to a full fit by the retrain rule; refused if validation nDCG drops).",
)
@json_option
@quiet_option
def train(settings, hyperparams: dict, update: bool, as_json: bool, quiet: bool) -> None:
    """Train the CF model on all ratings in DuckDB and make it the current model.

    Writes a new version under HOME/models: model.keras, factors.npz, id maps, model.json (hyperparameters,
    the tuning search, data snapshot, metrics, lineage, versions) and, for the rating objective, loss.png.
    Progress per sweep or epoch goes to stderr.
    """
    from movierec.cf import current_model, train_model

    before = current_model(settings) if update else None
    record = train_model(settings, update=update, progress=not quiet, **hyperparams)
    # An update that found no changed rating saves nothing and leaves the current model (cf.training).
    unchanged = before is not None and record.version == before.version
    if as_json:
        echo_json({**record.to_dict(), "unchanged": unchanged})
        return
    if unchanged:
        click.echo(f"model {record.version} is up to date: no rating changed since it was trained; "
                   "nothing saved (`movierec train` without --update fits anew)")  # fmt: skip
        return
    m = record.metrics
    quality = (
        f"validation nDCG@10 {m['val_ndcg@10']:.4f}"
        if m.get("val_ndcg@10") is not None
        else f"val_loss {m['val_loss']:.4f} at epoch {m['best_epoch']}/{m['epochs_run']}"
    )
    tuned = m.get("tuning")
    chosen = (
        f"\ntuned in {tuned['seconds']:.0f}s ({tuned['trials']} trials): "
        + ", ".join(
            f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in tuned["chosen"].items()
        )
        if tuned
        else ""
    )
    click.echo(
        f"model {record.version} ({record.objective}, {m.get('mode', 'full')}) trained on "
        f"{record.n_ratings:,} ratings: {quality}, {m['train_seconds']:.0f}s{chosen}\n"
        f"saved to {record.path} (current)"
    )


@click.command()
@settings_options
@hyperparam_options
@click.option("--split", type=click.Choice(["random", "time"]), default="random", show_default=True,
              help="Ranking holdout: a random 25% of each user's ratings (as the published anchors), "
                   "or each user's latest 25%.")  # fmt: skip
@click.option(
    "--lists",
    is_flag=True,
    help="Judge the batch's lists per user and query against what users rated next (time split), "
    "baselines and blends beside each other (see README).",
)
@click.option(
    "--queries",
    "query_file",
    type=click.Path(dir_okay=False),
    help="With --lists: a CSV name,text[,genres,topic] instead of the saved queries.",
)
@click.option(
    "--cutoff",
    help="With --lists: start of the test period, a share of ratings by time (default "
    "0.9: the last 10%) or a date YYYY-MM-DD.",
)
@click.option(
    "--validation",
    type=FiniteFloat(min=0, max=1, max_open=True),
    default=0.1,
    show_default=True,
    help="With --lists: share of ratings in each validation fold the blend is chosen on (0: none).",
)
@click.option(
    "--folds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="With --lists: validation folds before the cut-off, each with its own model, pooled for the "
    "choice (one period holds few users who are known and active).",
)
@json_option
@quiet_option
def evaluate(settings, hyperparams: dict, split: str, lists: bool, query_file: str | None, cutoff: str | None,
             validation: float, folds: int, as_json: bool, quiet: bool) -> None:  # fmt: skip
    """Train on a holdout split and compare the CF model with popularity and bias-only baselines.

    RMSE/MAE on a random 90/10 split (rating models only); precision, recall, nDCG, MAP, hit rate @10 and
    catalogue coverage on a per-user 75/25 split, scoring every unseen movie. With --lists: the published
    lists (user x query) replayed on a time split and judged by later liked on-topic films.
    """
    from movierec.cf import HyperParams, KerasCF

    ctx = click.get_current_context()
    if lists:
        if ctx.get_parameter_source("split") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--split does not apply with --lists (a time split at --cutoff)")
        _evaluate_lists(settings, hyperparams, query_file, cutoff, validation, folds, as_json, quiet)
        return
    given = [flag for flag, name in (("--queries", "query_file"), ("--cutoff", "cutoff"),
                                     ("--validation", "validation"), ("--folds", "folds"))
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]  # fmt: skip
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply with --lists")
    from movierec.cf import text_vectors
    from movierec.cf.data import load_ratings
    from movierec.cf.evaluate import METRICS
    from movierec.cf.evaluate import evaluate as run

    hp = HyperParams(**hyperparams)  # reject bad flags before loading data
    content = text_vectors(settings, progress=not quiet) if hp.uses_content else None
    make = lambda: KerasCF(content, **hyperparams)  # noqa: E731
    report = run(load_ratings(settings), make, split=split, progress=not quiet)
    if as_json:
        echo_json(report)
        return
    rows = [
        {"model": f"cf-{r['objective']}" if name == "model" else name, **r}
        for name, r in {"model": report["model"], **report["baselines"]}.items()
    ]
    echo_table([{k: "-" if r.get(k) is None and k in METRICS else r.get(k) for k in ("model", *METRICS)}
                for r in rows], ["model", *METRICS])  # fmt: skip
    s = report["split"]
    click.echo(f"ranking split: {split} 75/25 per user, {s['ranking_test']:,} held-out ratings; "
               f"rating split: random 90/10, {s['rating_test']:,} held-out ratings")  # fmt: skip


LIST_COLUMNS = ("variant", "ndcg@10", "topic ndcg", "hit@10", "recall@10", "topical", "judged", "personal",
                "coverage", "novelty", "fresh ndcg", "cold ndcg")  # fmt: skip


def _evaluate_lists(settings, hyperparams: dict, query_file: str | None, cutoff: str | None,
                    validation: float, folds: int, as_json: bool, quiet: bool) -> None:  # fmt: skip
    from movierec.batch.evaluate import evaluate_lists
    from movierec.cf import HyperParams

    HyperParams(**hyperparams)
    report = evaluate_lists(settings, query_file, cutoff, validation, hyperparams=hyperparams,
                            progress=not quiet, folds=folds)  # fmt: skip
    if as_json:
        echo_json(report)
        return
    for period in report["periods"]:
        u = period["users"]
        click.echo(
            f"\n{period['name']} period {period['cutoff']} .. {period['end']} ({period['train_ratings']:,} "
            f"training ratings; users: {u['known']:,} known, {u['cold_start']:,} cold-start, {u['fresh']:,} "
            "fresh). nDCG/hit/recall: known users, later liked films of the query's genres (or nearest); "
            "topic nDCG: those on its topic by title or tags; personal: among known users' lists"
            + (f"; {len(period['folds'])} folds pooled" if len(period["folds"]) > 1 else "")
        )
        rows = []
        for name, m in period["variants"].items():
            a, k = m["all"], m["known"]
            rows.append(dict(zip(LIST_COLUMNS, (
                name, k.get("ndcg@10"), k.get("topic_ndcg@10"), k.get("hit@10"), k.get("recall@10"),
                a.get("topical_precision"), a.get("topic_judged"), k.get("personalisation"),
                a.get("coverage"), a.get("novelty_pop_rank"), m["fresh"].get("ndcg@10"),
                m["cold_start"].get("ndcg@10")), strict=True)))  # fmt: skip
        echo_table(rows, list(LIST_COLUMNS))
    chosen = report["chosen"]
    if chosen:
        click.echo(f"\nchosen on the {chosen['period']} period: {chosen['variant']} ({chosen['rule']}); "
                   f"to use it: {chosen['apply']}")  # fmt: skip
    elif validation > 0:
        click.echo("\nno blend met the rule on the validation period; keep the current default")


@click.command(cls=IdArgs)
@settings_options
@click.argument("movie")
@click.option("--limit", type=LIST_LENGTH, default=10, show_default=True)
@json_option
def similar(settings, movie: str, limit: int, as_json: bool) -> None:
    """Movies closest to MOVIE (an id or part of a title) in the CF embedding space (cosine)."""
    from movierec import catalog
    from movierec.cf import load_current_model
    from movierec.cf.explore import similar_movies
    from movierec.db import connect

    with connect(settings, read_only=True) as con:
        movie_id, title = catalog.find_movie(con, movie)
        titles = catalog.titles(con)
    record, model = load_current_model(settings)
    ids, sims = similar_movies(model, movie_id, limit)
    results = [{"movie_id": int(i), "title": titles.get(int(i)), "cosine": round(float(s), 4)}
               for i, s in zip(ids, sims, strict=True)]  # fmt: skip
    if as_json:
        echo_json(
            {"movie": {"movie_id": movie_id, "title": title}, "model": record.version, "similar": results}
        )
        return
    click.echo(f"closest to {title} ({movie_id}) in model {record.version}:")
    echo_table(results, ["cosine", "movie_id", "title"])


@click.group()
def model() -> None:
    """Inspect trained CF models."""


@model.command()
@settings_options
@click.option("--min-ratings", type=click.IntRange(min=0), default=20, show_default=True,
              help="Only movies with at least this many training ratings in the bias lists.")  # fmt: skip
@click.option("--limit", type=LIST_LENGTH, default=10, show_default=True)
@json_option
def show(settings, min_ratings: int, limit: int, as_json: bool) -> None:
    """The current model's record, and the movies with the highest and lowest learned bias.

    For a rating model the bias says how well a movie is rated beyond its raters' habits; an implicit ALS
    model learns none (the lists are left out).
    """
    from movierec import catalog
    from movierec.cf import load_current_model
    from movierec.cf.explore import bias_extremes
    from movierec.db import connect

    record, rec = load_current_model(settings)
    counts = rec.seen.counts(rec.movie_ids)  # training ratings per movie
    extremes = bias_extremes(rec, counts, min_ratings, limit)
    high, low = extremes or ([], [])
    with connect(settings, read_only=True) as con:
        titles = catalog.titles(con)

    def rows(items):
        return [
            {"movie_id": m, "title": titles.get(m), "bias": round(b, 4), "ratings": n} for m, b, n in items
        ]

    out = {"model": record.to_dict(), "highest_bias": rows(high), "lowest_bias": rows(low)}
    if as_json:
        echo_json(out)
        return
    for key, value in out["model"].items():
        click.echo(f"{key:>13}: {value}")
    if extremes is None:
        click.echo("\nno learned movie biases: this model's scores are its factors alone (implicit ALS)")
        return
    for label, items in (("highest", out["highest_bias"]), ("lowest", out["lowest_bias"])):
        click.echo(f"\n{label} learned movie bias (>= {min_ratings} ratings):")
        echo_table(items, ["bias", "ratings", "movie_id", "title"])


COMMANDS: list[click.Command] = [train, evaluate, similar, model]
