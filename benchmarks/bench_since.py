"""Published lists judged by what users did next, through the product's own path (`movierec batch report`).

A MovieLens directory is cut in time: the base holds the ratings (and tags) before the `--share` quantile of
the rating timestamps. In a fresh home: `movierec ingest BASE`, the saved queries of a query file
(name,text,genres), `movierec nightly` (embed, tuned train, batch with the default blend), then one more
`movierec batch run` per extra blend; then `movierec ingest FULL` brings the later ratings, and each run's
`movierec batch report RUN --json` judges its lists by them (hit rate, precision, and one list for everyone,
the run's most-listed films per query, as the baseline). Unlike `evaluate --lists` nothing is replayed:
these are the lists the runs published.

    .venv/bin/python benchmarks/bench_since.py --data ../shared/data/ml-latest-small [--share 0.9]
        [--queries benchmarks/list_queries_small.csv] [--home DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv

HERE = Path(__file__).resolve().parent
MOVIEREC = str(Path(sys.executable).with_name("movierec"))
# (label, MOVIEREC_ALPHA, MOVIEREC_POPULARITY_WEIGHT): the default first (the nightly's run), then others.
BLENDS = [("default (a0.1 p-0.1)", None, None), ("old default (a0)", "0", "0"), ("a0.2 p-0.1", "0.2", "-0.1")]


def cut(full: Path, base: Path, share: float) -> int:
    """Write `base`: `full` with the ratings and tags from before the `share` quantile of rating times."""
    ratings = pacsv.read_csv(full / "ratings.csv")
    at = int(pc.quantile(ratings["timestamp"], q=share)[0].as_py())
    base.mkdir(parents=True)
    pacsv.write_csv(ratings.filter(pc.less(ratings["timestamp"], at)), base / "ratings.csv")
    for name in ("movies.csv", "links.csv"):
        if (full / name).exists():
            shutil.copy(full / name, base / name)
    if (full / "tags.csv").exists():
        tags = pacsv.read_csv(full / "tags.csv")
        pacsv.write_csv(tags.filter(pc.less(tags["timestamp"], at)), base / "tags.csv")
    return at


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([MOVIEREC, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"movierec {' '.join(args)} failed: {out.stderr.strip()[-800:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.9)
    ap.add_argument("--queries", type=Path, default=HERE / "list_queries_small.csv")
    ap.add_argument("--home", type=Path, help="fresh home to use (default: a temporary one)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-since-"))
    home = args.home or work / "home"
    at = cut(args.data, work / "base", args.share)
    env = {**os.environ, "MOVIEREC_HOME": str(home), "MOVIEREC_KEEP_RUNS": str(len(BLENDS) + 1)}
    t0 = time.perf_counter()
    cli(env, "ingest", str(work / "base"), "--quiet")
    with open(args.queries, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            genres = [a for g in (row.get("genres") or "").split("|") if g for a in ("--genre", g)]
            cli(env, "queries", "add", row["name"], row["text"], *genres)
    runs = []
    for i, (label, alpha, pop) in enumerate(BLENDS):
        blend = {**env}
        if alpha is not None:
            blend |= {"MOVIEREC_ALPHA": alpha, "MOVIEREC_POPULARITY_WEIGHT": pop}
        rep = json.loads(cli(blend, *(["nightly"] if i == 0 else ["batch", "run"]), "--json", "--quiet"))
        runs.append((label, rep["run_id"]))
    cli(env, "ingest", str(args.data), "--quiet")
    print(f"{args.data}: cut at {time.strftime('%Y-%m-%d', time.gmtime(at))} (share {args.share}); "
          f"{time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("\n| run (blend) | users active since | hit rate | same list for everyone | precision |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, run_id in runs:
        rep = json.loads(cli(env, "batch", "report", str(run_id), "--json"))
        qs = [q for q in rep["queries"] if q["active_since"]]
        n = sum(q["active_since"] for q in qs)

        def mean(key: str, qs: list = qs, n: int = n) -> float:
            return sum(q[key] * q["active_since"] for q in qs) / n if n else float("nan")

        print(f"| {run_id} ({label}) | {n} | {mean('hit_rate_since'):.4f} | "
              f"{mean('same_list_hit_rate_since'):.4f} | {mean('precision_since'):.4f} |")  # fmt: skip
        if label == BLENDS[0][0]:
            since = rep["since"]
            per = "; ".join(f"{q['query']} {q['hit_rate_since']}/{q['same_list_hit_rate_since']}" for q in qs)
            print(f"<!-- since: {since['ratings']} ratings by {since['users']} users in {since['ingests']} "
                  f"ingest(s); hit rate / same list per query: {per} -->")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
