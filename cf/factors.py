"""Exported CF factors: what the batch and the CLI score with, without TensorFlow.

A trained model is exported as `factors.npz` (no pickle) beside its `.keras` file. Scoring is
`sigmoid(user_vec . movie_vec + user_bias + movie_bias + global_bias)`, the same as the Keras model,
so a block of users x candidates is one BLAS matrix product.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from movierec.cf.data import index_of
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
    # ALS regularisation and confidence alpha (implicit models): what `fold_in` solves with. 0/0 = the
    # model cannot fold in (rating objective, or factors saved before ALS).
    reg: float = 0.0
    alpha: float = 0.0
    reg_exp: float = 0.0  # frequency-scaled reg (cf.als.reg_scale): exponent and the fit's mean n^exp
    reg_norm: float = 1.0
    weight: str = "log"  # cf.als.confidence
    like: float = 0.0  # ratings below it say "does not prefer" (0: every rating prefers), as in the fit
    recency: float = 0.0  # a rating's weight decays with its age in the user's history (cf.als.recency_age)
    # The content side (cf.content): user rows g_u * profile_u and the films' text vectors, scored with
    # the CF factors in the same product; None: CF alone (no vectors, or a file from before it).
    content_users: np.ndarray | None = None  # float32 [n_users, text_dim]
    content_movies: np.ndarray | None = None  # float32 [n_movies, text_dim]
    content_center: np.ndarray | None = None  # float32 [text_dim]: what a film newer than the model gets
    content_basis: np.ndarray | None = None  # float32 [store_dim, text_dim]: projects a new film's vector
    profile_weight: float = 0.0  # beta, for the record (g_u is already in content_users)

    @property
    def can_fold_in(self) -> bool:
        return self.objective == "implicit" and self.alpha > 0

    def fold_in(
        self,
        user_ids: np.ndarray,
        movie_ids: np.ndarray,
        ratings: np.ndarray,
        rated_at: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectors for users the model was not trained on, from their (user, movie, rating) rows: the ALS
        user solve against these movie factors (`cf.als.fold_in`). Movies the model does not know are
        ignored. Returns (user ids, vectors [n, dim], biases [n]) for the users with at least one known
        movie, ids ascending; the others stay cold-start users. `rated_at`: with the fit's `recency`, the
        weights decay with the ratings' ages as in the fit."""
        from movierec.cf.als import decayed_weights
        from movierec.cf.als import fold_in as solve

        if not self.can_fold_in:
            raise ModelError(f"a {self.objective} model without ALS parameters cannot fold in new users")
        m = self.movie_index(movie_ids)
        known = m >= 0
        u_ids, u_rows = np.unique(np.asarray(user_ids, dtype=np.int64)[known], return_inverse=True)
        order = np.argsort(u_rows, kind="stable")
        indptr = np.zeros(len(u_ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(u_rows, minlength=len(u_ids)), out=indptr[1:])
        r = np.asarray(ratings, dtype=np.float32)[known][order]
        t = None if rated_at is None else np.asarray(rated_at)[known][order]
        w = decayed_weights(r, self.alpha, self.weight, self.recency, u_rows[order], t, len(u_ids))
        p = (r >= self.like).astype(np.float32) if self.like > 0 else None
        vecs = solve(self.movie_vecs, self.reg, indptr, m[known][order], w, self.reg_exp, self.reg_norm, p)
        return u_ids, vecs, np.zeros(len(u_ids), dtype=np.float32)

    def with_users(self, user_ids: np.ndarray, user_vecs: np.ndarray, user_bias: np.ndarray) -> Factors:
        """These factors plus extra users (ids not already present), id map kept sorted."""
        ids = np.concatenate([self.user_ids, np.asarray(user_ids, dtype=np.int64)])
        order = np.argsort(ids, kind="stable")
        if len(ids) and np.any(np.diff(ids[order]) == 0):
            raise ModelError("with_users: some users are already in the model")
        content = self.content_users
        if content is not None:  # users folded in have no profile here: their content side is 0
            content = np.concatenate([content, np.zeros((len(user_ids), content.shape[1]), np.float32)])[
                order
            ]
        return replace(
            self,
            user_ids=ids[order],
            user_vecs=np.concatenate([self.user_vecs, user_vecs.astype(np.float32)])[order],
            user_bias=np.concatenate([self.user_bias, user_bias.astype(np.float32)])[order],
            content_users=content,
        )

    def __post_init__(self) -> None:
        nu, nm = len(self.user_ids), len(self.movie_ids)
        shapes_ok = (
            self.user_vecs.shape[0] == nu
            and self.movie_vecs.shape[0] == nm
            and self.user_bias.shape == (nu,)
            and self.movie_bias.shape == (nm,)
            and self.user_vecs.shape[1] == self.movie_vecs.shape[1]
        )
        if (self.content_users is None) != (self.content_movies is None):
            shapes_ok = False
        elif self.content_users is not None and self.content_movies is not None:
            shapes_ok = shapes_ok and self.content_users.shape[0] == nu and self.content_movies.shape[0] == nm
            shapes_ok = shapes_ok and self.content_users.shape[1] == self.content_movies.shape[1]
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
        return index_of(self.user_ids, user_ids)

    def movie_index(self, movie_ids: np.ndarray) -> np.ndarray:
        """Row of each movie id in `movie_vecs`, or -1 for movies the model has not seen."""
        return index_of(self.movie_ids, movie_ids)

    @property
    def has_content(self) -> bool:
        return self.content_users is not None

    @functools.cached_property
    def _scoring_users(self) -> np.ndarray:
        """User rows as `block` multiplies them: the CF factors, then the content side when there is one."""
        if self.content_users is None:
            return self.user_vecs
        return np.ascontiguousarray(np.hstack([self.user_vecs, self.content_users]))

    def movie_side(self, movie_rows: np.ndarray) -> np.ndarray:
        """Movie rows as `block` multiplies them (transposed, contiguous): factors, then text vectors."""
        vecs = self.movie_vecs[movie_rows]
        if self.content_movies is not None:
            vecs = np.hstack([vecs, self.content_movies[movie_rows]])
        return np.ascontiguousarray(vecs.T)

    @property
    def scoring_dim(self) -> int:
        return self.dim + (0 if self.content_movies is None else int(self.content_movies.shape[1]))

    def block(self, user_rows: np.ndarray, vecs_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Logits for user rows x prepared candidates (`vecs_t` [scoring_dim, n] from `movie_side`,
        contiguous for BLAS; `bias` [n] with the global bias added): the one scoring product, used by the
        ranking engine and `logits`."""
        # Contiguous rows (the usual case: all users, sorted) avoid a gather copy.
        first, last = int(user_rows[0]), int(user_rows[-1])
        contiguous = last - first + 1 == len(user_rows) and bool((np.diff(user_rows) == 1).all())
        users = self._scoring_users
        uvecs = users[first : last + 1] if contiguous else users[user_rows]
        out = uvecs @ vecs_t
        out += self.user_bias[user_rows, None]
        out += bias[None, :]
        return out

    def logits(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Scores before the sigmoid for users x movies (rows from the *_index methods, all >= 0)."""
        user_rows, movie_rows = np.asarray(user_rows), np.asarray(movie_rows)
        if len(user_rows) == 0:
            return np.zeros((0, len(movie_rows)), dtype=np.float32)
        return self.block(
            user_rows, self.movie_side(movie_rows), self.movie_bias[movie_rows] + np.float32(self.global_bias)
        )

    def pair_logits(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Scores before the sigmoid for aligned (user, movie) pairs (rows all >= 0)."""
        u, m = self.user_vecs[user_rows], self.movie_vecs[movie_rows]
        out = np.einsum("ij,ij->i", u, m)
        if self.content_users is not None and self.content_movies is not None:
            out = out + np.einsum("ij,ij->i", self.content_users[user_rows], self.content_movies[movie_rows])
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
            als=np.array([self.reg, self.alpha], dtype=np.float64),
            # Separate from "als" so that older releases still read these files.
            als_ext=np.array(
                [self.reg_exp, self.reg_norm, float(self.weight == "linear"), self.like, self.recency]
            ),
            **({} if self.content_users is None else {
                "content_users": self.content_users, "content_movies": self.content_movies,
                "profile_weight": np.array([self.profile_weight]),
                "content_center": self.content_movies.mean(axis=0) if self.content_center is None
                else self.content_center,
                **({} if self.content_basis is None else {"content_basis": self.content_basis}),
            }),
        )  # fmt: skip

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
            # The first two values (a longer array, from a later or pre-release writer, keeps them first).
            reg, alpha = (float(x) for x in z["als"][:2]) if "als" in z.files else (0.0, 0.0)
            # Files before frequency scaling, the linear weight and `like` in fold-in: none of them.
            ext = [float(x) for x in z["als_ext"]] if "als_ext" in z.files else [0.0, 1.0, 0.0, 0.0]
            reg_exp, reg_norm, linear, like = ext[:4]
            recency = ext[4] if len(ext) > 4 else 0.0  # files before the recency decay: none
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
                reg=reg,
                alpha=alpha,
                reg_exp=reg_exp,
                reg_norm=reg_norm,
                weight="linear" if linear else "log",
                like=like,
                recency=recency,
                **cls._content(z),
            )

    @staticmethod
    def _content(z: Any) -> dict[str, Any]:
        """The content side's arrays of a factors file (none in files from before it: CF alone)."""
        if "content_users" not in z.files:
            return {}
        opt = {k: z[k].astype(np.float32) for k in ("content_center", "content_basis") if k in z.files}
        return {
            "content_users": z["content_users"].astype(np.float32),
            "content_movies": z["content_movies"].astype(np.float32),
            "profile_weight": float(z["profile_weight"][0]) if "profile_weight" in z.files else 0.0,
            **opt,
        }
