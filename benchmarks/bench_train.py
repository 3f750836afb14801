"""Training speed of the rating objective (`--objective rating`, SGD) at ml-25m size: samples/s and seconds
per epoch. (The default implicit objective is fitted by ALS; its full fit at this size is timed end to end
with `movierec train`, see BENCHMARKS.md.)

Data: the synthetic generator (ingest/synth.py) at ml-25m shape: 25,000,095 ratings, 162,541 users,
62,423 movies. The embedding tables are full size (what makes stock Adam slow); the timed epoch runs over
the first `--samples` ratings (default 2.5M, a tenth of an epoch) through the production training path
(`cf.train.fit_rating`: PyDataset, LazyAdam, validation) and is extrapolated linearly to a full epoch. Stock
Keras Adam is timed on a few hundred thousand samples for comparison.

    .venv/bin/python benchmarks/bench_train.py [--samples 2500000] [--data DIR] [--skip-adam]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv

ML25M = {"users": 162_541, "movies": 62_423, "ratings": 25_000_095}


def load_synthetic(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from movierec.ingest.synth import synthesize

    if not (directory / "ratings.csv").exists():
        t = time.perf_counter()
        synthesize(directory, seed=0, tags=0, **ML25M)
        print(f"synthesized ml-25m-sized data in {time.perf_counter() - t:.0f}s", flush=True)
    table = pacsv.read_csv(directory / "ratings.csv")
    users = table["userId"].to_numpy()
    movies = table["movieId"].to_numpy()
    ratings = table["rating"].to_numpy().astype(np.float32)
    return users, movies, ratings


def time_production(u, m, r, n_users, n_movies, objective: str, samples: int, batch: int | None) -> dict:
    from movierec.cf.train import HyperParams, fit_rating

    hp = HyperParams(objective=objective, epochs=1, batch_size=batch, val_frac=0.01)
    _, hist = fit_rating(u[:samples], m[:samples], r[:samples], n_users, n_movies, hp, (0.5, 5.0))
    per_s = hist.samples_per_epoch / hist.seconds[0]
    full = ML25M["ratings"]
    return {
        "optimizer": "LazyAdam (cf.keras_model)",
        "objective": objective,
        "batch_size": hist.batch_size,
        "timed_samples": hist.samples_per_epoch,
        "seconds": round(hist.seconds[0], 1),
        "samples_per_s": round(per_s),
        "epoch_samples": full,
        "extrapolated_s_per_epoch": round(full / per_s),
    }


def time_stock_adam(u, m, n_users, n_movies, samples: int, batch: int) -> dict:
    import keras

    from movierec.cf.keras_model import build

    model = build(n_users, n_movies, 128, 0.0, 1e-3, 0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    x = np.stack([u[:samples], m[:samples]], axis=1).astype(np.int32)
    y = np.random.default_rng(0).random(samples).astype(np.float32)
    model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # trace outside the timing
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    return {
        "optimizer": "keras.optimizers.Adam (stock)",
        "objective": "rating",
        "batch_size": batch,
        "timed_samples": samples,
        "seconds": round(dt, 1),
        "samples_per_s": round(samples / dt),
        "epoch_samples": ML25M["ratings"],
        "extrapolated_s_per_epoch": round(ML25M["ratings"] / (samples / dt)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "movierec-synth-ml25m")
    ap.add_argument("--samples", type=int, default=2_500_000)
    ap.add_argument("--adam-samples", type=int, default=300_000)
    ap.add_argument("--skip-adam", action="store_true")
    args = ap.parse_args()

    users, movies, ratings = load_synthetic(args.data)
    uid, u = np.unique(users, return_inverse=True)
    mid, m = np.unique(movies, return_inverse=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(u))  # a random sample of ratings, not the first users only
    u, m, r = u[order], m[order], ratings[order]
    print(f"{len(u):,} ratings, {len(uid):,} users, {len(mid):,} movies; load avg {os.getloadavg()[0]:.1f}")

    rows = []
    rows.append(time_production(u, m, r, len(uid), len(mid), "rating", args.samples, 32768))
    print(json.dumps(rows[-1]), flush=True)
    if not args.skip_adam:
        rows.append(time_stock_adam(u, m, len(uid), len(mid), args.adam_samples, 32768))
        print(json.dumps(rows[-1]), flush=True)
        # Smaller batches, closer to the reference design: here the dense updates dominate.
        rows.append(time_production(u, m, r, len(uid), len(mid), "rating", args.adam_samples, 4096))
        print(json.dumps(rows[-1]), flush=True)
        rows.append(time_stock_adam(u, m, len(uid), len(mid), args.adam_samples // 3, 4096))
        print(json.dumps(rows[-1]), flush=True)
    print(f"load avg after: {os.getloadavg()[0]:.1f} (2 cores; other engineers share the machine)")
    print("\n| optimizer | objective | batch | samples/s | s per ml-25m epoch (extrapolated) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['optimizer']} | {row['objective']} | {row['batch_size']:,} | {row['samples_per_s']:,} "
            f"| {row['extrapolated_s_per_epoch']:,} s ({row['epoch_samples']:,} samples) |"
        )


if __name__ == "__main__":
    main()
