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
    """Per row, by a cosine over the user's liked films (movie id = row of the random models' vectors);
    -1 for a film the model lacks or a user with no other liked film."""
    vecs = model.factors.movie_vecs
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    out = []
    for u, r in zip(users, recs, strict=True):
        mine = liked_m[(liked_u == u) & (liked_m != r)]
        known = 0 <= r < len(unit)
        out.append(int(mine[np.argmax(unit[mine] @ unit[r])]) if len(mine) and known else -1)
    return out


@pytest.mark.parametrize(("kept", "rows"), [(explore.SCRATCH_KEPT, explore.MAX_ROWS), (0, explore.MAX_ROWS),
                                           (explore.SCRATCH_KEPT, 7)])  # fmt: skip
def test_agrees_with_brute_force_on_random_factors(
    kept: int, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gathers over chunks give what a per-row cosine over the user's liked films gives, in the
    reused table and in a fresh one (tables above SCRATCH_KEPT), and with chunks of a few rows that cut
    through users' lists; twice, so the reused table holds the first call's values."""
    monkeypatch.setattr(explore, "SCRATCH_KEPT", kept)
    monkeypatch.setattr(explore, "MAX_ROWS", rows)
    rng = np.random.default_rng(0)
    model = _random_model(0)
    users = np.repeat(np.arange(300), 10)
    recs = rng.integers(0, 500, len(users))
    liked_u = np.repeat(np.arange(300), 5)
    liked_m = rng.integers(0, 500, len(liked_u))
    because(model, users[::-1].copy(), recs[::-1].copy(), liked_u, liked_m)  # leaves other values behind
    assert because(model, users, recs, liked_u, liked_m).tolist() == _brute(
        model, users, recs, liked_u, liked_m
    )


@pytest.mark.parametrize("kept", [explore.SCRATCH_KEPT, 0])
def test_a_querys_shards_share_one_table_and_another_model_gets_its_own(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch explains a query's lists shard by shard, each with the query's candidates (`among`): the
    table of cosines is built once per query and thread, never reused for another index (another model)
    or after the buffer held another table; rows outside `among` and candidates the model lacks are still
    explained right. With SCRATCH_KEPT 0 no table is kept: every call builds its own."""
    monkeypatch.setattr(explore, "SCRATCH_KEPT", kept)
    built = []
    real = explore._scratch
    monkeypatch.setattr(explore, "_scratch", lambda size: built.append(size) or real(size))
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(300), 10)
    items = np.r_[rng.choice(500, 50, replace=False), 777]  # 777: a candidate the model lacks
    recs = items[rng.integers(0, 51, len(users))]
    liked_u = np.repeat(np.arange(300), 5)
    liked_m = rng.integers(0, 500, len(liked_u))
    one, two = _random_model(0), _random_model(1)
    first, second = (explore.Because.prepare(m, liked_u, liked_m) for m in (one, two))
    want_one, want_two = (_brute(m, users, recs, liked_u, liked_m) for m in (one, two))
    half = len(users) // 2
    got = [first.nearest(users[:half], recs[:half], among=items),
           first.nearest(users[half:], recs[half:], among=items)]  # fmt: skip
    assert np.concatenate(got).tolist() == want_one
    assert len(built) == (1 if kept else 2)  # one table for both shards, when tables are kept
    assert second.nearest(users, recs, among=items).tolist() == want_two
    assert len(built) == (2 if kept else 3)  # same candidates, another model: its own table
    outside = recs.copy()
    outside[::7] = next(m for m in range(500) if m not in items)
    assert first.nearest(users, outside, among=items).tolist() == _brute(
        one, users, outside, liked_u, liked_m
    )
    # That call's table (its own rows' films) overwrote the buffer: the next shard of the query builds anew.
    assert second.nearest(users, recs, among=items).tolist() == want_two
    real(built[-1]).fill(-1.0)  # any other use of the thread's buffer drops the kept table too
    assert second.nearest(users, recs, among=items).tolist() == want_two


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
