"""`movierec check`: is every artifact usable, and if not, what recovers it.

Top layer (beside the pipeline): it looks at what each stage left behind through the stages' public
fronts. Each check gives a `Finding` (ok or not, what, and the command that recovers); nothing is changed.
The cheap part (`full=False`: the database opens and its tables and views resolve; the run files exist)
runs first in `movierec nightly`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from movierec.config import Settings
from movierec.errors import LockFileError, MovierecError

TABLES = (
    "movies",
    "ratings",
    "tags",
    "links",
    "cf_models",
    "saved_queries",
    "batch_runs",
    "batch_run_queries",
)
VIEWS = ("recommendations", "latest_recommendations")
RESTORE_DB = "restore the database from a backup, or move it away and run `movierec ingest DIR` to rebuild it"


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.check}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")


@dataclass
class Checkup:
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


def _error(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def check(settings: Settings, full: bool = True) -> Checkup:
    """Every check (`full`), or only the cheap database ones; never raises for what it finds."""
    findings: list[Finding] = []
    if not _check_home(settings, findings):
        return Checkup(findings)
    db_ok = _check_database(settings, findings)
    if db_ok:
        _check_runs(settings, findings, full)
    if full and db_ok:
        _check_model(settings, findings)
    if full:
        _check_store(settings, findings)
    if not findings[0].ok:  # a read-only or full disk: the data is fine, so no rebuild advice below it
        for f in findings[1:]:
            if not f.ok:
                f.fix = "nothing to rebuild: fix the data directory first (above)"
    return Checkup(findings)


FREE_BYTES_MIN = 64 << 20  # the vector store needs this to open (movierec.store.EDGE_FREE_MIN)


def _check_home(settings: Settings, out: list[Finding]) -> bool:
    """The data directory exists, is writable and has room; False (and nothing else checked, nothing
    created) when it does not exist. Read-only or full is reported, and the other checks still run."""
    import os
    import shutil

    home = settings.db_path.parent
    if not home.is_dir():
        out.append(Finding("data directory", False, f"{home} does not exist",
                           "run `movierec ingest DIR` (or point --home at yours)"))  # fmt: skip
        return False
    if not os.access(home, os.W_OK):
        detail = f"{home} is not writable (read-only file system or no permission)"
        fix = "make it writable (movierec writes lock files even to read), or copy it and use --home"
        out.append(Finding("data directory", False, detail, fix))
        return True
    free = shutil.disk_usage(home).free
    if free < FREE_BYTES_MIN:
        detail = f"{home}: disk nearly full ({free >> 20} MiB free)"
        out.append(Finding("data directory", False, detail, "free space, then run the command again"))
        return True
    out.append(Finding("data directory", True, f"{home} writable, {free >> 20:,} MiB free"))
    return True


def _check_database(settings: Settings, out: list[Finding]) -> bool:
    import duckdb

    from movierec.db import connect

    path = settings.db_path
    if not path.exists():
        out.append(Finding("database", False, f"no database at {path}", "run `movierec ingest DIR`"))
        return False
    try:
        with connect(settings, read_only=True) as con:
            missing = []
            for name in (*TABLES, *VIEWS):
                try:
                    con.execute(f"SELECT count(*) FROM (SELECT * FROM {name} LIMIT 1)").fetchone()
                except duckdb.CatalogException:
                    missing.append(name)
                except duckdb.Error:
                    if name in VIEWS:  # a view over a damaged run file: reported by the run checks
                        continue
                    raise
            n_movies = (
                con.execute("SELECT count(*) FROM movies").fetchone()[0] if "movies" not in missing else 0
            )
    except MovierecError as exc:
        out.append(Finding("database", False, _error(exc), RESTORE_DB))
        return False
    except duckdb.Error as exc:
        out.append(Finding("database", False, f"{path}: {_error(exc)}", RESTORE_DB))
        return False
    if missing:
        fix = "run any writing command (e.g. `movierec ingest DIR`) to create them"
        out.append(Finding("database", False, f"{path} lacks {', '.join(missing)}", fix))
        return False
    detail = f"{path} opens; {len(TABLES)} tables and {len(VIEWS)} views resolve; {n_movies:,} movies"
    out.append(Finding("database", True, detail))
    return True


def _check_runs(settings: Settings, out: list[Finding], full: bool) -> None:
    from movierec import runs
    from movierec.db import connect

    with connect(settings, read_only=True) as con:
        succeeded, bad = runs.check(settings, con, full)
    for run_id, what in bad.items():
        out.append(Finding(f"run {run_id}", False, what, runs.RECOVER))
    if not succeeded:
        out.append(
            Finding("published runs", True, "none yet (run `movierec batch run` after adding queries)")
        )
    elif not bad:
        out.append(Finding("published runs", True, f"{len(succeeded)} runs, every file present"
                                                   + (" and readable" if full else "")))  # fmt: skip


def _check_model(settings: Settings, out: list[Finding]) -> None:
    from movierec.cf import check_model, current_model, load_current_model

    try:
        record = current_model(settings)
        if record is None:
            out.append(Finding("CF model", False, "no current model", "run `movierec train`"))
            return
        _, model = load_current_model(settings)
        check_model(model)
    except MovierecError as exc:
        out.append(Finding("CF model", False, _error(exc), "run `movierec train`"))
        return
    out.append(Finding("CF model", True, f"{record.version} loads, finite, ranks sanely"))


SAMPLE = 8  # movies re-encoded by `check`: a few seconds of the text model
SAME_VECTOR = 0.98  # cosine of a re-encoded movie with its stored vector; float32 ONNX/torch drift across
# processors is ~1e-5, while plausible garbage (random unit vectors) lands near 0


def _reencoded_sample(settings: Settings, store: Any) -> str | None:
    """Re-encode a few movies as `embed` does and look each up: its stored vector must come back as the
    nearest at a cosine near 1. Vectors that are unit-norm and finite but wrong pass every other check."""
    import random

    from movierec.db import connect
    from movierec.embedder import load_model
    from movierec.ingest.embed import movie_vectors
    from movierec.ingest.text import movie_texts

    stored = store.payload_values("text_hash")
    with connect(settings, read_only=True) as con:
        texts = {m.movie_id: m for m in movie_texts(con, with_tags=False)}
        tagged = {m.movie_id: m for m in movie_texts(con, with_tags=True)}
    same = [
        m
        for mid, h in stored.items()
        for m in (texts.get(mid), tagged.get(mid))
        if m is not None and m.point_hash(settings.model) == h
    ]
    if not same:
        return None  # texts changed since the last embed: `embed` reports and re-encodes those
    sample = random.Random(0).sample(same, min(SAMPLE, len(same)))
    vectors = movie_vectors(load_model(settings.model), sample)
    bad = []
    for movie, vector in zip(sample, vectors, strict=True):
        hits = store.search(vector, 1)
        if not hits or hits[0].score < SAME_VECTOR:
            bad.append((movie.movie_id, hits[0].score if hits else float("nan")))
    if not bad:
        return None
    mid, score = bad[0]
    return (
        f"{len(bad)} of {len(sample)} movies re-encoded do not find their stored vector (movie {mid}: "
        f"best cosine {score:.2f}, expected ~1): the stored vectors are not this model's"
    )


def _check_store(settings: Settings, out: list[Finding]) -> None:
    import numpy as np

    from movierec.db import connect
    from movierec.store import open_store

    fix = "run `movierec embed --rebuild`"
    if not settings.qdrant_url and not settings.edge_path.is_dir():  # opening it would create it
        out.append(Finding("vector store", False, f"no vector store at {settings.edge_path}",
                           "run `movierec embed`"))  # fmt: skip
        return
    try:
        with connect(settings, read_only=True) as con:
            movie_ids = {r[0] for r in con.execute("SELECT movie_id FROM movies").fetchall()}
    except Exception:  # noqa: BLE001 - the database check reports it
        movie_ids = set()
    try:
        with open_store(settings) as store:
            info = store.model_info()
            count = store.count()
            if info is None:
                detail = f"{store.describe()} records no model ({count} points)"
                out.append(Finding("vector store", False, detail, "run `movierec embed`"))
                return
            if info[0] != settings.model:
                detail = f"built with {info[0]}, configured model is {settings.model}"
                out.append(
                    Finding("vector store", False, detail, f"run `movierec embed --model {settings.model}`")
                )
                return
            stored = set(store.payload_values("movie_id"))
            if count and movie_ids:
                probe = np.zeros(info[1], np.float32)
                probe[0] = 1.0
                store.search(probe, 10)  # a damaged vector file gives impossible similarities
                garbage = _reencoded_sample(settings, store)
                if garbage:
                    out.append(Finding("vector store", False, garbage, fix))
                    return
    except LockFileError as exc:  # the store itself may be fine: no rebuild
        out.append(Finding("vector store", False, _error(exc), "nothing to rebuild: do what it says"))
        return
    except MovierecError as exc:
        out.append(Finding("vector store", False, _error(exc), fix))
        return
    except Exception as exc:  # noqa: BLE001 - the engine's own errors on damaged files
        out.append(Finding("vector store", False, f"{type(exc).__name__}: {_error(exc)}", fix))
        return
    if stored != movie_ids:
        detail = (f"{count:,} points vs {len(movie_ids):,} movies in the catalogue "
                  f"({len(movie_ids - stored):,} missing, {len(stored - movie_ids):,} extra)")  # fmt: skip
        out.append(Finding("vector store", False, detail, "run `movierec embed`"))
        return
    out.append(
        Finding("vector store", True, f"{info[0]} ({info[1]}-d), {count:,} points match the catalogue")
    )
