"""ingest stage: MovieLens files -> DuckDB tables, the synthetic data generator, movie embeddings.

Public front:
- `ingest_dir(settings, directory, *, fmt=None, skip_bad_rows=False, progress=False) -> IngestReport`:
  load a MovieLens directory (any GroupLens layout) into the project database, all or nothing.
- `load(con, directory, ...) -> IngestReport`: the same through an open DuckDB connection.
- `synthesize(directory, *, users, movies, ratings, seed=0, tags=None) -> SynthReport` and
  `planted_truth(*, users, movies, seed=0) -> PlantedTruth`: synthetic data with a known answer.

Names resolve lazily (PEP 562): `import ingest.cli` runs this file, and `movierec --help` must not pay
for DuckDB, numpy or pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from movierec.lazy import lazy_exports

if TYPE_CHECKING:
    from ingest.load import IngestReport, ingest_dir, load
    from ingest.synth import PlantedTruth, SynthReport, planted_truth, synthesize

_EXPORTS = {
    "IngestReport": "ingest.load",
    "ingest_dir": "ingest.load",
    "load": "ingest.load",
    "PlantedTruth": "ingest.synth",
    "SynthReport": "ingest.synth",
    "planted_truth": "ingest.synth",
    "synthesize": "ingest.synth",
}
__all__ = [
    "IngestReport",
    "PlantedTruth",
    "SynthReport",
    "ingest_dir",
    "load",
    "planted_truth",
    "synthesize",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
