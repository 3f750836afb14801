"""Ad hoc semantic search: embed a text, find the nearest movies in the vector store, with filters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb

from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError
from movierec.store import SearchFilter, open_store


def known_genres(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every genre that occurs in the `movies` table, sorted."""
    rows = con.execute("SELECT DISTINCT unnest(genres) AS g FROM movies ORDER BY g").fetchall()
    return [g for (g,) in rows if g]


def validate_genres(con: duckdb.DuckDBPyConnection, genres: Iterable[str]) -> list[str]:
    """The genres spelled as in the catalogue (matching ignores case); BadInputError names unknown ones."""
    known = known_genres(con)
    by_lower = {g.lower(): g for g in known}
    out, unknown = [], []
    for genre in genres:
        match = by_lower.get(genre.strip().lower())
        if match is None:
            unknown.append(genre)
        elif match not in out:
            out.append(match)
    if unknown:
        listing = ", ".join(known) if known else "none: the movies table is empty, run `movierec ingest DIR`"
        names = ", ".join(repr(g) for g in unknown)
        raise BadInputError(f"unknown genre {names}; known genres: {listing}")
    return out


def validate_filter(con: duckdb.DuckDBPyConnection, flt: SearchFilter | None) -> SearchFilter | None:
    """Check a filter against the catalogue; genre names come back in the catalogue's spelling."""
    if flt is None:
        return None
    if flt.year_min is not None and flt.year_max is not None and flt.year_min > flt.year_max:
        raise BadInputError(f"year range is empty: --year-min {flt.year_min} > --year-max {flt.year_max}")
    return SearchFilter(
        genres=tuple(validate_genres(con, flt.genres)),
        exclude_genres=tuple(validate_genres(con, flt.exclude_genres)),
        year_min=flt.year_min,
        year_max=flt.year_max,
    )


def search(
    settings: Settings, text: str, limit: int = 10, flt: SearchFilter | None = None
) -> list[dict[str, Any]]:
    """Movies nearest to `text`, best first: dicts with movie_id, title, year, genres, score (cosine)."""
    from movierec.embedder import encode, load_model

    if not text or not text.strip():
        raise BadInputError("search text is empty")
    if limit <= 0:
        raise BadInputError(f"limit must be positive, got {limit}")
    with connect(settings, read_only=True) as con:
        flt = validate_filter(con, flt)
    with open_store(settings) as store:  # cheap check before the slow model load
        store.require_model(settings.model)
    vector = encode(load_model(settings.model), [text.strip()])[0]
    with open_store(settings) as store:
        store.require_model(settings.model)
        hits = store.search(vector, limit, flt)
    return [
        {
            "movie_id": h.movie_id,
            "title": h.payload.get("title"),
            "year": h.payload.get("year"),
            "genres": list(h.payload.get("genres") or []),
            "score": h.score,
        }
        for h in hits
    ]
