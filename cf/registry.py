"""Versioned CF models on disk and their record in DuckDB (`cf_models`, exactly one current).

A model directory `MODELS/<version>/` holds:
  model.keras        the Keras model (registered classes: loads with keras.saving.load_model)
  factors.npz        exported factors + biases + id maps (cf.factors.Factors): what the batch scores with
  contract.npz       id maps and each user's rated movies (cf.recommender)
  recommender.json   model kind and hyperparameters
  model.json         sidecar: hyperparameters, data snapshot, metrics, library versions
  loss.png           seconds per ALS sweep and validation nDCG (implicit), or loss per epoch (rating)

The directory is written under a temporary name and renamed, then recorded in one transaction, so a
failed run leaves neither a half-written directory nor a row pointing at one.
"""

from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cf.factors import Factors
from movierec.config import Settings
from movierec.db import connect, transaction
from movierec.errors import ModelError, NotFoundError
from movierec.progress import say

SIDECAR = "model.json"


@dataclass(frozen=True)
class ModelRecord:
    version: str
    path: Path
    objective: str
    trained_at: datetime
    n_ratings: int | None
    max_rated_at: datetime | None
    metrics: dict
    is_current: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


_COLUMNS = "version, path, objective, trained_at, n_ratings, max_rated_at, metrics, is_current"


def _record(row: tuple) -> ModelRecord:
    version, path, objective, trained_at, n_ratings, max_rated_at, metrics, is_current = row
    return ModelRecord(
        version=version,
        path=Path(path),
        objective=objective,
        trained_at=trained_at,
        n_ratings=n_ratings,
        max_rated_at=max_rated_at,
        metrics=json.loads(metrics) if metrics else {},
        is_current=bool(is_current),
    )


def current_model(settings: Settings) -> ModelRecord | None:
    """The current model's record, or None when no model has been trained."""
    with connect(settings, read_only=True) as con:
        if not con.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'cf_models'"
        ).fetchall():
            return None
        row = con.execute(f"SELECT {_COLUMNS} FROM cf_models WHERE is_current LIMIT 1").fetchone()
    return _record(row) if row else None


def list_models(settings: Settings) -> list[ModelRecord]:
    with connect(settings, read_only=True) as con:
        rows = con.execute(f"SELECT {_COLUMNS} FROM cf_models ORDER BY trained_at DESC").fetchall()
    return [_record(r) for r in rows]


def load_current_factors(settings: Settings) -> tuple[ModelRecord, Factors]:
    """The current model's record and factors, checked against the model's own sidecar."""
    record = current_model(settings)
    if record is None:
        raise NotFoundError(f"no trained CF model in {settings.db_path}: run `movierec train` first")
    return record, load_factors(record.path)


def load_factors(model_dir: Path) -> Factors:
    """Factors of one model directory; refuses files that disagree with the sidecar (ModelError)."""
    model_dir = Path(model_dir)
    sidecar = model_dir / SIDECAR
    if not sidecar.exists():
        raise ModelError(f"model directory {model_dir} is missing or incomplete (no {SIDECAR}); retrain")
    meta = json.loads(sidecar.read_text())
    factors = Factors.load(model_dir / "factors.npz")
    shape = meta["shape"]
    if (len(factors.user_ids), len(factors.movie_ids), factors.dim) != (
        shape["n_users"],
        shape["n_movies"],
        shape["dim"],
    ):
        raise ModelError(
            f"{model_dir}/factors.npz has {len(factors.user_ids)} users x {len(factors.movie_ids)} movies, "
            f"dim {factors.dim}, but {SIDECAR} says {shape['n_users']} x {shape['n_movies']}, "
            f"dim {shape['dim']}: the model directory is inconsistent, retrain"
        )
    if factors.objective != meta["objective"]:
        raise ModelError(
            f"{model_dir}: factors are for objective {factors.objective}, sidecar says {meta['objective']}"
        )
    return factors


