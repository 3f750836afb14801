"""Why each film is there (issue 18): every published row names the user's liked film nearest to it in the
CF space, the views give its title and `movierec show` prints "because you liked X"."""

from __future__ import annotations

import batch_world as world
import numpy as np
import pytest
from click.testing import CliRunner

from movierec.catalog import Seen
from movierec.cf import KerasCF, Popularity, because, cap_liked, explore
from movierec.cf.data import Ratings
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect


def _model() -> KerasCF:
    empty = np.zeros(0, np.int64)
    return KerasCF.from_factors(world.planted_factors(), Seen.from_pairs(empty, empty))


def test_nearest_liked_film_in_cf_space() -> None:
    # 101 and 102 lie on axis 0, 103 and 104 on axis 1 (batch_world.planted_factors).
    liked_u, liked_m = np.array([1, 1, 2]), np.array([101, 103, 104])
    got = because(_model(), np.array([1, 1, 1, 2, 3]), np.array([102, 104, 103, 101, 102]), liked_u, liked_m)
    # User 1: 102 <- 101 and 104 <- 103 (same axis); 103 never explains itself, so the other liked film
    # (101, orthogonal) is named. User 2: 101 <- 104, their only liked film.
    assert got.tolist() == [101, 103, 101, 104, -1]  # user 3 liked nothing


