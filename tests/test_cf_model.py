"""The recommender contract, shared by the Keras model and the baselines, on a planted rating set;
the Keras model's per-example scoring; metrics and splits with hand-computed answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cf_world import GROUP_USERS, checkerboard, missing_movie

from movierec.cf.data import Ratings, per_user_split, random_split
from movierec.cf.evaluate import ranking_metrics
from movierec.cf.keras_cf import KerasCF
from movierec.cf.recommender import BiasOnly, Popularity, Recommender
from movierec.cf.train import HyperParams
from movierec.errors import BadInputError, ModelError, NotFoundError

# Small and strongly regularised: the planted set has 40 users; a few seconds per fit on 2 cores.
TINY = {"dim": 8, "epochs": 20, "batch_size": 64, "lr": 0.02, "val_frac": 0.0, "patience": 30, "l2": 3e-2}
TINY_ALS = {"dim": 8, "iterations": 10, "reg": 10.0, "val_frac": 0.0, "tune": False}

MAKERS = {
    "popularity": Popularity,
    "bias": BiasOnly,
    "keras-implicit": lambda: KerasCF(objective="implicit", **TINY_ALS),
    "keras-rating": lambda: KerasCF(objective="rating", **TINY),
}
_FITTED: dict[str, Recommender] = {}


@pytest.fixture(
    params=[pytest.param(n, marks=pytest.mark.slow) if n.startswith("keras") else n for n in MAKERS]
)
def fitted(request: pytest.FixtureRequest) -> Recommender:
    """Each model fitted once on the planted set (fitting Keras models is the slow part)."""
    name = request.param
    if name not in _FITTED:
        _FITTED[name] = MAKERS[name]().fit(checkerboard())
    return _FITTED[name]


# --- the contract, for every model ----------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_scores(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(fitted)
    users = np.array([1, 5, 21, 40])
    factors = getattr(fitted, "factors", None)
    if factors is not None:  # what the file holds comes back bit for bit
        for name in ("user_ids", "movie_ids", "user_vecs", "movie_vecs", "user_bias", "movie_bias"):
            np.testing.assert_array_equal(getattr(loaded.factors, name), getattr(factors, name), err_msg=name)
    # rtol=1e-6: the same numbers, but a BLAS product over arrays at other addresses may take another SIMD
    # path (and so another summation order) than the one over the fitted model's arrays.
    np.testing.assert_allclose(loaded.score(users), fitted.score(users), rtol=1e-6)
    np.testing.assert_array_equal(loaded.top(7, 5)[0], fitted.top(7, 5)[0])  # the list itself: exact


def test_recommendations_leave_out_seen_movies(fitted: Recommender) -> None:
    data = checkerboard()
    for user in (1, 22):
        ids, scores = fitted.top(user, 10)
        assert len(ids) == 10
        assert not set(ids) & set(data.movie_ids[data.user_ids == user])
        assert np.all(np.diff(scores) <= 0), "best first"


def test_n_larger_than_catalogue_returns_every_unseen_movie(fitted: Recommender) -> None:
    data = checkerboard()
    ids, _ = fitted.top(3, 10_000)
    unseen = set(np.unique(data.movie_ids)) - set(data.movie_ids[data.user_ids == 3])
    assert sorted(ids) == sorted(unseen)
    assert len(fitted.top(3, 10_000, filter_seen=False)[0]) == len(np.unique(data.movie_ids))


def test_unknown_user_and_movie(fitted: Recommender) -> None:
    with pytest.raises(NotFoundError, match="user 999 is not in"):
        fitted.top(999)
    s = fitted.score([1, 999], [101, 99999])
    assert np.isfinite(s[0, 0]) and np.isnan(s[0, 1]) and np.isnan(s[1]).all()
    assert np.isnan(fitted.predict(np.array([999, 1]), np.array([101, 99999]))).all()


# --- known answers -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras-implicit", "keras-rating"])
def test_personal_models_find_the_planted_movie(name: str) -> None:
    """Each user's unrated own-group movie must come first. Popularity cannot know it: the other group's
    movies have more ratings (checked below), so this fails for a model that learned only biases."""
    model = _FITTED.get(name) or MAKERS[name]().fit(checkerboard())
    _FITTED[name] = model
    users = np.r_[GROUP_USERS[0], GROUP_USERS[1]]
    right = sum(model.top(int(u), 1)[0][0] == missing_movie(int(u)) for u in users)
    assert right >= 36, f"{right}/40 users got their planted movie first"
    popular = Popularity().fit(checkerboard())
    assert sum(popular.top(int(u), 1)[0][0] == missing_movie(int(u)) for u in users) < 30


def test_popularity_ranks_by_number_of_ratings() -> None:
    data = Ratings.from_arrays([1, 2, 3, 1, 2, 4], [10, 10, 10, 20, 20, 30], [1, 1, 1, 5, 5, 5])
    model = Popularity().fit(data)
    ids, scores = model.top(4, 5)
    assert list(ids) == [10, 20]  # 3 ratings, then 2; movie 30 is user 4's own
    np.testing.assert_allclose(scores, [1.0, np.log(3) / np.log(4)], rtol=1e-6)  # log popularity, scaled
    np.testing.assert_array_equal(model.score([4], [10, 20, 30]), [[3, 2, 1]])  # raw: ratings counts


def test_bias_model_predicts_mean_plus_biases() -> None:
    # user 2 rates 1 above user 1 on the same movies: with no damping the biases are exact.
    data = Ratings.from_arrays([1, 1, 2, 2], [10, 20, 10, 20], [2, 4, 3, 5])
    m = BiasOnly(damping=0.0, iterations=20).fit(data)
    np.testing.assert_allclose(m.predict(np.array([1, 2]), np.array([10, 20])), [2, 5], atol=1e-4)
    assert m.predicts_ratings and not Popularity.predicts_ratings


@pytest.mark.slow
def test_loading_refuses_factors_that_do_not_match_the_id_maps(tmp_path: Path) -> None:
    model = _FITTED.get("keras-rating") or MAKERS["keras-rating"]().fit(checkerboard())
    model.save(tmp_path / "m")
    f = model.factors
    other = type(f)(
        f.user_ids[:-1], f.movie_ids, f.user_vecs[:-1], f.movie_vecs, f.user_bias[:-1], f.movie_bias
    )
    other.save(tmp_path / "m" / "factors.npz")
    with pytest.raises(ModelError, match="id maps"):
        Recommender.load(tmp_path / "m")
    with pytest.raises(ModelError, match="no saved recommender"):
        Recommender.load(tmp_path / "nothing")


# --- the Keras model itself ----------------------------------------------------------------------------


def test_pair_score_does_not_depend_on_its_batch() -> None:
    """Regression: the reference design's tensordot(u, m, 2) summed over the batch axis, so every pair in
    a batch got the same interaction term. A pair must score the same alone and in any batch."""
    keras_model = pytest.importorskip("movierec.cf.keras_model", reason="needs TensorFlow")
    model = keras_model.build(n_users=50, n_movies=30, dim=16, l2=0.0, lr=1e-3, seed=3)
    rng = np.random.default_rng(0)
    batch = np.stack([rng.integers(0, 50, 64), rng.integers(0, 30, 64)], axis=1).astype(np.int32)
    together = model.predict(batch, verbose=0)
    alone = np.array([model.predict(batch[i : i + 1], verbose=0)[0] for i in (0, 17, 63)])
    np.testing.assert_allclose(alone, together[[0, 17, 63]], rtol=1e-6)
    shuffled = model.predict(batch[::-1], verbose=0)[::-1]
    np.testing.assert_allclose(shuffled, together, rtol=1e-6)
    assert np.std(together) > 1e-3, "pairs must differ (a batch-summed interaction makes them nearly equal)"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras-implicit", "keras-rating"])
def test_keras_file_loads_and_agrees_with_exported_factors(tmp_path: Path, name: str) -> None:
    """The implicit model's file is written without TensorFlow (cf.keras_file); Keras must still load it."""
    keras = pytest.importorskip("keras", reason="needs Keras")
    model = _FITTED.get(name) or MAKERS[name]().fit(checkerboard())
    model.save(tmp_path / "m")
    loaded = keras.saving.load_model(tmp_path / "m" / "model.keras")  # no custom_objects needed
    f = model.factors
    pairs = np.array([[0, 0], [5, 3], [39, 99]], dtype=np.int32)
    expected = 1 / (1 + np.exp(-f.pair_logits(pairs[:, 0], pairs[:, 1])))
    np.testing.assert_allclose(loaded.predict(pairs, verbose=0), expected, rtol=1e-5)


