"""movierec: a nightly batch recommender over MovieLens (DuckDB + Qdrant + Keras).

The shared core lives here: settings (`config`), the DuckDB owner (`db`), the vector-store owner
(`store`), the sentence-transformers loader (`embedder`) and the root CLI (`cli`). The stages live in the
top-level packages `ingest`, `cf` and `batch`.
"""

__version__ = "0.1.0"
