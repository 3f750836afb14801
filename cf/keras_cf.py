"""The Keras CF model behind the common recommender contract.

It trains with TensorFlow (cf.train) and then scores with the exported numpy factors (cf.factors), so
loading and scoring a saved model never imports TensorFlow. The `.keras` file is saved alongside for
anyone who wants the Keras model itself (`keras.saving.load_model` needs no custom code beyond importing
`cf.keras_model`, which registers the classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.catalog import Seen
from movierec.cf.factors import Factors
from movierec.cf.recommender import Recommender
from movierec.cf.train import History, HyperParams
from movierec.errors import ModelError

FACTORS = "factors.npz"
KERAS_FILE = "model.keras"


class KerasCF(Recommender):
    kind = "keras"

    def __init__(self, **hyperparams) -> None:
        self.hp = HyperParams(**hyperparams)
        self.model = None  # the trained keras.Model, only in the process that trained it
        self.history: History | None = None
        self.factors: Factors | None = None

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.hp.objective == "rating"

    def _params(self) -> dict:
        return self.hp.to_dict()

    def _fit(self, user_rows, movie_rows, ratings, progress):
        from movierec.cf import train

        self.model, self.history = train.fit(
            user_rows,
            movie_rows,
            ratings,
            len(self.user_ids),
            len(self.movie_ids),
            self.hp,
            self.rating_range,
            progress=progress,
        )
        self.factors = Factors(
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            rating_min=self.rating_range[0],
            rating_max=self.rating_range[1],
            objective=self.hp.objective,
            **self.model.weights_as_arrays(),
        )

    @property
    def flops_per_pair(self) -> int:  # type: ignore[override]
        return self.factors.dim if self.factors is not None else 0

    def _items(self, movie_ids):
        """Candidate vectors (transposed, contiguous for BLAS) and biases incl. the global one; a movie
        newer than the model has no vector: interaction 0 and the median movie bias, a neutral prior."""
        f = self.factors
        rows = f.movie_index(movie_ids)
        known = rows >= 0
        vecs = np.zeros((len(rows), f.dim), dtype=np.float32)
        vecs[known] = f.movie_vecs[rows[known]]
        prior = float(np.median(f.movie_bias)) if len(f.movie_bias) else 0.0
        bias = np.full(len(rows), prior, dtype=np.float32)
        bias[known] = f.movie_bias[rows[known]]
        bias += np.float32(f.global_bias)
        return np.ascontiguousarray(vecs.T), bias

    def _block(self, user_rows, items):
        vecs_t, bias = items
        f = self.factors
        # Contiguous rows (the usual case: all users, sorted) avoid a gather copy.
        first, last = int(user_rows[0]), int(user_rows[-1])
        contiguous = last - first + 1 == len(user_rows) and bool((np.diff(user_rows) == 1).all())
        uvecs = f.user_vecs[first : last + 1] if contiguous else f.user_vecs[user_rows]
        logits = uvecs @ vecs_t
        logits += f.user_bias[user_rows, None]
        logits += bias[None, :]
        return logits

    def _to_rating(self, raw):
        return self.factors.to_rating(raw)

    def _predict_rows(self, user_rows, movie_rows):
        return self.factors.to_rating(self.factors.pair_logits(user_rows, movie_rows))

    @classmethod
    def from_factors(cls, factors: Factors, seen: Seen, **hyperparams) -> KerasCF:
        """A model from exported factors (known-answer tests, models fitted elsewhere): no Keras file."""
        obj = cls(objective=factors.objective, dim=factors.dim, **hyperparams)
        obj.user_ids, obj.movie_ids, obj.seen = factors.user_ids, factors.movie_ids, seen
        obj.rating_range = (factors.rating_min, factors.rating_max)
        obj.factors = factors
        return obj

    def _save(self, directory: Path) -> None:
        self.factors.save(directory / FACTORS)
        if self.model is not None:
            self.model.save(directory / KERAS_FILE)

    def _load(self, directory: Path) -> None:
        self.factors = Factors.load(directory / FACTORS)
        check_factors(self.factors, self.user_ids, self.movie_ids, self.hp.dim, directory)


def check_factors(f: Factors, user_ids: np.ndarray, movie_ids: np.ndarray, dim: int, where: Path) -> None:
    """Refuse factors that do not belong to the id maps or hyperparameters saved beside them."""
    if not (np.array_equal(f.user_ids, user_ids) and np.array_equal(f.movie_ids, movie_ids)):
        raise ModelError(
            f"{where}: factors cover {len(f.user_ids)} users / {len(f.movie_ids)} movies but the id maps "
            f"hold {len(user_ids)} / {len(movie_ids)} (or other ids): inconsistent model directory, retrain"
        )
    if f.dim != dim:
        raise ModelError(f"{where}: factors have dimension {f.dim} but the model was trained with dim={dim}")
