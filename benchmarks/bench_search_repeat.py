"""Does the same search return the same candidates? The fused search (dense + keywords, DBSF) repeated in
one process, as the nightly's candidate fetch does it.

For each query: how many of its `--limit` candidates every one of `--calls` identical calls returned,
how many distinct top-10 lists the calls gave, and, for the keyword prefetch alone, how many films tie
with the last one admitted (Qdrant admits films tied at a prefetch's cut arbitrarily). Needs an embedded
MOVIEREC_HOME:

    MOVIEREC_HOME=... .venv/bin/python benchmarks/bench_search_repeat.py [--calls 5] [--limit 250]
"""

from __future__ import annotations

import click

from movierec.batch.candidates import encode_texts
from movierec.config import Settings
from movierec.embedder import keyword_vector
from movierec.store import FUSION_DEPTH, KEYWORDS, open_store

QUERIES = ("space adventure films", "zombie films", "heist movies", "time travel",
           "Horror films with zombies", "martial arts films")  # fmt: skip


@click.command()
@click.option("--calls", default=5, show_default=True)
@click.option("--limit", default=250, show_default=True)
def main(calls: int, limit: int) -> None:
    settings = Settings()
    vectors = encode_texts(settings, list(QUERIES))
    words = [keyword_vector(q, query=True) for q in QUERIES]
    with open_store(settings) as store:
        runs = [store.search_batch(vectors, [limit] * len(QUERIES), [None] * len(QUERIES), words)
                for _ in range(calls)]  # fmt: skip
        qe = getattr(store, "_qe", None)
        for n, query in enumerate(QUERIES):
            ids = [[h.movie_id for h in run[n]] for run in runs]
            common = set(ids[0]).intersection(*map(set, ids[1:]))
            tops = {tuple(x[:10]) for x in ids}
            tied = "-"
            if qe is not None:  # Qdrant Edge: the keyword prefetch alone, as the fused query asks it
                sparse = qe.SparseVector(list(words[n][0]), list(words[n][1]))
                request = qe.QueryRequest(limit=FUSION_DEPTH, query=qe.Query.Nearest(sparse, using=KEYWORDS))
                points = store._shard.query_batch(qe.QueryBatchRequest([request]))[0]
                last = points[-1].score if len(points) == FUSION_DEPTH else None
                tied = sum(1 for p in points if p.score == last) if last is not None else 0
            click.echo(
                f"{query!r}: {len(common)} of {limit} candidates in every call; {len(tops)} distinct "
                f"top-10 lists in {calls} calls; keyword prefetch tied at its cut: {tied}"
            )


if __name__ == "__main__":
    main()
