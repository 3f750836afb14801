"""movierec's CF model against the `implicit` library's ALS and BPR on the same split, in one run.

For each data set: a per-user 75/25 split (`cf.data.per_user_split`, random or time), every model fitted on
the same training ratings, every unseen movie scored, each user's training movies excluded, every held-out
rating relevant (`cf.evaluate.rank_eval`, what `movierec evaluate` reports). Peers run behind the same
`Recommender` contract, so the metrics code is shared. `implicit` gets a small grid (factors, regularisation,
confidence alpha, with and without BM25 weighting for ALS; learning rate for BPR) and its best row per
algorithm is reported; movierec runs with its defaults (and any `--ours` variants). Popularity is the floor.

Data sets: ml-latest-small (real, `--small`) and a `movierec data synth` ml-25m-size set (`--large DIR`,
a ratings.csv directory; skipped unless given). `implicit` is a `bench` extra (`make install` installs it);
it is never a runtime dependency.

    .venv/bin/python benchmarks/bench_cf_peers.py [--split random] [--large /work/data/ml-25m-like]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

from movierec.cf.data import Ratings, index_of, per_user_split
from movierec.cf.evaluate import rank_eval
from movierec.cf.keras_cf import KerasCF
from movierec.cf.recommender import Popularity, Recommender

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"


class ImplicitPeer(Recommender):
    """An `implicit` model behind movierec's contract (scores = user_factors . item_factors)."""

    kind = "implicit-peer"

    def __init__(self, algo: str, bm25: bool = False, alpha: float = 1.0, **params) -> None:
        self.algo, self.bm25, self.alpha, self.params = algo, bm25, alpha, params

    def _fit(self, user_rows, movie_rows, ratings, progress):
        import scipy.sparse as sp
        from implicit.bpr import BayesianPersonalizedRanking
        from implicit.nearest_neighbours import bm25_weight
        from threadpoolctl import threadpool_limits

        m = sp.csr_matrix(
            (ratings.astype(np.float32), (user_rows, movie_rows)),
            shape=(len(self.user_ids), len(self.movie_ids)),
        )
        if self.algo == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            m = (bm25_weight(m, K1=100, B=0.8) if self.bm25 else m).tocsr().astype(np.float32) * self.alpha
            model = AlternatingLeastSquares(random_state=0, **self.params)
        else:
            m.data[:] = 1.0
            model = BayesianPersonalizedRanking(random_state=0, **self.params)
        with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, one BLAS thread each
            model.fit(m, show_progress=False)
        self.uf = np.asarray(model.user_factors, dtype=np.float32)
        self.itf = np.asarray(model.item_factors, dtype=np.float32)

    def _items(self, movie_ids):
        return np.ascontiguousarray(self.itf[index_of(self.movie_ids, movie_ids)].T)

    def _block(self, user_rows, items):
        return self.uf[user_rows] @ items


def load_csv(directory: Path) -> Ratings:
    t = pacsv.read_csv(directory / "ratings.csv")
    return Ratings.from_arrays(
        t["userId"].to_numpy(), t["movieId"].to_numpy(), t["rating"].to_numpy(), t["timestamp"].to_numpy()
    )


def run(name: str, make, train: Ratings, test: Ratings) -> dict:
    t = time.perf_counter()
    model = make().fit(train)
    seconds = time.perf_counter() - t
    r = rank_eval(model, test)
    metrics = {k: r[k] for k in ("ndcg@10", "recall@10", "coverage")}
    return {"model": name, "train_s": round(seconds, 2), **metrics}


def grid(large: bool) -> list[tuple[str, dict]]:
    if large:  # one config per algorithm at ml-25m size: the grid would take hours on 2 cores
        return [
            ("als", {"factors": 64, "regularization": 0.05, "iterations": 15, "alpha": 1.0, "bm25": True}),
            ("bpr", {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100}),
        ]
    als = [
        ("als", {"factors": f, "regularization": r, "iterations": 15, "alpha": a, "bm25": b})
        for f, r, a, b in itertools.product((64, 128), (0.01, 0.1, 1.0), (1.0, 10.0), (False, True))
    ]
    bpr = [
        ("bpr", {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": 100})
        for f, lr in itertools.product((64, 128), (0.01, 0.05, 0.1))
    ]
    return als + bpr


def compare(label: str, data: Ratings, split: str, ours: list[dict], large: bool) -> list[dict]:
    train, test = per_user_split(data, 0.25, by=split, seed=0)
    print(
        f"\n{label}: {len(data):,} ratings, split {split} 75/25 per user; "
        f"load avg {os.getloadavg()[0]:.1f} (2 shared cores)",
        flush=True,
    )
    rows = []
    for kw in ours:
        tag = "movierec (defaults)" if not kw else "movierec " + json.dumps(kw)
        rows.append(run(tag, lambda kw=kw: KerasCF(**kw), train, test))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(run("popularity", Popularity, train, test))
    print(json.dumps(rows[-1]), flush=True)
    best: dict[str, dict] = {}
    for algo, params in grid(large):
        p = dict(params)
        bm25, alpha = p.pop("bm25", False), p.pop("alpha", 1.0)
        row = run(
            f"implicit {algo.upper()} {json.dumps(params)}",
            lambda p=p, algo=algo, bm25=bm25, alpha=alpha: ImplicitPeer(algo, bm25=bm25, alpha=alpha, **p),
            train,
            test,
        )
        print(json.dumps(row), flush=True)
        if algo not in best or row["ndcg@10"] > best[algo]["ndcg@10"]:
            best[algo] = row
    rows += list(best.values())
    return rows


def table(label: str, rows: list[dict]) -> None:
    ours = rows[0]["train_s"]
    print(f"\n{label}\n")
    print("| model | nDCG@10 | recall@10 | coverage | train s | time vs movierec |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = r["train_s"] / ours if ours else float("nan")
        print(
            f"| {r['model']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['coverage']:.4f} "
            f"| {r['train_s']:.1f} | {ratio:.2f}x |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=Path, default=SMALL)
    ap.add_argument("--large", type=Path, help="ml-25m-size ratings.csv directory (movierec data synth)")
    ap.add_argument("--split", nargs="+", default=["random", "time"])
    ap.add_argument("--ours", type=json.loads, action="append", default=None,
                    help='extra movierec variants as JSON, e.g. \'{"dim": 128}\'')  # fmt: skip
    args = ap.parse_args()
    ours = [{}] + (args.ours or [])
    print(f"start load avg {os.getloadavg()}")
    results = {}
    if args.small and (args.small / "ratings.csv").exists():
        small = load_csv(args.small)
        for split in args.split:
            label = f"ml-latest-small ({split})"
            results[f"ml-latest-small/{split}"] = compare(label, small, split, ours, False)
    if args.large:
        large = load_csv(args.large)
        results["synthetic ml-25m/random"] = compare("synthetic ml-25m size", large, "random", ours, True)
    for label, rows in results.items():
        table(label, rows)
    print(f"\nend load avg {os.getloadavg()}")


if __name__ == "__main__":
    main()
