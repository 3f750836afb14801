"""Exported CF factors: what the batch and the CLI score with, without TensorFlow.

A trained model is exported as `factors.npz` (no pickle) beside its `.keras` file. Scoring is
`sigmoid(user_vec . movie_vec + user_bias + movie_bias + global_bias)`, the same as the Keras model,
so a block of users x candidates is one BLAS matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movierec.errors import ModelError


@dataclass(frozen=True)
class Factors:
    """Learned user/movie factors and biases, with the id maps that index them."""

    user_ids: np.ndarray  # int64 [n_users], sorted ascending
    movie_ids: np.ndarray  # int64 [n_movies], sorted ascending
    user_vecs: np.ndarray  # float32 [n_users, dim]
    movie_vecs: np.ndarray  # float32 [n_movies, dim]
    user_bias: np.ndarray  # float32 [n_users]
    movie_bias: np.ndarray  # float32 [n_movies]
    global_bias: float = 0.0
    rating_min: float = 0.5
    rating_max: float = 5.0
    # "rating": sigmoid(logit) is the min-max scaled rating, so `to_rating` is meaningful.
    # "implicit": sigmoid(logit) is P(user rates movie); it ranks, but it is not a rating.
    objective: str = "rating"

    def __post_init__(self) -> None:
        nu, nm = len(self.user_ids), len(self.movie_ids)
        shapes_ok = (
            self.user_vecs.shape[0] == nu
            and self.movie_vecs.shape[0] == nm
            and self.user_bias.shape == (nu,)
            and self.movie_bias.shape == (nm,)
            and self.user_vecs.shape[1] == self.movie_vecs.shape[1]
        )
        if not shapes_ok:
            raise ModelError(
                f"factors do not match their id maps: {nu} user ids vs {self.user_vecs.shape} user vectors, "
                f"{nm} movie ids vs {self.movie_vecs.shape} movie vectors"
            )

    @property
    def dim(self) -> int:
        return int(self.user_vecs.shape[1])

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id in `user_vecs`, or -1 for users the model has not seen."""
        return _lookup(self.user_ids, np.asarray(user_ids, dtype=np.int64))

    def movie_index(self, movie_ids: np.ndarray) -> np.ndarray:
        """Row of each movie id in `movie_vecs`, or -1 for movies the model has not seen."""
        return _lookup(self.movie_ids, np.asarray(movie_ids, dtype=np.int64))

    def logits(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Scores before the sigmoid for users x movies (rows from the *_index methods, all >= 0)."""
        out = self.user_vecs[user_rows] @ self.movie_vecs[movie_rows].T
        out += self.user_bias[user_rows, None]
        out += self.movie_bias[None, movie_rows]
        out += self.global_bias
        return out

    def pair_logits(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Scores before the sigmoid for aligned (user, movie) pairs (rows all >= 0)."""
        u, m = self.user_vecs[user_rows], self.movie_vecs[movie_rows]
        out = np.einsum("ij,ij->i", u, m)
        return out + self.user_bias[user_rows] + self.movie_bias[movie_rows] + np.float32(self.global_bias)

    @property
    def predicts_ratings(self) -> bool:
        return self.objective == "rating"

    def to_rating(self, logits: np.ndarray) -> np.ndarray:
        """Map logits to the rating scale (the model's output is the min-max scaled rating)."""
        return self.rating_min + (self.rating_max - self.rating_min) / (1.0 + np.exp(-logits))

    def save(self, path: Path) -> None:
        np.savez(
            path,
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            user_vecs=self.user_vecs,
            movie_vecs=self.movie_vecs,
            user_bias=self.user_bias,
            movie_bias=self.movie_bias,
            scalars=np.array([self.global_bias, self.rating_min, self.rating_max], dtype=np.float64),
            objective=np.array(self.objective),
        )

    @classmethod
    def load(cls, path: Path) -> Factors:
        if not Path(path).exists():
            raise ModelError(f"no factors at {path}: train a model with `movierec train`")
        try:
            return cls._read(path)
        except ModelError:
            raise
        except Exception as exc:  # BadZipFile, a pickled array, a missing key, a truncated member
            raise ModelError(
                f"the model file {path} is damaged ({type(exc).__name__}: {str(exc)[:120]}); "
                "retrain with `movierec train`"
            ) from None

    @classmethod
    def _read(cls, path: Path) -> Factors:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # our handle: closed on errors too
            g, lo, hi = (float(x) for x in z["scalars"])
            return cls(
                user_ids=z["user_ids"].astype(np.int64),
                movie_ids=z["movie_ids"].astype(np.int64),
                user_vecs=z["user_vecs"].astype(np.float32),
                movie_vecs=z["movie_vecs"].astype(np.float32),
                user_bias=z["user_bias"].astype(np.float32),
                movie_bias=z["movie_bias"].astype(np.float32),
                global_bias=g,
                rating_min=lo,
                rating_max=hi,
                objective=str(z["objective"]) if "objective" in z.files else "rating",
            )


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)
