"""Incremental update vs full retrain at ml-25m size: time and validation nDCG@10 on the same users.

Needs a home whose DuckDB holds the newer snapshot and a model directory trained on the base snapshot
(`benchmarks/snapshots.py` makes the two snapshots; `movierec ingest BASE`, `movierec train`, then
`movierec ingest FULL`). In one process, on the same ratings:

1. update: `KerasCF.update` from the base model (what `movierec train --update` runs), timed;
2. full: a fresh `KerasCF().fit` (what `movierec train` runs), timed;
3. both scored on the same validation users (the hash-chosen held-out ratings of `cf.train`, users
   known to both, `--users` of them, every movie scored, training movies excluded).

The CLI wall times (process start, TensorFlow import, save) are measured separately with /usr/bin/time.
With `--detection`, only the update's change detection is timed, both ways in turn (`--repeats` times):
from the ingest numbers (`Ratings.changed_since`; the home's ingests must have numbered the ratings) and
by comparing every pair with the base model's; both must find the same ratings.

    MOVIEREC_HOME=/work/data/home25m .venv/bin/python benchmarks/bench_cf_update.py BASE_MODEL_DIR
        [--detection [--repeats 3]]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_model", type=Path, help="model directory trained on the base snapshot")
    ap.add_argument("--users", type=int, default=20_000, help="validation users scored")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42], help="full-fit seeds (spread = noise)")
    ap.add_argument("--detection", action="store_true", help="time only the change detection, both ways")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from movierec.cf.data import index_of, load_ratings
    from movierec.cf.keras_cf import KerasCF
    from movierec.cf.recommender import Recommender
    from movierec.cf.train import UserRows, val_ndcg, val_sample, validation_mask
    from movierec.config import Settings

    settings = Settings()
    print(f"start: load avg {os.getloadavg()}", flush=True)
    data = load_ratings(settings)
    base = Recommender.load(args.base_model)
    snapshot = json.loads((args.base_model / "model.json").read_text())["data"]
    since = float(snapshot["max_rated_at"])
    hp = {**base.hp.to_dict(), "tune": False}
    if args.detection:
        detection(data, base, since, snapshot, hp, args.repeats)
        return

    t = time.perf_counter()
    upd = KerasCF(**hp)
    change = upd.update(data, base, since, progress=True, base=snapshot)
    upd_s = time.perf_counter() - t
    print(f"update: {upd_s:.1f}s {change}; load avg {os.getloadavg()}", flush=True)

    fulls = []
    for seed in args.seeds:
        t = time.perf_counter()
        full = KerasCF(seed=seed).fit(data, progress=True)
        fulls.append((seed, full, time.perf_counter() - t))
        print(f"full (seed {seed}): {fulls[-1][2]:.1f}s; load avg {os.getloadavg()}", flush=True)

    # The same validation split as training used, scored for the same users in every model.
    u, m = index_of(upd.user_ids, data.user_ids), index_of(upd.movie_ids, data.movie_ids)
    is_val = validation_mask(data.user_ids, data.movie_ids, upd.hp.val_frac, np.bincount(u)[u])
    seen = UserRows.build(u[~is_val], m[~is_val], len(upd.user_ids))
    users = val_sample(u[is_val], upd.user_ids, args.users)
    known = index_of(base.user_ids, upd.user_ids[users]) >= 0
    rows = {}
    for label, model in [("update", upd)] + [(f"full seed {s}", f) for s, f, _ in fulls]:
        assert np.array_equal(model.user_ids, upd.user_ids) and np.array_equal(model.movie_ids, upd.movie_ids)
        f = model.factors
        rows[label] = {
            "all": val_ndcg(f.user_vecs, f.movie_vecs, seen, u[is_val], m[is_val], users),
            "new users": val_ndcg(f.user_vecs, f.movie_vecs, seen, u[is_val], m[is_val], users[~known]),
        }
    print(f"\nvalidation users: {len(users):,} ({int((~known).sum())} new since the base model)")
    print("| model | seconds (in process) | val nDCG@10 | vs full | new users' val nDCG@10 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ref = rows[f"full seed {args.seeds[0]}"]["all"]
    secs = {"update": upd_s, **{f"full seed {s}": sec for s, _, sec in fulls}}
    for label, r in rows.items():
        gap = r["all"] / ref - 1
        print(f"| {label} | {secs[label]:.1f} | {r['all']:.4f} | {gap:+.1%} | {r['new users']:.4f} |")
    print(f"end: load avg {os.getloadavg()}")


def detection(data, base, since: float, snapshot: dict, hp: dict, repeats: int) -> None:
    """The update's change detection from the ingest numbers and by pair comparison, in turn."""
    from movierec.cf.keras_cf import KerasCF

    times: dict[str, list[float]] = {"ingest numbers": [], "pair comparison": []}
    found = {}
    for _ in range(repeats):
        for way, snap in (("ingest numbers", snapshot), ("pair comparison", None)):
            change = KerasCF(**{**hp, "update_iterations": 1}).update(data, base, since, base=snap)
            assert change["found"] == way, change
            times[way].append(change["found_seconds"])
            found[way] = (change["changed"], change["users"], change["movies"], change["new_users"])
            load = os.getloadavg()[0]
            print(f"{way}: {change['found_seconds']:.2f}s {found[way]}; load {load:.2f}", flush=True)
    assert found["ingest numbers"][0] >= found["pair comparison"][0], found
    for way, t in times.items():
        print(f"| {way} | {' / '.join(f'{x:.1f}' for x in t)} | median {float(np.median(t)):.1f} s |")


if __name__ == "__main__":
    main()
