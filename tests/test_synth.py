"""Synthetic MovieLens: deterministic by seed, MovieLens-shaped, carrying the taste structure it plants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError
from movierec.ingest.load import ingest_dir
from movierec.ingest.synth import GENRES, NO_GENRES, planted_truth, synthesize

SHAPE = {"users": 300, "movies": 500, "ratings": 20_000}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, seed=7, **SHAPE)
    return out


def read(path: Path) -> dict[str, np.ndarray]:
    table = pacsv.read_csv(path)
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def test_same_seed_same_bytes_other_seed_differs(synth_dir: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "again", seed=7, **SHAPE)
    synthesize(tmp_path / "other", seed=8, **SHAPE)
    for name in ("movies.csv", "ratings.csv", "tags.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (synth_dir / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (synth_dir / name).read_bytes()


def test_shape_is_exact_and_pairs_unique(synth_dir: Path) -> None:
    ratings = read(synth_dir / "ratings.csv")
    movies = read(synth_dir / "movies.csv")
    assert len(ratings["userId"]) == SHAPE["ratings"]
    assert len(movies["movieId"]) == SHAPE["movies"] == len(np.unique(movies["movieId"]))
    assert set(np.unique(ratings["userId"])) == set(range(1, SHAPE["users"] + 1))  # every user rates
    keys = ratings["userId"].astype(np.int64) * 10**7 + ratings["movieId"]
    assert np.all(np.diff(keys) > 0)  # unique and sorted by user, then movie, like GroupLens
    assert np.isin(ratings["movieId"], movies["movieId"]).all()
    stars = ratings["rating"] * 2
    assert np.all(stars == np.round(stars)) and stars.min() >= 1 and stars.max() <= 10
    assert (synth_dir / "ratings.csv").read_text().splitlines()[1].split(",")[2] in {
        f"{s / 2:.1f}" for s in range(1, 11)
    }  # "4.0", not "4", as GroupLens writes it
    assert ratings["timestamp"].min() >= 820454400 and ratings["timestamp"].max() <= 1574000000


def test_titles_and_genres_look_like_movielens(synth_dir: Path) -> None:
    movies = read(synth_dir / "movies.csv")
    titles = list(movies["title"])
    assert any("," in t for t in titles)  # exercises CSV quoting
    assert any(not t.isascii() for t in titles)
    assert any(not t.endswith(")") for t in titles)  # a few titles without a year
    assert sum(t.endswith(")") for t in titles) > 0.9 * len(titles)
    genres = {g for cell in movies["genres"] for g in cell.split("|")}
    assert genres <= set(GENRES) | {NO_GENRES}
    assert {"Drama", "Comedy", "Horror"} <= genres


def test_popularity_has_a_long_tail(synth_dir: Path) -> None:
    counts = np.sort(np.bincount(read(synth_dir / "ratings.csv")["movieId"]))[::-1]
    counts = counts[counts > 0]
    top_tenth = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_tenth > 0.25  # uniform would give 0.1
    assert counts[0] <= SHAPE["users"]
    activity = np.bincount(read(synth_dir / "ratings.csv")["userId"])[1:]
    assert activity.max() > 2.5 * np.median(activity)  # heavy users exist (capped at a fifth of 500 movies)


def test_ratings_follow_the_planted_model(synth_dir: Path) -> None:
    truth = planted_truth(users=SHAPE["users"], movies=SHAPE["movies"], seed=7)
    ratings = read(synth_dir / "ratings.csv")
    score = truth.score(ratings["userId"], ratings["movieId"])
    assert np.corrcoef(score, ratings["rating"])[0, 1] > 0.7
    # The interaction term alone (what a CF model must learn beyond biases) carries signal too.
    u = ratings["userId"] - 1
    m = np.searchsorted(truth.movie_ids, ratings["movieId"])
    residual = ratings["rating"] - truth.global_mean - truth.user_bias[u] - truth.movie_bias[m]
    dot = np.einsum("ij,ij->i", truth.user_factors[u], truth.movie_factors[m])
    assert np.corrcoef(dot, residual)[0, 1] > 0.5
    # The truth describes the written catalogue.
    movies = read(synth_dir / "movies.csv")
    assert list(movies["movieId"]) == list(truth.movie_ids)
    assert list(movies["title"]) == list(truth.titles)
    top = truth.top_movies(1, n=5)
    assert len(top) == 5 and np.all(np.isin(top, truth.movie_ids))


def test_genre_affinity_shows_in_ratings(synth_dir: Path) -> None:
    """A user's planted affinity for a genre predicts how they rate that genre's movies."""
    truth = planted_truth(users=SHAPE["users"], movies=SHAPE["movies"], seed=7)
    ratings = read(synth_dir / "ratings.csv")
    g = truth.genre_names.index("Drama")
    affinity = truth.user_factors @ truth.genre_factors[g]
    is_drama = np.array(["Drama" in gs for gs in truth.genres])[
        np.searchsorted(truth.movie_ids, ratings["movieId"])
    ]
    users = ratings["userId"][is_drama] - 1
    mean_by_user = np.bincount(users, ratings["rating"][is_drama], minlength=SHAPE["users"]) / np.maximum(
        np.bincount(users, minlength=SHAPE["users"]), 1
    )
    rated = np.bincount(users, minlength=SHAPE["users"]) >= 5
    assert np.corrcoef(affinity[rated], mean_by_user[rated] - truth.user_bias[rated])[0, 1] > 0.3


def test_synthetic_data_ingests_exactly(synth_dir: Path, settings: Settings) -> None:
    report = ingest_dir(settings, synth_dir)
    assert (report.movies, report.ratings, report.users, report.skipped) == (500, 20_000, 300, 0)
    truth = planted_truth(users=SHAPE["users"], movies=SHAPE["movies"], seed=7)
    with connect(settings) as con:
        stored = dict(con.execute("SELECT movie_id, title FROM movies").fetchall())
    assert stored == dict(zip(truth.movie_ids.tolist(), truth.titles, strict=True))


def test_impossible_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="at most half"):
        synthesize(tmp_path, users=10, movies=10, ratings=60)
    with pytest.raises(BadInputError, match="every user rates"):
        synthesize(tmp_path, users=10, movies=10, ratings=5)


def test_cli_data_synth(tmp_path: Path) -> None:
    args = ["data", "synth", str(tmp_path / "d"), "--users", "20", "--movies", "50", "--ratings", "300"]
    result = CliRunner().invoke(main, [*args, "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["users"], data["movies"], data["ratings"], data["seed"]) == (20, 50, 300, 3)
    assert len((tmp_path / "d" / "ratings.csv").read_text().splitlines()) == 301
    result = CliRunner().invoke(
        main, ["data", "synth", str(tmp_path / "e"), "--users", "5", "--ratings", "2"]
    )
    assert result.exit_code == 1 and "every user rates" in result.stderr
