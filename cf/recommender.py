"""One model contract for every recommender in `cf`: fit, score users x movies, recommend top-N for many
users over given candidates with seen movies removed, predict ratings, save, load. The Keras model
(`movierec.cf.keras_cf.KerasCF`) and the baselines below share it, and `recommend` is the one ranking
engine (`movierec.cf.ranking`) that the nightly batch, `movierec recommend` and the evaluation all use.

A model supplies three small pieces: `_items(movie_ids)` (the candidate side, prepared once per call;
movies it does not know get a neutral score), `_block(user_rows, items)` (raw scores for a block of
users, higher is better) and `_to_score(raw)` (a monotone map to [0, 1], the published score).

Ids are MovieLens ids at the edges; inside, models work on rows (positions in the sorted id arrays).
Unknown users or movies score NaN in `score`; `recommend` gives unknown users the cold-start ranking.
Directory layout: `model.json` (the one manifest: kind, parameters and whatever the caller adds, such as
the registry's version and metrics), `contract.npz` (id maps, training ratings), model-specific files.
"""

from __future__ import annotations

import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from movierec.catalog import Seen, unique_sorted
from movierec.cf.data import Ratings, index_of
from movierec.cf.ranking import BLOCK_USERS, COLD_POPULARITY_WEIGHT, Candidates, Ranked, rank
from movierec.errors import ModelError, NotFoundError

