"""`movierec train`, `evaluate`, `similar` and `model show`: thin click commands over cf's library.

Only click and light modules at load time; TensorFlow is imported by the commands that train.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from movierec.options import echo_json, json_option, quiet_option, settings_options

OBJECTIVES = ("implicit", "rating")


def hyperparam_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Training flags shared by `train` and `evaluate`; unset flags keep cf.train.HyperParams defaults."""
    options = [
        click.option("--objective", type=click.Choice(OBJECTIVES),
                     help="implicit: rated vs unrated movies, fitted by ALS (default, ranks better); "
                          "rating: regress the scaled rating by SGD (the reference design)."),
        click.option("--dim", type=click.IntRange(min=1), help="Embedding size (default 64)."),
        click.option("--iterations", type=click.IntRange(min=1), help="ALS sweeps (implicit; default 15)."),
        click.option("--reg", type=click.FloatRange(min=0), help="ALS regularisation (implicit; 30)."),
        click.option("--confidence", type=click.FloatRange(min=0, min_open=True),
                     help="ALS confidence of a rating r: 1 + confidence * log(1 + r) (implicit; default 1)."),
        click.option("--epochs", type=click.IntRange(min=1), help="Most epochs (rating; early stopping)."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help="Rating objective; default: about 100 steps per epoch."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam step (rating)."),
        click.option("--l2", type=click.FloatRange(min=0), help="L2 on embeddings, biases (rating)."),
        click.option("--seed", type=int, help="Random seed (initialisation, sampling, validation split)."),
    ]  # fmt: skip

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        names = ("objective", "dim", "iterations", "reg", "confidence", "epochs", "batch_size", "lr", "l2",
                 "seed")  # fmt: skip
        kw["hyperparams"] = {n: kw.pop(n) for n in names if kw.get(n) is not None}
        for n in names:
            kw.pop(n, None)
        return f(*args, **kw)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


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
    data snapshot, metrics, lineage, versions) and loss.png. Progress per sweep or epoch goes to stderr.
    """
    from cf.registry import train_model

    record = train_model(settings, update=update, progress=not quiet, **hyperparams)
    if as_json:
        echo_json(record.to_dict())
        return
    m = record.metrics
    quality = (
        f"validation nDCG@10 {m['val_ndcg@10']:.4f}"
        if m.get("val_ndcg@10") is not None
        else f"val_loss {m['val_loss']:.4f} at epoch {m['best_epoch']}/{m['epochs_run']}"
    )
    click.echo(
        f"model {record.version} ({record.objective}, {m.get('mode', 'full')}) trained on "
        f"{record.n_ratings:,} ratings: {quality}, {m['train_seconds']:.0f}s\n"
        f"saved to {record.path} (current)"
    )


@click.command()
@settings_options
@hyperparam_options
@click.option("--split", type=click.Choice(["random", "time"]), default="random", show_default=True,
              help="Ranking holdout: a random 25% of each user's ratings (as the published anchors), "
                   "or each user's latest 25%.")  # fmt: skip
@json_option
@quiet_option
def evaluate(settings, hyperparams: dict, split: str, as_json: bool, quiet: bool) -> None:
    """Train on a holdout split and compare the CF model with popularity and bias-only baselines.

    RMSE/MAE on a random 90/10 split (rating models only); precision, recall, nDCG, MAP, hit rate @10 and
    catalogue coverage on a per-user 75/25 split, scoring every unseen movie.
    """
    from cf.data import load_ratings
    from cf.evaluate import METRICS
    from cf.evaluate import evaluate as run
    from cf.keras_cf import KerasCF
    from cf.train import HyperParams

    HyperParams(**hyperparams)  # reject bad flags before loading data
    report = run(load_ratings(settings), lambda: KerasCF(**hyperparams), split=split, progress=not quiet)
    if as_json:
        echo_json(report)
        return
    rows = {"model": report["model"], **report["baselines"]}
    click.echo(f"{'':>12}" + "".join(f"{k:>13}" for k in METRICS))
    for name, r in rows.items():
        label = f"cf-{r['objective']}" if name == "model" else name
        cells = "".join(f"{'-' if r.get(k) is None else format(r[k], '.4f'):>13}" for k in METRICS)
        click.echo(f"{label:>12}{cells}")
    s = report["split"]
    click.echo(f"ranking split: {split} 75/25 per user, {s['ranking_test']:,} held-out ratings; "
               f"rating split: random 90/10, {s['rating_test']:,} held-out ratings")  # fmt: skip


@click.command()
@settings_options
@click.argument("movie")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@json_option
def similar(settings, movie: str, limit: int, as_json: bool) -> None:
    """Movies closest to MOVIE (an id or part of a title) in the CF embedding space (cosine)."""
    from cf.data import load_movie_titles
    from cf.explore import find_movie, similar_movies
    from cf.registry import load_current_factors

    movie_id, title = find_movie(settings, movie)
    record, factors = load_current_factors(settings)
    ids, sims = similar_movies(factors, movie_id, limit)
    titles = load_movie_titles(settings)
    results = [{"movie_id": int(i), "title": titles.get(int(i)), "cosine": round(float(s), 4)}
               for i, s in zip(ids, sims, strict=True)]  # fmt: skip
    if as_json:
        echo_json(
            {"movie": {"movie_id": movie_id, "title": title}, "model": record.version, "similar": results}
        )
        return
    click.echo(f"closest to {title} ({movie_id}) in model {record.version}:")
    for r in results:
        click.echo(f"  {r['cosine']:7.4f}  {r['movie_id']:>7}  {r['title']}")


@click.group()
def model() -> None:
    """Inspect trained CF models."""


@model.command()
@settings_options
@click.option("--min-ratings", type=click.IntRange(min=0), default=20, show_default=True,
              help="Only movies with at least this many training ratings in the bias lists.")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@json_option
def show(settings, min_ratings: int, limit: int, as_json: bool) -> None:
    """The current model's record, and the movies with the highest and lowest learned bias.

    For a rating model the bias says how well a movie is rated beyond its raters' habits; for an implicit
    model it mostly says how often it is watched (popularity).
    """
    import numpy as np

    from cf.data import load_movie_titles
    from cf.explore import bias_extremes
    from cf.registry import load_current_recommender

    record, rec = load_current_recommender(settings)
    counts = np.bincount(rec.seen.movie_rows, minlength=len(rec.movie_ids))  # training ratings per movie
    high, low = bias_extremes(rec.factors, counts, min_ratings, limit)
    titles = load_movie_titles(settings)

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
    for label, items in (("highest", out["highest_bias"]), ("lowest", out["lowest_bias"])):
        click.echo(f"\n{label} learned movie bias (>= {min_ratings} ratings):")
        for r in items:
            click.echo(f"  {r['bias']:+7.3f}  {r['ratings']:>6}  {r['title']}")


COMMANDS: list[click.Command] = [train, evaluate, similar, model]