@pytest.mark.parametrize("kept", [explore.SCRATCH_KEPT, 0])
def test_agrees_with_brute_force_on_random_factors(kept: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gathers over chunks give what a per-row cosine over the user's liked films gives, in the
    reused table and in a fresh one (tables above SCRATCH_KEPT); twice, so the reused one holds the first
    call's values."""
    monkeypatch.setattr(explore, "SCRATCH_KEPT", kept)
    rng = np.random.default_rng(0)
    n_users, n_movies = 300, 500
    f = world.planted_factors()
    f = type(f)(np.arange(n_users), np.arange(n_movies), rng.standard_normal((n_users, 8), dtype=np.float32),
                rng.standard_normal((n_movies, 8), dtype=np.float32), np.zeros(n_users, np.float32),
                np.zeros(n_movies, np.float32))  # fmt: skip
    empty = np.zeros(0, np.int64)
    model = KerasCF.from_factors(f, Seen.from_pairs(empty, empty))
    users = np.repeat(np.arange(n_users), 10)
    recs = rng.integers(0, n_movies, len(users))
    liked_u = np.repeat(np.arange(n_users), 5)
    liked_m = rng.integers(0, n_movies, len(liked_u))
    because(model, users[::-1].copy(), recs[::-1].copy(), liked_u, liked_m)  # leaves other values behind
    got = because(model, users, recs, liked_u, liked_m)
    unit = f.movie_vecs / np.linalg.norm(f.movie_vecs, axis=1, keepdims=True)
    for r in range(len(users)):
        mine = liked_m[liked_u == users[r]]
        mine = mine[mine != recs[r]]
        want = mine[np.argmax(unit[mine] @ unit[recs[r]])] if len(mine) else -1
        assert got[r] == want, r


def _random_model(seed: int, n_users: int = 300, n_movies: int = 500) -> KerasCF:
    rng = np.random.default_rng(seed)
    f = world.planted_factors()
    f = type(f)(np.arange(n_users), np.arange(n_movies), rng.standard_normal((n_users, 8), dtype=np.float32),
                rng.standard_normal((n_movies, 8), dtype=np.float32), np.zeros(n_users, np.float32),
                np.zeros(n_movies, np.float32))  # fmt: skip
    empty = np.zeros(0, np.int64)
    return KerasCF.from_factors(f, Seen.from_pairs(empty, empty))


def _brute(
    model: KerasCF, users: np.ndarray, recs: np.ndarray, liked_u: np.ndarray, liked_m: np.ndarray
) -> list:
    vecs = model.factors.movie_vecs
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    out = []
    for u, r in zip(users, recs, strict=True):
        mine = liked_m[(liked_u == u) & (liked_m != r)]
        out.append(int(mine[np.argmax(unit[mine] @ unit[r])]) if len(mine) else -1)
    return out


def test_a_querys_shards_share_one_table_and_another_model_gets_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch explains a query's lists shard by shard, each with the query's candidates (`among`): the
    table of cosines is built once per query and thread, never reused for another index (another model),
    and rows outside `among` are still explained right."""
    built = []
    real = explore._scratch
    monkeypatch.setattr(explore, "_scratch", lambda size: built.append(size) or real(size))
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(300), 10)
    items = rng.choice(500, 50, replace=False)
    recs = items[rng.integers(0, 50, len(users))]
    liked_u = np.repeat(np.arange(300), 5)
    liked_m = rng.integers(0, 500, len(liked_u))
    one, two = _random_model(0), _random_model(1)
    first, second = (explore.Because.prepare(m, liked_u, liked_m) for m in (one, two))
    half = len(users) // 2
    got = [first.nearest(users[:half], recs[:half], among=items),
           first.nearest(users[half:], recs[half:], among=items)]  # fmt: skip
    assert len(built) == 1  # one table for both shards
    assert np.concatenate(got).tolist() == _brute(one, users, recs, liked_u, liked_m)
    assert second.nearest(users, recs, among=items).tolist() == _brute(two, users, recs, liked_u, liked_m)
    assert len(built) == 2  # same candidates, another model: its own table
    outside = recs.copy()
    outside[::7] = 499 if 499 not in items else 498
    assert first.nearest(users, outside, among=items).tolist() == _brute(
        one, users, outside, liked_u, liked_m
    )


def test_no_explanation_without_movie_vectors_or_for_unknown_films() -> None:
    pop = Popularity().fit(Ratings.from_arrays([1, 2], [101, 102], [5.0, 4.0]))
    assert because(pop, np.array([1]), np.array([102]), np.array([1]), np.array([101])).tolist() == [-1]
    assert because(_model(), np.array([1]), np.array([999]), np.array([1]), np.array([101])).tolist() == [-1]


def test_cap_liked_keeps_each_users_first() -> None:
    u, m = cap_liked(np.array([1, 1, 1, 2, 3, 3]), np.array([10, 11, 12, 20, 30, 31]), n=2)
    assert u.tolist() == [1, 1, 2, 3, 3] and m.tolist() == [10, 11, 20, 30, 31]


@pytest.mark.slow  # loads the offline sentence-transformers model
def test_published_rows_and_show_say_because(settings: Settings) -> None:
    world.build(settings, (world.ZOMBIES,))
    assert CliRunner().invoke(main, ["batch", "run", "--quiet"]).exit_code == 0
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT user_id, movie_id, source, because_movie_id, because_title FROM latest_recommendations "
            "WHERE query_name = 'zombies' ORDER BY user_id, rank"
        ).fetchall()
    by_user = {}
    for u, m, src, b, title in rows:
        by_user.setdefault(u, []).append((m, src, b, title))
    # User 1 liked only 101 (5 stars; 201 got 3): 102 is recommended because of it.
    assert by_user[1][0] == (102, "cf", 101, "Zombie Apocalypse (2004)")
    # User 4 liked 104 (4.5 stars): 103, on the same axis, is there because of it.
    assert by_user[4][0][:3] == (103, "cf", 104)
    # Cold-start rows come from the query, not from taste: no explanation.
    assert all(b is None for _, src, b, _ in by_user[world.COLD] if src == "cold_start")
    shown = CliRunner().invoke(main, ["show", "1", "--query", "zombies"])
    assert shown.exit_code == 0 and "because you liked Zombie Apocalypse (2004)" in shown.output


@pytest.mark.slow  # loads the offline sentence-transformers model
def test_because_can_be_turned_off(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """MOVIEREC_BECAUSE=false: the same lists, every because_movie_id NULL, no explanation stages."""
    import json

    world.build(settings, (world.ZOMBIES,))
    query = "SELECT user_id, rank, movie_id, because_movie_id FROM latest_recommendations ORDER BY ALL"
    assert CliRunner().invoke(main, ["batch", "run", "--quiet"]).exit_code == 0
    with connect(settings, read_only=True) as con:
        on = con.execute(query).fetchall()
    monkeypatch.setenv("MOVIEREC_BECAUSE", "false")
    result = CliRunner().invoke(main, ["batch", "run", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert not [k for k in json.loads(result.output)["stages"] if k.startswith("because")]
    with connect(settings, read_only=True) as con:
        off = con.execute(query).fetchall()
    assert [r[:3] for r in off] == [r[:3] for r in on] and any(r[3] is not None for r in on)
    assert all(r[3] is None for r in off)
    shown = CliRunner().invoke(main, ["show", "1", "--query", "zombies"])
    assert shown.exit_code == 0 and "because you liked" not in shown.output
