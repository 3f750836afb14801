"""A lead, not in the product: does the user's content profile, blended with the CF score, rank better?

The profile of a user is the normalised sum of the text vectors (what `movierec embed` stores: title and
tags mixed with the genre description, the home's model) of the films they rated >= 4 in the training
part. Every film is scored `z(cf) + beta * z(cos(profile, film))`, each side standardised per user over
the films they have not rated, and nDCG@10 over the catalogue is compared with `beta = 0` (the CF model
alone) user by user.

Protocol, as `bench_cf_peers.py`: a per-user 75/25 split (`cf.data.per_user_split`, random or time), the
product's self-tuning `KerasCF()` fitted on the training part, every unseen film scored, every held-out
rating relevant. `beta` is chosen on an inner split of the training part (the same split by the same
rule, a model with the outer fit's chosen values fitted on its training side): the test part chooses
nothing. The whole grid is reported for both, and the chosen beta's test row.

    MOVIEREC_HOME=<ml-latest-small home, embedded> .venv/bin/python benchmarks/content_profile.py \
        [--split random time] [--seeds 0 1] [--json-out F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from movierec.catalog import LIKED_RATING
from movierec.cf import KerasCF, Recommender
from movierec.cf.data import Ratings, load_ratings, per_user_split
from movierec.config import Settings
from movierec.db import connect
from movierec.embedder import load_model
from movierec.ingest.embed import movie_vectors
from movierec.ingest.text import movie_texts

BETAS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
K = 10


def _rows(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, ids).clip(0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


def ndcg_by_beta(
    model: Recommender, train: Ratings, test: Ratings, mids: np.ndarray, vecs: np.ndarray, betas=BETAS
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(users, their nDCG@10 for each beta): the users with a held-out rating of a film the model knows."""
    users = np.unique(test.user_ids)
    ur = _rows(model.user_ids, users)
    users, ur = users[ur >= 0], ur[ur >= 0]
    cf = model._block(ur, model._items(model.movie_ids))  # users x model.movie_ids
    v = vecs[_rows(mids, model.movie_ids).clip(0)]  # the model's films all have a text (same catalogue)
    liked = train.take(train.ratings >= LIKED_RATING)
    lu, lm = _rows(users, liked.user_ids), _rows(mids, liked.movie_ids)
    ok = (lu >= 0) & (lm >= 0)
    prof = np.zeros((len(users), vecs.shape[1]), np.float32)
    np.add.at(prof, lu[ok], vecs[lm[ok]])
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-9)
    content = prof @ v.T
    su, sm = _rows(users, train.user_ids), _rows(model.movie_ids, train.movie_ids)
    seen = (su >= 0) & (sm >= 0)
    tu, tm = _rows(users, test.user_ids), _rows(model.movie_ids, test.movie_ids)
    rel = np.zeros(cf.shape, bool)
    rel[tu[(tu >= 0) & (tm >= 0)], tm[(tu >= 0) & (tm >= 0)]] = True
    rel[su[seen], sm[seen]] = False

    def z(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x[su[seen], sm[seen]] = np.nan
        x = (x - np.nanmean(x, 1, keepdims=True)) / np.maximum(np.nanstd(x, 1, keepdims=True), 1e-9)
        return np.nan_to_num(x, nan=-1e9)

    zc, zp = z(cf), z(content)
    has = rel.any(1)
    disc = 1 / np.log2(np.arange(2, K + 2))
    idcg = np.cumsum(disc)[np.minimum(rel.sum(1), K) - 1]
    out = {}
    for b in betas:
        x = zc + b * zp
        top = np.argpartition(-x, K, axis=1)[:, :K]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(x, top, 1), 1), 1)
        dcg = (np.take_along_axis(rel, top, 1) * disc).sum(1)
        out[b] = dcg[has] / idcg[has]
    return users[has], out


