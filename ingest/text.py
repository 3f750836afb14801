"""What each movie is embedded from: its title and its genres, as two texts.

The vector of a movie is `normalise(TITLE_WEIGHT * v(title text) + v(genre text))` (see
`ingest.embed.movie_vectors`):
- the **title text** is the title without anything in parentheses (the year, alternative titles), plus the
  movie's `TAGS_PER_MOVIE` most frequent user tags with `with_tags`, e.g. "Toy Story" (every tag goes into
  the sparse keyword vector, `MovieText.keyword_vector`);
- the **genre text** describes each genre with the words people use for it (`GENRE_WORDS`, a fixed
  vocabulary per genre, the same for every movie), e.g. "romance, romantic love story. comedy, funny, ...".

Why two texts: a small sentence model encoding "title + genre labels" as one text lets title words
dominate, so "love stories" found "Enemies: A Love Story" (a drama) and "films about the second world war"
found "War of the Worlds". Weighting the title text below the genre description keeps titles searchable
while the kind of film decides what is on topic. The weight, 0.6, was chosen together with the keyword
side (the tags alone, fused by the store with DBSF) on the development half of
`benchmarks/topic_queries.csv` with user tags from two MovieLens releases (`benchmarks/search_topics.py`,
both halves of the tagging users in turn) and on the genre floors (../shared/eval/queries.csv >= 0.95,
benchmarks/queries_heldout.csv >= 0.90) with all those tags in the texts: 0.5 without keywords let the
genre words outweigh a topic ("baseball", "time travel") that only the title and tags carry; 0.7 with
keywords took the held-out genre queries to 0.892 on the densely tagged catalogue. See BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

TAGS_PER_MOVIE = 5
TITLE_WEIGHT = 0.6

# Words people use for each MovieLens genre. Fixed per genre, never per movie or per query; written once
# from what each genre label means, before measuring (see BENCHMARKS.md). A genre not listed here (a future
# release's new label) is described by its own name.
GENRE_WORDS: dict[str, str] = {
    "Action": "action movie with fights, chases, explosions and stunts",
    "Adventure": "adventure film, a journey, quest or expedition to exotic places",
    "Animation": "animated film, cartoon, animation",
    "Children": "children's movie, for kids and the whole family",
    "Comedy": "comedy, funny, humorous, makes you laugh",
    "Crime": "crime film about criminals, gangsters, police and murder",
    "Documentary": "documentary, non-fiction film about real people and real events",
    "Drama": "drama, serious and emotional story",
    "Fantasy": "fantasy film with magic, myths and fairy-tale creatures",
    "Film-Noir": "film noir, dark black-and-white crime film of the 1940s and 1950s with a detective",
    "Horror": "horror film, scary, frightening, terrifying",
    "IMAX": "shown in IMAX",
    "Musical": "musical film with songs, singing, music and dance",
    "Mystery": "mystery, a puzzle to solve, detective investigation",
    "Romance": "romance, romantic love story",
    "Sci-Fi": "science fiction, sci-fi, futuristic, space, aliens and technology",
    "Thriller": "thriller, suspense, tension and danger",
    "War": "war film about soldiers, the military, battles and combat",
    "Western": "western, cowboys in the American Old West",
}

# Names the recipe above (texts, vocabulary, weight) in every point's hash: changing any of them re-embeds
# every movie once on the next `movierec embed`, and never leaves vectors of two recipes in one store.
TEXT_RECIPE = f"title*{TITLE_WEIGHT}+genre-words-v1+keywords-all-tags-v4-users"

_PARENS = re.compile(r"\([^)]*\)")
_SPACES = re.compile(r"\s+")
_NO_GENRES = "(no genres listed)"


def clean_title(title: str) -> str:
    """Title with every parenthesised part removed and whitespace collapsed."""
    return _SPACES.sub(" ", _PARENS.sub(" ", title)).strip()


_TRAILING_ARTICLE = re.compile(r"^(.*\S),\s*(\w{1,4}'?)$")  # "Godfather, The", "Laberinto del fauno, El"
_NOT_WORD = re.compile(r"[^\w]+")


def title_key(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: "Amélie!" and "amelie" meet. A query
    and every name in `title_keys` are normalised by it ("" when nothing is left)."""
    import unicodedata

    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", plain.lower().replace("_", " "))).strip()


def title_keys(title: str) -> set[str]:
    """The names a film may be looked up by, normalised (`title_key`): its title and each alternate title
    MovieLens gives in parentheses (the original-language one, an "a.k.a."), the year dropped, a trailing
    article also put back in front, and left out where more than one word remains: "Amélie (Fabuleux destin
    d'Amélie Poulain, Le) (2001)" -> "amelie", "fabuleux destin d amelie poulain le", "le fabuleux destin d
    amelie poulain", "fabuleux destin d amelie poulain"."""
    names = [clean_title(title) or title, *(p[1:-1] for p in _PARENS.findall(title))]
    keys = set()
    for name in names:
        name = re.sub(r"^\s*a\.k\.a\.\s*", "", name.strip(), flags=re.IGNORECASE)
        if re.fullmatch(r"\d{4}(-\d{0,4})?", name):  # the year
            continue
        variants = [name]
        if moved := _TRAILING_ARTICLE.match(name):  # "Godfather, The"; "I Love You, Man" is kept as written
            variants.append(f"{moved[2]} {moved[1]}")
            if " " in moved[1].strip():  # without the article only when a name is left, not "Girls" alone
                variants.append(moved[1])
        keys.update(k for k in map(title_key, variants) if k)
    return keys


