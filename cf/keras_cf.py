"""The Keras CF model behind the common recommender contract.

It is fitted by numpy ALS (implicit objective, cf.als, written into the Keras weights) or TensorFlow
(rating objective, cf.train), and then scores with the exported numpy factors (cf.factors), so loading and
scoring a saved model never imports TensorFlow. The `.keras` file is saved alongside for anyone who wants
the Keras model itself (`keras.saving.load_model` needs no custom code beyond importing
`cf.keras_model`, which registers the classes).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cf.data import Ratings, index_of
from cf.factors import Factors
from cf.recommender import Recommender
from cf.train import History, HyperParams
from movierec.errors import ModelError
from movierec.progress import say

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
        from cf import train

        if self.hp.objective == "rating":
            self.model, self.history = train.fit_rating(
                user_rows,
                movie_rows,
                ratings,
                len(self.user_ids),
                len(self.movie_ids),
                self.hp,
                self.rating_range,
                progress=progress,
            )
            self._set_factors(**self.model.weights_as_arrays())
            return
        X, Y, self.history = train.fit_als(
            user_rows, movie_rows, ratings, self.user_ids, len(self.movie_ids), self.hp, progress
        )
        self._set_als(X, Y)

    def _set_als(self, X: np.ndarray, Y: np.ndarray) -> None:
        from cf import keras_model  # TensorFlow loads here: the factors become the Keras model's weights

        self.model = keras_model.from_factors(X, Y, l2=self.hp.l2, seed=self.hp.seed)
        self._set_factors(**self.model.weights_as_arrays())

    def _set_factors(self, **arrays) -> None:
        als = self.hp.objective == "implicit"
        self.factors = Factors(
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            rating_min=self.rating_range[0],
            rating_max=self.rating_range[1],
            objective=self.hp.objective,
            reg=self.hp.reg if als else 0.0,
            alpha=self.hp.confidence if als else 0.0,
            **arrays,
        )

    def update(self, data: Ratings, previous: KerasCF, since: float | None, progress: bool = False) -> dict:
        """Fit to `data` starting from `previous` (an implicit model): known users and movies keep their
        vectors, new ones start at zero, and only the users and movies with ratings that `previous` did
        not train on (new pairs, or rated after `since`, epoch seconds) are re-solved, `hp.update_iterations`
        sweeps. Returns what changed: {'changed': n ratings, 'share', 'users', 'movies', 'base_ndcg'}."""
        from cf import train

        if previous.hp.objective != "implicit" or self.hp.objective != "implicit":
            raise ModelError("only implicit (ALS) models can be updated; retrain instead")
        if previous.factors.dim != self.hp.dim:
            raise ModelError(f"the current model has dim {previous.factors.dim}, not {self.hp.dim}; retrain")
        t0 = time.perf_counter()
        u, m = self._index(data)
        # Pairs the previous model trained on, as keys over the new rows. Id maps are sorted, so mapping
        # old rows to new ones keeps the keys sorted (no 25M-element sort): the seen lists are sorted keys.
        nm = len(self.movie_ids)
        ou, om = index_of(self.user_ids, previous.user_ids), index_of(self.movie_ids, previous.movie_ids)
        p_users = np.repeat(ou, np.diff(previous.seen.indptr))
        p_movies = om[previous.seen.movie_rows]
        ok = (p_users >= 0) & (p_movies >= 0)
        old_keys = p_users[ok] * nm + p_movies[ok]
        keys = np.repeat(np.arange(len(self.user_ids)), np.diff(self.seen.indptr)) * nm + self.seen.movie_rows
        pos = np.searchsorted(old_keys, keys).clip(0, max(len(old_keys) - 1, 0))
        new_pair = ~(old_keys[pos] == keys) if len(old_keys) else np.ones(len(keys), dtype=bool)
        changed_keys = keys[new_pair]
        if since is not None:  # re-rated pairs: same key, newer timestamp
            later = data.rated_at > since
            changed_keys = np.union1d(changed_keys, u[later] * nm + m[later])
        n_changed = len(changed_keys)
        solve_users = np.unique(changed_keys // nm)
        # A movie moves when it is new or a clear share of its ratings changed; a popular movie with a
        # fraction of a percent new ratings would cost a full pass over its ratings for no visible change.
        per_movie = np.bincount(changed_keys % nm, minlength=nm)
        total = np.bincount(self.seen.movie_rows, minlength=nm)
        is_new_movie = np.ones(nm, dtype=bool)
        is_new_movie[om[om >= 0]] = False
        solve_movies = np.flatnonzero(
            (per_movie > 0) & (is_new_movie | (per_movie >= self.hp.update_share * total))
        )
        X0 = np.zeros((len(self.user_ids), self.hp.dim), dtype=np.float32)
        Y0 = np.zeros((len(self.movie_ids), self.hp.dim), dtype=np.float32)
        X0[ou[ou >= 0]] = previous.factors.user_vecs[ou >= 0]
        Y0[om[om >= 0]] = previous.factors.movie_vecs[om >= 0]
        known_users = np.unique(ou[ou >= 0])
        say(f"changed ratings found in {time.perf_counter() - t0:.1f}s", enabled=progress)
        hp = replace(self.hp, iterations=self.hp.update_iterations)
        X, Y, self.history = train.fit_als(
            u, m, data.ratings.astype(np.float32), self.user_ids, len(self.movie_ids), hp, progress,
            start=(X0, Y0), solve_users=solve_users, solve_movies=solve_movies,
            gate_users=known_users,
        )  # fmt: skip
        t0 = time.perf_counter()
        self._set_als(X, Y)
        say(f"Keras model built in {time.perf_counter() - t0:.1f}s", enabled=progress)
        return {
            "changed": n_changed,
            "share": n_changed / max(len(data), 1),
            "users": int(len(solve_users)),
            "movies": int(len(solve_movies)),
            "movies_with_changes": int((per_movie > 0).sum()),
            "new_users": int(len(self.user_ids) - len(known_users)),
            "new_movies": int(len(self.movie_ids) - int((om >= 0).sum())),
            "base_ndcg": self.history.base_ndcg,
        }

    def _scores(self, user_rows, movie_rows):
        f = self.factors
        return f.logits(user_rows, np.arange(len(f.movie_ids)) if movie_rows is None else movie_rows)

    def _predict_rows(self, user_rows, movie_rows):
        return self.factors.to_rating(self.factors.pair_logits(user_rows, movie_rows))

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
