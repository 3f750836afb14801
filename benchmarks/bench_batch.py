"""The nightly batch at ml-25m scale: `movierec batch run` over 20 saved queries x every user.

    .venv/bin/python benchmarks/bench_batch.py [--users 162541 --movies 62423 --ratings 25000095]
                                               [--queries 20 --candidates 250 --top-n 10 --sample 40]
                                               [--engine local|ray [--ray-address ADDR]] [--reuse]
                                               [--before PYTHONPATH [--repeat 2]] [--because-ab]
                                               [--alpha-ab]

Set-up (not timed, excluded by the issue): the synthetic MovieLens-shaped data set (cached under
benchmarks/out/, shared with bench_ingest.py) is ingested into a fresh database; the vector store gets one
random unit vector per movie (384-d, the offline model's size) with the real genre/year payloads; the CF
model is random factors of dim 128, registered as the current model. Ratings, seen filtering and
everything the batch does are real: the run is `movierec batch run` in a subprocess, whose wall time and
peak RSS are measured. The reference approach (one Keras `predict` per user over its candidates) is timed
on a sample of users with the real Keras CF model and extrapolated. Prints a Markdown table.

With `--engine ray` the same run is made twice on the same set-up, first with the local engine, then with
`--engine ray` (a local Ray cluster of this machine's cores, started by the run): the table gives both wall
times and their ratio (the engine's overhead), the time per user-query list per core inside the Ray tasks,
and what stays on the driver (encode, candidate fetch, reads, object store puts, publish). No Keras
reference then.

With `--before PYTHONPATH` (another version of movierec installed there, e.g.
`pip install --no-deps --target DIR <wheel of the old commit>`), the same set-up is run alternately by that
version and by this one (`--repeat` times each, interleaved so both see the same load): wall time, peak RSS
(`/usr/bin/time -f %M`) and the scoring step of each.

With `--because-ab`, the same code and set-up run alternately with `MOVIEREC_BECAUSE=false` and with the
default (`--repeat` times each): what publishing "because you liked" costs the whole command, in one run.
`--alpha-ab` does the same with `MOVIEREC_ALPHA=0` (the CF order alone) and 0.2 (the default since the list
evaluation chose it): what the similarity blend costs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
TEXTS = [
    "horror films with zombies",
    "feel-good family comedy",
    "space adventure",
    "heist thriller",
    "romantic comedy in Paris",
    "war drama",
    "animated fairy tale",
    "detective mystery",
    "western showdown",
    "coming of age drama",
    "superhero action",
    "musical romance",
    "true crime documentary",
    "haunted house",
    "time travel science fiction",
    "sports underdog story",
    "spy thriller",
    "dark fantasy epic",
    "road trip comedy",
    "courtroom drama",
]


def _setup(args: argparse.Namespace, home: Path) -> None:
    from movierec.batch.queries import SavedQuery, add_query
    from movierec.catalog import Seen
    from movierec.cf import KerasCF, save_model
    from movierec.cf.factors import Factors
    from movierec.config import Settings
    from movierec.db import connect
    from movierec.ingest.load import ingest_dir
    from movierec.ingest.synth import synthesize
    from movierec.store import open_store

    data = OUT / f"synth-u{args.users}-m{args.movies}-r{args.ratings}-s0"
    if not (data / "ratings.csv").exists():
        t0 = time.perf_counter()
        synthesize(data, users=args.users, movies=args.movies, ratings=args.ratings, seed=0)
        print(f"generated {data.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    settings = Settings(home=home, model="offline-minilm")
    t0 = time.perf_counter()
    ingest_dir(settings, data)
    print(f"ingested in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    with connect(settings, read_only=True) as con:
        movies = con.execute("SELECT movie_id, title, year, genres FROM movies ORDER BY movie_id").fetchall()
        users = con.execute("SELECT DISTINCT user_id FROM ratings ORDER BY 1").fetchnumpy()["user_id"]
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(movies), 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with open_store(settings) as store:
        store.reset("offline-minilm", 384)
        payloads = [{"movie_id": m, "title": t, "year": y, "genres": list(g)} for m, t, y, g in movies]
        store.upsert([m[0] for m in movies], vecs, payloads)

    dim = 128
    movie_ids = np.array([m[0] for m in movies], dtype=np.int64)
    factors = Factors(
        user_ids=np.asarray(users, dtype=np.int64),
        movie_ids=movie_ids,
        user_vecs=(rng.standard_normal((len(users), dim)) * 0.1).astype(np.float32),
        movie_vecs=(rng.standard_normal((len(movie_ids), dim)) * 0.1).astype(np.float32),
        user_bias=(rng.standard_normal(len(users)) * 0.1).astype(np.float32),
        movie_bias=(rng.standard_normal(len(movie_ids)) * 0.1).astype(np.float32),
        objective="rating",
    )
    with connect(settings, read_only=True) as con:
        rated = con.execute("SELECT user_id, movie_id FROM ratings").fetchnumpy()
    seen = Seen.from_pairs(rated["user_id"], rated["movie_id"])
    save_model(settings, KerasCF.from_factors(factors, seen), snapshot={"n_ratings": len(seen)})
    with connect(settings) as con:
        for i in range(args.queries):
            genres = (GENRES[i % len(GENRES)],) if i % 4 != 3 else ()  # most queries filter by genre
            add_query(con, SavedQuery(f"q{i:02d}", TEXTS[i % len(TEXTS)], genres=genres,
                                      candidates=args.candidates, top_n=args.top_n))  # fmt: skip


def _keras_reference(args: argparse.Namespace, n_users: int, n_movies: int) -> float:
    """Seconds per user of the reference: one model.predict over the user's candidates."""
    import tensorflow as tf

    from movierec.cf.keras_model import build

    model = build(n_users, n_movies, dim=128, l2=1e-6, lr=1e-3, seed=0)
    rng = np.random.default_rng(1)
    calls = []
    for u in rng.integers(0, n_users, args.sample + 3):
        pairs = np.stack([np.full(args.candidates, u), rng.integers(0, n_movies, args.candidates)], axis=1)
        t0 = time.perf_counter()
        model.predict(tf.constant(pairs, dtype=tf.int32), verbose=0)
        calls.append(time.perf_counter() - t0)
    return float(np.median(calls[3:]))  # the first calls build the predict function


