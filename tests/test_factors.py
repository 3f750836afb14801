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


def test_the_content_side_adds_its_product_and_survives_a_round_trip(tmp_path: Path) -> None:
    """Every scoring path (block via logits, pair_logits) adds content_users . content_movies; the file
    keeps it; users folded in get a zero content row; a file without it is CF alone."""
    from dataclasses import replace

    rng = np.random.default_rng(2)
    f = _factors()
    c = replace(f, content_users=rng.normal(size=(4, 6)).astype(np.float32),
                content_movies=rng.normal(size=(5, 6)).astype(np.float32), profile_weight=0.5)  # fmt: skip
    extra = c.content_users @ c.content_movies.T
    # rtol 1e-5: float32 products summed in another order (BLAS block vs einsum).
    users, movies = np.arange(4), np.arange(5)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(c.logits(users, movies), f.logits(users, movies) + extra, **tol)
    pairs = c.pair_logits(np.array([1, 3]), np.array([4, 0]))
    np.testing.assert_allclose(pairs, c.logits(users, movies)[[1, 3], [4, 0]], **tol)
    assert c.scoring_dim == 3 + 6 and f.scoring_dim == 3 and not f.has_content
    c.save(tmp_path / "c.npz")
    g = Factors.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(g.content_users, c.content_users)
    np.testing.assert_array_equal(g.content_movies, c.content_movies)
    assert g.profile_weight == 0.5 and g.content_center is not None and g.content_basis is None
    based = replace(c, content_basis=np.eye(8, 6, dtype=np.float32), content_center=np.ones(6, np.float32))
    based.save(tmp_path / "b.npz")
    h = Factors.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(h.content_basis, based.content_basis)  # an update projects new films by it
    np.testing.assert_array_equal(h.content_center, based.content_center)
    folded = g.with_users(np.array([5]), np.ones((1, 3), np.float32), np.zeros(1, np.float32))
    assert folded.content_users.shape == (5, 6) and not folded.content_users[1].any()  # id 5: row 1
    with pytest.raises(ModelError, match="do not match"):
        replace(f, content_users=c.content_users)  # one side without the other


def test_mismatched_shapes_are_refused() -> None:
    f = _factors()
    with pytest.raises(ModelError, match="do not match"):
        Factors(f.user_ids[:3], f.movie_ids, f.user_vecs, f.movie_vecs, f.user_bias, f.movie_bias)


def test_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="movierec train"):
        Factors.load(tmp_path / "nope.npz")