def _summary(scored: tuple[np.ndarray, dict[float, np.ndarray]]) -> dict[float, tuple[float, float, float]]:
    """Per beta: (mean nDCG@10, paired difference from beta 0, its standard error)."""
    by_beta = scored[1]
    base = by_beta[0.0]
    return {b: (float(v.mean()), float((v - base).mean()), float((v - base).std(ddof=1) / np.sqrt(len(v))))
            for b, v in by_beta.items()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", nargs="+", default=["random", "time"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--dense", action="store_true", help="ml-100k's shape cut from the data (bench_cf_peers)")
    ap.add_argument("--peer", action="store_true", help="also `implicit` ALS tuned on the same inner split")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    settings = Settings.load()
    data = load_ratings(settings)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_cf_peers as peers  # the peer, its grid and the dense cut, as bench_cf_peers runs them

    if args.dense:
        data = peers.dense_subset(data)
    t0 = time.perf_counter()
    with connect(settings, read_only=True) as con:
        texts = movie_texts(con)
    mids = np.array([m.movie_id for m in texts], dtype=np.int64)
    vecs = movie_vectors(load_model(settings.model), texts).astype(np.float32)
    print(f"{len(data):,} ratings; {len(mids):,} films encoded with {settings.model} in "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)  # fmt: skip
    rows = []
    for how in args.split:
        for seed in args.seeds:
            train, test = per_user_split(data, 0.25, by=how, seed=seed)
            model = KerasCF().fit(train)
            inner_train, inner_val = per_user_split(train, 0.25, by=how, seed=seed + 100)
            inner = KerasCF(**{**model.hp.to_dict(), "tune": False}).fit(inner_train)
            val = _summary(ndcg_by_beta(inner, inner_train, inner_val, mids, vecs))
            chosen = max(val, key=lambda b: val[b][0])
            scored = ndcg_by_beta(model, train, test, mids, vecs)
            tst = _summary(scored)
            vs_peer = None
            if args.peer:
                best, _, _ = peers.tune_peer(train)
                p = dict(best)
                peer = peers.ImplicitPeer("als", alpha=p.pop("alpha"), iterations=15, **p).fit(train)
                pu, pn = ndcg_by_beta(peer, train, test, mids, vecs, betas=(0.0,))
                _, ia, ib = np.intersect1d(scored[0], pu, return_indices=True)
                vs_peer = {"peer": best, "peer_ndcg": float(pn[0.0][ib].mean())}
                for b in (0.0, chosen):
                    d = scored[1][b][ia] - pn[0.0][ib]
                    vs_peer[b] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
            hp = {k: model.hp.to_dict()[k] for k in ("dim", "reg", "like", "confidence")}
            row = {"split": how, "seed": seed, "chosen_beta": chosen, "validation": val, "test": tst,
                   "vs_peer": vs_peer, "hp": hp}  # fmt: skip
            rows.append(row)
            print(f"\n{how} split, seed {seed}: beta chosen on the inner split = {chosen}")
            print("| beta | validation nDCG@10 (paired vs 0) | test nDCG@10 (paired vs 0) |")
            print("| --- | --- | --- |")
            for b in BETAS:
                mark = " **(chosen)**" if b == chosen else ""
                print(f"| {b:g}{mark} | {val[b][0]:.4f} ({val[b][1]:+.4f} ± {val[b][2]:.4f}) | "
                      f"{tst[b][0]:.4f} ({tst[b][1]:+.4f} ± {tst[b][2]:.4f}) |")  # fmt: skip
            if vs_peer:
                (d0, e0), (dc, ec) = vs_peer[0.0], vs_peer[chosen]
                print(f"tuned `implicit` ALS {vs_peer['peer']}: test nDCG@10 {vs_peer['peer_ndcg']:.4f}; "
                      f"movierec minus peer, paired: CF alone {d0:+.4f} ± {e0:.4f}, with the profile "
                      f"(beta {chosen:g}) {dc:+.4f} ± {ec:.4f}")  # fmt: skip
            sys.stdout.flush()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