def _matmul_gflops(n_users: int, dim: int, k: int, block: int) -> float:
    rng = np.random.default_rng(2)
    u = rng.standard_normal((n_users, dim)).astype(np.float32)
    m = np.ascontiguousarray(rng.standard_normal((k, dim)).astype(np.float32).T)
    t0 = time.perf_counter()
    for s in range(0, n_users, block):
        _ = u[s : s + block] @ m
    return 2.0 * n_users * dim * k / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=162_541)
    ap.add_argument("--movies", type=int, default=62_423)
    ap.add_argument("--ratings", type=int, default=25_000_095)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=250)
    ap.add_argument("--top-n", type=int, default=10)
    ap.add_argument("--sample", type=int, default=40, help="users timed for the Keras reference")
    ap.add_argument("--reuse", action="store_true", help="reuse the set-up of the previous run")
    ap.add_argument("--engine", choices=["local", "ray"], default="local")
    ap.add_argument("--shard-users", type=int, help="users per Ray task (MOVIEREC_RAY_SHARD_USERS)")
    ap.add_argument("--ray-address", help="join this running cluster instead of starting one per run")
    ap.add_argument("--before", help="PYTHONPATH of another movierec version to compare with, same set-up")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each side with --before / --*-ab")
    ap.add_argument("--because-ab", action="store_true", help="runs without and with 'because you liked'")
    ap.add_argument("--alpha-ab", action="store_true", help="runs at alpha 0 and at 0.2")
    args = ap.parse_args()

    home = OUT / "bench-batch-home"
    if not (args.reuse and (home / "movierec.duckdb").exists()):
        shutil.rmtree(home, ignore_errors=True)
        _setup(args, home)

    env = {
        **os.environ,
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_MODEL": "offline-minilm",
        "HF_HUB_OFFLINE": "1",
    }
    if args.shard_users:
        env["MOVIEREC_RAY_SHARD_USERS"] = str(args.shard_users)
    if args.ray_address:
        env["MOVIEREC_RAY_ADDRESS"] = args.ray_address
        env.setdefault("RAY_AUTH_MODE", "token")  # `ray start` clusters use token authentication
    if args.engine == "ray":
        _compare_engines(env)
        return
    if args.before:
        _before_after(env, args.before, args.repeat)
        return
    if args.because_ab:
        _ab(env, args.repeat, "MOVIEREC_BECAUSE", ("false", "true"), "because adds")
        return
    if args.alpha_ab:
        _ab(env, args.repeat, "MOVIEREC_ALPHA", ("0", "0.2"), "the similarity blend (alpha 0.2) adds")
        return
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "batch", "run", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"batch run failed: {proc.stderr[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_gb = usage.ru_maxrss / 1e6  # kB on Linux
    cpu_s = usage.ru_utime + usage.ru_stime
    s = json.loads(proc.stdout)
    lists = s["n_users"] * s["n_queries"]

    per_user = _keras_reference(args, args.users, args.movies)
    reference = per_user * lists
    matmul = _matmul_gflops(args.users, 128, args.candidates, 4096)

    print(f"\n{dt.date.today()}, {os.cpu_count()} cores, load average {load:.1f} at start (shared machine)\n")
    print("| measure | value |")
    print("| --- | ---: |")
    rows = [
        ("users x queries (lists)", f"{s['n_users']:,} x {s['n_queries']} = {lists:,}"),
        ("rows published", f"{s['n_rows']:,}"),
        ("batch run wall time, whole command (s)", f"{wall:.1f}"),
        ("of which inside run_batch (s)", f"{s['seconds']:.1f}"),
        ("CPU time of the batch process, user + system (s)", f"{cpu_s:.1f}"),
        ("peak RSS of the batch process (GB)", f"{peak_gb:.2f}"),
        ("lists/s", f"{lists / wall:,.0f}"),
        ("lock window: readers locked out during publish (s)", f"{s['lock_seconds']:.2f}"),
        ("scoring step: time (s)", f"{s['scoring_seconds']:.1f}"),
        ("scoring step: effective GFLOP/s (matmul FLOPs / whole step)", f"{s['scoring_gflops']:.1f}"),
        ("scoring step: the matrix products alone, inside the batch (GFLOP/s)", f"{s['matmul_gflops']:.1f}"),
        ("numpy matmul alone, same shapes, right after (GFLOP/s)", f"{matmul:.1f}"),
        (f"reference: one Keras predict per user ({args.sample} users, median ms)", f"{per_user * 1e3:.1f}"),
        ("reference extrapolated to all lists (h)", f"{reference / 3600:.1f}"),
        ("speed-up vs reference", f"{reference / wall:,.0f}x"),
    ]
    rows += [(f"step: {name} (s)", f"{sec:.1f}") for name, sec in s["stages"].items()]
    # Issue 18's budget, measured inside the same run: reading liked films + finding the nearest one.
    explain = sum(v for k, v in s["stages"].items() if k.startswith("because you liked"))
    rows.append(("because you liked: added time (s; share of the run without it)",
                 f"{explain:.1f} ({explain / max(s['seconds'] - explain, 1e-9):.0%})"))  # fmt: skip
    for name, value in rows:
        print(f"| {name} | {value} |")


