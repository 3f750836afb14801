"""Vector store benchmark: upsert, reopen and top-250 query latency at ml-25m catalogue size.

62,423 random unit vectors of 384 dimensions (all-MiniLM-L6-v2's size; random vectors are fine for
timing) with realistic payloads (1-3 of the 19 MovieLens genres, a year) into each backend:

- `edge`: Qdrant Edge, the embedded default;
- `local`: qdrant-client's local mode (`:memory:`), the server stand-in used in tests;
- `server`: a real Qdrant server, only when QDRANT_URL is set (e.g. `docker compose up -d qdrant`).

    python benchmarks/bench_store.py [--points 62423] [--backends edge,local] [--queries 50] [--json]
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import psutil

from movierec.config import Settings
from movierec.store import SearchFilter, open_store

GENRES = [
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
DIM = 384
TOP = 250
FILTER = SearchFilter(genres=("Horror", "Thriller"), exclude_genres=("Comedy",), year_min=1990)


def make_points(n: int, seed: int = 0) -> tuple[list[int], np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = list(range(1, n + 1))
    years = rng.integers(1920, 2024, n)
    payloads = [
        {
            "movie_id": i,
            "title": f"Movie {i} ({y})",
            "year": int(y),
            "genres": sorted(set(rng.choice(GENRES, size=int(rng.integers(1, 4))).tolist())),
            "text_hash": f"{i:032x}",
        }
        for i, y in zip(ids, years, strict=True)
    ]
    return ids, vectors, payloads


def latency_ms(store, queries: np.ndarray, flt: SearchFilter | None) -> dict[str, float]:
    times = []
    for q in queries:
        started = time.perf_counter()
        hits = store.search(q, TOP, flt)
        times.append((time.perf_counter() - started) * 1000)
        assert len(hits) == TOP
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def bench(backend: str, points, n_queries: int, workdir: Path) -> dict[str, object]:
    url = {"edge": None, "local": ":memory:", "server": os.environ.get("QDRANT_URL")}[backend]
    settings = Settings(home=workdir / backend, qdrant_url=url, collection="bench_movies")
    ids, vectors, payloads = points
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    started = time.perf_counter()
    with open_store(settings) as store:
        store.reset("bench", DIM)
        store.upsert(ids, vectors, payloads)
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    with open_store(settings) as store:
        count = store.count()
        reopen_s = time.perf_counter() - started
        assert count == len(ids)
        queries = make_points(n_queries, seed=1)[1]
        store.search(queries[0], TOP)  # warm up
        unfiltered = latency_ms(store, queries, None)
        filtered = latency_ms(store, queries, FILTER)
        started = time.perf_counter()
        store.search_batch(queries[:20], [TOP] * len(queries[:20]), [FILTER] * len(queries[:20]))
        batch20_ms = (time.perf_counter() - started) * 1000
        rss_mb = (proc.memory_info().rss - rss_before) / 2**20
    return {
        "backend": backend,
        "points": len(ids),
        "upsert_s": round(upsert_s, 2),
        "upsert_points_per_s": round(len(ids) / upsert_s),
        "reopen_s": round(reopen_s, 3),
        "top250_unfiltered": unfiltered,
        "top250_filtered": filtered,
        "batch_20_filtered_ms": round(batch20_ms, 1),
        "rss_delta_mb": round(rss_mb),
        "queries": len(queries),
    }


@click.command()
@click.option("--points", "n_points", type=int, default=62_423, show_default=True)
@click.option(
    "--backends", default="edge,local", show_default=True, help="Comma-separated: edge, local, server."
)
@click.option("--queries", "n_queries", type=int, default=50, show_default=True)
@click.option("--local-queries", type=int, default=5, show_default=True, help="Queries for slow local mode.")
@click.option("--json", "as_json", is_flag=True)
def main(n_points: int, backends: str, n_queries: int, local_queries: int, as_json: bool) -> None:
    points = make_points(n_points)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for backend in backends.split(","):
            if backend == "server" and not os.environ.get("QDRANT_URL"):
                click.echo("skipping server: QDRANT_URL is not set", err=True)
                continue
            q = local_queries if backend == "local" else n_queries
            results.append(bench(backend, points, q, Path(tmp)))
            click.echo(json.dumps(results[-1]), err=True)
    if as_json:
        click.echo(json.dumps({"load_avg": os.getloadavg(), "results": results}, indent=2))
        return
    click.echo(
        f"{n_points:,} points x {DIM}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    click.echo(
        "| backend | upsert | points/s | reopen | top-250 unfiltered (median / p95) | top-250 filtered "
        "| 20 filtered, batched | RSS |"
    )
    click.echo("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        u, f = r["top250_unfiltered"], r["top250_filtered"]
        click.echo(
            f"| {r['backend']} | {r['upsert_s']} s | {r['upsert_points_per_s']:,} | {r['reopen_s']} s "
            f"| {u['median_ms']} / {u['p95_ms']} ms | {f['median_ms']} / {f['p95_ms']} ms "
            f"| {r['batch_20_filtered_ms']} ms | +{r['rss_delta_mb']} MB |"
        )


if __name__ == "__main__":
    main()