def title_text(title: str, tags: Sequence[str] = ()) -> str:
    """The title part of a movie's embedding: the cleaned title (the raw one if nothing is left), then
    its tags."""
    return " ".join(w for w in [clean_title(title) or title.strip(), *tags] if w)


def genre_text(genres: Sequence[str]) -> str:
    """The genre part: each genre's words from GENRE_WORDS, in the catalogue's order; "" without genres.
    `(no genres listed)` is dropped, should it reach us unconverted."""
    return ". ".join(GENRE_WORDS.get(g, g) for g in genres if g and g != _NO_GENRES)


def text_hash(text: str, model_name: str) -> str:
    """Identifies one embedding: the same text under the same model needs no new vector."""
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class MovieText:
    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    title_text: str
    genre_text: str
    tags: tuple[str, ...] = ()  # every tag, most users first (the title text holds the first few)
    tag_users: tuple[int, ...] = ()  # users behind each tag, rounded down to a power of two (`user_bucket`)

    @property
    def text(self) -> str:
        """Both texts in one line, as the point hash and `--json` diagnostics see them."""
        return f"{self.title_text} | {self.genre_text}"

    @property
    def keyword_text(self) -> str:
        """What the keyword vector is made of: every tag of the movie, and nothing else. Every tag, not the
        few in the title text: on a catalogue where popular films carry hundreds of tags a topic ("time
        travel") is often a film's tenth or fortieth, and BM25 over all tags finds it there. Titles are the
        dense side's job, and their words are what misleads a keyword match ("War of the Worlds" for "the
        second world war"); the genre labels are the genre text's (BENCHMARKS.md, "Denser real tags")."""
        return " ".join(self.tags)

    @property
    def keyword_vector(self) -> tuple[list[int], list[float]]:
        """The tags' words, each weighted by the users behind the tags that carry it
        (`movierec.embedder.tag_keyword_vector`)."""
        from movierec.embedder import tag_keyword_vector

        return tag_keyword_vector(self.tags, self._users)

    @property
    def _users(self) -> tuple[int, ...]:
        return self.tag_users or (1,) * len(self.tags)

    def point_hash(self, model_name: str) -> str:
        """Changes when the vectors or the payload would: texts, recipe and model, every tag with its users'
        bucket (the keyword vector), plus title, year and genres (so a corrected year updates the point
        although the text, without parentheses, is the same)."""
        words = "|".join(f"{t}:{n}" for t, n in zip(self.tags, self._users, strict=True))
        key = f"{TEXT_RECIPE}\0{self.text}\0{self.title}\0{self.year}\0{'|'.join(self.genres)}\0{words}"
        return text_hash(key, model_name)

    def payload(self, model_name: str) -> dict[str, object]:
        """The point payload in the vector store."""
        return {
            "movie_id": self.movie_id,
            "title": self.title,
            "year": self.year,
            "genres": list(self.genres),
            "text_hash": self.point_hash(model_name),
        }


# Every tag of each movie, most frequent first, counted case-insensitively over distinct users (one user
# repeating a tag does not make it the movie's topic); ties broken alphabetically so the text (and so its
# hash) is stable from run to run. A movie whose tags change gets a new hash, so the next `embed`
# re-embeds it alone.
_TAGS_SQL = """
WITH counted AS (
    SELECT movie_id, lower(trim(tag)) AS tag, count(DISTINCT user_id) AS n
    FROM tags WHERE trim(tag) <> ''
    GROUP BY ALL
), ranked AS (
    SELECT movie_id, tag, n, row_number() OVER (PARTITION BY movie_id ORDER BY n DESC, tag) AS r
    FROM counted
)
SELECT movie_id, list(tag ORDER BY r) AS tags, list(n ORDER BY r) AS users FROM ranked GROUP BY movie_id
"""


def user_bucket(n: int) -> int:
    """A tag's user count rounded down to a power of two (1, 2, 4, 8, ...): the keyword weight follows
    how many users tagged a film, while a film's point (and so its re-embedding) changes only when the
    count doubles, not with every new tagger."""
    return 1 << (max(int(n), 1).bit_length() - 1)


def movie_texts(
    con: duckdb.DuckDBPyConnection, with_tags: bool = True, tags_per_movie: int = TAGS_PER_MOVIE
) -> list[MovieText]:
    """Every movie of the `movies` table with its embedding texts, ordered by movie id: its `tags_per_movie`
    most frequent tags in the title text, every tag in the keyword vector."""
    rows = con.execute("SELECT movie_id, title, year, genres FROM movies ORDER BY movie_id").fetchall()
    tags: dict[int, list[str]] = {}
    users: dict[int, tuple[int, ...]] = {}
    if with_tags:
        for mid, names, counts in con.execute(_TAGS_SQL).fetchall():
            tags[mid], users[mid] = names, tuple(user_bucket(n) for n in counts)
    return [
        MovieText(
            int(mid),
            title,
            year,
            list(genres or []),
            title_text(title, tags.get(mid, [])[:tags_per_movie]),
            genre_text(genres or []),
            tuple(tags.get(mid, [])),
            users.get(mid, ()),
        )
        for mid, title, year, genres in rows
    ]
