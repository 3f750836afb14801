"""Accuracy bands on the real ml-latest-small (skipped when absent): the numbers BENCHMARKS.md reports,
with some slack for seeds and library versions. About two minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest
from cf_world import load_movielens_csv

from movierec.cf.data import load_ratings, per_user_split, random_split
from movierec.cf.evaluate import rank_eval, rating_eval
from movierec.cf.keras_cf import KerasCF
from movierec.cf.recommender import BiasOnly, Popularity
from movierec.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture
def ratings(settings: Settings, ml_small: Path):
    load_movielens_csv(settings, ml_small)
    return load_ratings(settings)


def test_rating_objective_rmse_band(ratings) -> None:
    train, test = random_split(ratings, 0.1, seed=0)
    fallback = float(train.ratings.mean())
    model = rating_eval(KerasCF(objective="rating").fit(train), test, fallback)
    bias = rating_eval(BiasOnly().fit(train), test, fallback)
    assert model["rmse"] <= 0.89, model  # target 0.88 (BENCHMARKS.md); bias-only is ~0.90
    assert model["rmse"] < bias["rmse"]


@pytest.mark.parametrize(("split", "floor", "vs_popularity"), [("random", 0.34, 1.6), ("time", 0.14, 1.45)])
def test_default_objective_ranks_well_above_popularity(ratings, split, floor, vs_popularity) -> None:
    """ALS defaults measured 0.363 (random) and 0.154 = 1.54x popularity (time): BENCHMARKS.md."""
    train, test = per_user_split(ratings, 0.25, by=split, seed=0)
    model = rank_eval(KerasCF().fit(train), test)
    popular = rank_eval(Popularity().fit(train), test)
    assert model["ndcg@10"] >= floor and model["ndcg@10"] >= vs_popularity * popular["ndcg@10"], (
        model,
        popular,
    )
    assert model["coverage"] > popular["coverage"]
