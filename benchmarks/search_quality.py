"""Search quality: genre precision@10 over ../shared/eval/queries.csv.

For each query, the share of the top 10 movies (no filters) whose genres include one of the query's
relevant genres; the mean over queries is the headline number (target: >= 0.9 with offline-minilm on
ml-latest-small). Needs an ingested and embedded MOVIEREC_HOME:

    movierec ingest ../shared/data/ml-latest-small && movierec embed
    python benchmarks/search_quality.py [--queries PATH] [--k 10] [--json]
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from movierec.config import Settings
from movierec.ingest.search import genre_precision, read_queries

QUERIES = Path(__file__).resolve().parents[2] / "shared" / "eval" / "queries.csv"


@click.command()
@click.option(
    "--queries", type=click.Path(exists=True, dir_okay=False), default=str(QUERIES), show_default=True
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--model", "model_name", help="Embedding model (default: settings).")
@click.option("--json", "as_json", is_flag=True)
def main(queries: str, k: int, model_name: str | None, as_json: bool) -> None:
    settings = Settings(model=model_name)
    rows = genre_precision(settings, read_queries(queries), k=k)
    mean = sum(r["precision"] for r in rows) / len(rows)
    if as_json:
        click.echo(
            json.dumps({"model": settings.model, "k": k, "mean_precision": mean, "queries": rows}, indent=2)
        )
        return
    click.echo(f"genre precision@{k}, model {settings.model}")
    for r in rows:
        click.echo(f"  {r['precision']:.2f}  {r['query']}  [{'|'.join(r['relevant_genres'])}]")
        for title in r["misses"]:
            click.echo(f"          miss: {title}")
    click.echo(f"mean  {mean:.3f}")


if __name__ == "__main__":
    main()
