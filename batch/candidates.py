"""Inputs of the ranking, shared by the batch and `movierec recommend`: query vectors and candidates from
the vector store (who has seen which candidate comes from `movierec.catalog.Seen`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from movierec.batch.queries import SavedQuery
from movierec.cf import Candidates
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
    """ANN (fused with the keyword match of each query's words when `settings.keyword_fusion`; see
    movierec.store), with payload filters, for every query in one batch call to the store; each
    candidate's score is its cosine similarity."""
    from movierec.embedder import keyword_vector
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
        words = [keyword_vector(q.text, query=True) for q in queries] if settings.keyword_fusion else None
        hits = store.search_batch(vectors, [q.candidates for q in queries], filters, words)
    return [
        Candidates(
            np.array([h.movie_id for h in hs], dtype=np.int64),
            np.array([h.score for h in hs], dtype=np.float32),
        )
        for hs in hits
    ]
