"""Inputs of the scoring engine, shared by the batch and `movierec recommend`: query vectors, candidates from
the vector store, and the ratings that say which candidates each user has already seen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from batch.queries import SavedQuery
from batch.scoring import Candidates
from movierec.config import Settings
from movierec.errors import ModelError


def encode_texts(settings: Settings, texts: Sequence[str]) -> np.ndarray:
    """All query texts in one batch with the model that built the store (checked in fetch_candidates);
    through the model's ONNX export when `movierec embed` left one (see movierec.embedder)."""
    from movierec.embedder import encode_queries

    return encode_queries(settings.model, list(texts), settings.home)


def fetch_candidates(
    settings: Settings, vectors: np.ndarray, queries: Sequence[SavedQuery]
) -> list[Candidates]:
    """ANN + payload filters for every query in one batch call to the store."""
    from movierec.store import SearchFilter, open_store

    filters = [
        SearchFilter(
            genres=tuple(q.genres),
            exclude_genres=tuple(q.exclude_genres),
            year_min=q.year_min,
            year_max=q.year_max,
        )
        for q in queries
    ]
    with open_store(settings) as store:
        dim = store.require_model(settings.model)
        if dim != vectors.shape[1]:
            raise ModelError(f"query vectors have {vectors.shape[1]} dims but the store holds {dim}")
        hits = store.search_batch(vectors, [q.candidates for q in queries], filters)
    return [
        Candidates(
            np.array([h.movie_id for h in hs], dtype=np.int64),
            np.array([h.score for h in hs], dtype=np.float32),
        )
        for hs in hits
    ]


@dataclass(frozen=True)
class SeenIndex:
    """(user, movie) rating pairs grouped by movie, restricted to the movies asked for."""

    movie_ids: np.ndarray  # int64, sorted unique movies that have ratings
    indptr: np.ndarray  # int64 [len(movie_ids) + 1]
    user_ids: np.ndarray  # int32, users who rated each movie, grouped by movie

    @classmethod
    def load(
        cls, con: duckdb.DuckDBPyConnection, movie_ids: np.ndarray, user_ids: np.ndarray | None = None
    ) -> SeenIndex:
        """Ratings of `movie_ids` (optionally only by `user_ids`): small next to the whole table."""
        cand = pa.table({"movie_id": pa.array(np.unique(movie_ids).astype(np.int32))})
        con.register("_cand_movies", cand)
        try:
            sql = "SELECT r.movie_id, r.user_id FROM ratings r SEMI JOIN _cand_movies c USING (movie_id)"
            if user_ids is not None:
                con.register(
                    "_cand_users", pa.table({"user_id": pa.array(np.asarray(user_ids, dtype=np.int32))})
                )
                sql += " SEMI JOIN _cand_users u USING (user_id)"
            res = con.execute(sql + " ORDER BY r.movie_id").fetchnumpy()
        finally:
            con.unregister("_cand_movies")
            if user_ids is not None:
                con.unregister("_cand_users")
        movies = np.asarray(res["movie_id"], dtype=np.int64)
        uniq, starts = np.unique(movies, return_index=True)
        indptr = np.append(starts, len(movies)).astype(np.int64)
        return cls(uniq, indptr, np.asarray(res["user_id"], dtype=np.int32))

    def pairs(self, cand_movies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(users, movies) of every rating of these candidates."""
        pos = np.searchsorted(self.movie_ids, cand_movies).clip(0, max(len(self.movie_ids) - 1, 0))
        found = (
            (self.movie_ids[pos] == cand_movies) if len(self.movie_ids) else np.zeros(len(cand_movies), bool)
        )
        starts, ends = self.indptr[pos[found]], self.indptr[pos[found] + 1]
        lengths = ends - starts
        idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return self.user_ids[idx], np.repeat(np.asarray(cand_movies)[found], lengths)

    def counts(self, cand_movies: np.ndarray) -> np.ndarray:
        """Number of ratings per candidate (popularity for the cold-start prior)."""
        pos = np.searchsorted(self.movie_ids, cand_movies).clip(0, max(len(self.movie_ids) - 1, 0))
        if not len(self.movie_ids):
            return np.zeros(len(cand_movies), dtype=np.int64)
        found = self.movie_ids[pos] == cand_movies
        return np.where(found, self.indptr[pos + 1] - self.indptr[pos], 0)