def test_implicit_fit_and_save_never_import_tensorflow(tmp_path: Path) -> None:
    """A cold `movierec train` of the default objective must not wait for TensorFlow (issue 17, item 5)."""
    code = (
        "import sys, numpy as np\n"
        "from movierec.cf.data import Ratings\n"
        "from movierec.cf.keras_cf import KerasCF\n"
        "rng = np.random.default_rng(0)\n"
        "u, m, r = rng.integers(0, 50, 2000), rng.integers(0, 40, 2000), rng.integers(1, 6, 2000)\n"
        "d = Ratings.from_arrays(u, m, r)\n"
        f"KerasCF(dim=4, iterations=2, tune=False).fit(d).save({str(tmp_path / 'm')!r})\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert (tmp_path / "m" / "model.keras").stat().st_size > 0


@pytest.mark.slow
def test_rating_model_predicts_on_the_rating_scale() -> None:
    model = _FITTED.get("keras-rating") or MAKERS["keras-rating"]().fit(checkerboard())
    own, other = model.predict(np.array([1, 1]), np.array([102, 201]))
    assert own > 4.0 and other < 2.5
    implicit = _FITTED.get("keras-implicit") or MAKERS["keras-implicit"]().fit(checkerboard())
    assert np.isnan(implicit.predict(np.array([1]), np.array([102]))).all()
    assert implicit.factors.objective == "implicit" and not implicit.factors.predicts_ratings


def test_bad_hyperparameters_are_refused() -> None:
    with pytest.raises(BadInputError, match="objective"):
        HyperParams(objective="clicks")
    with pytest.raises(BadInputError, match="--confidence"):
        HyperParams(confidence=0)
    with pytest.raises(BadInputError, match="--epochs"):
        HyperParams(epochs=0)


# --- metrics and splits --------------------------------------------------------------------------------


def test_ranking_metrics_known_answer() -> None:
    # user 0: hits at ranks 1 and 3 of 3 shown, 2 relevant; user 1: no hit, 1 relevant.
    top = np.array([[5, 6, 7], [1, 2, -1]])
    rel = np.array([[True, False, True], [False, False, False]])
    m = ranking_metrics(top, rel, np.array([2, 1]), n_movies=10)
    d = 1 / np.log2(np.arange(2, 5))
    assert m["precision@10"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall@10"] == pytest.approx((1 + 0) / 2)
    assert m["ndcg@10"] == pytest.approx(((d[0] + d[2]) / (d[0] + d[1])) / 2)
    assert m["map@10"] == pytest.approx(((1 + 2 / 3) / 2) / 2)
    assert m["hit@10"] == pytest.approx(0.5)
    assert m["coverage"] == pytest.approx(5 / 10)
    per = ranking_metrics(top, rel, np.array([2, 1]), n_movies=10, per_user=True)["ndcg_per_user"]
    assert per == pytest.approx([(d[0] + d[2]) / (d[0] + d[1]), 0.0])  # what a paired comparison uses


def test_per_user_time_split_holds_out_each_users_latest_quarter() -> None:
    data = Ratings.from_arrays(
        np.repeat([1, 2], 8), np.tile(np.arange(8), 2), np.ones(16), np.tile(np.arange(8), 2)
    )
    train, test = per_user_split(data, 0.25, by="time")
    assert sorted(zip(test.user_ids, test.movie_ids, strict=True)) == [(1, 6), (1, 7), (2, 6), (2, 7)]
    assert len(train) == 12
    _, rnd = per_user_split(data, 0.25, by="random", seed=1)
    assert np.bincount(rnd.user_ids).tolist() == [0, 2, 2]
    tr, te = random_split(data, 0.5, seed=0)
    assert len(tr) + len(te) == 16 and 0 < len(te) < 16
    with pytest.raises(BadInputError):
        per_user_split(data, 0.25, by="alphabetical")
