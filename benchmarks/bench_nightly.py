"""`movierec nightly` at ml-25m size, two nights: from a fresh home, then with ~1% new ratings.

Night 1: a fresh home, 20 saved queries (the texts of `bench_batch.py`, without genre filters: a genre
cannot be validated before the first ingest), then `movierec nightly BASE`:
ingest, embed every movie with the default model (`--model` to choose one), a tuned full CF fit, a
20-query batch. Night 2:
`movierec nightly FULL` where FULL is BASE plus ~1% more ratings, new users and new movies
(`benchmarks/snapshots.py`): ingest, embed the new movies, an incremental CF update, the batch (users new
since the model folded in). Each night is one `movierec` process: wall time, peak RSS from
`/usr/bin/time -f %M`, stage times from its `--json` report.

    .venv/bin/python benchmarks/bench_nightly.py --full /work/data/ml-25m-like [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_batch import TEXTS
from snapshots import make_base


def product_env(home: Path, model: str | None = None) -> dict[str, str]:
    """The product's defaults (the shipped multilingual model, tags, tuning) unless --model names one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    env.update(MOVIEREC_HOME=str(home), HF_HUB_OFFLINE="1")
    if model:
        env["MOVIEREC_MODEL"] = model
    return env


def night(home: Path, data: Path, label: str, model: str | None) -> dict:
    env = product_env(home, model)
    rss = home.with_name(home.name + "-rss.txt")
    load = os.getloadavg()
    t = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss)]
        + [sys.executable, "-m", "movierec.cli", "nightly", str(data), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"{label} failed: {proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    out = {
        "night": label,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(int(rss.read_text().split()[-1]) / 1e6, 2),  # kB
        "load_start": [round(x, 2) for x in load],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "stages": report["stages"],
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", type=Path, required=True, help="movierec data synth output, ml-25m size")
    ap.add_argument("--base", type=Path, help="default: FULL-base (made from FULL when missing)")
    ap.add_argument("--home", type=Path, default=Path("/tmp/movierec-bench-nightly"))
    ap.add_argument("--model", help="embedding model (default: the product's own default)")
    args = ap.parse_args()
    base = args.base or args.full.with_name(args.full.name + "-base")
    print(make_base(args.full, base), flush=True)

    shutil.rmtree(args.home, ignore_errors=True)
    env = product_env(args.home, args.model)
    for i, text in enumerate(TEXTS):
        # No genre filters: a genre cannot be validated before the first ingest has filled the catalogue.
        cmd = [sys.executable, "-m", "movierec.cli", "queries", "add", f"q{i:02d}", text]
        subprocess.run(cmd, env=env, check=True, capture_output=True)

    rows = [
        night(args.home, base, "1: fresh home", args.model),
        night(args.home, args.full, "2: +1% ratings", args.model),
    ]
    print("\n| night | wall | peak RSS | load avg at start | " + " | ".join(
        s["stage"] for s in rows[0]["stages"]) + " |")  # fmt: skip
    print("| --- | ---: | ---: | --- |" + " ---: |" * len(rows[0]["stages"]))
    for r in rows:
        stages = " | ".join(f"{s['seconds']:.0f} s" for s in r["stages"])
        print(
            f"| {r['night']} | {r['wall_s']:.0f} s | {r['peak_rss_gb']} GB | {r['load_start']} | {stages} |"
        )
    for r in rows:
        print(f"\n{r['night']}:")
        for s in r["stages"]:
            print(f"  {s['stage']}: {s['seconds']:.1f} s ({s['note']})")


if __name__ == "__main__":
    main()
