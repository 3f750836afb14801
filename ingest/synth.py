"""A synthetic MovieLens-shaped data set with a known answer, for scale tests and model tests.

`synthesize(dir, users=..., movies=..., ratings=..., seed=...)` writes ml-latest style files
(`movies.csv`, `ratings.csv`, `tags.csv`) and returns the `PlantedTruth` behind them:

- every movie has 1-4 genres (real MovieLens names, realistic frequencies; ~1% "(no genres listed)"),
  a title built from a word vocabulary (some with commas, some non-ASCII, ~2% without a year);
- taste is a low-rank model: each genre has a latent vector, a movie's factor is the mean of its genres'
  vectors plus noise, each user has a random factor; the planted score is
  ``global_mean + user_bias + movie_bias + user_factor · movie_factor``;
- a rating is the planted score plus Gaussian noise, clipped to 0.5..5 and rounded to a half star;
- movie popularity is Zipf-like (long tail) and per-user activity is log-normal (heavy users, many
  light ones); every user rates at least one movie and (user, movie) pairs are unique;
- timestamps fall between 1996 and 2019, each user active over a span of their own.

Everything is vectorised numpy and written with pyarrow's CSV writer, so ml-25m size (162,541 users,
62,423 movies, 25,000,095 ratings) takes well under a minute. The same arguments and seed give
byte-identical files; `planted_truth(...)` recomputes the truth without writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec.catalog import unique_sorted
from movierec.errors import BadInputError

# ml-25m genre counts (movies per genre), so the synthetic genre mix looks like the real one.
GENRES: dict[str, int] = {
    "Drama": 25606, "Comedy": 16870, "Thriller": 8654, "Romance": 7719, "Action": 7348,
    "Horror": 5989, "Documentary": 5605, "Crime": 5319, "Adventure": 4145, "Sci-Fi": 3595,
    "Children": 2935, "Animation": 2929, "Mystery": 2925, "Fantasy": 2731, "War": 1874,
    "Western": 1399, "Musical": 1054, "Film-Noir": 353, "IMAX": 195,
}  # fmt: skip
NO_GENRES = "(no genres listed)"

_ADJECTIVES = (  # noqa: SIM905 - a word list reads best as words
    "Silent Last Dark Golden Lost Broken Hidden Wild Crimson Eternal Frozen Secret Little Burning "
    "Midnight Quiet Savage Final Distant Electric Forgotten Iron Lonely Sweet Bitter Endless Perfect "
    "Strange Red Blue Sacred Wicked Hollow Bright Deadly Northern Wandering Velvet Steel "
    "Belle Über Señor Café Café-Noir Étrange Søndag Łódź 東京 Любовь"
).split()
_NOUNS = (  # noqa: SIM905
    "River Night Garden Road Kingdom Dream Heart Storm City Shadow Empire Island Summer Winter Game "
    "Ghost Hunter Machine Mountain Station Letter Mirror Promise Legacy Voyage Circus Harbor Planet "
    "Detective Witness Dragon Zombie Prophecy Stranger Orchestra Desert Frontier Comet Carnival Wolves "
    "Amélie Mädchen Niño Ōkami Château Fiancée Kärlek Ça Rêve Straße"
).split()
# Tag words per genre, so tags carry genre-like signal (used by `embed --with-tags`).
_TAG_WORDS = {
    "Drama": "moving|tearjerker|character study|based on a true story",
    "Comedy": "funny|hilarious|quirky|dark comedy",
    "Thriller": "suspense|twist ending|tense|psychological",
    "Romance": "love story|romantic|chick flick|bittersweet",
    "Action": "explosions|fight scenes|car chase|martial arts",
    "Horror": "zombies|gore|haunted house|creepy",
    "Documentary": "informative|history|nature|true story",
    "Crime": "heist|mafia|police|noir-ish",
    "Adventure": "quest|treasure|exploration|epic",
    "Sci-Fi": "space|aliens|time travel|dystopia",
    "Children": "family|kids|pixar-like|talking animals",
    "Animation": "animated|anime|stop motion|cartoon",
    "Mystery": "whodunit|detective|clever|puzzle",
    "Fantasy": "magic|dragons|fairy tale|wizards",
    "War": "world war ii|vietnam|soldiers|battle",
    "Western": "cowboys|gunfight|frontier|spaghetti western",
    "Musical": "songs|dance|broadway|singing",
    "Film-Noir": "femme fatale|black and white|detective|1940s",
    "IMAX": "spectacle|3d|visually stunning|big screen",
}
_FACTORS = 8
_T0, _T1 = 820454400, 1574000000  # 1996-01-01 .. 2019-11-17, the span of ml-25m


@dataclass(frozen=True)
class PlantedTruth:
    """The model the ratings were drawn from: ask it for the right answer in CF and batch tests.

    Rows of `user_factors`/`user_bias` follow `user_ids` (1..N); rows of `movie_factors`/`movie_bias`/
    `genres` follow `movie_ids` (sparse, ascending, like MovieLens). `genre_factors[g]` is the latent
    vector of genre `genre_names[g]`; a user's affinity for a genre is `user_factors @ genre_factors[g]`.
    `noise` is the standard deviation added before rounding to half stars.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    user_factors: np.ndarray
    movie_factors: np.ndarray
    user_bias: np.ndarray
    movie_bias: np.ndarray
    global_mean: float
    genre_names: tuple[str, ...]
    genre_factors: np.ndarray
    genres: tuple[tuple[str, ...], ...]
    titles: tuple[str, ...]
    years: np.ndarray  # -1 where the title has no year
    noise: float

    def score(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Planted (noise-free, unclipped) score for aligned arrays of user and movie ids."""
        u = np.searchsorted(self.user_ids, np.asarray(user_ids))
        m = np.searchsorted(self.movie_ids, np.asarray(movie_ids))
        dot = np.einsum("ij,ij->i", self.user_factors[u], self.movie_factors[m])
        return self.global_mean + self.user_bias[u] + self.movie_bias[m] + dot

    def top_movies(self, user_id: int, n: int = 10) -> np.ndarray:
        """The n movie ids with the highest planted score for one user (seen or not)."""
        u = int(np.searchsorted(self.user_ids, user_id))
        s = self.global_mean + self.user_bias[u] + self.movie_bias + self.movie_factors @ self.user_factors[u]
        return self.movie_ids[np.argsort(-s, kind="stable")[:n]]


@dataclass(frozen=True)
class SynthReport:
    """What `synthesize` wrote."""

    directory: str
    users: int
    movies: int
    ratings: int
    tags: int
    seed: int


def _check(users: int, movies: int, ratings: int) -> None:
    if users < 1 or movies < 1:
        raise BadInputError("--users and --movies must be at least 1")
    if ratings < users:
        raise BadInputError(f"--ratings ({ratings:,}) must be at least --users ({users:,}): every user rates")
    if ratings > users * movies // 2:
        raise BadInputError(
            f"--ratings ({ratings:,}) must be at most half of users x movies ({users * movies // 2:,})"
        )


_ZIPF_EXPONENT = 1.8  # with the offset below: ~90% of ratings on the top tenth of movies at ml-25m size


def _popularity(movies: int, users: int, ratings: int) -> np.ndarray:
    """Zipf-like weights (rank + r0)^-a. The offset r0 is chosen so the top movie is rated by about
    half the users (as in MovieLens) instead of more often than there are users."""
    ranks = np.arange(1, movies + 1, dtype=np.float64)
    target = max(min(0.5 * users / ratings, 0.05), 1.5 / movies)
    lo, hi = 0.0, 1e9
    for _ in range(80):  # bisection on r0: the top share falls as r0 grows
        r0 = (lo + hi) / 2
        w = (ranks + r0) ** -_ZIPF_EXPONENT
        if w[0] / w.sum() > target:
            lo = r0
        else:
            hi = r0
    w = (ranks + hi) ** -_ZIPF_EXPONENT
    return w / w.sum()


def planted_truth(*, users: int, movies: int, seed: int = 0, noise: float = 0.6) -> PlantedTruth:
    """The truth `synthesize` plants for these arguments (independent of the number of ratings)."""
    rng = np.random.default_rng([seed, 1])
    names = tuple(GENRES)
    freq = np.array(list(GENRES.values()), dtype=np.float64)
    n_g = len(names)

    # Genres: 1-4 per movie, sampled without replacement by frequency (Gumbel top-k).
    n_per = rng.choice([1, 2, 3, 4], size=movies, p=[0.4, 0.33, 0.19, 0.08])
    keys = np.log(freq / freq.sum()) + rng.gumbel(size=(movies, n_g))
    order = np.argsort(-keys, axis=1)
    member = np.zeros((movies, n_g), dtype=bool)
    rows = np.arange(movies)
    for k in range(4):  # four vector steps, not a row loop
        sel = n_per > k
        member[rows[sel], order[sel, k]] = True
    member[rng.random(movies) < 0.01] = False  # "(no genres listed)"

    genre_factors = rng.normal(0, 0.55, size=(n_g, _FACTORS))
    counts = member.sum(axis=1, keepdims=True)
    movie_factors = (member @ genre_factors) / np.sqrt(np.maximum(counts, 1)) + rng.normal(
        0, 0.25, size=(movies, _FACTORS)
    )
    user_factors = rng.normal(0, 0.55, size=(users, _FACTORS))
    user_bias = rng.normal(0, 0.35, size=users)
    movie_bias = rng.normal(0, 0.4, size=movies)

    movie_ids = np.sort(rng.choice(np.arange(1, 3 * movies + 1), size=movies, replace=False))
    years = np.clip(np.round(2019 - rng.exponential(18, size=movies)), 1902, 2019).astype(np.int64)
    years[rng.random(movies) < 0.02] = -1

    adj = np.array(_ADJECTIVES, dtype=object)[rng.integers(0, len(_ADJECTIVES), movies)]
    noun = np.array(_NOUNS, dtype=object)[rng.integers(0, len(_NOUNS), movies)]
    noun2 = np.array(_NOUNS, dtype=object)[rng.integers(0, len(_NOUNS), movies)]
    style = rng.integers(0, 5, movies)
    base = np.where(
        style == 0,
        adj + " " + noun + ", The",  # MovieLens moves the article: "Godfather, The"
        np.where(
            style == 1, noun + " of the " + noun2, np.where(style == 2, adj + " " + noun, "The " + noun)
        ),
    )
    base = np.where(
        style == 4, base + ", Part " + (rng.integers(2, 5, movies)).astype(str).astype(object), base
    )
    year_txt = np.where(years > 0, " (" + years.astype(str).astype(object) + ")", "")
    titles = tuple((base + year_txt).tolist())

    genre_lists = tuple(tuple(names[g] for g in np.flatnonzero(row)) for row in member)
    return PlantedTruth(
        user_ids=np.arange(1, users + 1),
        movie_ids=movie_ids,
        user_factors=user_factors,
        movie_factors=movie_factors,
        user_bias=user_bias,
        movie_bias=movie_bias,
        global_mean=3.55,
        genre_names=names,
        genre_factors=genre_factors,
        genres=genre_lists,
        titles=titles,
        years=years,
        noise=noise,
    )


def _pairs(rng: np.random.Generator, users: int, movies: int, ratings: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique (user index, movie index) pairs, sorted: log-normal activity x Zipf-like popularity.

    Draw with replacement, drop duplicates with np.unique on a packed key, redraw the shortfall; a few
    vector rounds instead of a loop over rows. Every user keeps the one pair drawn for them first."""
    pop = _popularity(movies, users, ratings)
    activity = rng.lognormal(0, 1.1, size=users)
    # Cap heavy users at a fifth of the catalogue (ml-25m's heaviest rated half, but only a handful do).
    activity = np.minimum(activity / activity.sum(), 0.2 * movies / ratings)
    cum_act = np.cumsum(activity / activity.sum())
    cum_pop = np.cumsum(pop)

    def draw(n: int, uniform_share: float) -> np.ndarray:
        u = np.minimum(np.searchsorted(cum_act, rng.random(n) * cum_act[-1]), users - 1)
        m = np.minimum(np.searchsorted(cum_pop, rng.random(n) * cum_pop[-1]), movies - 1)
        # Later rounds mix in uniform draws: heavy users have exhausted the popular head by then.
        flat = rng.random(n) < uniform_share
        m[flat] = rng.integers(0, movies, int(flat.sum()))
        return u.astype(np.int64) * movies + m

    first = np.arange(users, dtype=np.int64) * movies + draw(users, 0.0) % movies
    keys = first
    for round_ in range(50):
        if len(keys) >= ratings:
            break
        n = int((ratings - len(keys)) * 1.1) + 1000
        keys = unique_sorted(np.concatenate([keys, draw(n, min(0.2 * round_, 0.8))]))
    else:  # pragma: no cover - only for near-complete matrices, which _check rules out
        raise BadInputError("could not draw enough unique (user, movie) pairs; lower --ratings")
    first = np.sort(first)
    pos = np.minimum(np.searchsorted(first, keys), users - 1)
    extra = keys[first[pos] != keys]
    keys = np.sort(np.concatenate([first, rng.choice(extra, size=ratings - users, replace=False)]))
    return keys // movies, keys % movies


def synthesize(
    directory: Path | str,
    *,
    users: int,
    movies: int,
    ratings: int,
    seed: int = 0,
    tags: int | None = None,
) -> SynthReport:
    """Write movies.csv, ratings.csv and tags.csv (ml-latest layout) into `directory`.

    `tags` defaults to ratings // 25 (ml-25m has about one tag per 23 ratings). The planted model is
    `planted_truth(users=users, movies=movies, seed=seed)`.
    """
    _check(users, movies, ratings)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    truth = planted_truth(users=users, movies=movies, seed=seed)
    rng = np.random.default_rng([seed, 2])

    genres_txt = ["|".join(g) if g else NO_GENRES for g in truth.genres]
    _write(out / "movies.csv", {"movieId": truth.movie_ids, "title": truth.titles, "genres": genres_txt})

    ui, mi = _pairs(rng, users, movies, ratings)
    dot = np.einsum("ij,ij->i", truth.user_factors[ui], truth.movie_factors[mi])
    score = truth.global_mean + truth.user_bias[ui] + truth.movie_bias[mi] + dot
    stars = np.clip(np.round((score + rng.normal(0, truth.noise, len(score))) * 2), 1, 10).astype(np.int8)
    # Ratings as MovieLens prints them ("4.0", "3.5"): a 10-entry dictionary, no per-row formatting.
    rating_txt = pa.DictionaryArray.from_arrays(
        pa.array(stars - 1, pa.int8()), pa.array([f"{s / 2:.1f}" for s in range(1, 11)])
    )
    start = rng.integers(_T0, _T1, size=users)
    span = rng.exponential(3e7, size=users)
    ts = np.minimum(start[ui] + (rng.random(len(ui)) * span[ui]).astype(np.int64), _T1)
    _write(
        out / "ratings.csv",
        {"userId": truth.user_ids[ui], "movieId": truth.movie_ids[mi], "rating": rating_txt, "timestamp": ts},
        quote=False,
    )

    n_tags = ratings // 25 if tags is None else tags
    pick = np.sort(rng.choice(len(ui), size=min(n_tags, len(ui)), replace=False))
    vocab = [w for g in GENRES for w in _TAG_WORDS[g].split("|")]
    # A tag comes from the word list of one of the movie's genres (or any word for genre-less movies).
    first_genre = np.array([truth.genre_names.index(g[0]) if g else -1 for g in truth.genres])[mi[pick]]
    word = np.where(
        first_genre >= 0,
        np.maximum(first_genre, 0) * 4 + rng.integers(0, 4, len(pick)),
        rng.integers(0, len(vocab), len(pick)),
    )
    _write(
        out / "tags.csv",
        {
            "userId": truth.user_ids[ui[pick]],
            "movieId": truth.movie_ids[mi[pick]],
            "tag": pa.DictionaryArray.from_arrays(pa.array(word, pa.int32()), pa.array(vocab)),
            "timestamp": ts[pick],
        },
        quote=False,
    )
    return SynthReport(str(out), users, movies, len(ui), len(pick), seed)


def _write(path: Path, columns: dict[str, object], quote: bool = True) -> None:
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    # Header unquoted like GroupLens; pyarrow quotes every string when quoting, so files whose strings
    # never need quotes (ratings, our tag words) are written without, as GroupLens would.
    style = "needed" if quote else "none"
    options = pacsv.WriteOptions(quoting_style=style, quoting_header="none", batch_size=1 << 20)
    pacsv.write_csv(table, path, options)
