"""One model contract for every recommender in `cf`: fit, score users x movies, top-N with seen movies
filtered, predict ratings, save, load. The Keras model (`cf.keras_cf.KerasCF`) and the baselines below
share it, so evaluation and tests treat them alike.

Ids are MovieLens ids at the edges; inside, models work on rows (positions in the sorted id arrays).
Unknown users or movies score NaN; `recommend` for an unknown user raises NotFoundError.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from cf.data import Ratings, Seen, index_of, unique_sorted
from movierec.errors import ModelError, NotFoundError

META = "recommender.json"
CONTRACT = "contract.npz"


class Recommender(ABC):
    kind: ClassVar[str]
    predicts_ratings: ClassVar[bool] = False

    user_ids: np.ndarray
    movie_ids: np.ndarray
    seen: Seen
    rating_range: tuple[float, float]

    # --- fitting ---------------------------------------------------------------------------------------
    def fit(self, data: Ratings, *, progress: bool = False) -> Recommender:
        u, m = self._index(data)
        self._fit(u, m, data.ratings.astype(np.float32), progress=progress)
        return self

    def _index(self, data: Ratings) -> tuple[np.ndarray, np.ndarray]:
        """Id maps, seen lists and rating range from `data`; its (user rows, movie rows)."""
        if len(data) == 0:
            raise ModelError("cannot fit a model on zero ratings")
        self.user_ids = unique_sorted(data.user_ids)
        self.movie_ids = unique_sorted(data.movie_ids)
        u, m = index_of(self.user_ids, data.user_ids), index_of(self.movie_ids, data.movie_ids)
        self.seen = Seen.build(u, m, len(self.user_ids))
        self.rating_range = (float(data.ratings.min()), float(data.ratings.max()))
        return u, m

    @abstractmethod
    def _fit(
        self, user_rows: np.ndarray, movie_rows: np.ndarray, ratings: np.ndarray, progress: bool
    ) -> None: ...

    @abstractmethod
    def _scores(self, user_rows: np.ndarray, movie_rows: np.ndarray | None) -> np.ndarray:
        """Ranking scores [len(user_rows), len(movie_rows) or all movies]; higher is better."""

    def _predict_rows(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings for aligned pairs of known rows."""
        return np.full(len(user_rows), np.nan, dtype=np.float32)

    # --- the contract ----------------------------------------------------------------------------------
    def score(self, user_ids, movie_ids=None) -> np.ndarray:
        """Scores users x movies (all known movies when `movie_ids` is None); NaN for unknown ids."""
        u = index_of(self.user_ids, np.atleast_1d(user_ids))
        m = (
            np.arange(len(self.movie_ids))
            if movie_ids is None
            else index_of(self.movie_ids, np.atleast_1d(movie_ids))
        )
        out = np.full((len(u), len(m)), np.nan, dtype=np.float32)
        ku, km = u >= 0, m >= 0
        if ku.any() and km.any():
            out[np.ix_(ku, km)] = self._scores(u[ku], m[km])
        return out

    def predict(self, user_ids, movie_ids) -> np.ndarray:
        """Predicted ratings for aligned (user, movie) pairs; NaN for unknown ids or non-rating models."""
        u, m = index_of(self.user_ids, user_ids), index_of(self.movie_ids, movie_ids)
        out = np.full(len(u), np.nan, dtype=np.float32)
        ok = (u >= 0) & (m >= 0)
        if ok.any() and self.predicts_ratings:
            out[ok] = self._predict_rows(u[ok], m[ok])
        return out

    def top_n_rows(self, user_rows: np.ndarray, n: int, exclude_seen: bool = True, block: int = 1024):
        """Top-n movie rows and scores for known user rows, best first: [len(user_rows), k], k = min(n,
        catalogue). Where a user has fewer than k unseen movies the tail is -1 / -inf."""
        n_movies = len(self.movie_ids)
        k = min(n, n_movies)
        rows = np.full((len(user_rows), k), -1, dtype=np.int64)
        vals = np.full((len(user_rows), k), -np.inf, dtype=np.float32)
        for start in range(0, len(user_rows), block):
            ur = user_rows[start : start + block]
            s = self._scores(ur, None).astype(np.float32, copy=True)
            if exclude_seen:
                s[self.seen.mask(ur, n_movies)] = -np.inf
            top = (
                np.argpartition(-s, k - 1, axis=1)[:, :k]
                if k < n_movies
                else np.tile(np.arange(n_movies), (len(ur), 1))
            )
            top_s = np.take_along_axis(s, top, axis=1)
            order = np.argsort(-top_s, axis=1, kind="stable")
            top, top_s = np.take_along_axis(top, order, 1), np.take_along_axis(top_s, order, 1)
            top = np.where(np.isfinite(top_s), top, -1)
            rows[start : start + len(ur)], vals[start : start + len(ur)] = top, top_s
        return rows, vals

    def recommend(
        self, user_id: int, n: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (movie_ids, scores) for one user, movies they rated left out."""
        u = index_of(self.user_ids, [user_id])
        if u[0] < 0:
            raise NotFoundError(
                f"user {user_id} is not in the {self.kind} model (no ratings when it was trained)"
            )
        rows, vals = self.top_n_rows(u, n, exclude_seen)
        keep = rows[0] >= 0
        return self.movie_ids[rows[0][keep]], vals[0][keep]

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / CONTRACT,
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            seen_indptr=self.seen.indptr,
            seen_movie_rows=self.seen.movie_rows,
            rating_range=np.array(self.rating_range, dtype=np.float64),
        )
        meta = {"kind": self.kind, **self._params()}
        (directory / META).write_text(json.dumps(meta, indent=2))
        self._save(directory)
        return directory

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        directory = Path(directory)
        if not (directory / META).exists() or not (directory / CONTRACT).exists():
            raise ModelError(f"no saved recommender in {directory}")
        meta = json.loads((directory / META).read_text())
        kind = meta.pop("kind")
        impl = _registry().get(kind)
        if impl is None:
            raise ModelError(f"{directory} holds an unknown model kind {kind!r}")
        if cls is not Recommender and impl is not cls:
            raise ModelError(f"{directory} holds a {kind} model, not a {cls.kind} model")
        obj = impl(**meta)
        with np.load(directory / CONTRACT, allow_pickle=False) as z:
            obj.user_ids, obj.movie_ids = z["user_ids"], z["movie_ids"]
            obj.seen = Seen(z["seen_indptr"], z["seen_movie_rows"])
            obj.rating_range = tuple(float(x) for x in z["rating_range"])
        if len(obj.seen.indptr) != len(obj.user_ids) + 1:
            raise ModelError(f"{directory}: seen-movie index does not match the user id map")
        obj._load(directory)
        return obj

    def _params(self) -> dict:
        return {}

    def _save(self, directory: Path) -> None:  # noqa: B027 - models without extra state need nothing
        pass

    def _load(self, directory: Path) -> None:  # noqa: B027
        pass


class Popularity(Recommender):
    """Everyone gets the most-rated movies they have not seen: the baseline a personal model must beat."""

    kind = "popularity"

    def _fit(self, user_rows, movie_rows, ratings, progress):
        self.counts = np.bincount(movie_rows, minlength=len(self.movie_ids)).astype(np.float32)

    def _scores(self, user_rows, movie_rows):
        c = self.counts if movie_rows is None else self.counts[movie_rows]
        return np.broadcast_to(c, (len(user_rows), len(c)))

    def _save(self, directory):
        np.save(directory / "popularity.npy", self.counts)

    def _load(self, directory):
        self.counts = np.load(directory / "popularity.npy", allow_pickle=False)
        if len(self.counts) != len(self.movie_ids):
            raise ModelError(f"{directory}: popularity counts do not match the movie id map")


class BiasOnly(Recommender):
    """rating = mean + user bias + movie bias (damped means, fitted by alternating least squares).

    Ranking by it amounts to a damped average rating: "well rated" rather than "popular"."""

    kind = "bias"
    predicts_ratings = True

    def __init__(self, damping: float = 5.0, iterations: int = 5) -> None:
        self.damping, self.iterations = damping, iterations

    def _params(self) -> dict:
        return {"damping": self.damping, "iterations": self.iterations}

    def _fit(self, user_rows, movie_rows, ratings, progress):
        nu, nm = len(self.user_ids), len(self.movie_ids)
        self.mean = float(ratings.mean())
        bu, bm = np.zeros(nu), np.zeros(nm)
        cu = np.bincount(user_rows, minlength=nu) + self.damping
        cm = np.bincount(movie_rows, minlength=nm) + self.damping
        for _ in range(self.iterations):
            bm = np.bincount(movie_rows, ratings - self.mean - bu[user_rows], minlength=nm) / cm
            bu = np.bincount(user_rows, ratings - self.mean - bm[movie_rows], minlength=nu) / cu
        self.user_bias, self.movie_bias = bu.astype(np.float32), bm.astype(np.float32)

    def _scores(self, user_rows, movie_rows):
        mb = self.movie_bias if movie_rows is None else self.movie_bias[movie_rows]
        return self.mean + self.user_bias[user_rows, None] + mb[None, :]

    def _predict_rows(self, user_rows, movie_rows):
        r = self.mean + self.user_bias[user_rows] + self.movie_bias[movie_rows]
        return np.clip(r, *self.rating_range)

    def _save(self, directory):
        np.savez(directory / "bias.npz", user_bias=self.user_bias, movie_bias=self.movie_bias, mean=self.mean)

    def _load(self, directory):
        with np.load(directory / "bias.npz", allow_pickle=False) as z:
            self.user_bias, self.movie_bias, self.mean = z["user_bias"], z["movie_bias"], float(z["mean"])
        if len(self.user_bias) != len(self.user_ids) or len(self.movie_bias) != len(self.movie_ids):
            raise ModelError(f"{directory}: biases do not match the id maps")


def _registry() -> dict[str, type[Recommender]]:
    from cf.keras_cf import KerasCF  # light: KerasCF imports TensorFlow only when it trains

    return {c.kind: c for c in (Popularity, BiasOnly, KerasCF)}
