"""Cold latency of `movierec search` and `movierec recommend` on ml-latest-small, and where the time goes.

    .venv/bin/python benchmarks/batch_quality_small.py       # first: a home with movies, vectors, CF model
    .venv/bin/python benchmarks/bench_query_latency.py [--runs 3]

Each command runs as a fresh process (nothing cached in memory; the OS file cache is warm after the
first run, as on any machine that ran the command before). Two query paths: the model's ONNX export
that `movierec embed` leaves under HOME/encoders (the default), and sentence-transformers (the export
moved aside for the measurement, then put back). Then the steps of one cold search, timed in a fresh
process each. Shares the CPU with whatever else runs: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from batch_quality_small import OUT

EXE = str(Path(sys.executable).with_name("movierec"))
TEXT = "films about the second world war"

# One cold search, step by step, in a fresh interpreter (printed as JSON).
STEPS = r"""
import json, sys, time
t = time.perf_counter(); out = {}
def lap(name):
    global t
    now = time.perf_counter(); out[name] = round(now - t, 3); t = now
import numpy
from movierec.config import Settings
from movierec.db import connect
from movierec.store import open_store
from movierec.ingest.search import validate_filter
lap("import movierec, numpy, duckdb, qdrant-edge")
settings = Settings(home=sys.argv[1], model="offline-minilm")
with connect(settings, read_only=True) as con:
    validate_filter(con, None)
lap("DuckDB open + read")
with open_store(settings) as store:
    store.require_model(settings.model)
lap("store open + model check")
if sys.argv[2] == "onnx":
    import onnxruntime, tokenizers
    lap("import onnxruntime + tokenizers")
    from movierec.embedder import _onnx_encoder, query_encoder_dir
    _onnx_encoder(query_encoder_dir(settings.home, settings.model))
    lap("load ONNX model + tokenizer")
    from movierec.embedder import encode_queries
    v = encode_queries(settings.model, [sys.argv[3]], settings.home)[0]
    lap("encode the query")
else:
    import sentence_transformers
    lap("import sentence-transformers (torch, transformers, scikit-learn, scipy)")
    from movierec.embedder import encode, load_model
    model = load_model(settings.model)
    lap("load the model")
    v = encode(model, [sys.argv[3]])[0]
    lap("encode the query")
with open_store(settings) as store:
    store.search(v, 10)
lap("store open + search top 10")
print(json.dumps(out))
"""


def cold(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([EXE, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    home = OUT
    encoders = home / "encoders"
    if not (home / "movierec.duckdb").exists() or not encoders.is_dir():
        raise SystemExit(f"run benchmarks/batch_quality_small.py (and `movierec embed`) first: {home}")
    env_home = ["--home", str(home), "--model", "offline-minilm"]
    commands = {
        "movierec search": ["search", TEXT, *env_home],
        "movierec recommend": ["recommend", "1", TEXT, *env_home],
    }
    print(f"load average at start {os.getloadavg()[0]:.1f}\n")
    print(f"| command | ONNX export (default), median of {args.runs} | sentence-transformers |")
    print("| --- | ---: | ---: |")
    aside = home / "encoders.aside"
    for name, cmd in commands.items():
        fast = cold(cmd, args.runs)
        os.replace(encoders, aside)
        try:
            slow = cold(cmd, args.runs)
        finally:
            os.replace(aside, encoders)
        print(f"| `{name}` | {fast:.2f} s | {slow:.2f} s |", flush=True)
    print(f"\nload average after the commands {os.getloadavg()[0]:.1f}\n")
    for mode in ("onnx", "sentence-transformers"):
        code = subprocess.run(
            [sys.executable, "-c", STEPS, str(home), mode, TEXT], capture_output=True, text=True, check=True
        )
        steps = json.loads(code.stdout.strip().splitlines()[-1])
        print(f"one cold search through {mode}, total {sum(steps.values()):.2f} s:")
        for step, seconds in steps.items():
            print(f"  {seconds:6.2f} s  {step}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
