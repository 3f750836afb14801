"""Two snapshots of one synthetic data set for update benchmarks: a base, and the full set as "the next
night" with about 1% more ratings, including new users and new movies.

The full set is `movierec data synth` output (planted taste, so the new ratings carry signal). The base
leaves out: every rating of `new_users` users (the newest arrivals), every rating of `new_movies` movies
drawn from the long tail (new releases have few ratings), and then the newest ratings by timestamp until
`share` of all ratings are missing. Ingesting the base and then the full directory is exactly a night
with that change (MovieLens snapshots only grow).

    .venv/bin/python benchmarks/snapshots.py FULL_DIR BASE_DIR [--share 0.01]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


def make_base(
    full: Path,
    base: Path,
    share: float = 0.01,
    new_users: float = 0.002,
    new_movies: float = 0.005,
    seed: int = 0,
) -> dict:
    """Write `base` (full minus ~`share` of its ratings) unless it exists; return what was left out."""
    full, base = Path(full), Path(base)
    ratings = pacsv.read_csv(full / "ratings.csv")
    users = ratings["userId"].to_numpy()
    movies = ratings["movieId"].to_numpy()
    ts = ratings["timestamp"].to_numpy()
    rng = np.random.default_rng(seed)
    uid, mid = np.unique(users), np.unique(movies)
    counts = np.bincount(np.searchsorted(mid, movies), minlength=len(mid))
    tail = mid[counts <= np.quantile(counts, 0.5)]
    gone_users = rng.choice(uid, int(len(uid) * new_users), replace=False)
    gone_movies = rng.choice(tail, min(len(tail), int(len(mid) * new_movies)), replace=False)
    drop = np.isin(users, gone_users) | np.isin(movies, gone_movies)
    target = int(len(users) * share)
    if drop.sum() < target:
        # The newest remaining ratings, but never a user's only one (that user would be new too).
        order = np.argsort(-ts, kind="stable")
        per_user = np.bincount(np.searchsorted(uid, users), minlength=len(uid))
        left = per_user.copy()
        np.subtract.at(left, np.searchsorted(uid, users[drop]), 1)
        need = target - int(drop.sum())
        cand = order[~drop[order]]
        cand = cand[left[np.searchsorted(uid, users[cand])] > 3][:need]
        drop[cand] = True
    info = {
        "ratings_full": int(len(users)),
        "ratings_base": int((~drop).sum()),
        "left_out": int(drop.sum()),
        "new_users": int(len(gone_users)),
        "new_movies": int(len(gone_movies)),
    }
    if (base / "ratings.csv").exists():
        return info
    base.mkdir(parents=True, exist_ok=True)
    opts = pacsv.WriteOptions(quoting_header="none")
    pacsv.write_csv(ratings.filter(pa.array(~drop)), base / "ratings.csv", opts)
    movie_table = pacsv.read_csv(full / "movies.csv")
    keep_movies = pc.invert(pc.is_in(movie_table["movieId"], pa.array(gone_movies)))
    pacsv.write_csv(movie_table.filter(keep_movies), base / "movies.csv", opts)
    if (full / "tags.csv").exists():
        tags = pacsv.read_csv(full / "tags.csv")
        keep = pc.and_(
            pc.invert(pc.is_in(tags["movieId"], pa.array(gone_movies))),
            pc.invert(pc.is_in(tags["userId"], pa.array(gone_users))),
        )
        pacsv.write_csv(tags.filter(keep), base / "tags.csv", opts)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("full", type=Path)
    ap.add_argument("base", type=Path)
    ap.add_argument("--share", type=float, default=0.01)
    args = ap.parse_args()
    print(make_base(args.full, args.base, args.share))


if __name__ == "__main__":
    main()
