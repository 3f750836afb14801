"""Training loop for the Keras CF model: both objectives, early stopping, per-epoch progress.

`rating`: each observed rating, min-max scaled to [0, 1], is the BCE target (the reference design).
`implicit`: each observed rating is a positive and `neg_ratio` movies the user has not rated, drawn
uniformly and redrawn every epoch, are negatives. With `implicit_loss="bce"` (default) they are targets 1
and 0 of the same BCE; with "bpr" each (positive, negative) pair is one BPR example, -log sigmoid(s_ui - s_uj)
(BCE against 1 on a pairwise view of the same model). Same model, same optimizer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from movierec.errors import BadInputError
from movierec.progress import say

OBJECTIVES = ("implicit", "rating")
DEFAULT_OBJECTIVE = "implicit"  # ranks better on the holdout: see BENCHMARKS.md (cf section)


@dataclass
class HyperParams:
    """Defaults chosen on ml-latest-small (BENCHMARKS.md); `None` batch size means about 100 steps/epoch."""

    objective: str = DEFAULT_OBJECTIVE
    dim: int = 128
    epochs: int = 30
    batch_size: int | None = None
    lr: float = 2e-3
    l2: float = 1e-2
    neg_ratio: int = 4
    implicit_loss: str = "bce"
    patience: int = 2
    val_frac: float = 0.05
    seed: int = 42

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise BadInputError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.implicit_loss not in ("bce", "bpr"):
            raise BadInputError(f"unknown implicit loss {self.implicit_loss!r}: use bce or bpr")
        for name in ("dim", "epochs", "neg_ratio"):
            if getattr(self, name) < 1:
                raise BadInputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise BadInputError("--batch-size must be at least 1")
        if not self.lr > 0:
            raise BadInputError("--lr must be positive")

    def resolved_batch_size(self, n_samples: int) -> int:
        if self.batch_size:
            return self.batch_size
        return int(np.clip(n_samples // 100, 512, 32768))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0
    samples_per_epoch: int = 0
    batch_size: int = 0


def sample_negatives(
    user_rows: np.ndarray, n_movies: int, ratio: int, positive_keys: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`ratio` random movies per positive, redrawn (up to 5 times) where they hit something the user rated.
    `positive_keys` is the sorted array user_row * n_movies + movie_row of all known positives."""
    users = np.repeat(user_rows.astype(np.int64), ratio)
    movies = rng.integers(0, n_movies, len(users))
    for _ in range(6):
        keys = users * n_movies + movies
        pos = np.searchsorted(positive_keys, keys).clip(0, max(len(positive_keys) - 1, 0))
        clash = positive_keys[pos] == keys if len(positive_keys) else np.zeros(len(keys), bool)
        if not clash.any():
            break
        movies[clash] = rng.integers(0, n_movies, int(clash.sum()))
    return users, movies


def fit(
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_movies: int,
    hp: HyperParams,
    rating_range: tuple[float, float],
    progress: bool = False,
):
    """Train a `CFModel` on indexed ratings; return (model, History). Keeps the best epoch's weights.

    One `model.fit` call over a `keras.utils.PyDataset` that reshuffles (and, for `implicit`, redraws the
    negatives) at every epoch end: one traced train function, Keras' own EarlyStopping."""
    import keras

    from movierec.cf import keras_model  # TensorFlow loads here, not at CLI start

    rng = np.random.default_rng(hp.seed)
    bpr = hp.objective == "implicit" and hp.implicit_loss == "bpr"
    n = len(user_rows)
    is_val = rng.random(n) < hp.val_frac if n >= 20 else np.zeros(n, dtype=bool)
    lo, hi = rating_range
    scale = (hi - lo) or 1.0
    positive_keys = np.sort(user_rows.astype(np.int64) * n_movies + movie_rows)
    tu, tm = user_rows[~is_val], movie_rows[~is_val]
    vu, vm = user_rows[is_val], movie_rows[is_val]
    if hp.objective == "rating":
        train_y = ((ratings[~is_val] - lo) / scale).astype(np.float32)
        val_x, val_y = _pairs(vu, vm), ((ratings[is_val] - lo) / scale).astype(np.float32)
    else:
        train_y = None

        def implicit_samples(
            users: np.ndarray, movies: np.ndarray, gen: np.random.Generator
        ) -> tuple[np.ndarray, np.ndarray]:
            """Positives with `neg_ratio` sampled negatives each: (user, pos, neg) triples for BPR,
            labelled (user, movie) pairs for BCE."""
            nu, nm = sample_negatives(users, n_movies, hp.neg_ratio, positive_keys, gen)
            if bpr:
                x = np.stack([nu, np.repeat(movies, hp.neg_ratio), nm], axis=1).astype(np.int32)
                return x, np.ones(len(nu), dtype=np.float32)
            y = np.r_[np.ones(len(users)), np.zeros(len(nu))].astype(np.float32)
            return _pairs(np.r_[users, nu], np.r_[movies, nm]), y

        val_x, val_y = implicit_samples(vu, vm, np.random.default_rng(hp.seed + 1))

    samples = len(tu) * (1 if hp.objective == "rating" else hp.neg_ratio if bpr else 1 + hp.neg_ratio)
    batch = hp.resolved_batch_size(samples)
    model = keras_model.build(n_users, n_movies, hp.dim, hp.l2, hp.lr, hp.seed)
    trained = keras_model.build_pairwise(model, hp.lr) if bpr else model
    hist = History(samples_per_epoch=samples, batch_size=batch)

    class Epochs(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.on_epoch_end()

        def __len__(self) -> int:
            return max(1, -(-len(self.x) // batch))

        def __getitem__(self, i: int):
            return self.x[i * batch : (i + 1) * batch], self.y[i * batch : (i + 1) * batch]

        def on_epoch_end(self) -> None:
            if hp.objective == "rating":
                x, y = _pairs(tu, tm), train_y
            else:
                x, y = implicit_samples(tu, tm, rng)
            order = rng.permutation(len(x))
            self.x, self.y = x[order], y[order]

    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            logs = logs or {}
            hist.loss.append(float(logs["loss"]))
            hist.val_loss.append(float(logs.get("val_loss", logs["loss"])))
            hist.seconds.append(time.perf_counter() - self.t0)
            say(
                f"epoch {epoch + 1}/{hp.epochs}: loss {hist.loss[-1]:.4f}  val_loss {hist.val_loss[-1]:.4f}  "
                f"{hist.seconds[-1]:.1f}s ({samples / hist.seconds[-1]:,.0f} samples/s)",
                enabled=progress,
            )

    monitor = "val_loss" if len(val_x) else "loss"
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=hp.patience, restore_best_weights=True)
    trained.fit(
        Epochs(),
        validation_data=(val_x, val_y) if len(val_x) else None,
        validation_batch_size=65536,
        epochs=hp.epochs,
        callbacks=[Report(), stop],
        verbose=0,
    )
    hist.best_epoch = int(np.argmin(hist.val_loss)) + 1
    if stop.stopped_epoch:
        say(f"early stop: val_loss has not improved for {hp.patience} epochs", enabled=progress)
    return model, hist


def _pairs(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    return np.stack([u, m], axis=1).astype(np.int32)