MANIFEST = "model.json"
LEGACY_META = "recommender.json"  # model directories written before the manifest held the kind
CONTRACT = "contract.npz"
MAX_BLOCK_CELLS = 8_000_000  # users x candidates scored at once: bounds memory when ranking every movie


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Recommender(ABC):
    kind: ClassVar[str]
    predicts_ratings: ClassVar[bool] = False
    flops_per_pair: int = 0  # floating-point work per (user, candidate) in `_block`, for throughput figures

    user_ids: np.ndarray
    movie_ids: np.ndarray
    seen: Seen  # the training ratings: what `recommend` filters when no other ratings are given
    # Users given a vector after training (cf.foldin.with_fresh_users): `recommend` marks their CF rows
    # `source = 'fold_in'` itself, so callers need not (cf.foldin.mark_folded stays for older callers).
    folded: np.ndarray = np.zeros(0, dtype=np.int64)
    rating_range: tuple[float, float]

    # --- fitting ---------------------------------------------------------------------------------------
    def fit(self, data: Ratings, *, progress: bool = False) -> Recommender:
        u, m = self._index(data)
        self._fit(u, m, data.ratings.astype(np.float32), progress=progress, rated_at=data.rated_at)
        return self

    def _index(self, data: Ratings) -> tuple[np.ndarray, np.ndarray]:
        """Id maps, seen lists and rating range from `data`; its (user rows, movie rows)."""
        if len(data) == 0:
            raise ModelError("cannot fit a model on zero ratings")
        self.user_ids = unique_sorted(data.user_ids)
        self.movie_ids = unique_sorted(data.movie_ids)
        u, m = index_of(self.user_ids, data.user_ids), index_of(self.movie_ids, data.movie_ids)
        self.seen = Seen.from_pairs(data.user_ids, data.movie_ids)
        self.rating_range = (float(data.ratings.min()), float(data.ratings.max()))
        return u, m

    @abstractmethod
    def _fit(
        self,
        user_rows: np.ndarray,
        movie_rows: np.ndarray,
        ratings: np.ndarray,
        progress: bool,
        rated_at: np.ndarray | None = None,
    ) -> None: ...

    # --- what each model supplies ---------------------------------------------------------------------
    @abstractmethod
    def _items(self, movie_ids: np.ndarray) -> Any:
        """The candidate side of scoring, prepared once per call; unknown movies get a neutral score."""

    @abstractmethod
    def _block(self, user_rows: np.ndarray, items: Any) -> np.ndarray:
        """Raw scores [len(user_rows), candidates] as a fresh float32 array; higher is better."""

    def _to_score(self, raw: np.ndarray) -> np.ndarray:
        """The published score in [0, 1], monotone in `raw` (for the CF model its prediction)."""
        return _sigmoid(raw)

    def _to_rating(self, raw: np.ndarray) -> np.ndarray:
        """Predicted ratings from raw scores (rating models only)."""
        return np.full(np.shape(raw), np.nan, dtype=np.float32)

    def _predict_rows(self, user_rows: np.ndarray, movie_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings for aligned pairs of known rows."""
        return np.full(len(user_rows), np.nan, dtype=np.float32)

    # --- the contract ----------------------------------------------------------------------------------
    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id, -1 for users the model has not seen."""
        return index_of(self.user_ids, np.atleast_1d(user_ids))

    def score(self, user_ids, movie_ids=None) -> np.ndarray:
        """Raw scores users x movies (all known movies when `movie_ids` is None); NaN for unknown ids."""
        u = self.user_rows(user_ids)
        movies = self.movie_ids if movie_ids is None else np.atleast_1d(np.asarray(movie_ids, dtype=np.int64))
        m = index_of(self.movie_ids, movies)
        out = np.full((len(u), len(m)), np.nan, dtype=np.float32)
        ku, km = u >= 0, m >= 0
        if ku.any() and km.any():
            out[np.ix_(ku, km)] = self._block(u[ku], self._items(movies[km]))
        return out

    def predict(self, user_ids, movie_ids) -> np.ndarray:
        """Predicted ratings for aligned (user, movie) pairs; NaN for unknown ids or non-rating models."""
        u, m = index_of(self.user_ids, user_ids), index_of(self.movie_ids, movie_ids)
        out = np.full(len(u), np.nan, dtype=np.float32)
        ok = (u >= 0) & (m >= 0)
        if ok.any() and self.predicts_ratings:
            out[ok] = self._predict_rows(u[ok], m[ok])
        return out

    def recommend(
        self,
        user_ids: np.ndarray,
        n: int = 10,
        *,
        items: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        seen: Seen | None = None,
        filter_seen: bool = True,
        alpha: float = 0.0,
        pop_weight: float = 0.0,
        cold_weight: float = COLD_POPULARITY_WEIGHT,
        block: int = BLOCK_USERS,
        workers: int | None = None,
        progress: object | None = None,
    ) -> Ranked:
        """Top-`n` of `items` (default: every movie the model knows) for each of `user_ids` (sorted, unique).

        `seen` says who rated what (default: the training ratings); those movies are left out unless
        `filter_seen` is False. `similarity` (the query's, per item) blends in with weight `alpha`,
        `popularity` (ratings per item) as a log prior with weight `pop_weight`; both drive the cold-start
        ranking of users the model lacks."""
        items = self.movie_ids if items is None else np.asarray(items, dtype=np.int64)
        sim = np.zeros(len(items), np.float32) if similarity is None else np.asarray(similarity, np.float32)
        if popularity is None:
            popularity = self.seen.counts(items)
        cands = Candidates(items, sim, np.asarray(popularity, dtype=np.int64))
        if filter_seen:
            su, sm = (self.seen if seen is None else seen).pairs(items)
        else:
            su = sm = np.zeros(0, dtype=np.int64)
        block = max(16, min(block, MAX_BLOCK_CELLS // max(len(items), 1)))
        ranked = rank(self, np.asarray(user_ids, dtype=np.int64), cands, su, sm, n, alpha, cold_weight,
                      block=block, progress=progress, workers=workers, pop_weight=pop_weight)  # fmt: skip
        if len(self.folded):
            ranked.folded = np.isin(ranked.user_id, self.folded) & ~ranked.cold
        return ranked

    def top(self, user_id: int, n: int = 10, filter_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """One known user's top-n (movie_ids, scores) over the whole catalogue, rated movies left out."""
        if self.user_rows(np.array([user_id]))[0] < 0:
            raise NotFoundError(
                f"user {user_id} is not in the {self.kind} model (no ratings when it was trained)"
            )
        ranked = self.recommend(np.array([user_id]), n, filter_seen=filter_seen, workers=1)
        return ranked.movie_id, ranked.score

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, directory: Path, manifest: dict[str, Any] | None = None) -> Path:
        """Write the model to `directory`; `manifest` entries join kind and params in its model.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / CONTRACT,
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            seen_movie_ids=self.seen.movie_ids,
            seen_indptr=self.seen.indptr,
            seen_user_ids=self.seen.user_ids.astype(np.int32),  # half the bytes; ids fit MovieLens' int32
            rating_range=np.array(self.rating_range, dtype=np.float64),
        )
        self._save(directory)
        doc = {**(manifest or {}), "kind": self.kind, "params": self._params()}
        # No temp-and-rename here: the registry renames the whole directory into place.
        (directory / MANIFEST).write_text(json.dumps(doc, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        directory = Path(directory)
        kind, params = read_kind(directory)
        impl = _registry().get(kind)
        if impl is None:
            raise ModelError(f"{directory} holds an unknown model kind {kind!r}")
        if cls is not Recommender and impl is not cls:
            raise ModelError(f"{directory} holds a {kind} model, not a {cls.kind} model")
        obj = impl(**impl._known_params(params))
        try:
            with open(directory / CONTRACT, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                obj.user_ids, obj.movie_ids = z["user_ids"], z["movie_ids"]
                obj.rating_range = tuple(float(x) for x in z["rating_range"])
                if "seen_movie_ids" in z.files:
                    obj.seen = Seen(z["seen_movie_ids"], z["seen_indptr"], z["seen_user_ids"])
                else:  # written before v0.2: per user row, the rated movie rows
                    indptr = z["seen_indptr"]
                    if len(indptr) != len(obj.user_ids) + 1:
                        raise ModelError(f"{directory}: seen-movie index does not match the user id map")
                    users = np.repeat(obj.user_ids, np.diff(indptr))
                    obj.seen = Seen.from_pairs(users, obj.movie_ids[z["seen_movie_rows"]])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(
                f"{directory / CONTRACT} is damaged or incomplete ({exc}); retrain with `movierec train`"
            ) from exc
        obj._load(directory)
        return obj

    def _params(self) -> dict:
        return {}

    @classmethod
    def _known_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The saved parameters this version still takes (a model saved by an older version may carry
        settings of a fitting method since removed; scoring never depends on them)."""
        return params

    def _save(self, directory: Path) -> None:  # noqa: B027 - models without extra state need nothing
        pass

    def _load(self, directory: Path) -> None:  # noqa: B027
        pass


def read_manifest(directory: Path) -> dict[str, Any]:
    """A model directory's model.json (ModelError when it is missing or unreadable)."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise ModelError(f"model directory {directory} is missing or incomplete (no {MANIFEST}); retrain")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is damaged ({exc}); retrain with `movierec train`") from exc
    if not isinstance(doc, dict):
        raise ModelError(f"{path} is damaged (not a JSON object); retrain with `movierec train`")
    return doc


def read_kind(directory: Path) -> tuple[str, dict[str, Any]]:
    """(kind, constructor params) of a saved model, from its manifest or a pre-v0.2 recommender.json."""
    directory = Path(directory)
    if not (directory / MANIFEST).exists() and not (directory / LEGACY_META).exists():
        raise ModelError(f"no saved recommender in {directory}")
    doc = read_manifest(directory) if (directory / MANIFEST).exists() else {}
    if "kind" not in doc:
        legacy = directory / LEGACY_META
        if not legacy.exists():
            raise ModelError(f"no saved recommender in {directory}")
        meta = json.loads(legacy.read_text())
        return meta.pop("kind"), meta
    return doc["kind"], dict(doc.get("params") or {})


class Popularity(Recommender):
    """Everyone gets the most-rated movies they have not seen: the baseline a personal model must beat."""

    kind = "popularity"

    def _fit(self, user_rows, movie_rows, ratings, progress, rated_at=None):
        self.counts = np.bincount(movie_rows, minlength=len(self.movie_ids)).astype(np.float32)

    def _items(self, movie_ids):
        rows = index_of(self.movie_ids, movie_ids)
        return np.where(rows >= 0, self.counts[rows.clip(0)], 0.0).astype(np.float32)

    def _block(self, user_rows, items):
        return np.tile(items, (len(user_rows), 1))

    def _to_score(self, raw):
        """Log popularity scaled to [0, 1] by the most-rated movie."""
        top = float(self.counts.max()) if len(self.counts) else 0.0
        return (np.log1p(raw) / np.log1p(top)).astype(np.float32) if top > 0 else np.zeros_like(raw)

    def _save(self, directory):
        np.save(directory / "popularity.npy", self.counts)

    def _load(self, directory):
        self.counts = np.load(directory / "popularity.npy", allow_pickle=False).astype(np.float32)
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

    def _fit(self, user_rows, movie_rows, ratings, progress, rated_at=None):
        nu, nm = len(self.user_ids), len(self.movie_ids)
        self.mean = float(ratings.mean())
        bu, bm = np.zeros(nu), np.zeros(nm)
        cu = np.bincount(user_rows, minlength=nu) + self.damping
        cm = np.bincount(movie_rows, minlength=nm) + self.damping
        for _ in range(self.iterations):
            bm = np.bincount(movie_rows, ratings - self.mean - bu[user_rows], minlength=nm) / cm
            bu = np.bincount(user_rows, ratings - self.mean - bm[movie_rows], minlength=nu) / cu
        self.user_bias, self.movie_bias = bu.astype(np.float32), bm.astype(np.float32)

    def _items(self, movie_ids):
        rows = index_of(self.movie_ids, movie_ids)
        prior = float(np.median(self.movie_bias)) if len(self.movie_bias) else 0.0
        return (self.mean + np.where(rows >= 0, self.movie_bias[rows.clip(0)], prior)).astype(np.float32)

    def _block(self, user_rows, items):
        return (self.user_bias[user_rows, None] + items[None, :]).astype(np.float32)

    def _to_score(self, raw):
        lo, hi = self.rating_range
        return np.clip((raw - lo) / ((hi - lo) or 1.0), 0.0, 1.0).astype(np.float32)

    def _to_rating(self, raw):
        return np.clip(raw, *self.rating_range).astype(np.float32)

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
    from movierec.cf.keras_cf import KerasCF  # light: KerasCF imports TensorFlow only when it trains

    return {c.kind: c for c in (Popularity, BiasOnly, KerasCF)}
