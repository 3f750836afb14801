"""The nightly on the real ml-latest-small, then what `--alpha` trades: topical precision vs personalisation.

    .venv/bin/python benchmarks/batch_quality_small.py [--epochs N]

Runs `nightly` (ingest, embed with the offline model, train the default CF model, batch run) into a fresh
home under benchmarks/out/, with the ten queries of ../shared/eval/queries.csv saved *without* genre
filters, then batch runs at several alphas. Per alpha: topical precision (share of recommended movies that
carry one of the query's relevant genres, mean over queries), personalisation and coverage from
`batch report`. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from pathlib import Path

from movierec.batch.queries import SavedQuery, add_query
from movierec.batch.report import report
from movierec.batch.run import run_batch
from movierec.cf import current_model
from movierec.config import Settings
from movierec.db import connect
from movierec.pipeline import nightly

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ml-latest-small"
QUERIES = ROOT.parent / "shared" / "eval" / "queries.csv"
OUT = Path(__file__).resolve().parent / "out" / "batch-quality-small"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="CF training epochs (default: the model's)")
    ap.add_argument("--alphas", default="0,0.25,0.5,1")
    ap.add_argument("--reuse", action="store_true", help="skip the nightly; reuse the previous run's home")
    args = ap.parse_args()

    settings = Settings(home=OUT, model="offline-minilm")
    with open(QUERIES, newline="") as fh:
        rows = list(csv.DictReader(fh))
    relevant = relevant_genres()
    if not (args.reuse and settings.db_path.exists()):
        shutil.rmtree(OUT, ignore_errors=True)
        with connect(settings) as con:  # no genre filters: validation needs no catalogue yet
            for i, r in enumerate(rows):
                add_query(con, SavedQuery(f"q{i:02d}", r["query"]))
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        rep = nightly(settings, DATA, train_options={"epochs": args.epochs} if args.epochs else None)
        print(f"\nnightly on ml-latest-small, load {load:.1f} at start: {time.perf_counter() - t0:.1f} s")
        print(f"  {rep.line()}\n")

    print(f"CF model objective: {current_model(settings).objective}\n")
    print("| alpha | topical precision@10 | personalisation | coverage | run s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for alpha in (float(a) for a in args.alphas.split(",")):
        precision, pers, cov, seconds = batch_quality(settings, relevant, alpha)
        print(f"| {alpha:g} | {precision:.3f} | {pers:.3f} | {cov:.4f} | {seconds:.1f} |")


def relevant_genres() -> dict[str, list[str]]:
    """Saved query name -> relevant genres, for the queries of QUERIES saved as q00, q01, ..."""
    with open(QUERIES, newline="") as fh:
        return {f"q{i:02d}": r["relevant_genres"].split("|") for i, r in enumerate(csv.DictReader(fh))}


def batch_quality(
    settings: Settings, relevant: dict[str, list[str]], alpha: float
) -> tuple[float, float, float, float]:
    """One batch run at `alpha`: topical precision@10, personalisation, coverage (means over queries), s."""
    s = run_batch(settings, alpha=alpha)
    rep = report(settings, s.run_id)
    with connect(settings, read_only=True) as con:
        con.execute("CREATE TEMP TABLE rel(query_name VARCHAR, genres VARCHAR[])")
        con.executemany("INSERT INTO rel VALUES (?, ?)", list(relevant.items()))
        precision = con.execute(
            "SELECT avg(list_has_any(l.genres, rel.genres)::INT) "
            "FROM latest_recommendations l JOIN rel USING (query_name)"
        ).fetchone()[0]
    qs = rep["queries"]
    pers = sum(q["personalisation"] for q in qs) / len(qs)
    cov = sum(q["coverage"] for q in qs) / len(qs)
    return float(precision), pers, cov, s.seconds


if __name__ == "__main__":
    main()
