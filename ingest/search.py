"""Ad hoc semantic search: embed a text, find the nearest movies in the vector store, with filters."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from typing import Any

import duckdb

from movierec.catalog import titles_containing, validate_genres
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError
from movierec.limits import MAX_LIST, check_range, check_year
from movierec.store import SearchFilter, open_store


def validate_filter(con: duckdb.DuckDBPyConnection, flt: SearchFilter | None) -> SearchFilter | None:
    """Check a filter against the catalogue; genre names come back in the catalogue's spelling."""
    if flt is None:
        return None
    check_year("--year-min", flt.year_min)
    check_year("--year-max", flt.year_max)
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
    """Movies for `text`: any film it names exactly (`titled_exactly`) first, then the nearest, best first:
    dicts with movie_id, title, year, genres, score and similarity
    (both the cosine: `similarity` is what `recommend` and `show` call it, where `score` is the blend).

    With `settings.keyword_fusion` the order fuses the dense neighbours with the keyword matches of the
    text's words (see movierec.store); the score is each movie's cosine similarity to the text either way."""
    from movierec.embedder import encode_queries, keyword_vector

    if not text or not text.strip():
        raise BadInputError("search text is empty")
    if limit <= 0:
        raise BadInputError(f"limit must be positive, got {limit}")
    check_range("--limit", limit, 1, MAX_LIST)
    with connect(settings, read_only=True) as con:
        flt = validate_filter(con, flt)
        titled = titled_exactly(con, text)
    with open_store(settings) as store:  # cheap check before the slow model load
        store.require_model(settings.model)
    vector = encode_queries(settings.model, [text.strip()], settings.home)[0]
    with open_store(settings) as store:
        store.require_model(settings.model)
        words = [keyword_vector(text, query=True)] if settings.keyword_fusion else None
        hits = store.search_batch(vector[None, :], [limit], [flt], words)[0]
        if titled:  # films the text names exactly come first (scored by the same cosine), within the filters
            named = replace(flt or SearchFilter(), ids=tuple(titled))
            first = store.search_batch(vector[None, :], [min(len(titled), limit)], [named], None)[0]
            ids = {h.movie_id for h in first}
            hits = (first + [h for h in hits if h.movie_id not in ids])[:limit]
    return [
        {
            "movie_id": h.movie_id,
            "title": h.payload.get("title"),
            "year": h.payload.get("year"),
            "genres": list(h.payload.get("genres") or []),
            "score": h.score,
            "similarity": h.score,
        }
        for h in hits
    ]


def titled_exactly(con: duckdb.DuckDBPyConnection, text: str) -> list[int]:
    """Movies whose title, or an alternate title MovieLens gives in parentheses, is `text` (case, accents,
    punctuation and a trailing article aside: "amelie", "El laberinto del fauno", "the godfather").

    Why: a title is a name, and a sentence encoder places a short name among films of similar words
    and genres: "Amelie" ranked *Amélie* 420th, under *Amelia* and *Alice*, and an original-language title
    was never in the embedded text. A text of words that describe films (the genre descriptions' words,
    words users tag films with, "movie" and function words) is a topic, not a name: "war" or "romance"
    look up nothing, though films bear those titles."""
    from movierec.embedder import keywords
    from movierec.ingest.text import title_key, title_keys

    key = title_key(text)
    # DuckDB's strip_accents keeps "³" or "ﬁ" where NFKD splits them: narrow the titles by plain letters.
    letters = re.findall(r"[a-z]{3,}", key)
    if not letters or all(w in _describing_words() for w in keywords(key)) or _tagged_words(con, key):
        return []
    return [mid for mid, title in titles_containing(con, max(letters, key=len)) if key in title_keys(title)]


@functools.cache
def _describing_words() -> frozenset[str]:
    from movierec.embedder import keywords, query_stopwords
    from movierec.ingest.text import GENRE_WORDS

    return frozenset(keywords(" ".join(f"{g} {w}" for g, w in GENRE_WORDS.items()))) | query_stopwords()


def _tagged_words(con: duckdb.DuckDBPyConnection, key: str) -> bool:
    """Whether every word of `key` that does not describe films by genre is itself a tag users gave films
    (a whole tag: "zombies", "disaster"): then the text is a topic."""
    from movierec.embedder import keywords

    rest = [w for w in keywords(key) if w not in _describing_words()]
    forms = sorted({f for w in rest for f in (w, f"{w}s")})
    found = {
        w
        for (tag,) in con.execute(
            "SELECT DISTINCT lower(trim(tag)) FROM tags WHERE list_contains(?, lower(trim(tag)))", [forms]
        ).fetchall()
        for w in keywords(tag)
    }
    return bool(rest) and all(w in found for w in rest)


def genre_precision(
    settings: Settings, queries: list[tuple[str, list[str]]], k: int = 10
) -> list[dict[str, Any]]:
    """Genre precision@k per query: the share of the top k whose genres include any relevant genre.

    `queries` are (text, relevant genres) pairs, as in ../shared/eval/queries.csv. All queries are
    encoded in one batch and searched together, without filters: this measures the embeddings alone.
    """
    from movierec.embedder import encode_queries, keyword_vector

    vectors = encode_queries(settings.model, [text for text, _ in queries], settings.home)
    words = [keyword_vector(text, query=True) for text, _ in queries] if settings.keyword_fusion else None
    with open_store(settings) as store:
        store.require_model(settings.model)
        results = store.search_batch(vectors, [k] * len(queries), [None] * len(queries), words)
    rows = []
    for (text, relevant), hits in zip(queries, results, strict=True):
        good = [h for h in hits if set(h.payload.get("genres") or []) & set(relevant)]
        rows.append(
            {
                "query": text,
                "relevant_genres": list(relevant),
                "precision": len(good) / k,
                "misses": [h.payload.get("title") for h in hits if h not in good],
            }
        )
    return rows


def read_queries(path: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """The evaluation queries: a CSV with columns query, relevant_genres (`|`-separated, any of)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [(row["query"], row["relevant_genres"].split("|")) for row in csv.DictReader(fh)]