def load_current_recommender(settings: Settings):
    """The current model behind the recommender contract (top-N with seen filtered), numpy only."""
    from cf.recommender import Recommender

    record = current_model(settings)
    if record is None:
        raise NotFoundError(f"no trained CF model in {settings.db_path}: run `movierec train` first")
    load_factors(record.path)  # sidecar checks
    return record, Recommender.load(record.path)


RETRAIN_SHARE = 0.10  # an update re-solves too much past this share of changed ratings: retrain instead
RETRAIN_EVERY = 7  # a full retrain after this many updates in a row (drift of the untouched rows)
GATE_DROP = 0.05  # refuse an update whose validation nDCG@10 falls more than 5% below the current model's


class UpdateRefused(ModelError):
    """An update fitted but failed its quality check; the current model stays current."""


def train_model(
    settings: Settings,
    *,
    update: bool = False,
    progress: bool = False,
    **hyperparams,
) -> ModelRecord:
    """Fit on every rating in DuckDB, write a new model version and make it current.

    Full fit by default. With `update=True` the current model is the start (`KerasCF.update`) unless the
    rule says retrain: no current implicit model of the same dim, more than RETRAIN_SHARE of the ratings
    changed, or RETRAIN_EVERY updates since the last full fit. An update whose validation nDCG@10 falls
    more than GATE_DROP below the current model's on the same users raises UpdateRefused (nothing saved).
    `hyperparams` are cf.train.HyperParams fields (None = default)."""
    from cf.data import load_ratings
    from cf.keras_cf import KerasCF

    rec = KerasCF(**{k: v for k, v in hyperparams.items() if v is not None})
    if rec.hp.objective == "implicit":
        # The fit is numpy; TensorFlow is needed only at the end, to hold the factors as a Keras model.
        # Importing it meanwhile (mostly file reads and C extension loading) hides ~5-10 s of a night.
        threading.Thread(target=importlib.import_module, args=("cf.keras_model",), daemon=True).start()
    t0 = time.perf_counter()
    data = load_ratings(settings)
    snapshot = data.snapshot()
    say(f"loaded {len(data):,} ratings in {time.perf_counter() - t0:.1f}s", enabled=progress)
    lineage: dict = {"mode": "full", "base": None, "updates_since_full": 0}
    why_full = "not asked to update" if not update else None
    current, previous = None, None
    if update:
        current = current_model(settings)
        if current is None:
            why_full = "no current model"
        else:
            t0 = time.perf_counter()
            previous = _load_previous(current)
            say(f"model {current.version} loaded in {time.perf_counter() - t0:.1f}s", enabled=progress)
            last = json.loads((current.path / SIDECAR).read_text()).get("lineage", {})
            if previous.hp.objective != "implicit" or rec.hp.objective != "implicit":
                why_full = "only implicit (ALS) models update"
            elif previous.hp.dim != rec.hp.dim:
                why_full = f"dim changes from {previous.hp.dim} to {rec.hp.dim}"
            elif last.get("updates_since_full", 0) + 1 > RETRAIN_EVERY:
                why_full = f"{RETRAIN_EVERY} updates since the last full fit"
    started = time.perf_counter()
    if why_full is None:
        since = current.max_rated_at.replace(tzinfo=UTC).timestamp() if current.max_rated_at else None
        say(f"updating model {current.version} with the ratings it has not seen", enabled=progress)
        change = rec.update(data, previous, since, progress=progress)
        say(
            f"{change['changed']:,} changed ratings ({change['share']:.1%}): re-solved {change['users']:,} "
            f"users ({change['new_users']:,} new) and {change['movies']:,} of the "
            f"{change['movies_with_changes']:,} movies with changes ({change['new_movies']:,} new)",
            enabled=progress,
        )
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
            rec = KerasCF(**{k: v for k, v in hyperparams.items() if v is not None})
        say(
            f"training {rec.hp.objective} model on {snapshot['n_ratings']:,} ratings "
            f"({snapshot['n_users']:,} users, {snapshot['n_movies']:,} movies)",
            enabled=progress,
        )
        rec.fit(data, progress=progress)
    h = rec.history
    fit_seconds = time.perf_counter() - started
    metrics = {
        "mode": lineage["mode"],
        "updates_since_full": lineage["updates_since_full"],
        "train_loss": h.loss[h.best_epoch - 1] if h.loss and h.best_epoch else None,
        "val_loss": h.val_loss[h.best_epoch - 1] if h.val_loss and h.best_epoch else None,
        "val_ndcg@10": h.val_ndcg[-1] if h.val_ndcg else None,
        "best_epoch": h.best_epoch,
        "epochs_run": len(h.seconds),
        "train_seconds": round(fit_seconds, 2),
    }
    if lineage["mode"] == "update":
        metrics["base_val_ndcg@10"] = lineage["change"]["base_ndcg"]
    t0 = time.perf_counter()
    record = _save_version(settings, rec, snapshot, metrics, lineage, progress)
    say(f"saved in {time.perf_counter() - t0:.1f}s", enabled=progress)
    return record


