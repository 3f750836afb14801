"""The nightly pipeline, above the stages it calls: ingest -> embed (incremental) -> train (when the
registry says the current model is stale: an incremental update of the current model, or a full fit by the
registry's retrain rule or `--retrain`) -> batch run.

Each stage is all-or-nothing on its own (ingest in one transaction, a model made current only when
complete, the batch published in one transaction), so stopping at the first failure leaves yesterday's
lists in `latest_recommendations`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from movierec.batch import list_queries, run_batch
from movierec.batch.run import resolve_alpha
from movierec.cf import recover_models, stale_reason, train_model
from movierec.cf.registry import UpdateRefused
from movierec.config import Settings
from movierec.db import connect
from movierec.doctor import check
from movierec.errors import DamagedError, MovierecError
from movierec.ingest import embed_movies, ingest_dir
from movierec.progress import say

NO_QUERIES = (
    "no enabled saved queries, so no batch ran and nothing was published; add one with "
    "`movierec queries add NAME TEXT [--genre G]...`"
)


@dataclass
class NightlyReport:
    """What each stage did; `published` says whether a batch run published new lists."""

    stages: list[dict[str, Any]] = field(default_factory=list)
    published: bool = False
    run_id: int | None = None
    seconds: float = 0.0

    def line(self) -> str:
        parts = "; ".join(f"{s['stage']} {s['seconds']:.1f} s ({s['note']})" for s in self.stages)
        return f"nightly done in {self.seconds:.1f} s: {parts}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nightly(
    settings: Settings,
    data_dir: Path | str | None = None,
    *,
    retrain: bool = False,
    alpha: float | None = None,
    train_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> NightlyReport:
    """Run every stage in order; raise the first stage's error, prefixed with the stage name.

    `train_options` go to `cf.train_model` (epochs, dim, ...); the model's defaults otherwise.
    Without enabled saved queries the batch stage is skipped with a warning, not an error: the data,
    vectors and model are still brought up to date, which is what a first run after install needs.
    """
    alpha = resolve_alpha(settings, alpha)
    if settings.engine == "ray":  # a missing extra or a dead cluster fails now, not after hours of training
        from movierec.batch.ray_engine import preflight

        preflight(settings)
    report = NightlyReport()
    started = time.perf_counter()
    if settings.db_path.exists():  # the cheap checks first: a damaged database stops the night at once
        bad = [f for f in check(settings, full=False).problems() if f.check == "database"]
        if bad:
            raise DamagedError(f"nightly stopped before starting: {bad[0].detail}; {bad[0].fix}")

    def stage(name: str) -> _Stage:
        return _Stage(name, report.stages, progress)

    if data_dir is not None:
        with stage("ingest") as st:
            rep = ingest_dir(settings, data_dir, progress=progress)
            st.note = f"{rep.movies:,} movies, {rep.ratings:,} ratings"
    with stage("embed") as st:
        emb = embed_movies(settings, progress=progress)
        st.note = f"{emb.upserted:,} movies (re)embedded"
    with stage("train") as st:
        recovered = recover_models(settings)  # a model finished by a train that could not record it
        if recovered:
            say(f"nightly: recorded model {', '.join(recovered)} left by an earlier train", enabled=progress)
        why = "--retrain" if retrain else stale_reason(settings)
        if why is None:
            st.note = "skipped, ratings unchanged since the current model"
        else:
            # Start from the current model unless --retrain (the registry's rule may still retrain).
            say(f"nightly: training ({why})", enabled=progress)
            try:
                rec = train_model(settings, update=not retrain, progress=progress, **(train_options or {}))
                st.note = f"model {rec.version}, {rec.metrics.get('mode', 'full')} ({why})"
            except UpdateRefused as exc:
                say(f"nightly: warning: {exc}")
                st.note = str(exc)
    with stage("batch") as st:
        with connect(settings, read_only=True) as con:
            has_queries = bool(list_queries(con, enabled_only=True))
        if has_queries:
            summary = run_batch(settings, alpha=alpha, progress=progress)
            st.note = summary.line()
            report.published, report.run_id = True, summary.run_id
        else:
            say(f"nightly: warning: {NO_QUERIES}")
            st.note = f"skipped: {NO_QUERIES}"
    report.seconds = time.perf_counter() - started
    return report


class _Stage:
    """Times a stage, reports it on stderr, and names it in any error it raises."""

    def __init__(self, name: str, done: list[dict[str, Any]], progress: bool) -> None:
        self.name, self.done, self.progress, self.note = name, done, progress, ""

    def __enter__(self) -> _Stage:
        say(f"nightly: {self.name}...", enabled=self.progress)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            seconds = time.perf_counter() - self.t0
            self.done.append({"stage": self.name, "seconds": round(seconds, 3), "note": self.note})
            say(f"nightly: {self.name} {seconds:.1f} s ({self.note})", enabled=self.progress)
            return False
        if isinstance(exc, MovierecError):
            kept = "; the previous recommendations stay published"
            raise type(exc)(f"nightly stopped at {self.name}: {exc}{kept}") from exc
        return False
