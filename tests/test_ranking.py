"""The one ranking engine (behind `Recommender.recommend`) on hand-built factors: the known answer, seen
filtering, cold start, blending; and the baselines ranked through the same contract."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.catalog import Seen
from movierec.cf import KerasCF, Popularity
from movierec.cf.data import Ratings
from movierec.cf.factors import Factors
from movierec.cf.ranking import Candidates, cold_start_scores, minmax, rank
from movierec.errors import BadInputError


def rank_users(f: Factors, users, cands, seen_u, seen_m, n, **kw):
    """The engine over a CF model built from these factors."""
    model = KerasCF.from_factors(f, Seen.from_pairs(np.array([], np.int64), np.array([], np.int64)))
    return rank(model, users, cands, seen_u, seen_m, n, **kw)


def _factors() -> Factors:
    """Two tastes: users 1-3 love movies 10/11 (axis 0), users 4-6 love 20/21 (axis 1)."""
    users = np.array([1, 2, 3, 4, 5, 6])
    movies = np.array([10, 11, 20, 21, 30])
    uv = np.array([[3, 0], [3, 0], [3, 0], [0, 3], [0, 3], [0, 3]], dtype=np.float32)
    mv = np.array([[2, 0], [1.5, 0], [0, 2], [0, 1.5], [0.1, 0.1]], dtype=np.float32)
    return Factors(users, movies, uv, mv, np.zeros(6, np.float32), np.zeros(5, np.float32))


def _cands(ids: list[int], sim: list[float] | None = None, n_ratings: list[int] | None = None) -> Candidates:
    sim = sim if sim is not None else list(np.linspace(0.9, 0.5, len(ids)))
    return Candidates(
        np.array(ids, dtype=np.int64),
        np.array(sim, dtype=np.float32),
        None if n_ratings is None else np.array(n_ratings),
    )


def _lists(ranked) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for u, _, m in sorted(zip(ranked.user_id, ranked.rank, ranked.movie_id, strict=True)):
        out.setdefault(int(u), []).append(int(m))
    return out


@pytest.mark.parametrize("block", [1, 2, 4096])
def test_right_movie_first_for_each_taste_and_block_size_does_not_matter(block: int) -> None:
    f = _factors()
    r = rank_users(
        f, np.arange(1, 7), _cands([30, 21, 20, 11, 10]), np.array([]), np.array([]), 2, block=block
    )
    lists = _lists(r)
    assert all(lists[u] == [10, 11] for u in (1, 2, 3))
    assert all(lists[u] == [20, 21] for u in (4, 5, 6))
    assert not r.cold.any()
    # Score is the model's prediction: sigmoid of the logit, and the rating on the model's scale.
    first = (r.user_id == 1) & (r.rank == 1)
    assert r.score[first][0] == pytest.approx(1 / (1 + np.exp(-6.0)), rel=1e-5)
    assert r.predicted_rating[first][0] == pytest.approx(0.5 + 4.5 / (1 + np.exp(-6.0)), rel=1e-5)


def test_seen_movies_never_appear_and_short_lists_are_allowed() -> None:
    f = _factors()
    seen_u = np.array([1, 1, 4, 4, 4, 4, 4])
    seen_m = np.array([10, 99, 20, 21, 10, 11, 30])  # user 4 has seen every candidate
    r = rank_users(f, np.array([1, 2, 4]), _cands([10, 11, 20, 21, 30]), seen_u, seen_m, 3)
    lists = _lists(r)
    assert lists[1][:1] == [11] and 10 not in lists[1]
    assert lists[2][:2] == [10, 11]
    assert 4 not in lists
    ranks_user1 = sorted(r.rank[r.user_id == 1].tolist())
    assert ranks_user1 == [1, 2, 3]


def test_unknown_users_get_cold_start_lists_from_similarity_and_popularity() -> None:
    f = _factors()
    cands = _cands([10, 20, 30], sim=[0.5, 0.9, 0.1], n_ratings=[100, 100, 100])
    r = rank_users(f, np.array([1, 777]), cands, np.array([777]), np.array([20]), 2)
    cold_rows = r.user_id == 777
    assert r.cold[cold_rows].all() and not r.cold[~cold_rows].any()
    # 20 is most similar but seen by 777; then similarity order.
    assert _lists(r)[777] == [10, 30]
    assert np.isnan(r.predicted_rating[cold_rows]).all()


def test_popularity_prior_breaks_near_ties_in_similarity() -> None:
    cands = _cands([1, 2, 3], sim=[0.9, 0.50, 0.49], n_ratings=[1, 1, 10_000])
    s = cold_start_scores(cands)
    assert s[0] > s[2] > s[1]


def test_alpha_blends_similarity_in() -> None:
    f = _factors()
    # For user 1, movie 11 has a lower CF score than 10 but is far more similar to the query.
    cands = _cands([10, 11], sim=[0.1, 0.9])
    by_cf = _lists(rank_users(f, np.array([1]), cands, np.array([]), np.array([]), 2, alpha=0.0))
    by_sim = _lists(rank_users(f, np.array([1]), cands, np.array([]), np.array([]), 2, alpha=0.9))
    assert by_cf[1] == [10, 11]
    assert by_sim[1] == [11, 10]


def test_alpha_blends_calibrated_cf_not_raw_sigmoid() -> None:
    """Regression (issue 18): an implicit model's logits span a few hundredths, so the raw sigmoid blend let
    alpha 0.1 of similarity overturn the CF order. Scaled per user over the candidates, CF keeps 90%."""
    users, movies = np.array([1]), np.array([1, 2, 3, 4])  # logits 0.02, 0, -0.02, 0.01 for user 1
    mv = np.array([[2.0], [0.0], [-2.0], [1.0]], np.float32)
    uv, zeros = np.array([[0.01]], np.float32), np.zeros(4, np.float32)
    f = Factors(users, movies, uv, mv, zeros[:1], zeros)
    cands = _cands([1, 2, 3, 4], sim=[0.5, 0.55, 0.0, 1.0])
    r = rank_users(f, users, cands, np.array([]), np.array([]), 4, alpha=0.1)
    # cf scaled: 1, .5, 0, .75; similarity scaled: .5, .55, 0, 1 -> .95, .505, 0, .775
    assert _lists(r)[1] == [1, 4, 2, 3]
    assert np.allclose(r.score, [0.95, 0.775, 0.505, 0.0], atol=1e-6)  # float32 arithmetic


def test_popularity_weight_mixes_the_log_prior_into_the_calibrated_blend() -> None:
    """score = (1 - alpha - |beta|) * minmax_user(cf) + alpha * minmax(sim) + |beta| * pop, pop the log
    popularity, or 1 minus it for a discount (beta < 0): scores stay in [0, 1]."""
    users, movies = np.array([1]), np.array([1, 2, 3, 4])
    mv = np.array([[2.0], [0.0], [-2.0], [1.0]], np.float32)
    uv, zeros = np.array([[0.01]], np.float32), np.zeros(4, np.float32)
    f = Factors(users, movies, uv, mv, zeros[:1], zeros)
    cf, sim = np.array([1, 0.5, 0, 0.75]), np.array([0.5, 0.55, 0, 1])
    pop = np.log1p([1, 99, 9999, 0]) / np.log1p(9999)  # .075, .5, 1, 0
    cands = _cands([1, 2, 3, 4], sim=list(sim), n_ratings=[1, 99, 9999, 0])
    none = (np.array([]), np.array([]))

    def ranked(**weights) -> tuple[list[int], np.ndarray]:
        r = rank_users(f, users, cands, *none, 4, **weights)
        return _lists(r)[1], r.score

    order, score = ranked(alpha=0.2, pop_weight=0.5)
    want = 0.3 * cf + 0.2 * sim + 0.5 * pop  # .4375, .51, .5, .425
    assert order == [2, 3, 1, 4] and np.allclose(score, np.sort(want)[::-1], atol=1e-6)
    order, score = ranked(pop_weight=-0.5)
    want = 0.5 * cf + 0.5 * (1 - pop)  # .9625, .5, 0, .875: the most-rated film falls to the bottom
    assert order == [1, 4, 2, 3] and np.allclose(score, np.sort(want)[::-1], atol=1e-6)
    with pytest.raises(BadInputError, match="exceeds 1"):
        ranked(alpha=0.6, pop_weight=-0.5)
    # Without counts there is no prior: the CF order stands.
    plain = _cands([1, 2, 3, 4], sim=list(sim))
    assert _lists(rank_users(f, users, plain, *none, 4, pop_weight=0.5))[1] == [1, 4, 2, 3]


def test_movie_unknown_to_model_gets_neutral_score() -> None:
    f = _factors()
    r = rank_users(f, np.array([1]), _cands([10, 555, 20]), np.array([]), np.array([]), 3)
    assert _lists(r)[1] == [10, 555, 20]  # loved > neutral (logit 0) > disliked... here 20 has logit 0 too
    assert r.score[r.movie_id == 555][0] == pytest.approx(0.5)


def test_top_n_larger_than_candidates_and_empty_inputs() -> None:
    f = _factors()
    r = rank_users(f, np.array([1]), _cands([10, 20]), np.array([]), np.array([]), 50)
    assert len(r) == 2
    assert len(rank_users(f, np.array([1]), _cands([]), np.array([]), np.array([]), 5)) == 0


def test_minmax() -> None:
    assert minmax(np.array([1.0, 3.0])).tolist() == [0.0, 1.0]
    assert minmax(np.array([2.0, 2.0])).tolist() == [1.0, 1.0]


def test_threaded_blocks_give_exactly_the_single_threaded_lists() -> None:
    rng = np.random.default_rng(0)
    nu, nm, d = 300, 80, 8
    f = Factors(
        np.arange(nu),
        np.arange(nm),
        rng.standard_normal((nu, d)).astype(np.float32),
        rng.standard_normal((nm, d)).astype(np.float32),
        rng.standard_normal(nu).astype(np.float32),
        rng.standard_normal(nm).astype(np.float32),
    )
    cands = Candidates(
        rng.choice(nm + 5, 40, replace=False), rng.random(40).astype(np.float32), rng.integers(1, 99, 40)
    )
    users = np.arange(nu + 20)  # the last 20 are cold start
    seen_u, seen_m = rng.integers(0, nu + 20, 3000), rng.integers(0, nm + 5, 3000)
    one = rank_users(f, users, cands, seen_u, seen_m, 7, block=16, workers=1)
    many = rank_users(f, users, cands, seen_u, seen_m, 7, block=16, workers=3)
    for col in ("user_id", "rank", "movie_id", "similarity", "cold"):  # ids, ranks, inputs: exactly
        assert np.array_equal(getattr(one, col), getattr(many, col)), col
    # rtol=1e-6: workers=1 lets BLAS use all its threads, workers>1 pins it to one thread per block, and
    # a float32 product may sum in another order with another thread count (or on another processor).
    np.testing.assert_allclose(one.score, many.score, rtol=1e-6)
    seen = set(zip(seen_u.tolist(), seen_m.tolist(), strict=True))
    assert not any((u, m) in seen for u, m in zip(one.user_id.tolist(), one.movie_id.tolist(), strict=True))
    assert one.cold[one.user_id >= nu].all() and not one.cold[one.user_id < nu].any()


def test_recommend_is_the_engine_with_seen_pairs_from_the_catalogue_encoding() -> None:
    f = _factors()
    seen = Seen.from_pairs(np.array([1, 4, 4]), np.array([10, 20, 21]))
    model = KerasCF.from_factors(f, seen)
    r = model.recommend(np.array([1, 4]), 2, items=np.array([10, 11, 20, 21, 30]), workers=1)
    assert _lists(r) == {1: [11, 30], 4: [30, 10]}  # rated movies left out, then the best of the rest


def test_a_baseline_serves_through_the_same_contract() -> None:
    """Any model behind the contract can rank a batch: popularity orders candidates by ratings count."""
    data = Ratings.from_arrays([1, 2, 3, 1, 2, 4], [10, 10, 10, 20, 20, 30], [1, 1, 1, 5, 5, 5])
    pop = Popularity().fit(data)
    r = pop.recommend(
        np.array([3, 4, 99]), 2, items=np.array([30, 20, 10]), similarity=np.array([0.9, 0.5, 0.1])
    )
    lists = _lists(r)
    assert lists[4] == [10, 20]  # 3 ratings, 2 ratings; 30 is user 4's own
    assert lists[3] == [20, 30]  # 10 is seen by user 3
    assert r.cold[r.user_id == 99].all() and lists[99] == [30, 20]  # unknown: 0.75 sim + 0.25 popularity


@pytest.mark.parametrize("n", [3, 40])  # both paths: argmax passes (n <= ARGMAX_TOP_N) and argpartition
def test_best_n_is_each_rows_highest_in_order(n: int) -> None:
    from movierec.cf.ranking import best_n

    rng = np.random.default_rng(1)
    scores = rng.standard_normal((50, 300)).astype(np.float32)
    scores[0, :] = -np.inf  # a row with nothing rankable still returns n columns, all -inf
    want = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    idx, vals = best_n(scores.copy(), n)
    assert np.array_equal(idx[1:], want[1:])
    assert np.array_equal(vals[1:], np.take_along_axis(scores, want, axis=1)[1:])
    assert np.all(np.isneginf(vals[0]))
    nan_row = np.array([[1.0, np.nan, 3.0, 2.0]], dtype=np.float32)  # NaN ranks nothing, on either path
    assert best_n(nan_row.copy(), 2)[0].tolist() == [[2, 3]]
    idx, vals = best_n(np.tile(nan_row, 40), 40)  # forty 3.0s: the argpartition path takes exactly them
    assert np.all(vals == 3.0) and np.all(idx % 4 == 2)
