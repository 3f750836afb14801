"""Search quality: genre precision@10 on the development queries and on the held-out queries.

For each query, the share of the top 10 movies (no filters) whose genres include one of the query's
relevant genres; the mean over queries is the headline number. Two query sets:
- development: ../shared/eval/queries.csv (10 queries; the movie-text recipe was chosen on these);
- held-out: benchmarks/queries_heldout.csv (48 English queries about kinds of film, moods, audiences and
  eras, most without the genre's own word; committed before any tuning and never tuned on).
Needs an ingested and embedded MOVIEREC_HOME:

    movierec ingest ../shared/data/ml-latest-small && movierec embed
    python benchmarks/search_quality.py [--queries PATH ...] [--k 10] [--json]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from movierec.config import Settings
from movierec.ingest.search import genre_precision, read_queries

DEV = Path(__file__).resolve().parents[2] / "shared" / "eval" / "queries.csv"
HELDOUT = Path(__file__).resolve().parent / "queries_heldout.csv"


@click.command()
@click.option(
    "--queries",
    "query_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help=f"Query CSV (query,relevant_genres); repeatable. Default: {DEV} and {HELDOUT}.",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--model", "model_name", help="Embedding model (default: settings).")
@click.option("--weakest", type=int, default=5, show_default=True, help="Weakest queries listed per set.")
@click.option("--json", "as_json", is_flag=True)
def main(query_files: tuple[str, ...], k: int, model_name: str | None, weakest: int, as_json: bool) -> None:
    settings = Settings(model=model_name)
    files = [Path(f) for f in query_files] or [p for p in (DEV, HELDOUT) if p.exists()]
    sets = []
    for path in files:
        rows = genre_precision(settings, read_queries(path), k=k)
        mean = sum(r["precision"] for r in rows) / len(rows)
        sets.append({"queries_file": str(path), "n": len(rows), "mean_precision": mean, "queries": rows})
    if as_json:
        out = {"model": settings.model, "k": k, "load_average": os.getloadavg()[0], "sets": sets}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"genre precision@{k}, model {settings.model}")
    for s in sets:
        rows = s["queries"]
        low = sum(r["precision"] < 0.6 for r in rows)
        head = f"{s['queries_file']}: {s['n']} queries, mean {s['mean_precision']:.3f}, below 0.6: {low}"
        click.echo(f"\n{head}")
        for r in sorted(rows, key=lambda r: r["precision"])[:weakest]:
            click.echo(f"  {r['precision']:.2f}  {r['query']}  [{'|'.join(r['relevant_genres'])}]")
            for title in r["misses"]:
                click.echo(f"          miss: {title}")


if __name__ == "__main__":
    main()