def _run(env: dict[str, str], engine: str) -> tuple[float, float, dict]:
    """One `movierec batch run --engine ENGINE` subprocess: (wall s, load average at start, summary)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "batch", "run", "--json", "--quiet", "--engine", engine],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"batch run --engine {engine} failed: {proc.stderr[-2000:]}")
    return wall, load, json.loads(proc.stdout)


def _timed(env: dict[str, str]) -> tuple[float, float, float, dict]:
    """One `movierec batch run` subprocess: (wall s, peak RSS GB, load average at start, summary)."""
    rss = OUT / "bench-batch-rss.txt"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss), sys.executable, "-m", "movierec.cli", "batch", "run",
           "--json", "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/")
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"batch run failed: {proc.stderr[-2000:]}")
    return wall, int(rss.read_text().split()[-1]) / 1e6, load, json.loads(proc.stdout)


def _before_after(env: dict[str, str], before: str, repeat: int) -> None:
    versions = {
        # alpha 0 on both sides: versions before 0.2 became the default ranked at 0 (and ignore the setting)
        "before": {**env, "PYTHONPATH": before, "MOVIEREC_ALPHA": "0"},
        "after": {**{k: v for k, v in env.items() if k != "PYTHONPATH"}, "MOVIEREC_ALPHA": "0"},
    }
    print(f"\n{dt.date.today()}, {os.cpu_count()} cores, shared machine; before = PYTHONPATH {before}\n")
    print("| run | version | wall (s) | peak RSS (GB) | scoring step (s) | rows | load avg at start |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for i in range(repeat):
        for name, version_env in versions.items():
            wall, rss, load, s = _timed(version_env)
            scoring, rows = s["scoring_seconds"], s["n_rows"]
            cells = [i + 1, name, f"{wall:.1f}", f"{rss:.2f}", f"{scoring:.1f}", f"{rows:,}", f"{load:.1f}"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def _ab(env: dict[str, str], repeat: int, var: str, values: tuple[str, str], what: str) -> None:
    """Whole `batch run` processes with `var` at each of two values, interleaved (same load)."""
    print(f"\n{dt.date.today()}, {os.cpu_count()} cores; same code, {var}={values[0]} / {values[1]}\n")
    print(f"| run | {var} | wall (s) | peak RSS (GB) | in run_batch (s) | scoring step (s) "
          "| because stages (s) | load avg |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    walls: dict[str, list[float]] = {v: [] for v in values}
    for i in range(repeat):
        for value in values:
            wall, rss, load, s = _timed({**env, var: value})
            walls[value].append(wall)
            explain = sum(v for k, v in s["stages"].items() if k.startswith("because you liked"))
            cells = [i + 1, value, f"{wall:.1f}", f"{rss:.2f}", f"{s['seconds']:.1f}",
                     f"{s['scoring_seconds']:.1f}", f"{explain:.1f}", f"{load:.1f}"]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    a, b = (float(np.median(walls[v])) for v in values)
    print(f"\nmedian whole process: {values[0]} {a:.1f} s, {values[1]} {b:.1f} s: {what} {b / a - 1:+.0%}")


def _compare_engines(env: dict[str, str]) -> None:
    local_wall, local_load, local = _run(env, "local")
    ray_wall, ray_load, ray = _run(env, "ray")
    lists = ray["n_users"] * ray["n_queries"]
    assert local["n_rows"] == ray["n_rows"], (local["n_rows"], ray["n_rows"])
    task_s = sum(q["seconds"] + q["write_seconds"] for q in ray["queries"])  # one core per task
    rank_s = sum(q["seconds"] for q in ray["queries"])
    st = ray["stages"]
    tasks = st.get("ray: tasks (score, write parts)", 0.0)
    driver = ray["seconds"] - tasks  # everything the driver does alone, Ray start-up included
    startup = st.get("start or join Ray", 0.0)
    address = env.get("MOVIEREC_RAY_ADDRESS")
    where = f"joining the Ray cluster at {address}" if address else "a local Ray cluster started by the run"
    print(
        f"\n{dt.date.today()}, {os.cpu_count()} cores ({where}), load average "
        f"{local_load:.1f} before the local run, {ray_load:.1f} before the Ray run (shared machine)\n"
    )
    print("| measure | value |")
    print("| --- | ---: |")
    rows = [
        ("users x queries (lists)", f"{ray['n_users']:,} x {ray['n_queries']} = {lists:,}"),
        ("rows published (both engines)", f"{ray['n_rows']:,}"),
        ("local engine: wall time of `batch run` (s)", f"{local_wall:.1f}"),
        ("ray engine: wall time of `batch run --engine ray` (s)", f"{ray_wall:.1f}"),
        ("ratio ray / local", f"{ray_wall / local_wall:.2f}"),
        ("ray: inside run_batch (s)", f"{ray['seconds']:.1f}"),
        ("ray: tasks step, wall (s)", f"{tasks:.1f}"),
        ("ray: task time summed over tasks, rank + write (core-s)", f"{task_s:.1f}"),
        ("ray: of which ranking (core-s)", f"{rank_s:.1f}"),
        ("ray: time per list per core, rank + write (us)", f"{task_s / lists * 1e6:.2f}"),
        ("ray: driver alone: everything but the tasks step (s)", f"{driver:.1f}"),
        ("ray: of which starting (or joining) the Ray cluster (s)", f"{startup:.1f}"),
        ("local: score + write one Parquet file (s)", f"{local['stages']['score and write Parquet']:.1f}"),
        ("lock window, ray run (s)", f"{ray['lock_seconds']:.2f}"),
    ]
    rows += [(f"ray step: {name} (s)", f"{sec:.1f}") for name, sec in st.items()]
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
