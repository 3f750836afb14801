"""The exported-factors contract the batch scores with."""

from pathlib import Path

import numpy as np
import pytest

from movierec.cf.factors import Factors
from movierec.errors import ModelError


def _factors(nu: int = 4, nm: int = 5, dim: int = 3) -> Factors:
    rng = np.random.default_rng(1)
    return Factors(
        user_ids=np.array([3, 10, 11, 40][:nu], dtype=np.int64),
        movie_ids=np.arange(100, 100 + nm, dtype=np.int64),
        user_vecs=rng.normal(size=(nu, dim)).astype(np.float32),
        movie_vecs=rng.normal(size=(nm, dim)).astype(np.float32),
        user_bias=rng.normal(size=nu).astype(np.float32),
        movie_bias=rng.normal(size=nm).astype(np.float32),
        global_bias=0.25,
    )


def test_index_lookup_marks_unknown_ids() -> None:
    f = _factors()
    assert f.user_index(np.array([10, 3, 999, 40, 0])).tolist() == [1, 0, -1, 3, -1]
    assert f.movie_index(np.array([104, 50])).tolist() == [4, -1]


def test_logits_match_the_per_pair_formula() -> None:
    f = _factors()
    got = f.logits(np.array([2, 0]), np.array([4, 1, 3]))
    for i, u in enumerate([2, 0]):
        for j, m in enumerate([4, 1, 3]):
            want = f.user_vecs[u] @ f.movie_vecs[m] + f.user_bias[u] + f.movie_bias[m] + 0.25
            assert got[i, j] == pytest.approx(want, rel=1e-5)
    ratings = f.to_rating(got)
    assert ((ratings >= 0.5) & (ratings <= 5.0)).all()


def test_save_load_round_trip(tmp_path: Path) -> None:
    f = _factors()
    f.save(tmp_path / "factors.npz")
    g = Factors.load(tmp_path / "factors.npz")
    for name in ("user_ids", "movie_ids", "user_vecs", "movie_vecs", "user_bias", "movie_bias"):
        np.testing.assert_array_equal(getattr(g, name), getattr(f, name), err_msg=name)  # the file: exact
    assert g.global_bias == 0.25  # stored, not computed
    # rtol=1e-6: the same product on arrays at other addresses may take another SIMD path in BLAS.
    np.testing.assert_allclose(
        g.logits(np.arange(4), np.arange(5)), f.logits(np.arange(4), np.arange(5)), rtol=1e-6
    )


def test_mismatched_shapes_are_refused() -> None:
    f = _factors()
    with pytest.raises(ModelError, match="do not match"):
        Factors(f.user_ids[:3], f.movie_ids, f.user_vecs, f.movie_vecs, f.user_bias, f.movie_bias)


def test_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="movierec train"):
        Factors.load(tmp_path / "nope.npz")
