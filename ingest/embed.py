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
from dataclasses import asdict, dataclass

from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BusyError, ModelError, NotFoundError
from movierec.ingest.text import movie_texts
from movierec.progress import say
from movierec.store import open_store

DEFAULT_BATCH_SIZE = 64


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


def embed_movies(
    settings: Settings,
    batch_size: int = DEFAULT_BATCH_SIZE,
    with_tags: bool = False,
    progress: bool = False,
) -> EmbedSummary:
    """Bring the vector store up to date with the `movies` table under `settings.model`."""
    from movierec.embedder import encode, load_model, model_dim

    started = time.perf_counter()
    with connect(settings, read_only=True) as con:
        movies = movie_texts(con, with_tags=with_tags)
    if not movies:
        raise NotFoundError(f"no movies in {settings.db_path}: run `movierec ingest DIR` first")

    model_name = settings.model
    with open_store(settings) as store:
        before = store.model_info()
        if before is None:
            rebuild = "it records no model" if store.count() else None
        elif before[0] != model_name:
            rebuild = f"it was built with {before[0]} ({before[1]}-d), not {model_name}"
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
        vectors = encode(model, [m.text for m in todo], batch_size=batch_size, progress=progress)

    with open_store(settings) as store:
        if store.model_info() != before:
            raise BusyError("the vector store changed while embedding (another `movierec embed`?); run again")
        if todo and (before is None or rebuild):
            # Only now, with every vector of the new model in hand: a model that fails to load or
            # encode leaves the old store untouched.
            if rebuild:
                say(f"rebuilding the vector store: {rebuild}", enabled=progress)
            store.reset(model_name, dim)
        if todo:
            store.upsert([m.movie_id for m in todo], vectors, [m.payload(model_name) for m in todo])
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
