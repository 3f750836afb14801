"""Incremental embedding: movie texts from DuckDB -> vectors -> the vector store.

A point's payload carries `text_hash` (model name + embedding text + payload fields), so a second run
embeds and upserts only new or changed movies and removes movies gone from the catalogue. The hashes
live in the store itself: delete the store and the next run rebuilds it in full.

The store records the model that built it. A different model (or a store without a record) is rebuilt
from scratch, so vectors of two models never mix.

Open late, close early: the store is opened briefly to read its state, then again for the writes after
the (slow) encoding, so `movierec search` and the nightly batch are locked out only for the upsert.
DuckDB is only read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BusyError, ModelError, NotFoundError
from movierec.ingest.text import TITLE_WEIGHT, MovieText, movie_texts
from movierec.progress import say
from movierec.store import open_store

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_BATCH_SIZE = 64


def movie_vectors(
    model: SentenceTransformer,
    movies: Sequence[MovieText],
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    title_weight: float = TITLE_WEIGHT,
) -> np.ndarray:
    """One unit vector per movie: `normalise(title_weight * v(title text) + v(genre text))`.

    A movie without genres is its title's vector. Genre texts repeat (a few hundred distinct genre lists
    in 62k movies), so each is encoded once.
    """
    titles, genres = encode_parts(model, movies, batch_size=batch_size, progress=progress)
    return mix(titles, genres, title_weight)


def encode_parts(
    model: SentenceTransformer,
    movies: Sequence[MovieText],
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of `movie_vectors` before mixing: title vectors, and genre-text vectors (all-zero
    rows for movies without genres)."""
    from movierec.embedder import encode

    titles = encode(model, [m.title_text for m in movies], batch_size=batch_size, progress=progress)
    kinds = sorted({m.genre_text for m in movies if m.genre_text})
    by_kind = dict(zip(kinds, encode(model, kinds, batch_size=batch_size), strict=True))
    genres = np.zeros_like(titles)
    for i, m in enumerate(movies):
        if m.genre_text:
            genres[i] = by_kind[m.genre_text]
    return titles, genres


def mix(titles: np.ndarray, genres: np.ndarray, title_weight: float = TITLE_WEIGHT) -> np.ndarray:
    """`normalise(title_weight * titles + genres)`; rows without a genre vector stay their title's."""
    from movierec.embedder import normalise

    has_genres = np.any(genres != 0, axis=1, keepdims=True)
    return normalise(np.where(has_genres, title_weight * titles + genres, titles))


@dataclass
class EmbedSummary:
    movies: int
    embedded: int
    upserted: int
    unchanged: int
    removed: int
    model: str
    dim: int
    backend: str
    location: str
    rebuilt: str | None  # why the store was rebuilt, None when it was updated in place
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        rebuilt = f" (rebuilt: {self.rebuilt})" if self.rebuilt else ""
        return (
            f"embedded {self.embedded}, upserted {self.upserted}, unchanged {self.unchanged}, "
            f"removed {self.removed} of {self.movies} movies; model {self.model} ({self.dim}-d); "
            f"{self.backend} at {self.location}{rebuilt}; {self.seconds:.1f} s"
        )


def check_vectors(vectors: Any, n: int, dim: int, model_name: str) -> None:
    """Embeddings replace stored ones only when they are what a model gives: n x dim, finite, not zero."""
    import numpy as np

    v = np.asarray(vectors)
    if v.shape != (n, dim):
        raise ModelError(f"model {model_name} gave vectors of shape {v.shape}, expected ({n}, {dim})")
    if not np.isfinite(v).all() or (n and not np.linalg.norm(v, axis=1).all()):
        raise ModelError(
            f"model {model_name} gave non-finite or zero vectors; the vector store was left as it was"
        )


def embed_movies(
    settings: Settings,
    batch_size: int = DEFAULT_BATCH_SIZE,
    with_tags: bool = True,
    progress: bool = False,
    rebuild: bool = False,
) -> EmbedSummary:
    """Bring the vector store up to date with the `movies` table under `settings.model`; with `rebuild`,
    re-embed every movie into a new store that replaces the old one (a damaged store)."""
    from movierec.embedder import (
        export_query_encoder,
        has_query_encoder,
        load_model,
        model_dim,
    )

    started = time.perf_counter()
    with connect(settings, read_only=True) as con:
        movies = movie_texts(con, with_tags=with_tags)
    if not movies:
        raise NotFoundError(f"no movies in {settings.db_path}: run `movierec ingest DIR` first")

    model_name = settings.model
    force = rebuild
    with open_store(settings, repair=force) as store:
        before = store.model_info()
        if force:
            rebuild = "--rebuild"
        elif before is None:
            rebuild = "it records no model" if store.count() else None
        elif before[0] != model_name:
            rebuild = f"it was built with {before[0]} ({before[1]}-d), not {model_name}"
        elif not store.has_keywords():
            rebuild = "it has no keyword vectors (built by an older movierec)"
        else:
            rebuild = None
        stored = {} if before is None or rebuild else store.payload_values("text_hash")

    hashes = {m.movie_id: m.point_hash(model_name) for m in movies}
    todo = [m for m in movies if stored.get(m.movie_id) != hashes[m.movie_id]]
    gone = sorted(set(stored) - set(hashes))
    dim = before[1] if before and not rebuild else 0
    if todo:  # a run with nothing to do never loads the model (seconds of torch import)
        model = load_model(model_name)
        dim = model_dim(model)
        if before is not None and not rebuild and before[1] != dim:
            raise ModelError(
                f"the vector store holds {before[1]}-d vectors of {model_name}, but {model_name} now gives "
                f"{dim}-d: the name points at another model; delete {settings.edge_path} or use a new name"
            )
        vectors = movie_vectors(model, todo, batch_size=batch_size, progress=progress)
        check_vectors(vectors, len(todo), dim, model_name)
    words = [m.keyword_vector for m in todo]
    if todo or not has_query_encoder(settings.home, model_name, verify=True):
        # The ONNX export that makes `search` / `recommend` fast; made once per model (a few seconds).
        export_query_encoder(load_model(model_name), model_name, settings.home)

    with open_store(settings, repair=force) as store:
        if store.model_info() != before:
            raise BusyError("the vector store changed while embedding (another `movierec embed`?); run again")
        ids, payloads = [m.movie_id for m in todo], [m.payload(model_name) for m in todo]
        if todo and (before is None or rebuild):
            # Only now, with every vector of the new model in hand: a model that fails to load or
            # encode leaves the old store untouched, and the new store is built beside the old one and
            # switched in at the end (a kill leaves one of the two, complete).
            if rebuild:
                say(f"rebuilding the vector store: {rebuild}", enabled=progress)
            store.rebuild(model_name, dim, ids, vectors, payloads, words)
        elif todo:
            store.upsert(ids, vectors, payloads, words)
        store.delete(gone)
        backend, location = store.backend, store.location

    return EmbedSummary(
        movies=len(movies),
        embedded=len(todo),
        upserted=len(todo),
        unchanged=len(movies) - len(todo),
        removed=len(gone),
        model=model_name,
        dim=dim,
        backend=backend,
        location=location,
        rebuilt=rebuild,
        seconds=round(time.perf_counter() - started, 2),
    )
