"""`movierec batch report`: how good a run's lists are, per saved query, from the published tables.

- genre precision: share of recommended movies carrying one of the query's genres (the store filters by
  them, so anything below 1.0 means filtering went wrong); None when the query has no genre filter;
- personalisation: 1 - mean Jaccard overlap between two users' lists, over random pairs of a sample of
  users (all pairs of up to PERSONALISATION_SAMPLE users): 0 = everyone gets the same list;
- coverage: distinct recommended movies / movies in the catalogue.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from movierec import runs
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError

PERSONALISATION_SAMPLE = 400


def report(settings: Settings, run_id: int | None = None) -> dict[str, Any]:
    """Metrics of one run (default: the latest succeeded) as a JSON-ready dict."""
    with connect(settings, read_only=True) as con:
        run = runs.run_record(con, run_id)
        if run["status"] == "succeeded":
            runs.require_readable(con, run["run_id"])
        dead = runs.abandoned_after(con, run["run_id"])
        catalogue = con.execute("SELECT count(*) FROM movies").fetchone()[0]
        per_query = con.execute(
            """
            WITH q AS (SELECT * FROM batch_run_queries WHERE run_id = $run),
            r AS (
                SELECT r.query_name, r.user_id, r.movie_id, r.source,
                       CASE WHEN len(q.genres) > 0 THEN list_has_any(m.genres, q.genres)::INT END AS hit
                FROM recommendations r JOIN q USING (query_name) JOIN movies m USING (movie_id)
                WHERE r.run_id = $run
            ),
            per_user AS (SELECT query_name, user_id, avg(hit) AS precision FROM r GROUP BY ALL)
            SELECT q.query_name, q.text, q.genres, q.candidates, q.top_n, q.candidates_found, q.users_served,
                   q.n_rows,
                   (SELECT avg(precision) FROM per_user p WHERE p.query_name = q.query_name),
                   (SELECT count(DISTINCT movie_id) FROM r WHERE r.query_name = q.query_name),
                   (SELECT avg((source = 'cold_start')::INT) FROM r WHERE r.query_name = q.query_name)
            FROM q ORDER BY q.query_name
            """,
            {"run": run["run_id"]},
        ).fetchall()
        queries = []
        for name, text, genres, cand, top_n, found, served, n_rows, precision, distinct, cold in per_query:
            queries.append(
                {
                    "query": name,
                    "text": text,
                    "genres": list(genres or []),
                    "candidates": cand,
                    "top_n": top_n,
                    "candidates_found": found,
                    "users_served": served,
                    "rows": n_rows,
                    "genre_precision": None if precision is None else round(float(precision), 4),
                    "personalisation": _personalisation(con, run["run_id"], name),
                    "coverage": round(distinct / catalogue, 6) if catalogue else None,
                    "distinct_movies": distinct,
                    "cold_start_share": None if cold is None else round(float(cold), 4),
                }
            )
    notes = [
        f"run {r} (started {t:%Y-%m-%d %H:%M:%S}) was abandoned: its process died before publishing"
        for r, t in dead
    ]
    if run["status"] == "abandoned":
        notes.insert(0, f"run {run['run_id']} was abandoned: its process died before publishing")
    return {"run": run, "catalogue_movies": catalogue, "queries": queries, "notes": notes}


def _personalisation(con: Any, run_id: int, query: str) -> float | None:
    """1 - mean pairwise Jaccard over a deterministic sample of users (hash order, so reruns agree)."""
    rows = con.execute(
        """
        WITH users AS (
            SELECT DISTINCT user_id FROM recommendations WHERE run_id = ? AND query_name = ?
            ORDER BY hash(user_id) LIMIT ?
        )
        SELECT user_id, movie_id FROM recommendations JOIN users USING (user_id)
        WHERE run_id = ? AND query_name = ?
        """,
        [run_id, query, PERSONALISATION_SAMPLE, run_id, query],
    ).fetchnumpy()
    users, movies = rows["user_id"], rows["movie_id"]
    u_ids, u = np.unique(users, return_inverse=True)
    if len(u_ids) < 2:
        return None
    _, m = np.unique(movies, return_inverse=True)
    x = np.zeros((len(u_ids), m.max() + 1), dtype=np.float32)
    x[u, m] = 1.0
    inter = x @ x.T
    sizes = x.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    iu = np.triu_indices(len(u_ids), k=1)
    jaccard = np.divide(inter[iu], union[iu], out=np.zeros(len(iu[0]), dtype=np.float32), where=union[iu] > 0)
    return round(float(1.0 - jaccard.mean()), 4)


def write_chart(rep: dict[str, Any], path: str | Path) -> None:
    """Grouped bars per query: genre precision, personalisation, coverage (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = rep["queries"]
    names = [q["query"] for q in qs]
    metrics = ["genre_precision", "personalisation", "coverage"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4))
    for i, metric in enumerate(metrics):
        vals = [q[metric] if q[metric] is not None else 0.0 for q in qs]
        ax.bar(x + (i - 1) * 0.27, vals, width=0.27, label=metric.replace("_", " "))
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"batch run {rep['run']['run_id']}: list quality per saved query")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format=Path(path).suffix.lstrip(".").lower() or "png")
        # One write we see fail: savefig's own file close can swallow a full disk (/dev/full)
        Path(path).write_bytes(buf.getvalue())
    except (OSError, ValueError) as exc:  # a missing directory, no permission, full, an unknown extension
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise BadInputError(f"cannot write the chart to {path}: {reason}") from None
    finally:
        plt.close(fig)
