"""The CF model's content side: what a user's liked films say in the text space, added to the CF score.

Why: the CF score knows only who rated what. A user's *profile* (the normalised sum of the text vectors
of the films they rated >= LIKED_RATING, the vectors `movierec embed` stored) ranks films like theirs
in content. On ml-latest-small and ml-100k's shape, `z(cf) + beta * z(cos(profile, film))` (each side
standardised per user over the catalogue) ranked held-out ratings +0.002..+0.006 nDCG@10 above the CF
score alone, with beta chosen on an inner split (`benchmarks/content_profile.py`, BENCHMARKS.md).

How, without a second scoring path: per user, that blend ranks films exactly as
`cf + g_u * cos(profile_u, film)` with `g_u = beta * sd_u(cf) / sd_u(cos)` (a positive per-user scale and
shift change no user's order), and both standard deviations over the catalogue have closed forms:
`x_u' Cov(Y) x_u` and `p_u' Cov(V) p_u`. So the content side is one more block of factors, user rows
`g_u * p_u` and movie rows `v_i`: the batch, `recommend`, the evaluations and the validation score it with
the same matrix product (`Factors.block`). beta (`HyperParams.profile_weight`) is chosen by the tuning
search on its inner split (`cf.tune`), 0 when the profile does not help there.
"""

from __future__ import annotations

import numpy as np

from movierec.catalog import LIKED_RATING

PROFILE_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # beta, searched on the tuning split
CONTENT_DIM = 64  # text vectors are reduced to this many principal directions (`reduce`)
SEEN_CHUNK = 65_536  # pairs per step (seen pairs' scores, liked films' vectors): 16 MB gathers that the
# allocator reuses; 1M-pair steps (256 MB, fresh pages each) took 2.5-4x as long at 25M ratings


def movie_rows(
    vector_ids: np.ndarray, vectors: np.ndarray, movie_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(text vectors aligned to `movie_ids`, their mean): a film the store has no vector for gets the mean,
    as does a candidate newer than the model at scoring time (`Factors.content_center`), so its content
    score is an average film's, not 0 (the reduced vectors are not centred: 0 would rank it last)."""
    out = np.zeros((len(movie_ids), vectors.shape[1]), dtype=np.float32)
    found = np.zeros(len(movie_ids), dtype=bool)
    if len(vector_ids):
        pos = np.searchsorted(vector_ids, movie_ids).clip(0, len(vector_ids) - 1)
        found = vector_ids[pos] == movie_ids
        out[found] = vectors[pos[found]]
    center = out[found].mean(axis=0) if found.any() else np.zeros(vectors.shape[1], np.float32)
    out[~found] = center
    return out, center.astype(np.float32)


def profiles(
    user_rows: np.ndarray, movie_rows: np.ndarray, ratings: np.ndarray, n_users: int, movie_vecs: np.ndarray
) -> np.ndarray:
    """Unit profile per user row: the normalised sum of the vectors of the films they liked (zero rows for
    users who liked none). Rows index `movie_vecs`."""
    liked = ratings >= LIKED_RATING
    if len(movie_rows) and (int(movie_rows.max()) >= len(movie_vecs) or int(movie_rows.min()) < 0):
        raise ValueError("profiles: a movie row outside movie_vecs")  # it would spill into the user bits
    # By user: one sort of packed (user, movie) keys (SIMD), not an argsort and two gathers.
    bits = max(int(len(movie_vecs) - 1).bit_length(), 1)
    keys = (user_rows[liked].astype(np.int64) << bits) | movie_rows[liked].astype(np.int64)
    keys.sort()
    u, m = keys >> bits, keys & ((1 << bits) - 1)
    del keys
    # Sums over each user's run, column-major: reduceat along contiguous rows of the transposed vectors is
    # ~20x faster than along axis 0 (25M ratings: 1.3 s against 4.5 s for the whole loop).
    vt = np.ascontiguousarray(movie_vecs.T)
    out = np.zeros((movie_vecs.shape[1], n_users), dtype=np.float32)
    for start in range(0, len(u), SEEN_CHUNK):  # in steps: all liked rows' vectors at once are GBs at 25M
        cu, cm = u[start : start + SEEN_CHUNK], m[start : start + SEEN_CHUNK]
        starts = np.flatnonzero(np.r_[True, cu[1:] != cu[:-1]])
        # a user is unique within a step (one reduceat segment)
        out[:, cu[starts]] += np.add.reduceat(np.take(vt, cm, axis=1), starts, axis=1)
    out = np.ascontiguousarray(out.T)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norm > 0, norm, 1.0)


