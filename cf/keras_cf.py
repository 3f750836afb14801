"""The Keras CF model behind the common recommender contract.

It is fitted by numpy ALS (implicit objective, cf.als; no TensorFlow at all: the `.keras` file is written
from the factors by cf.keras_file) or TensorFlow (rating objective, cf.train), and then scores with the
exported numpy factors (cf.factors), so loading and scoring a saved model never imports TensorFlow. The
`.keras` file is saved alongside for anyone who wants the Keras model itself (`keras.saving.load_model`
needs no custom code beyond importing `cf.keras_model`, which registers the classes).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from movierec.catalog import Seen
from movierec.cf.data import Ratings, index_of
from movierec.cf.factors import Factors
from movierec.cf.keras_file import write_cf_model
from movierec.cf.recommender import Recommender
from movierec.cf.train import History, HyperParams
from movierec.cf.tune import Search
from movierec.errors import ModelError
from movierec.progress import say

FACTORS = "factors.npz"
KERAS_FILE = "model.keras"


class KerasCF(Recommender):
    kind = "keras"

    def __init__(self, content: tuple[np.ndarray, np.ndarray] | None = None, **hyperparams) -> None:
        self.hp = HyperParams(**hyperparams)
        self.fixed = frozenset(hyperparams)  # given values: the tuning search keeps them
        self.tuning: Search | None = None  # what the search tried and chose (a tuned full fit)
        self.model = None  # the trained keras.Model, only in the process that trained it
        self.history: History | None = None
        self.factors: Factors | None = None
        # The films' text vectors, (movie ids ascending, unit vectors; `text_vectors`): the content side's
        # input (cf.content) for `fit` and `update`; None: CF alone.
        self.content = content

    @classmethod
    def _known_params(cls, params: dict) -> dict:
        # 0.1 models carry the SGD implicit settings (neg_ratio, implicit_loss) that ALS replaced.
        fields = {f.name for f in dataclasses.fields(HyperParams)}
        return {k: v for k, v in params.items() if k in fields}

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.hp.objective == "rating"

    def _params(self) -> dict:
        return self.hp.to_dict()

    def _fit(self, user_rows, movie_rows, ratings, progress, rated_at=None):
        from movierec.cf import train

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
        rows = self._content_rows()
        if self.hp.tune:
            from movierec.cf import tune

            self.hp, self.tuning = tune.search(
                user_rows, movie_rows, ratings, self.user_ids, self.movie_ids, self.hp, self.fixed, progress,
                content=None if rows is None else rows[0], rated_at=rated_at,
            )  # fmt: skip
        X, Y, self.history = train.fit_als(
            user_rows, movie_rows, ratings, self.user_ids, self.movie_ids, self.hp, progress,
            rated_at=rated_at,
        )  # fmt: skip
        self._set_als(X, Y)
        self._add_content(user_rows, movie_rows, ratings, rows, progress=progress)

    def _content_rows(self, directions: np.ndarray | None = None) -> tuple[np.ndarray, ...] | None:
        """(The films' text vectors projected on `directions` (a full fit: the vectors' own, `basis`) and
        aligned to the model's movies, their mean, the directions), or None (no vectors)."""
        from movierec.cf.content import basis, movie_rows

        if self.content is None or len(self.content[0]) == 0:
            return None
        ids, vecs = self.content
        if directions is None or directions.shape[0] != vecs.shape[1]:
            directions = basis(vecs)
        return (*movie_rows(ids, vecs @ directions, self.movie_ids), directions)

    def _add_content(
        self, user_rows, movie_rows, ratings, rows: tuple[np.ndarray, ...] | None,
        users: np.ndarray | None = None, previous: Factors | None = None, progress: bool = False,
    ) -> None:  # fmt: skip
        """The content side (cf.content) at `hp.profile_weight` from the users' liked films: every user's
        (a full fit), or with `users` (rows) and `previous` (an update of a model that has one) only those
        users', the others and the known films keeping `previous`'s rows (a whole rebuild took 30 s of an
        update at ml-25m size)."""
        from movierec.cf.content import profiles, user_side

        if self.hp.profile_weight == 0 or self.factors is None:
            return
        t0 = time.perf_counter()
        f, w = self.factors, self.hp.profile_weight
        if previous is not None and previous.has_content and previous.content_basis is not None:
            ou, om = index_of(self.user_ids, previous.user_ids), index_of(self.movie_ids, previous.movie_ids)
            vecs = np.empty((len(self.movie_ids), previous.content_movies.shape[1]), np.float32)
            vecs[:] = previous.content_center if rows is None else rows[0]  # new films: the store's, or mean
            vecs[om[om >= 0]] = previous.content_movies[om >= 0]
            center, directions = previous.content_center, previous.content_basis
            out = np.zeros((len(self.user_ids), vecs.shape[1]), np.float32)
            out[ou[ou >= 0]] = previous.content_users[ou >= 0]
            new_users = np.setdiff1d(np.arange(len(out)), ou[ou >= 0])
            redo = np.union1d(np.asarray(users if users is not None else [], dtype=np.int64), new_users)
            mine = np.isin(user_rows, redo)
            local = np.searchsorted(redo, user_rows[mine])
            prof = profiles(local, movie_rows[mine], ratings[mine], len(redo), vecs)
            out[redo] = user_side(w, f.user_vecs[redo], f.movie_vecs, prof, vecs, local, movie_rows[mine])
            done = len(redo)
        elif rows is not None:
            vecs, center, directions = rows
            prof = profiles(user_rows, movie_rows, ratings, len(self.user_ids), vecs)
            out = user_side(w, f.user_vecs, f.movie_vecs, prof, vecs, user_rows, movie_rows)
            done = len(out)
        else:
            return
        self.factors = dataclasses.replace(
            f, content_users=out, content_movies=vecs, content_center=center, content_basis=directions,
            profile_weight=w,
        )  # fmt: skip
        took = time.perf_counter() - t0
        say(f"content side (profile weight {w:g}): {done:,} users in {took:.1f}s", enabled=progress)

    def _set_als(self, X: np.ndarray, Y: np.ndarray) -> None:
        # No TensorFlow: the factors are the model (biases 0); `_save` writes them as the Keras file.
        self.model = None
        zu, zm = np.zeros(len(X), np.float32), np.zeros(len(Y), np.float32)
        self._set_factors(user_vecs=X, movie_vecs=Y, user_bias=zu, movie_bias=zm, global_bias=0.0)

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
            reg_exp=self.hp.reg_exp if als else 0.0,
            reg_norm=self.history.reg_norm if als and self.history is not None else 1.0,
            weight=self.hp.weight if als else "log",
            like=self.hp.like if als else 0.0,
            recency=self.hp.recency if als else 0.0,
            **arrays,
        )

    def update(
        self,
        data: Ratings,
        previous: KerasCF,
        since: float | None,
        progress: bool = False,
        base: dict | None = None,
        edited_users: np.ndarray | None = None,
    ) -> dict:
        """Fit to `data` starting from `previous` (an implicit model): known users and movies keep their
        vectors, new ones start at zero, and only the users and movies with ratings that `previous` did
        not train on are re-solved, `hp.update_iterations` sweeps. Those ratings are the rows later ingests
        wrote, when `base` (the data snapshot `previous` was trained on) and the database can say
        (`Ratings.changed_since`); else new pairs, or rated after `since` (epoch seconds). `edited_users`:
        ids of users whose ratings digest moved (`UserDigests.changed`); those that neither way found are
        re-solved with what `_edits` finds. Returns what changed: {'changed': n ratings, 'share', 'users',
        'movies', 'base_ndcg', 'found', 'edited_users', 'removed_users', 'removed_movies', ...}."""
        from movierec.cf import train

        if previous.hp.objective != "implicit" or self.hp.objective != "implicit":
            raise ModelError("only implicit (ALS) models can be updated; retrain instead")
        if previous.factors.dim != self.hp.dim:
            raise ModelError(f"the current model has dim {previous.factors.dim}, not {self.hp.dim}; retrain")
        t0 = time.perf_counter()
        u, m = self._index(data)
        nu, nm = len(self.user_ids), len(self.movie_ids)
        ou, om = index_of(self.user_ids, previous.user_ids), index_of(self.movie_ids, previous.movie_ids)
        later = None if base is None else data.changed_since(base)
        if later is not None:  # the database says which rows ingests wrote since the previous model's
            changed_keys = m[later].astype(np.int64) * nu + u[later]
            how = "from the ingest numbers"
        else:
            changed_keys = self._new_pairs(data, previous, since, u, m)
            how = "by comparing every pair with the previous model's"
        edited, gone_movies, n_gone = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0
        if edited_users is not None and len(edited_users):
            edited = np.setdiff1d(edited_users, self.user_ids[np.unique(changed_keys % nu)])
            if len(edited):
                extra, gone_movies, n_gone = self._edits(data, previous, edited, u, m)
                changed_keys = np.union1d(changed_keys, extra)
        n_changed = len(changed_keys) + n_gone
        edited_rows = index_of(self.user_ids, edited)
        solve_users = np.union1d(np.unique(changed_keys % nu), edited_rows[edited_rows >= 0])
        # A movie moves when it is new or a clear share of its ratings changed; a popular movie with a
        # fraction of a percent new ratings would cost a full pass over its ratings for no visible change.
        per_movie = np.bincount(changed_keys // nu, minlength=nm) + np.bincount(gone_movies, minlength=nm)
        total = np.bincount(m, minlength=nm)
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
        found_in = time.perf_counter() - t0
        say(f"changed ratings found {how} in {found_in:.1f}s", enabled=progress)
        hp = replace(self.hp, iterations=self.hp.update_iterations)
        X, Y, self.history = train.fit_als(
            u, m, data.ratings.astype(np.float32), self.user_ids, self.movie_ids, hp, progress,
            start=(X0, Y0), solve_users=solve_users, solve_movies=solve_movies,
            gate_users=known_users, rated_at=data.rated_at,
        )  # fmt: skip
        self._set_als(X, Y)
        prev = previous.factors
        rows = self._content_rows(prev.content_basis)
        self._add_content(u, m, data.ratings, rows, solve_users, prev, progress=progress)
        return {
            "changed": n_changed,
            "share": n_changed / max(len(data), 1),
            "users": int(len(solve_users)),
            "movies": int(len(solve_movies)),
            "movies_with_changes": int((per_movie > 0).sum()),
            "new_users": int(len(self.user_ids) - len(known_users)),
            "new_movies": int(len(self.movie_ids) - int((om >= 0).sum())),
            "base_ndcg": self.history.base_ndcg,
            "found": "ingest numbers" if later is not None else "pair comparison",
            "edited_users": int(len(edited)),
            "removed_users": int((ou < 0).sum()),
            "removed_movies": int((om < 0).sum()),
            "found_seconds": round(found_in, 2),  # id maps of the new data included (every fit needs them)
        }

    def _edits(
        self, data: Ratings, previous: KerasCF, users: np.ndarray, u: np.ndarray, m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """What hand edits changed for `users` (ids whose ratings digest moved that nothing else explains),
        from their pairs now and in `previous`: (keys of their pairs `previous` lacked, and of every
        pair of a user whose pairs are all the same: a value edited in place, the row unknown; the rows
        of movies whose pair with them is gone; the number of pairs gone). A user gone altogether counts
        through their movies."""
        nu = len(self.user_ids)
        ps = previous.seen
        was = np.isin(ps.user_ids, users)
        p_u = ps.user_ids[was].astype(np.int64)
        p_m = np.repeat(ps.movie_ids, np.diff(ps.indptr))[was]
        now = np.isin(data.user_ids, users)
        c_u, c_m = data.user_ids[now], data.movie_ids[now]
        prev_keys, cur_keys = (p_u << 32) | p_m, (c_u << 32) | c_m
        new, gone = ~np.isin(cur_keys, prev_keys), ~np.isin(prev_keys, cur_keys)
        same_pairs = ~np.isin(c_u, np.union1d(c_u[new], p_u[gone]))
        take = new | same_pairs
        keys = m[now][take].astype(np.int64) * nu + u[now][take]
        gone_movies = index_of(self.movie_ids, p_m[gone])
        return keys, gone_movies[gone_movies >= 0], int(gone.sum())

    def _new_pairs(
        self, data: Ratings, previous: KerasCF, since: float | None, u: np.ndarray, m: np.ndarray
    ) -> np.ndarray:
        """Keys (movie_row * n_users + user_row) of the pairs `previous` did not train on, or rated after
        `since`: for models and databases that cannot say which ingest wrote what (`Ratings.changed_since`).
        The previous model's pairs (grouped by movie, users ascending) map onto the new rows in the same
        order: id maps are sorted, so one searchsorted finds the new pairs, with no sort of 25M keys."""
        nu = len(self.user_ids)
        ps = previous.seen
        p_movies = np.repeat(index_of(self.movie_ids, ps.movie_ids), np.diff(ps.indptr))
        p_users = index_of(self.user_ids, ps.user_ids.astype(np.int64))
        ok = (p_users >= 0) & (p_movies >= 0)
        old_keys = p_movies[ok] * nu + p_users[ok]
        s_movies = np.repeat(index_of(self.movie_ids, self.seen.movie_ids), np.diff(self.seen.indptr))
        keys = s_movies * nu + index_of(self.user_ids, self.seen.user_ids)
        pos = np.searchsorted(old_keys, keys).clip(0, max(len(old_keys) - 1, 0))
        new_pair = ~(old_keys[pos] == keys) if len(old_keys) else np.ones(len(keys), dtype=bool)
        changed_keys = keys[new_pair]
        if since is not None:  # re-rated pairs: same key, newer timestamp
            later = data.rated_at > since
            changed_keys = np.union1d(changed_keys, m[later].astype(np.int64) * nu + u[later])
        return changed_keys

    @property
    def flops_per_pair(self) -> int:  # type: ignore[override]
        return self.factors.scoring_dim if self.factors is not None else 0

    def _items(self, movie_ids):
        """Candidate vectors (transposed, contiguous for BLAS) and biases incl. the global one; a movie
        newer than the model has no vector: interaction 0 and the median movie bias, a neutral prior."""
        f = self.factors
        rows = f.movie_index(movie_ids)
        known = rows >= 0
        vecs_t = np.zeros((f.scoring_dim, len(rows)), dtype=np.float32)
        vecs_t[:, known] = f.movie_side(rows[known])
        if f.content_center is not None:  # a newer film's content side: the average film's (cf.content)
            vecs_t[f.dim :, ~known] = f.content_center[:, None]
        prior = float(np.median(f.movie_bias)) if len(f.movie_bias) else 0.0
        bias = np.full(len(rows), prior, dtype=np.float32)
        bias[known] = f.movie_bias[rows[known]]
        bias += np.float32(f.global_bias)
        return vecs_t, bias

    def _block(self, user_rows, items):
        return self.factors.block(user_rows, *items)

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
        if self.model is not None:  # the rating objective: the trained Keras model (optimizer state too)
            self.model.save(directory / KERAS_FILE)
        elif self.hp.objective == "implicit":
            f = self.factors
            write_cf_model(directory / KERAS_FILE, f.user_vecs, f.movie_vecs, f.user_bias, f.movie_bias,
                           f.global_bias, l2=self.hp.l2, seed=self.hp.seed)  # fmt: skip

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
