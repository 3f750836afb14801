"""What the title weight of the movie vectors trades, on the real ml-latest-small.

    .venv/bin/python benchmarks/batch_quality_small.py          # first: builds the home and the CF model
    .venv/bin/python benchmarks/title_weight_sweep.py [--weights 0.3,0.5,0.7,1]

Works on a copy of batch_quality_small.py's home. Titles and genre texts are encoded once; per weight,
every movie's vector `normalise(w * v(title) + v(genre words))` is upserted, then: genre precision@10
on the development and held-out queries (exact search in the store, no filters) and the batch at
alpha 0 (the default until 2026-12-02) with the CF model of that home (topical precision@10,
personalisation, coverage). The row "title + genre labels, one text" is the old recipe, for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil

import numpy as np
from batch_quality_small import OUT, QUERIES, batch_quality, relevant_genres
from search_quality import HELDOUT

from movierec.config import Settings
from movierec.db import connect
from movierec.embedder import encode, load_model
from movierec.ingest.embed import encode_parts, mix
from movierec.ingest.search import genre_precision, read_queries
from movierec.ingest.text import clean_title, movie_texts
from movierec.store import open_store

SWEEP = OUT.parent / "title-weight-sweep"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="0.3,0.5,0.7,1")
    args = ap.parse_args()
    if not (OUT / "movierec.duckdb").exists():
        raise SystemExit(f"run benchmarks/batch_quality_small.py first (no home at {OUT})")
    shutil.rmtree(SWEEP, ignore_errors=True)
    shutil.copytree(OUT, SWEEP)
    settings = Settings(home=SWEEP, model="offline-minilm")
    with connect(settings, read_only=True) as con:
        movies = movie_texts(con)
    model = load_model(settings.model)
    titles, genres = encode_parts(model, movies)
    old = encode(model, [" ".join([clean_title(m.title), *m.genres]) for m in movies])
    dev, held = read_queries(QUERIES), read_queries(HELDOUT)
    relevant = relevant_genres()
    ids = [m.movie_id for m in movies]
    payloads = [m.payload(settings.model) for m in movies]

    print(f"load average {os.getloadavg()[0]:.1f}\n")
    print(
        "| movie vectors | dev p@10 | dev min | held-out p@10 | held-out min | held-out < 0.6 "
        "| batch topical p@10 | personalisation | coverage |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    variants = [("title + genre labels, one text (old)", old)]
    variants += [(f"title weight {w:g}", mix(titles, genres, w)) for w in map(float, args.weights.split(","))]
    for name, vectors in variants:
        with open_store(settings) as store:
            store.upsert(ids, vectors, payloads)
        d = [r["precision"] for r in genre_precision(settings, dev)]
        h = [r["precision"] for r in genre_precision(settings, held)]
        precision, pers, cov, _ = batch_quality(settings, relevant, 0.0)
        print(
            f"| {name} | {np.mean(d):.3f} | {min(d):.1f} | {np.mean(h):.3f} | {min(h):.1f} "
            f"| {sum(p < 0.6 for p in h)} | {precision:.3f} | {pers:.3f} | {cov:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