def basis(vectors: np.ndarray, dim: int = CONTENT_DIM) -> np.ndarray:
    """The text vectors' `dim` principal directions [text_dim, dim] (all of them when there are fewer):
    projected on them, the content side costs the batch what a second set of CF factors would (512-d
    vectors: 9x the scoring product of a 64-d model); on ml-latest-small 64 of USE's 512 dimensions kept
    81% of the variance and the same gain. Kept with the model, so an update projects new films the same
    way (a new eigen-decomposition may flip or rotate the directions)."""
    if vectors.shape[1] <= dim or len(vectors) <= dim:
        return np.eye(vectors.shape[1], dtype=np.float32)
    centred = vectors - vectors.mean(axis=0)
    _, directions = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues: the last `dim` columns
    return np.ascontiguousarray(directions[:, -dim:][:, ::-1]).astype(np.float32)


def _sd(users: np.ndarray, items: np.ndarray, seen_users: np.ndarray, seen_items: np.ndarray) -> np.ndarray:
    """Per user row, the standard deviation of `users @ items.T` over the items that user has not seen
    (rows `seen_users`, `seen_items`): the catalogue's sums in closed form, minus the seen pairs' (a
    user's own films score far above the rest and would inflate it)."""
    u64 = users.astype(np.float64)
    n = np.full(len(users), len(items), dtype=np.float64)
    s1 = u64 @ items.sum(axis=0, dtype=np.float64)
    s2 = ((u64 @ (items.T.astype(np.float64) @ items)) * u64).sum(axis=1)
    n -= np.bincount(seen_users, minlength=len(users))
    # Pair scores gathered in SEEN_CHUNK steps, counted per user in 16x larger ones: a bincount costs
    # O(users), which per small step would grow with users x ratings.
    span = 16 * SEEN_CHUNK
    pair = np.empty(min(span, len(seen_users)), dtype=np.float64)
    for outer in range(0, len(seen_users), span):
        su_all = seen_users[outer : outer + span]
        for start in range(0, len(su_all), SEEN_CHUNK):
            at = outer + start
            su, si = seen_users[at : at + SEEN_CHUNK], seen_items[at : at + SEEN_CHUNK]
            pair[start : start + len(su)] = np.einsum("ij,ij->i", users[su], items[si])
        p = pair[: len(su_all)]
        s1 -= np.bincount(su_all, weights=p, minlength=len(users))
        s2 -= np.bincount(su_all, weights=p * p, minlength=len(users))
    n = np.maximum(n, 1.0)
    return np.sqrt(np.maximum(s2 / n - (s1 / n) ** 2, 0.0))


def user_side(
    weight: float, user_vecs: np.ndarray, movie_vecs: np.ndarray, prof: np.ndarray, content: np.ndarray,
    user_rows: np.ndarray, movie_rows: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The content side's user rows, `g_u * profile_u` (see the module docstring): `weight` (beta) in units
    of each user's own CF spread over the films they have not rated (`user_rows`, `movie_rows`: the
    fit's ratings). Implicit factors: no biases."""
    if weight == 0 or len(content) == 0:
        return np.zeros_like(prof)
    sd_cf = _sd(user_vecs, movie_vecs, user_rows, movie_rows)
    sd_c = _sd(prof, content, user_rows, movie_rows)
    g = np.where(sd_c > 1e-9, weight * sd_cf / np.maximum(sd_c, 1e-9), 0.0)
    return (prof * g[:, None]).astype(np.float32)
