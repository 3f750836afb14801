"""Whole `movierec train` process against a whole `implicit` ALS process, at equal work, side by side.

Both sides start a fresh Python process (imports included) and fit the same ratings with the same work:
64 factors, 10 ALS sweeps, reg 30 on movierec's side / regularization 30 on implicit's (the solver work per
sweep does not depend on the value), 3 CG steps on both (implicit's default), 2 threads on both (movierec's
ALS uses 2 worker threads with one BLAS thread each; implicit gets `num_threads=2` and one BLAS thread, as
its docs advise). movierec reads the ratings from its DuckDB and saves a model version (what a user waits
for); implicit reads ratings.csv with pyarrow and keeps its factors in memory (it has no model store), so
this favours implicit. Rows run interleaved, `--pairs` times; the load average is printed beside each.

movierec runs `movierec train --no-tune` (the issue's "no tuning" comparison) and, unless `--no-tuned`,
plain `movierec train` (tuning included) too.

    .venv/bin/python benchmarks/bench_train_whole.py [--data ../shared/data/ml-latest-small] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"
EXE = Path(sys.executable).parent / "movierec"

IMPLICIT = """
import sys, time
t0 = time.perf_counter()
import numpy as np, pyarrow.csv as pacsv, scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits
t = pacsv.read_csv(sys.argv[1] + "/ratings.csv")
u, m = t["userId"].to_numpy(), t["movieId"].to_numpy()
r = t["rating"].to_numpy().astype(np.float32)
uid, ui = np.unique(u, return_inverse=True)
mid, mi = np.unique(m, return_inverse=True)
x = sp.csr_matrix((r, (ui, mi)), shape=(len(uid), len(mid)))
t1 = time.perf_counter()
model = AlternatingLeastSquares(factors=64, iterations=10, regularization=30.0, num_threads=2, random_state=0)
with threadpool_limits(1, "blas"):
    model.fit(x, show_progress=False)
print(t1 - t0, time.perf_counter() - t1)
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SMALL, help="a MovieLens directory with ratings.csv")
    ap.add_argument("--home", type=Path, help="an existing home with the data ingested (else a temp one)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--no-tuned", action="store_true", help="skip the tuned `movierec train` row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        env = {**os.environ, "MOVIEREC_HOME": str(home)}
        if args.home is None:
            s, _ = timed([str(EXE), "ingest", str(args.data), "--quiet"], env)
            print(f"ingested {args.data} in {s:.1f}s", flush=True)
        rows: dict[str, list[float]] = {"implicit": [], "movierec --no-tune": [], "movierec (tuned)": []}
        fit_only = []
        for i in range(args.pairs):
            load = os.getloadavg()[0]
            s, out = timed([sys.executable, "-c", IMPLICIT, str(args.data)], env)
            prep, fit = (float(x) for x in out.split())
            rows["implicit"].append(s)
            fit_only.append(fit)
            same = ["--no-tune", "--dim", "64", "--iterations", "10", "--reg", "30", "--json", "--quiet"]
            s2, out2 = timed([str(EXE), "train", *same], env)
            rows["movierec --no-tune"].append(s2)
            m = json.loads(out2)["metrics"]
            line = (
                f"pair {i + 1}: load {load:.1f}; implicit whole {s:.1f}s (import+read {prep:.1f}s, "
                f"fit {fit:.1f}s);"
                f" movierec --no-tune whole {s2:.1f}s (fit {m['train_seconds']:.1f}s)"
            )
            if not args.no_tuned:
                s3, out3 = timed([str(EXE), "train", "--json", "--quiet"], env)
                rows["movierec (tuned)"].append(s3)
                line += f"; movierec tuned whole {s3:.1f}s"
            print(line, flush=True)
        print(f"\nload average at the end {os.getloadavg()}\n")
        base = sorted(rows["implicit"])[len(rows["implicit"]) // 2]
        print("| process (64 factors, 10 sweeps, 2 threads) | median whole process s | vs implicit |")
        print("| --- | ---: | ---: |")
        for name, xs in rows.items():
            if xs:
                med = sorted(xs)[len(xs) // 2]
                print(f"| {name} | {med:.2f} | {med / base:.2f}x |")
        print(f"\nimplicit fit alone, median {sorted(fit_only)[len(fit_only) // 2]:.2f}s")


if __name__ == "__main__":
    main()
