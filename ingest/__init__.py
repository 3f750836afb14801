"""movierec.ingest: MovieLens files -> DuckDB tables, the synthetic data generator, movie embeddings.

- `ingest_dir(settings, directory, *, fmt=None, skip_bad_rows=False, progress=False) -> IngestReport`:
  load a MovieLens directory (any GroupLens layout) into the project database, all or nothing;
  `load(con, directory, ...)` does the same through an open DuckDB connection.
- `synthesize(directory, *, users, movies, ratings, seed=0, tags=None) -> SynthReport` and
  `planted_truth(*, users, movies, seed=0) -> PlantedTruth`: synthetic data with a known answer.
- `embed_movies(settings, ...)` (movie texts -> vector store) and `search(settings, text, ...)`.
"""

from movierec.ingest.embed import EmbedSummary, embed_movies
from movierec.ingest.load import IngestReport, ingest_dir, load
from movierec.ingest.search import search
from movierec.ingest.synth import PlantedTruth, SynthReport, planted_truth, synthesize

__all__ = [
    "EmbedSummary",
    "IngestReport",
    "PlantedTruth",
    "SynthReport",
    "embed_movies",
    "ingest_dir",
    "load",
    "planted_truth",
    "search",
    "synthesize",
]
