"""`movierec batch report`: how good a run's lists are, per saved query, from the published tables.

- genre precision: share of recommended movies carrying one of the query's genres (the store filters by
  them, so anything below 1.0 means filtering went wrong); None when the query has no genre filter;
- personalisation: 1 - mean Jaccard overlap between two users' lists, over random pairs of a sample of
  users (all pairs of up to PERSONALISATION_SAMPLE users): 0 = everyone gets the same list;
- coverage: distinct recommended movies / movies in the catalogue;
- what users did next (`SINCE`): the (user, film) pairs first rated in ingests after the last one the
  run's lists saw (`batch_runs.last_ingest`, `ratings.first_ingest`; a changed rating of a film rated
  before is not a new watch) judge its lists, the nightly's own outcome (`movierec evaluate --lists`
  replays the past instead). Over the users a query served who rated anything since: hit rate (their list
  holds a film they then rated >= `LIKE`), precision (share of their listed films they then liked), and
  the hit rate of one list for everyone, the films the run listed most for that query (minus what each
  user had rated): the simplest baseline, beside the lists in the same report.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from movierec import runs
from movierec.catalog import LIKED_RATING
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError

PERSONALISATION_SAMPLE = 400
LIKE = LIKED_RATING  # a later rating at or above it is a liked film (one threshold for every judgement)
SINCE = (
    "films first rated in ingests after the run's lists were computed; over the users a query served who "
    f"rated anything since: hit rate (the list holds a film they then rated >= {LIKE:g}), precision (listed "
    "films they then liked / listed), and the hit rate of the run's most-listed films for the query given "
    "to everyone (minus what each user had rated): a baseline"
)


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
        since = _since(con, run) if run["status"] == "succeeded" else None
        judged = None
        if since is not None and not since["ratings"]:  # the newest run later ingests can judge
            judged = runs.latest_judgeable(con, run["run_id"])
    notes = [
        f"run {r} (started {t:%Y-%m-%d %H:%M:%S}) was abandoned: its process died before publishing"
        for r, t in dead
    ]
    if run["status"] == "abandoned":
        notes.insert(0, f"run {run['run_id']} was abandoned: its process died before publishing")
    if since is None:
        why = "it was published before runs recorded their last ingest" if run["status"] == "succeeded" else (
            f"it is {run['status']}")  # fmt: skip
        notes.append(f"what users did next: not known for this run ({why})")
    elif not since["ratings"]:
        later = f"; run {judged} can be judged: `movierec batch report {judged}`" if judged else ""
        notes.append(f"what users did next: no new ratings ingested since this run yet{later}")
    none = (
        dict.fromkeys(SINCE_FIELDS) if since is None else {**dict.fromkeys(SINCE_FIELDS), "active_since": 0}
    )
    for q in queries:
        q.update((since or {}).get("queries", {}).get(q["query"], none))
    summary = None if since is None else {k: v for k, v in since.items() if k != "queries"}
    return {"run": run, "catalogue_movies": catalogue, "queries": queries, "since": summary, "notes": notes}


SINCE_FIELDS = ("active_since", "hit_rate_since", "precision_since", "same_list_hit_rate_since")


def _since(con: Any, run: dict[str, Any]) -> dict[str, Any] | None:
    """The run's lists judged by the ratings ingested after them (module docstring); None when the run
    did not record which ingest its lists saw."""
    have = {d[0] for d in con.execute("SELECT * FROM ratings LIMIT 0").description}
    if run.get("last_ingest") is None or "first_ingest" not in have:  # a run or database from before
        return None
    params = {"run": run["run_id"], "last": int(run["last_ingest"]), "like": LIKE}
    # Later = pairs first written after the run: a re-rating of a film rated before is not a new watch.
    ingests, ratings, users = con.execute(
        "SELECT (SELECT count(*) FROM ingests WHERE ingest_id > $last), count(*), count(DISTINCT user_id) "
        "FROM ratings WHERE first_ingest > $last",
        {"last": params["last"]},
    ).fetchone()
    rows = con.execute(
        """
        WITH later AS (SELECT user_id, movie_id, rating FROM ratings WHERE first_ingest > $last),
        q AS (SELECT query_name, top_n FROM batch_run_queries WHERE run_id = $run),
        lists AS (
            SELECT r.query_name, r.user_id, r.movie_id FROM recommendations r
            SEMI JOIN (SELECT DISTINCT user_id FROM later) a USING (user_id) WHERE r.run_id = $run
        ),
        judged AS (
            SELECT query_name, user_id, count(*) AS listed, count(*) FILTER (x.rating >= $like) AS liked
            FROM lists l LEFT JOIN later x USING (user_id, movie_id) GROUP BY ALL
        ),
        -- the baseline: each query's most-listed films, in that order, minus what a user had rated before
        listed AS (
            SELECT query_name, movie_id, count(*) AS n FROM recommendations WHERE run_id = $run
            GROUP BY query_name, movie_id
        ),
        before AS (  -- what the active users had rated when the run computed its lists
            SELECT user_id, movie_id FROM ratings
            SEMI JOIN (SELECT DISTINCT user_id FROM judged) a USING (user_id)
            WHERE first_ingest IS NULL OR first_ingest <= $last
        ),
        -- enough of the most-listed films that every user keeps top_n after leaving out what they rated
        depth AS (
            SELECT q.query_name, q.top_n + coalesce(max(r.c), 0) AS d FROM q LEFT JOIN (
                SELECT m.query_name, b.user_id, count(*) AS c FROM before b JOIN listed m USING (movie_id)
                GROUP BY ALL
            ) r USING (query_name) GROUP BY q.query_name, q.top_n
        ),
        most AS (
            SELECT l.query_name, l.movie_id, l.n FROM listed l JOIN depth USING (query_name)
            QUALIFY row_number() OVER (PARTITION BY l.query_name ORDER BY l.n DESC, l.movie_id) <= depth.d
        ),
        same AS (
            SELECT j.query_name, j.user_id, m.movie_id,
                   row_number() OVER (PARTITION BY j.query_name, j.user_id ORDER BY m.n DESC, m.movie_id) AS k
            FROM judged j JOIN most m USING (query_name) ANTI JOIN before b USING (user_id, movie_id)
        ),
        same_hit AS (
            SELECT s.query_name, s.user_id FROM same s JOIN q USING (query_name)
            JOIN later x USING (user_id, movie_id) WHERE s.k <= q.top_n AND x.rating >= $like
            GROUP BY ALL
        )
        SELECT j.query_name, count(*), avg((j.liked > 0)::INT), sum(j.liked) / sum(j.listed),
               (SELECT count(*) FROM same_hit h WHERE h.query_name = j.query_name) / count(*)
        FROM judged j GROUP BY j.query_name
        """,
        params,
    ).fetchall()
    per_query = {
        name: dict(zip(SINCE_FIELDS, (int(n), *(round(float(x), 4) for x in (hit, prec, same))), strict=True))
        for name, n, hit, prec, same in rows
    }
    return {"last_ingest": run.get("last_ingest"), "ingests": ingests, "ratings": ratings, "users": users,
            "definition": SINCE, "queries": per_query}  # fmt: skip


def _personalisation(con: Any, run_id: int, query: str) -> float | None:
    """`personalisation` of a published query's lists, over a deterministic sample of users (hash order, so
    reruns agree; only the sample's rows are read)."""
    rows = con.execute(
        """
        WITH users AS (
            SELECT DISTINCT user_id FROM recommendations WHERE run_id = ? AND query_name = ?
            ORDER BY hash(user_id) LIMIT ?
        )
        SELECT user_id, movie_id FROM recommendations JOIN users USING (user_id)
        WHERE run_id = ? AND query_name = ? ORDER BY user_id
        """,
        [run_id, query, PERSONALISATION_SAMPLE, run_id, query],
    ).fetchnumpy()
    users, movies = rows["user_id"], rows["movie_id"]
    if len(users) == 0:
        return None
    u_ids, u, n = np.unique(users, return_inverse=True, return_counts=True)
    top = np.full((len(u_ids), int(n.max())), -1, dtype=np.int64)
    top[u, np.arange(len(u)) - np.repeat(np.cumsum(n) - n, n)] = movies  # rows sorted by user: a slot each
    value = personalisation(top)
    return round(value, 4) if value is not None else None


def personalisation(top: np.ndarray, sample: int = PERSONALISATION_SAMPLE) -> float | None:
    """1 - mean pairwise Jaccard overlap of lists (rows of movie ids, -1 = empty slot), over an evenly
    spaced sample of up to `sample` users (deterministic, so reruns agree)."""
    rows = top[np.any(top >= 0, axis=1)]
    if len(rows) < 2:
        return None
    rows = rows[np.linspace(0, len(rows) - 1, min(sample, len(rows))).astype(int)]
    ids, inv = np.unique(rows, return_inverse=True)
    x = np.zeros((len(rows), len(ids)), dtype=np.float32)
    x[np.repeat(np.arange(len(rows)), rows.shape[1]), inv.ravel()] = 1.0
    x[:, ids == -1] = 0.0
    inter = x @ x.T
    size = x.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    iu = np.triu_indices(len(rows), k=1)
    jac = np.divide(inter[iu], union[iu], out=np.zeros(len(iu[0]), np.float32), where=union[iu] > 0)
    return float(1.0 - jac.mean())


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
