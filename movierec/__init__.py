"""movierec: a nightly batch recommender over MovieLens (DuckDB + Qdrant + Keras).

Layers, each importing only the ones below it:
- core: `config` (settings), `errors`, `db` (the DuckDB owner), `store` (the vector-store owner),
  `embedder` (sentence-transformers), `locks`, `catalog` (shared reads), `progress`;
- stages: `movierec.ingest`, `movierec.cf`, `movierec.batch` (the folders ingest/, cf/, batch/);
- on top: `pipeline` (the nightly), `api` (pandas for analysts) and `cli` (the `movierec` command).

For analysts: `movierec.open(home)` returns read-only DataFrames (see `movierec.api`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from movierec.api import Movierec

__version__ = "0.2.0"


def open(home: str | Path | None = None, **settings: Any) -> Movierec:  # noqa: A001 - the API's name
    """Open a movierec data directory for reading into pandas DataFrames (`movierec.api.Movierec`)."""
    from movierec.api import open as open_home  # pandas costs 0.5 s: not for `movierec --help`

    return open_home(home, **settings)
