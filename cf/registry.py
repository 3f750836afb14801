"""Versioned CF models on disk and their record in DuckDB (`cf_models`, exactly one current).

A model directory `MODELS/<version>/` holds:
  model.keras        the Keras model (registered classes: loads with keras.saving.load_model)
  factors.npz        exported factors + biases + id maps (cf.factors.Factors): what the batch scores with
  contract.npz       id maps and each user's rated movies (cf.recommender)
  recommender.json   model kind and hyperparameters
  model.json         sidecar: hyperparameters, data snapshot, metrics, library versions
  loss.png           training and validation loss per epoch

The directory is written under a temporary name and renamed, then recorded in one transaction, so a
failed run leaves neither a half-written directory nor a row pointing at one.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

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


def train_model(
    settings: Settings,
    *,
    objective: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    dim: int | None = None,
    neg_ratio: int | None = None,
    implicit_loss: str | None = None,
    l2: float | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> ModelRecord:
    """Train on every rating in DuckDB, write a new model version and make it current."""
    from cf.data import load_ratings
    from cf.keras_cf import KerasCF

    given = dict(objective=objective, epochs=epochs, batch_size=batch_size, lr=lr, dim=dim,
                 neg_ratio=neg_ratio, implicit_loss=implicit_loss, l2=l2, seed=seed)  # fmt: skip
    rec = KerasCF(**{k: v for k, v in given.items() if v is not None})
    data = load_ratings(settings)
    snapshot = data.snapshot()
    say(
        f"training {rec.hp.objective} model on {snapshot['n_ratings']:,} ratings "
        f"({snapshot['n_users']:,} users, {snapshot['n_movies']:,} movies)",
        enabled=progress,
    )
    rec.fit(data, progress=progress)
    h = rec.history
    metrics = {
        "train_loss": h.loss[h.best_epoch - 1] if h.best_epoch else None,
        "val_loss": h.val_loss[h.best_epoch - 1] if h.best_epoch else None,
        "best_epoch": h.best_epoch,
        "epochs_run": len(h.loss),
        "train_seconds": round(sum(h.seconds), 2),
        "samples_per_second": round(h.samples_per_epoch * len(h.seconds) / max(sum(h.seconds), 1e-9)),
    }

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
            "history": {"loss": h.loss, "val_loss": h.val_loss, "seconds": h.seconds},
            "versions": _versions(),
        }
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2))
        _plot_loss(h, tmp / "loss.png", f"{version} ({rec.hp.objective})")
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
    say(f"model {version} saved to {final} and made current", enabled=progress)
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