def _load_previous(record: ModelRecord):
    from cf.keras_cf import KerasCF
    from cf.recommender import Recommender

    load_factors(record.path)  # sidecar checks
    previous = Recommender.load(record.path)
    if not isinstance(previous, KerasCF):
        raise ModelError(f"model {record.version} is not a Keras CF model")
    return previous


def _save_version(settings: Settings, rec, snapshot: dict, metrics: dict, lineage: dict, progress: bool):
    h = rec.history
    trained_at = datetime.now(UTC).replace(tzinfo=None)
    version = f"{trained_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    root = settings.models_path
    final, tmp = root / version, root / f".tmp-{version}"
    tmp.mkdir(parents=True)
    try:
        rec.save(tmp)
        sidecar = {
            "version": version,
            "trained_at": trained_at.isoformat(),
            "objective": rec.hp.objective,
            "hyperparameters": {**rec.hp.to_dict(), "batch_size_used": h.batch_size},
            "shape": {"n_users": len(rec.user_ids), "n_movies": len(rec.movie_ids), "dim": rec.hp.dim},
            "data": snapshot,
            "metrics": metrics,
            "lineage": lineage,
            "history": {"loss": h.loss, "val_loss": h.val_loss, "val_ndcg": h.val_ndcg, "seconds": h.seconds},
            "versions": _versions(),
        }
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2))
        _plot_loss(h, tmp / "loss.png", f"{version} ({rec.hp.objective}, {lineage['mode']})")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    max_ts = (
        datetime.fromtimestamp(snapshot["max_rated_at"], UTC).replace(tzinfo=None)
        if snapshot["max_rated_at"]
        else None
    )
    try:
        with connect(settings) as con, transaction(con):
            con.execute("UPDATE cf_models SET is_current = false WHERE is_current")
            con.execute(
                "INSERT INTO cf_models (version, trained_at, objective, metrics, path, is_current, n_ratings,"
                " max_rated_at) VALUES (?, ?, ?, ?, ?, true, ?, ?)",
                [version, trained_at, rec.hp.objective, json.dumps(metrics), str(final.resolve()),
                 snapshot["n_ratings"], max_ts],
            )  # fmt: skip
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    say(f"model {version} ({lineage['mode']}) saved to {final} and made current", enabled=progress)
    return ModelRecord(
        version, final.resolve(), rec.hp.objective, trained_at, snapshot["n_ratings"], max_ts, metrics
    )


def _versions() -> dict:
    import keras
    import numpy
    import tensorflow

    return {"keras": keras.__version__, "tensorflow": tensorflow.__version__, "numpy": numpy.__version__}


def _plot_loss(h, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if h.val_ndcg:  # implicit (ALS): seconds per sweep; the validation nDCG in the title
        ax.bar(range(1, len(h.seconds) + 1), h.seconds, label="seconds per sweep")
        base = "" if h.base_ndcg is None else f" (from {h.base_ndcg:.4f})"
        title = f"{title}\nvalidation nDCG@10 {h.val_ndcg[-1]:.4f}{base}"
        ax.set(xlabel="ALS sweep", ylabel="seconds", title=title)
    else:
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
