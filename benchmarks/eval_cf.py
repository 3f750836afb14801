"""Offline evaluation on real MovieLens: both CF objectives against popularity and bias-only baselines.

Ingests the data set (default ../shared/data/ml-latest-small) into a scratch DuckDB with the real ingest
stage, then runs `cf.evaluate.evaluate` (what `movierec evaluate --json` prints) for each objective and
ranking split, and prints the BENCHMARKS.md table.

    .venv/bin/python benchmarks/eval_cf.py [--data DIR] [--splits random time] [--objectives implicit rating]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10", "hit@10", "coverage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-latest-small")
    ap.add_argument("--splits", nargs="+", default=["random", "time"])
    ap.add_argument("--objectives", nargs="+", default=["implicit", "rating"])
    ap.add_argument("--out", type=Path, help="Also write all reports as JSON here.")
    args = ap.parse_args()

    from movierec.cf.data import load_ratings
    from movierec.cf.evaluate import evaluate
    from movierec.cf.keras_cf import KerasCF
    from movierec.config import Settings
    from movierec.ingest.load import ingest_dir

    settings = Settings(home=Path(tempfile.mkdtemp(prefix="movierec-eval-")))
    ingest_dir(settings, args.data)
    data = load_ratings(settings)
    print(f"{args.data.name}: {len(data):,} ratings; load avg {os.getloadavg()[0]:.1f} on 2 shared cores")

    reports = {}
    for split in args.splits:
        for objective in args.objectives:
            t = time.perf_counter()
            rep = evaluate(data, lambda o=objective: KerasCF(objective=o), split=split)
            rep["seconds"] = round(time.perf_counter() - t)
            reports[f"{split}/{objective}"] = rep
            print(f"{split}/{objective}: {rep['seconds']}s {json.dumps(rep['model'])}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(reports, indent=2))

    for split in args.splits:
        print(f"\nranking split: per-user 75/25 by {split}; RMSE/MAE: random 90/10\n")
        print("| model | " + " | ".join(METRICS) + " |")
        print("| --- " * (len(METRICS) + 1) + "|")
        baselines_done = False
        for objective in args.objectives:
            rep = reports[f"{split}/{objective}"]
            rows = [(f"Keras CF, `--objective {objective}`", rep["model"])]
            if not baselines_done:
                base = rep["baselines"]
                rows += [("popularity", base["popularity"]), ("bias only", base["bias"])]
                baselines_done = True
            for name, r in rows:
                cells = " | ".join("-" if r.get(k) is None else f"{r[k]:.4f}" for k in METRICS)
                print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
