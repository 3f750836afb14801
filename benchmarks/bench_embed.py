"""Embedding throughput: sentences/s batched (the `movierec embed` path) vs one string per call.

Texts are real ml-latest-small titles without parentheses, the per-movie texts `movierec embed` encodes
(each distinct genre list adds one more, short-lived text). Torch uses every core it sees; note the
machine's load beside the numbers.

    python benchmarks/bench_embed.py [--model offline-minilm] [--n 2000] [--single 200] [--json]
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import click

from movierec.embedder import encode, load_model
from movierec.ingest.text import title_text

MOVIES_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "movies.csv"


def movie_texts(n: int) -> list[str]:
    with open(MOVIES_CSV, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [title_text(r["title"]) for r in rows]
    return (texts * (n // len(texts) + 1))[:n]


@click.command()
@click.option("--model", "model_name", default="offline-minilm", show_default=True)
@click.option(
    "--n", "n_batched", type=int, default=2000, show_default=True, help="Texts for the batched runs."
)
@click.option("--single", "n_single", type=int, default=200, show_default=True, help="Texts, one per call.")
@click.option("--batch-sizes", default="16,64,256", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(model_name: str, n_batched: int, n_single: int, batch_sizes: str, as_json: bool) -> None:
    started = time.perf_counter()
    model = load_model(model_name)
    load_s = time.perf_counter() - started
    texts = movie_texts(max(n_batched, n_single))
    encode(model, texts[:64], batch_size=64)  # warm up

    results = []
    started = time.perf_counter()
    for text in texts[:n_single]:
        encode(model, [text], batch_size=1)
    elapsed = time.perf_counter() - started
    results.append({"mode": "one string per call", "texts": n_single, "per_s": round(n_single / elapsed, 1)})
    for size in [int(b) for b in batch_sizes.split(",")]:
        started = time.perf_counter()
        encode(model, texts[:n_batched], batch_size=size)
        elapsed = time.perf_counter() - started
        results.append(
            {
                "mode": f"batched, batch size {size}",
                "texts": n_batched,
                "per_s": round(n_batched / elapsed, 1),
            }
        )
    report = {
        "model": model_name,
        "load_s": round(load_s, 1),
        "load_avg": os.getloadavg(),
        "results": results,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"model {model_name} (loaded in {load_s:.1f} s); load average {os.getloadavg()[0]:.1f}")
    click.echo("| mode | texts | sentences/s |\n| --- | --- | --- |")
    for r in results:
        click.echo(f"| {r['mode']} | {r['texts']:,} | {r['per_s']:,} |")


if __name__ == "__main__":
    main()
