"""One unit of batch work, several runners (lenskit's batch runner is the model).

`run_shard` ranks one shard of users for one saved query through the model contract
(`Recommender.recommend`) and writes its lists as one Parquet part of the run (movierec/runs.py). The local
engine (`map_local`) maps it over the run's shards in this process, blocks of users on threads; the Ray
engine (batch/ray_engine.py) maps the same function in tasks. So both engines give the same lists and the
same on-disk layout, and the orchestration (what is read once, the stats, publishing) lives only in
batch/run.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from movierec import runs
from movierec.catalog import Seen
from movierec.cf import Because, Candidates, mark_folded


@dataclass(frozen=True)
class QueryData:
    """What scoring needs of one query: its candidates, their similarity and popularity, and the ratings of
    those candidates (every candidate's ratings locally; a query's own subset when shipped to Ray)."""

    items: np.ndarray
    similarity: np.ndarray
    popularity: np.ndarray
    seen: Seen


@dataclass(frozen=True)
class Shard:
    """Users `lo:hi` of query `query_index`'s target users: one part, `runs.part_name(query, shard)`."""

    query_index: int
    shard_index: int
    query_name: str
    top_n: int
    lo: int
    hi: int


@dataclass(frozen=True)
class RunParams:
    """What every shard of a run shares."""

    run_id: int
    alpha: float
    pop_weight: float
    cold_weight: float
    block: int
    run_dir: str  # runs.run_dir(): every worker reopens it with its own credentials


@dataclass
class ShardStats:
    users_served: int = 0
    n_rows: int = 0
    seconds: float = 0.0  # ranking time
    flops: float = 0.0  # of the CF matrix products
    matmul_seconds: float = 0.0  # time in those products
    write_seconds: float = 0.0  # converting the lists to Arrow and writing the part
    explain_seconds: float = 0.0  # finding each row's "because you liked" film (part of `seconds`)

    def add(self, other: ShardStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def query_data(cands: list[Candidates], seen: Seen, subset: bool) -> list[QueryData]:
    return [QueryData(c.movie_ids, c.similarity, seen.counts(c.movie_ids),
                      seen.subset(c.movie_ids) if subset else seen) for c in cands]  # fmt: skip


def shards(names: list[str], top_ns: list[int], targets: list[np.ndarray], size: int) -> Iterator[Shard]:
    """Every query's target users cut into shards of `size`."""
    for qi, (name, top_n, users) in enumerate(zip(names, top_ns, targets, strict=True)):
        for si, lo in enumerate(range(0, len(users), size)):
            yield Shard(qi, si, name, top_n, lo, min(lo + size, len(users)))


def score_shard(
    model: Any,
    query: QueryData,
    users: np.ndarray,
    shard: Shard,
    params: RunParams,
    folded: np.ndarray | None,
    explain: Because | None = None,
    workers: int | None = None,
    progress: Any = None,
) -> tuple[Any, ShardStats]:
    """The lists of one shard as an Arrow table (the published row's columns) and its stats."""
    t0 = time.perf_counter()
    ranked = model.recommend(
        users[shard.lo : shard.hi],
        shard.top_n,
        items=query.items,
        similarity=query.similarity,
        popularity=query.popularity,
        seen=query.seen,
        alpha=params.alpha,
        pop_weight=params.pop_weight,
        cold_weight=params.cold_weight,
        block=params.block,
        workers=workers,
        progress=progress,
    )
    mark_folded(ranked, folded)  # users folded in after training score as 'fold_in'
    te = time.perf_counter()
    if explain is not None:
        ranked.because = explain.nearest(ranked.user_id, ranked.movie_id, among=query.items)
        ranked.because[ranked.cold] = -1  # a cold-start row comes from the query, not from taste
    t1 = time.perf_counter()
    table = ranked.to_arrow(params.run_id, shard.query_name)
    stats = ShardStats(int(len(np.unique(ranked.user_id))), len(ranked), t1 - t0, ranked.flops,
                       ranked.matmul_seconds, time.perf_counter() - t1, t1 - te)  # fmt: skip
    return table, stats


def run_shard(
    model: Any,
    query: QueryData,
    users: np.ndarray,
    shard: Shard,
    params: RunParams,
    folded: np.ndarray | None,
    explain: Because | None = None,
    workers: int | None = None,
    progress: Any = None,
) -> ShardStats:
    """The unit both engines map: score one shard and write it as its part of the run."""
    table, stats = score_shard(model, query, users, shard, params, folded, explain, workers, progress)
    t0 = time.perf_counter()
    runs.write_part(params.run_dir, runs.part_name(shard.query_index, shard.shard_index), table)
    stats.write_seconds += time.perf_counter() - t0
    return stats


def map_local(
    model: Any,
    queries: list[QueryData],
    targets: list[np.ndarray],
    plan: list[Shard],
    params: RunParams,
    folded: np.ndarray | None,
    explain: Because | None = None,
    pbar: Any = None,
) -> list[ShardStats]:
    """The local engine: every shard in this process, in order (the model ranks blocks on threads)."""
    out = []
    for shard in plan:
        if pbar is not None:
            pbar.set_description(f"query {shard.query_index + 1}/{len(queries)} {shard.query_name}")
        qi = shard.query_index
        out.append(run_shard(model, queries[qi], targets[qi], shard, params, folded, explain, progress=pbar))
    return out
