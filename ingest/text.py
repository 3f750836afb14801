"""The text each movie is embedded from, as in the reference design: title without anything in
parentheses (the year, alternative titles) followed by its genres, e.g. "Toy Story Adventure Animation
Children Comedy Fantasy". `with_tags` appends the movie's most frequent user tags.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

TAGS_PER_MOVIE = 5
_PARENS = re.compile(r"\([^)]*\)")
_SPACES = re.compile(r"\s+")


def clean_title(title: str) -> str:
    """Title with every parenthesised part removed and whitespace collapsed."""
    return _SPACES.sub(" ", _PARENS.sub(" ", title)).strip()


def movie_text(title: str, genres: Sequence[str], tags: Sequence[str] = ()) -> str:
    """Embedding text for one movie. `(no genres listed)` is dropped, should it reach us unconverted."""
    words = [clean_title(title)]
    words += [g for g in genres if g and g != "(no genres listed)"]
    words += [t for t in tags if t]
    return " ".join(w for w in words if w)


def text_hash(text: str, model_name: str) -> str:
    """Identifies one embedding: the same text under the same model needs no new vector."""
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class MovieText:
    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    text: str

    def point_hash(self, model_name: str) -> str:
        """Changes when the vector or the payload would: text and model, plus title, year and genres
        (so a corrected year updates the point although the text, without parentheses, is the same)."""
        return text_hash(f"{self.text}\0{self.title}\0{self.year}\0{'|'.join(self.genres)}", model_name)

    def payload(self, model_name: str) -> dict[str, object]:
        """The point payload in the vector store."""
        return {
            "movie_id": self.movie_id,
            "title": self.title,
            "year": self.year,
            "genres": list(self.genres),
            "text_hash": self.point_hash(model_name),
        }


# Most frequent tags per movie, counted case-insensitively; ties broken alphabetically so the text
# (and so its hash) is stable from run to run.
_TOP_TAGS_SQL = """
WITH counted AS (
    SELECT movie_id, lower(trim(tag)) AS tag, count(*) AS n
    FROM tags WHERE trim(tag) <> ''
    GROUP BY ALL
), ranked AS (
    SELECT movie_id, tag, n, row_number() OVER (PARTITION BY movie_id ORDER BY n DESC, tag) AS r
    FROM counted
)
SELECT movie_id, list(tag ORDER BY r) AS tags FROM ranked WHERE r <= ? GROUP BY movie_id
"""


def movie_texts(
    con: duckdb.DuckDBPyConnection, with_tags: bool = False, tags_per_movie: int = TAGS_PER_MOVIE
) -> list[MovieText]:
    """Every movie of the `movies` table with its embedding text, ordered by movie id."""
    rows = con.execute("SELECT movie_id, title, year, genres FROM movies ORDER BY movie_id").fetchall()
    tags: dict[int, list[str]] = {}
    if with_tags:
        tags = dict(con.execute(_TOP_TAGS_SQL, [tags_per_movie]).fetchall())
    return [
        MovieText(
            int(mid), title, year, list(genres or []), movie_text(title, genres or [], tags.get(mid, []))
        )
        for mid, title, year, genres in rows
    ]
