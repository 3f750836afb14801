"""Typing a film's title into `movierec search`: is that film first, or in the top 10?

For every film with at least `--min-ratings` ratings in the home's database, the query is its title as
people write it (MovieLens's title without the year, a trailing article put back in front: "The
Godfather"), and, where MovieLens keeps one in parentheses, its alternate (mostly original-language)
title ("Le fabuleux destin d'Amélie Poulain", "Cidade de Deus"). Each query goes through the product's
own `ingest.search.search` (the shipped model, fusion and filters), once as shipped and once with the
exact-title lookup switched off (the fused search alone: the baseline), in the same run.

    MOVIEREC_HOME=<an embedded home> .venv/bin/python benchmarks/title_lookup.py [--min-ratings 30]
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from movierec.config import Settings  # noqa: E402
from movierec.db import connect  # noqa: E402
from movierec.ingest.text import clean_title  # noqa: E402

product = importlib.import_module("movierec.ingest.search")  # the module (the package exports the function)

ARTICLE = re.compile(r"^(.*\S),\s*(The|A|An|Le|La|Les|L'|El|Il|Der|Die|Das)$")  # not the product's rule
GENRE_SETS = (ROOT.parent / "shared" / "eval" / "queries.csv", ROOT / "benchmarks" / "queries_heldout.csv")
TOPICS = ROOT / "benchmarks" / "topic_queries.csv"


def as_typed(name: str) -> str:
    """How a person writes a MovieLens title: "Godfather, The" -> "The Godfather" (a list of articles,
    independent of the product's rule, so a title like "I Love You, Man" is typed as written)."""
    name = re.sub(r"^\s*a\.k\.a\.\s*", "", name.strip(), flags=re.IGNORECASE)
    m = ARTICLE.match(name)
    return f"{m[2]} {m[1]}" if m else name


def queries(settings: Settings, min_ratings: int) -> list[tuple[str, str, int]]:
    """(kind, query text, movie id): each film's title and its alternate titles."""
    with connect(settings, read_only=True) as con:
        rows = con.execute(
            "SELECT m.movie_id, m.title FROM movies m JOIN (SELECT movie_id, count(*) n FROM ratings "
            "GROUP BY 1) r USING (movie_id) WHERE r.n >= ? ORDER BY m.movie_id",
            [min_ratings],
        ).fetchall()
    out = []
    for movie_id, title in rows:
        out.append(("title", as_typed(clean_title(title) or title), movie_id))
        for alt in re.findall(r"\(([^)]*)\)", title):
            if not re.fullmatch(r"\d{4}(-\d{0,4})?", alt.strip()):
                out.append(("alternate title", as_typed(alt), movie_id))
    return out


def measure(settings: Settings, qs: list[tuple[str, str, int]]) -> dict[str, dict[str, float]]:
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for kind, text, movie_id in qs:
        ids = [r["movie_id"] for r in product.search(settings, text, limit=10)]
        hits.setdefault(kind, []).append((ids[:1] == [movie_id], movie_id in ids))
    return {
        kind: {"queries": len(h), "hit@1": round(sum(a for a, _ in h) / len(h), 3),
               "hit@10": round(sum(b for _, b in h) / len(h), 3)}
        for kind, h in hits.items()
    }  # fmt: skip


def topics_touched(settings: Settings, lookup: bool) -> dict:
    """Genre precision@10 of the two genre query sets through `search` itself, and how many genre or topic
    queries the lookup changes at all (it should leave topics alone)."""
    import csv

    out: dict = {"changed": []}
    for path in (*GENRE_SETS, TOPICS):
        if not path.exists():
            continue
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        precision = []
        for row in rows:
            text = row["query"]
            top = product.search(settings, text, limit=10)
            if lookup:
                with connect(settings, read_only=True) as con:
                    if product.titled_exactly(con, text):
                        out["changed"].append(text)
            if "relevant_genres" in row:
                good = set(row["relevant_genres"].split("|"))
                precision.append(sum(bool(good & set(r["genres"])) for r in top) / 10)
        if precision:
            out[path.name] = round(sum(precision) / len(precision), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-ratings", type=int, default=30)
    args = ap.parse_args()
    settings = Settings.load()
    qs = queries(settings, args.min_ratings)
    report = {"home": str(settings.home), "min_ratings": args.min_ratings}
    t = time.perf_counter()
    report["shipped"] = measure(settings, qs)
    report["seconds_shipped"] = round(time.perf_counter() - t, 1)
    report["genre and topic queries, shipped"] = topics_touched(settings, True)
    shipped_lookup = product.titled_exactly
    product.titled_exactly = lambda con, text: []  # the baseline: the fused search alone
    try:
        t = time.perf_counter()
        report["without the title lookup"] = measure(settings, qs)
        report["seconds_baseline"] = round(time.perf_counter() - t, 1)
        report["genre and topic queries, without"] = topics_touched(settings, False)
    finally:
        product.titled_exactly = shipped_lookup
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
