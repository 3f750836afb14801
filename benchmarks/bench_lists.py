"""The batch's lists judged by what users did next (`movierec evaluate --lists`), as BENCHMARKS.md tables.

Needs an ingested and embedded MOVIEREC_HOME (the current CF model is not used: each period trains its own
on the ratings before its cut-off). Prints, per period, one markdown row per variant, the load and the
settings, and the blend chosen on the validation period:

    MOVIEREC_HOME=... python benchmarks/bench_lists.py [--queries benchmarks/list_queries_small.csv]
        [--cutoff 0.9] [--validation 0.1] [--folds 3] [--json-out results.json] [--hyperparams JSON]
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import click

from movierec.batch.evaluate import evaluate_lists
from movierec.config import Settings

HERE = Path(__file__).resolve().parent


@click.command()
@click.option("--queries", "query_file", type=click.Path(exists=True, dir_okay=False),
              default=str(HERE / "list_queries_small.csv"), show_default=True)  # fmt: skip
@click.option("--cutoff", default=None, help="Share of ratings (0.9) or a date; default 0.9.")
@click.option("--validation", type=float, default=0.1, show_default=True, help="Share of ratings per fold.")
@click.option("--folds", type=int, default=3, show_default=True, help="Validation folds, pooled.")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the full report here.")
@click.option("--hyperparams", type=json.loads, default=None,
              help='Models\' hyper-parameters, JSON, e.g. \'{"recency": 0}\' (default: tuned).')  # fmt: skip
def main(
    query_file: str, cutoff: str | None, validation: float, folds: int, json_out: str | None,
    hyperparams: dict | None,
) -> None:  # fmt: skip
    settings = Settings()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    report = evaluate_lists(
        settings, query_file, cutoff, validation, hyperparams=hyperparams, progress=True, folds=folds
    )
    seconds = time.perf_counter() - t0
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if json_out:
        Path(json_out).write_text(json.dumps({**report, "seconds": seconds, "uptime": uptime}, indent=1))
    click.echo(f"home {settings.home}, queries {query_file}, {len(report['queries'])} queries, "
               f"{seconds:.0f} s; load before {load_before[0]:.2f}; after: {uptime}")  # fmt: skip
    cols = ("variant", "nDCG@10", "vs old default (paired)", "topic nDCG@10", "hit@10", "recall@10",
            "topical", "judged", "personal.", "coverage", "novelty", "fresh nDCG", "cold nDCG")  # fmt: skip
    for p in report["periods"]:
        u = p["users"]
        judged = next(iter(p["variants"].values()))["known"]["pairs_judged"]
        click.echo(f"\n{p['name']}: {p['cutoff']} .. {p['end']}, {p['train_ratings']:,} training ratings, "
                   f"users {u['known']} known / {u['cold_start']} cold-start / {u['fresh']} fresh; "
                   f"(user, query) pairs judged (known users): {judged}")  # fmt: skip
        for f in p.get("folds") or []:
            click.echo(f"- fold {f['cutoff']} .. {f['end']}: {f['train_ratings']:,} training ratings, "
                       f"{f['users']['known']} known users")  # fmt: skip
        click.echo()
        click.echo("| " + " | ".join(cols) + " |")
        click.echo("|" + " --- |" * len(cols))
        for name, m in p["variants"].items():
            a, k = m["all"], m["known"]
            vals = (k.get("ndcg@10"), k.get("ndcg@10_vs_old"), k.get("topic_ndcg@10"), k.get("hit@10"),
                    k.get("recall@10"),
                    a.get("topical_precision"), a.get("topic_judged"), k.get("personalisation"),
                    a.get("coverage"), a.get("novelty_pop_rank"), m["fresh"].get("ndcg@10"),
                    m["cold_start"].get("ndcg@10"))  # fmt: skip
            cells = ["-" if v is None else f"{v:g}" for v in vals]
            if k.get("ndcg@10_se") is not None:
                cells[0] += f" ± {k['ndcg@10_se']:g}"
            if k.get("ndcg@10_vs_old_se") is not None:
                cells[1] = f"{k['ndcg@10_vs_old']:+g} ± {k['ndcg@10_vs_old_se']:g}"
            click.echo(f"| {name} | " + " | ".join(cells) + " |")
    click.echo(f"\nchosen: {json.dumps(report['chosen'])}")


if __name__ == "__main__":
    main()
