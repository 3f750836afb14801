"""When and how a CF model is fitted: a full fit (self-tuning, `cf.tune`) or an incremental update of the
current model, by the retrain rule and behind the update's quality gate; then `cf.registry.save_model`
stores the version with its manifest (hyper-parameters, tuning search, lineage, history, library
versions) and a plot of the fit.
"""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from movierec.cf.recommender import read_manifest
from movierec.cf.registry import DIGESTS, ModelRecord, _model_dir, current_model, load_model, save_model
from movierec.config import Settings
from movierec.errors import ModelError
from movierec.progress import say

RETRAIN_SHARE = 0.10  # an update re-solves too much past this share of changed ratings: retrain instead
RETRAIN_EVERY = 7  # a full retrain after this many updates in a row (drift of the untouched rows)
# A change of one of these means a full fit, not an update.
SHAPES_THE_FIT = ("like", "weight", "confidence", "reg_exp", "recency")
GATE_DROP = 0.05  # refuse an update whose validation nDCG@10 falls more than 5% below the current model's


class UpdateRefused(ModelError):
    """An update fitted but failed its quality check; the current model stays current."""


CHANGE_COUNTS = ("changed", "new_users", "new_movies", "removed_users", "removed_movies")


def train_model(
    settings: Settings, *, update: bool = False, progress: bool = False, **hyperparams: Any
) -> ModelRecord:
    """Fit on every rating in DuckDB, write a new model version and make it current.

    Full fit by default. With `update=True` the current model is the start (`KerasCF.update`) unless the
    rule says retrain: no current implicit model of the same dim, more than RETRAIN_SHARE of the ratings
    changed, or RETRAIN_EVERY updates since the last full fit. An update whose validation nDCG@10 falls
    more than GATE_DROP below the current model's on the same users raises UpdateRefused (nothing saved);
    an update that finds no changed rating returns the current model's record (nothing saved).
    `hyperparams` are `HyperParams` fields; None values keep the defaults."""
    from movierec.cf.data import UserDigests, load_ratings
    from movierec.cf.keras_cf import KerasCF

    given = {k: v for k, v in hyperparams.items() if v is not None}
    rec = KerasCF(**given)
    t0 = time.perf_counter()
    data = load_ratings(settings)
    snapshot = data.snapshot()
    say(f"loaded {len(data):,} ratings in {time.perf_counter() - t0:.1f}s", enabled=progress)
    read: list[Any] = []

    def content_for(model: KerasCF) -> tuple[np.ndarray, np.ndarray] | None:
        """The films' text vectors, read once and only for a fit that can use them (a cold `--no-tune`
        train on ml-latest-small would otherwise wait 0.6 s for the store, 3-5 s at ml-25m size)."""
        if not model.hp.uses_content:
            return None
        if not read:
            read.append(text_vectors(settings, progress))
        return read[0]

    lineage: dict[str, Any] = {"mode": "full", "base": None, "updates_since_full": 0}
    why_full = None if update else "not asked to update"
    current = previous = None
    last: dict[str, Any] = {}
    seen_data: dict[str, Any] | None = None  # the current model's data snapshot
    edited_users = None  # users whose ratings digest moved since the current model (None: it has none)
    if update:
        current = current_model(settings)
        if current is None:
            why_full = "no current model"
        else:
            t0 = time.perf_counter()
            previous = load_model(_model_dir(settings, current))
            say(f"model {current.version} loaded in {time.perf_counter() - t0:.1f}s", enabled=progress)
            manifest = read_manifest(_model_dir(settings, current))
            last, seen_data = manifest.get("lineage", {}), manifest.get("data")
            before = UserDigests.load(_model_dir(settings, current) / DIGESTS)
            if before is not None and data.digests is not None:
                edited_users = data.digests.changed(before)
            implicit = isinstance(previous, KerasCF) and previous.hp.objective == "implicit"
            if implicit:  # an update keeps the values the last full fit chose (or was given)
                rec = KerasCF(**{**previous.hp.to_dict(), **given, "tune": False})
            if not implicit or rec.hp.objective != "implicit":
                why_full = "only implicit (ALS) models update"
            elif previous.hp.dim != rec.hp.dim:
                why_full = f"dim changes from {previous.hp.dim} to {rec.hp.dim}"
            elif changed := [k for k in SHAPES_THE_FIT if getattr(previous.hp, k) != getattr(rec.hp, k)]:
                # Re-solving some rows under another objective would leave a mix of two models.
                why_full = f"{', '.join(changed)} changed"
            elif last.get("updates_since_full", 0) + 1 > RETRAIN_EVERY:
                why_full = f"{RETRAIN_EVERY} updates since the last full fit"
    started = time.perf_counter()
    if why_full is None:
        since = current.max_rated_at.replace(tzinfo=UTC).timestamp() if current.max_rated_at else None
        say(f"updating model {current.version} with the ratings it has not seen", enabled=progress)
        rec.content = content_for(rec)
        change = rec.update(
            data, previous, since, progress=progress, base=seen_data, edited_users=edited_users
        )
        say(
            f"{change['changed']:,} changed ratings ({change['share']:.1%}): re-solved {change['users']:,} "
            f"users ({change['new_users']:,} new) and {change['movies']:,} of the "
            f"{change['movies_with_changes']:,} movies with changes ({change['new_movies']:,} new)",
            enabled=progress,
        )
        if not any(change[k] for k in CHANGE_COUNTS):
            # Nothing to re-solve (the same change detection as any update: ingest numbers, or every pair):
            # a new version would only push a real one out of the kept models and count towards the
            # full-fit rule.
            say(f"nothing changed since model {current.version}: nothing saved", enabled=progress)
            return current
        if change["share"] > RETRAIN_SHARE:
            why_full = f"{change['share']:.1%} of the ratings changed (> {RETRAIN_SHARE:.0%})"
        else:
            base, new = change["base_ndcg"], rec.history.val_ndcg[-1]
            if base is not None and np.isfinite(base) and new < base * (1 - GATE_DROP):
                raise UpdateRefused(
                    f"update refused: validation nDCG@10 {new:.4f} is more than {GATE_DROP:.0%} below the "
                    f"current model's {base:.4f}; model {current.version} stays current (or use --retrain)"
                )
            lineage = {
                "mode": "update",
                "base": current.version,
                "updates_since_full": last.get("updates_since_full", 0) + 1,
                "change": change,
            }
    if why_full is not None:
        if update:
            say(f"full fit: {why_full}", enabled=progress)
            rec = KerasCF(**given)
        say(
            f"training {rec.hp.objective} model on {snapshot['n_ratings']:,} ratings "
            f"({snapshot['n_users']:,} users, {snapshot['n_movies']:,} movies)",
            enabled=progress,
        )
        rec.content = content_for(rec)
        rec.fit(data, progress=progress)
    h = rec.history
    metrics = {
        "mode": lineage["mode"],
        "updates_since_full": lineage["updates_since_full"],
        "train_loss": h.loss[h.best_epoch - 1] if h.loss and h.best_epoch else None,
        "val_loss": h.val_loss[h.best_epoch - 1] if h.val_loss and h.best_epoch else None,
        "val_ndcg@10": h.val_ndcg[-1] if h.val_ndcg else None,
        "best_epoch": h.best_epoch,
        "epochs_run": len(h.seconds),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    if lineage["mode"] == "update":
        metrics["base_val_ndcg@10"] = lineage["change"]["base_ndcg"]
    if rec.tuning is not None:
        metrics["tuning"] = rec.tuning.summary()
    if rec.hp.objective == "implicit":
        metrics["content_side"] = bool(rec.factors is not None and rec.factors.has_content)
        if rec.hp.profile_weight > 0 and not metrics["content_side"]:  # e.g. an update with the store busy
            w = rec.hp.profile_weight
            say(f"warning: profile weight {w:g} but no text vectors: the model is CF alone", enabled=progress)
    extra = {
        "hyperparameters": {**rec.hp.to_dict(), "batch_size_used": h.batch_size},
        "shape": {"n_users": len(rec.user_ids), "n_movies": len(rec.movie_ids), "dim": rec.hp.dim},
        "lineage": lineage,
        "tuning": None if rec.tuning is None else rec.tuning.to_dict(),
        "history": {"loss": h.loss, "val_loss": h.val_loss, "val_ndcg": h.val_ndcg, "seconds": h.seconds},
        "versions": _versions(),
    }
    t0 = time.perf_counter()
    title = f"{rec.hp.objective}, {lineage['mode']}"
    # The loss curve of the rating objective as loss.png; an implicit fit's history (seconds per sweep,
    # validation nDCG, the tuning trials) is in model.json: importing matplotlib to draw it cost a cold
    # `movierec train` on ml-latest-small more than its whole fit (issue 17).

    def files(d: Path) -> None:
        if data.digests is not None:  # what the next update compares with (`UserDigests.changed`)
            data.digests.save(d / DIGESTS)
        if h.loss:
            _plot_loss(h, d / "loss.png", title)

    record = save_model(settings, rec, snapshot=snapshot, metrics=metrics, manifest=extra, extra_files=files)
    saved = time.perf_counter() - t0
    say(f"model {record.version} ({lineage['mode']}) saved to {record.path} in {saved:.1f}s and made current",
        enabled=progress)  # fmt: skip
    return record


def text_vectors(settings: Settings, progress: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """The films' text vectors from the vector store (what `movierec embed` wrote), for the CF model's
    content side (cf.content); None, said, when there are none (not embedded yet, or the store busy or
    damaged): the model is then CF alone, as before the content side."""
    from movierec.errors import MovierecError
    from movierec.store import open_store

    t0 = time.perf_counter()
    try:
        with open_store(settings) as store:
            ids, vecs = store.vectors()
    except MovierecError as exc:
        say(f"CF alone, no content side: {exc}", enabled=progress)
        return None
    if len(ids) == 0:
        say("CF alone, no content side: the vector store is empty (run `movierec embed`)", enabled=progress)
        return None
    say(f"read {len(ids):,} text vectors in {time.perf_counter() - t0:.1f}s", enabled=progress)
    return ids, vecs


def _versions() -> dict:
    """Library versions from the installed metadata (importing TensorFlow to ask would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("keras", "tensorflow", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _plot_loss(h: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(h.loss) + 1)
    ax.plot(epochs, h.loss, marker="o", label="train (incl. L2)")
    ax.plot(epochs, h.val_loss, marker="o", label="validation")
    if h.best_epoch:
        ax.axvline(h.best_epoch, color="grey", linestyle=":", label="kept")
    ax.set(xlabel="epoch", ylabel="binary cross-entropy", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
