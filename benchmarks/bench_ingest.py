"""Ingest throughput at ml-25m size: `movierec ingest` into a fresh database, then the same snapshot again.

    .venv/bin/python benchmarks/bench_ingest.py [--users 162541 --movies 62423 --ratings 25000095]

The synthetic data set is generated once and cached under benchmarks/out/ (gitignored). Prints a
Markdown table for BENCHMARKS.md. The machine is shared: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path

from ingest.load import ingest_dir
from ingest.synth import synthesize
from movierec.config import Settings

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=162_541)
    ap.add_argument("--movies", type=int, default=62_423)
    ap.add_argument("--ratings", type=int, default=25_000_095)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data = OUT / f"synth-u{args.users}-m{args.movies}-r{args.ratings}-s{args.seed}"
    if not (data / "ratings.csv").exists():
        t0 = time.perf_counter()
        synthesize(data, users=args.users, movies=args.movies, ratings=args.ratings, seed=args.seed)
        print(f"generated {data.name} in {time.perf_counter() - t0:.1f} s")
    home = OUT / "bench-home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    size_mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6

    rows = []
    for label in ("fresh database", "same snapshot again (idempotent)"):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        report = ingest_dir(settings, data)  # wall time includes opening and closing (checkpoint) the DB
        rows.append((label, report, time.perf_counter() - t0, load))

    print(f"\n{dt.date.today()}, {os.cpu_count()} cores, input {size_mb:,.0f} MB\n")
    print("| run | ratings | all rows | seconds | ratings/s | all rows/s | rows written | load avg |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r, seconds, load in rows:
        total = sum(r.read.values())
        written = sum(r.new.values()) + sum(r.updated.values())
        rates = f"{r.read['ratings'] / seconds / 1e6:.2f} M | {total / seconds / 1e6:.2f} M"
        print(
            f"| {label} | {r.read['ratings']:,} | {total:,} | {seconds:.1f} | {rates} "
            f"| {written:,} | {load:.1f} |"
        )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
