"""Ingest throughput at ml-25m size: `movierec ingest` into a fresh database, then the same snapshot again.

    .venv/bin/python benchmarks/bench_ingest.py [--users 162541 --movies 62423 --ratings 25000095]
                                                [--compare-primary-key]

The synthetic data set is generated once and cached under benchmarks/out/ (gitignored). Prints a
Markdown table for BENCHMARKS.md. The machine is shared: the load average (1 min) before each run and the
process's CPU time are printed with the wall times, so contention can be told from work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from movierec.config import Settings
from movierec.ingest.load import ingest_dir
from movierec.ingest.synth import synthesize

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=162_541)
    ap.add_argument("--movies", type=int, default=62_423)
    ap.add_argument("--ratings", type=int, default=25_000_095)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare-primary-key", action="store_true", help="also time ratings with a PRIMARY KEY")
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

    newer = _newer_snapshot(data)
    rows = []
    runs = [f"fresh database, run {i}" for i in (1, 2, 3)] + [
        "same snapshot again (idempotent)",
        "newer snapshot: 1% of ratings changed",
    ]
    for label in runs:
        if label.startswith("fresh"):
            shutil.rmtree(home, ignore_errors=True)
        load = os.getloadavg()[0]
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        # Wall time includes opening and closing (checkpoint) the database.
        report = ingest_dir(settings, newer if label.startswith("newer") else data)
        rows.append((label, report, time.perf_counter() - t0, _cpu_seconds() - cpu0, load))

    print(f"\n{dt.date.today()}, {os.cpu_count()} cores, input {size_mb:,.0f} MB\n")
    print("| run | ratings | all rows | seconds | ratings/s | all rows/s | rows written | CPU s | load avg |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r, seconds, cpu, load in rows:
        total = sum(r.read.values())
        written = sum(r.new.values()) + sum(r.updated.values())
        rates = f"{r.read['ratings'] / seconds / 1e6:.2f} M | {total / seconds / 1e6:.2f} M"
        print(
            f"| {label} | {r.read['ratings']:,} | {total:,} | {seconds:.1f} | {rates} "
            f"| {written:,} | {cpu:.1f} | {load:.1f} |"
        )
    shutil.rmtree(home, ignore_errors=True)
    if args.compare_primary_key:
        compare_primary_key(data)


def _newer_snapshot(data: Path) -> Path:
    """A copy of `data` where every 100th rating is changed (r -> 5.5 - r), as a later release would."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    newer = data.with_name(data.name + "-newer")
    if (newer / "ratings.csv").exists():
        return newer
    newer.mkdir(parents=True, exist_ok=True)
    for name in ("movies.csv", "tags.csv"):
        shutil.copy(data / name, newer / name)
    table = pacsv.read_csv(data / "ratings.csv")
    every_100th = pa.array(np.arange(table.num_rows) % 100 == 0)
    rating = pc.if_else(every_100th, pc.subtract(5.5, table["rating"]), table["rating"])
    table = table.set_column(2, "rating", rating)
    pacsv.write_csv(table, newer / "ratings.csv", pacsv.WriteOptions(quoting_header="none"))
    return newer


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work done, whatever the contention."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def compare_primary_key(data: Path) -> None:
    """Why `ratings` has no PRIMARY KEY: the same Arrow insert into a table with and without one."""
    import duckdb

    from movierec.ingest.formats import detect, read_arrow

    table = read_arrow(detect(data), "ratings")
    print("\n| ratings DDL | insert + commit, s |\n| --- | ---: |")
    for label, key in (
        ("no key (ours)", ""),
        ("PRIMARY KEY (user_id, movie_id)", ", PRIMARY KEY (user_id, movie_id)"),
    ):
        path = OUT / "pk-compare.duckdb"
        path.unlink(missing_ok=True)
        con = duckdb.connect(str(path))
        con.execute("SET enable_progress_bar = false")
        con.execute(
            "CREATE TABLE ratings(user_id INTEGER NOT NULL, movie_id INTEGER NOT NULL, "
            f"rating FLOAT NOT NULL, rated_at TIMESTAMP{key})"
        )
        con.register("arrow_ratings", table)
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.execute("INSERT INTO ratings SELECT * FROM arrow_ratings")
        con.execute("COMMIT")
        print(f"| {label} | {time.perf_counter() - t0:.1f} |")
        con.close()
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
