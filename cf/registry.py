"""Versioned CF models on disk and their record in DuckDB (`cf_models`, exactly one current): storing,
loading, recovering. When to fit, update or retrain is `cf.training`'s business.

A model directory `MODELS/<version>/` holds:
  model.json         the manifest: kind, parameters, version, data snapshot, metrics, library versions
  contract.npz       id maps and the training ratings (movierec.cf.recommender)
  factors.npz        exported factors + biases (movierec.cf.factors.Factors): what the batch scores with
  model.keras        the Keras model (registered classes: loads with keras.saving.load_model)
  digests.npz        per user, a digest of their ratings at training time (cf.data.UserDigests): what an
                     update or `stale_reason` compares with to find ratings edited outside an ingest
  loss.png           loss per epoch (rating objective only; an implicit fit's history is in model.json)
  (what `cf.training.train_model` writes: model.json also holds the tuning search, lineage, history)
Directories written before v0.2 also hold recommender.json (kind and parameters); they still load.

The directory is written under a temporary name and renamed, then recorded in one transaction, so a
failed run leaves neither a half-written directory nor a row pointing at one. Saving holds an OS lock on
`MODELS/.train.lock`; under it, what a killed or blocked save left is put right (`recover_models`):
`.tmp-*` directories are deleted, and a complete version directory that `cf_models` lacks (its
registration found the database busy, or the process died just before it) is registered, not deleted.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec.cf.data import UserDigests, user_digests
from movierec.cf.guard import check_model
from movierec.cf.recommender import MANIFEST, Recommender, read_manifest
from movierec.config import Settings
from movierec.db import connect, has_table, transaction
from movierec.errors import BusyError, ModelError, NotFoundError
from movierec.locks import file_lock


@dataclass(frozen=True)
class ModelRecord:
    version: str
    path: Path
    objective: str
    trained_at: datetime
    n_ratings: int | None
    max_rated_at: datetime | None
    metrics: dict
    is_current: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


_COLUMNS = "version, path, objective, trained_at, n_ratings, max_rated_at, metrics, is_current"


def _record(row: tuple) -> ModelRecord:
    version, path, objective, trained_at, n_ratings, max_rated_at, metrics, is_current = row
    return ModelRecord(
        version=version,
        path=Path(path),
        objective=objective,
        trained_at=trained_at,
        n_ratings=n_ratings,
        max_rated_at=max_rated_at,
        metrics=json.loads(metrics) if metrics else {},
        is_current=bool(is_current),
    )


def current_model(settings: Settings) -> ModelRecord | None:
    """The current model's record, or None when no model has been trained."""
    with connect(settings, read_only=True) as con:
        if not con.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'cf_models'"
        ).fetchall():
            return None
        row = con.execute(f"SELECT {_COLUMNS} FROM cf_models WHERE is_current LIMIT 1").fetchone()
    return _record(row) if row else None


def list_models(settings: Settings) -> list[ModelRecord]:
    with connect(settings, read_only=True) as con:
        rows = con.execute(f"SELECT {_COLUMNS} FROM cf_models ORDER BY trained_at DESC").fetchall()
    return [_record(r) for r in rows]


def load_current_model(settings: Settings) -> tuple[ModelRecord, Recommender]:
    """The current model behind the recommender contract (numpy only, no TensorFlow)."""
    record = current_model(settings)
    if record is None:
        raise NotFoundError(f"no trained CF model in {settings.db_path}: run `movierec train` first")
    return record, load_model(_model_dir(settings, record))


def load_model(model_dir: Path) -> Recommender:
    """One model directory, checked against its manifest (ModelError with what to do otherwise)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} is missing; retrain with `movierec train`")
    manifest = read_manifest(model_dir)
    model = Recommender.load(model_dir)
    check_model(model, ranking=False)  # damaged or diverged weights never score anything
    shape = manifest.get("shape")
    if shape and (len(model.user_ids), len(model.movie_ids)) != (shape["n_users"], shape["n_movies"]):
        raise ModelError(
            f"{model_dir} holds {len(model.user_ids)} users x {len(model.movie_ids)} movies but its "
            f"{MANIFEST} says {shape['n_users']} x {shape['n_movies']}: the model directory is "
            "inconsistent, retrain"
        )
    return model


def _model_dir(settings: Settings, record: ModelRecord) -> Path:
    """Where a version lives: its recorded path, or under the models directory if the home was moved."""
    moved = settings.models_path / record.version
    return record.path if record.path.exists() or not moved.exists() else moved


def stale_reason(settings: Settings) -> str | None:
    """Why the current model is out of date (no model, another rating count, newer ratings, ratings
    written after the ingest it saw: a re-rating that kept its timestamp, or users whose ratings were
    edited outside an ingest: their digest moved), or None."""
    record = current_model(settings)
    if record is None:
        return "no CF model yet"
    model_dir = _model_dir(settings, record)
    try:
        mark = (read_manifest(model_dir).get("data") or {}).get("ingest_id")
    except ModelError:  # a damaged version: what loads it says so
        mark = None
    with connect(settings, read_only=True) as con:
        n, newest = con.execute("SELECT count(*), max(rated_at) FROM ratings").fetchone()
        if record.n_ratings != n:
            return f"{n:,} ratings now, model {record.version} saw {record.n_ratings or 0:,}"
        if newest is not None and record.max_rated_at is not None and newest > record.max_rated_at:
            return f"ratings newer than model {record.version} ({newest} > {record.max_rated_at})"
        if mark is not None and has_table(con, "ingests"):
            later = con.execute("SELECT count(*) FROM ratings WHERE ingest_id > ?", [mark]).fetchone()[0]
            if later:
                return f"{later:,} ratings written after model {record.version}'s ingest {mark}"
        before = UserDigests.load(model_dir / DIGESTS)  # none: a model from before them
        edited = 0 if before is None else len(user_digests(con).changed(before))
    if edited:
        return f"the ratings of {edited:,} users changed after model {record.version} was trained"
    return None


def save_model(
    settings: Settings,
    model: Recommender,
    *,
    snapshot: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> ModelRecord:
    """Write `model` as a new version under the models directory and make it current.

    The directory is written under a temporary name and renamed, then recorded in one transaction, so a
    failure leaves neither a half-written directory nor a row pointing at one. `snapshot` describes the
    ratings it was fitted on (`Ratings.snapshot()`): what tells a stale model apart."""
    metrics = metrics or {}
    with _train_lock(settings):
        _delete_partial(settings.models_path)
        check_model(model, metrics)  # a diverged model never becomes current (cf/guard.py)
        return _save_locked(settings, model, snapshot, metrics, manifest, extra_files)


def _save_locked(
    settings: Settings,
    model: Recommender,
    snapshot: dict[str, Any],
    metrics: dict[str, Any],
    manifest: dict[str, Any] | None,
    extra_files: Callable[[Path], None] | None,
) -> ModelRecord:
    trained_at = datetime.now(UTC).replace(tzinfo=None)
    version = f"{trained_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    objective = getattr(getattr(model, "hp", None), "objective", model.kind)
    root = settings.models_path
    final, tmp = root / version, root / f".tmp-{version}"
    tmp.mkdir(parents=True)
    try:
        doc = {
            "version": version,
            "trained_at": trained_at.isoformat(),
            "objective": objective,
            "shape": {"n_users": len(model.user_ids), "n_movies": len(model.movie_ids)},
            "data": snapshot,
            "metrics": metrics,
            **(manifest or {}),
        }
        model.save(tmp, manifest=doc)
        if extra_files is not None:
            extra_files(tmp)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    max_ts = (
        datetime.fromtimestamp(snapshot["max_rated_at"], UTC).replace(tzinfo=None)
        if snapshot.get("max_rated_at")
        else None
    )
    try:
        with connect(settings) as con, transaction(con):
            _register_unrecorded(con, root, current=False, skip=version)  # older finished ones first
            con.execute("UPDATE cf_models SET is_current = false WHERE is_current")
            con.execute(
                "INSERT INTO cf_models (version, trained_at, objective, metrics, path, is_current, n_ratings,"
                " max_rated_at) VALUES (?, ?, ?, ?, ?, true, ?, ?)",
                [version, trained_at, objective, json.dumps(metrics), str(final.resolve()),
                 snapshot.get("n_ratings"), max_ts],
            )  # fmt: skip
    except BusyError as exc:  # the work is done: keep it for the next train/nightly to register
        raise BusyError(
            f"{exc}; the trained model {version} is kept in {final} and becomes current at the next "
            "`movierec train` or `movierec nightly`"
        ) from exc
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    with suppress(OSError):  # the save succeeded; an unreadable old directory must not undo that
        _prune(root, keep=settings.keep_models, current=version)
    return ModelRecord(version, final.resolve(), objective, trained_at, snapshot.get("n_ratings"), max_ts,
                       metrics)  # fmt: skip


TRAIN_LOCK = ".train.lock"
DIGESTS = "digests.npz"
_MODEL_FILES = (MANIFEST, "contract.npz")  # every kind writes both


def _train_lock(settings: Settings, wait: float | None = None) -> Any:
    """Held while a model directory is written and recorded: what is in MODELS/ outside it is finished."""
    return file_lock(
        settings.models_path / TRAIN_LOCK,
        f"the CF model directory {settings.models_path}",
        wait=settings.write_wait if wait is None else wait,
    )


def _prune(root: Path, keep: int, current: str) -> None:
    """Delete the directories of all but the newest `keep` versions (never `current`): every nightly
    that sees new ratings saves one (tens of MB at ml-25m size), and only the current one is ever loaded.
    Their `cf_models` rows stay as the history of what was trained. `keep` >= 2 spares the version that
    was current until now, which a command that looked it up a moment ago may be loading. Best effort:
    the save it follows has succeeded. Only call while holding the lock."""
    versions = []
    for d in root.iterdir():
        if d.name.startswith(".") or not (d / MANIFEST).is_file():
            continue
        try:  # by the time each was trained (a name holds it only to the second)
            doc = read_manifest(d)
            if doc.get("version") == d.name:  # not a copy someone made of a version
                versions.append((datetime.fromisoformat(doc["trained_at"]).replace(tzinfo=None), d))
        except (ModelError, KeyError, TypeError, ValueError):
            continue  # not a version directory we wrote: leave it alone
    versions.sort()
    for _, d in versions[: max(len(versions) - max(keep, 2), 0)]:
        if d.name != current:
            shutil.rmtree(d, ignore_errors=True)


def _delete_partial(root: Path) -> None:
    """Temporary directories of saves that died (only call while holding the training lock)."""
    if root.is_dir():
        for tmp in root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def _register_unrecorded(con: Any, root: Path, current: bool, skip: str = "") -> list[str]:
    """Record every complete version directory under `root` that cf_models lacks; with `current`, the newest
    becomes current when it is newer than the current model. Returns the versions recorded."""
    if not root.is_dir():
        return []
    known = {v for (v,) in con.execute("SELECT version FROM cf_models").fetchall()} | {skip}
    found = []
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or d.name in known or not all((d / f).is_file() for f in _MODEL_FILES):
            continue
        try:
            doc = read_manifest(d)
            if doc.get("version") != d.name:
                continue
            data = doc.get("data") or {}
            max_ts = data.get("max_rated_at")
            found.append([
                d.name, datetime.fromisoformat(doc["trained_at"]), doc.get("objective"),
                json.dumps(doc.get("metrics") or {}), str(d.resolve()), data.get("n_ratings"),
                datetime.fromtimestamp(max_ts, UTC).replace(tzinfo=None) if max_ts else None,
            ])  # fmt: skip
        except (ModelError, KeyError, TypeError, ValueError):
            continue  # not a version directory we wrote: leave it alone
    for row in found:
        con.execute(
            "INSERT INTO cf_models (version, trained_at, objective, metrics, path, is_current, n_ratings, "
            "max_rated_at) VALUES (?, ?, ?, ?, ?, false, ?, ?)",
            row,
        )
    if current and found:
        newest = max(found, key=lambda r: r[1])
        now = con.execute("SELECT max(trained_at) FROM cf_models WHERE is_current").fetchone()[0]
        if now is None or newest[1] > now:
            con.execute("UPDATE cf_models SET is_current = (version = ?)", [newest[0]])
    return [r[0] for r in found]


def recover_models(settings: Settings) -> list[str]:
    """Put right what killed or blocked saves left in the models directory: delete `.tmp-*` directories
    and record finished version directories that cf_models lacks (the newest becomes current if it is
    newer than the current model). Returns the versions recorded. Skipped (returns []) while another
    process is saving a model: that save does the same."""
    root = settings.models_path
    if not root.is_dir():
        return []
    with ExitStack() as stack:
        try:
            stack.enter_context(_train_lock(settings, wait=0))
        except BusyError:
            return []
        _delete_partial(root)
        if not any(not d.name.startswith(".") for d in root.iterdir()):
            return []
        with connect(settings) as con, transaction(con):
            return _register_unrecorded(con, root, current=True)


def __getattr__(name: str) -> Any:
    # `train_model` and `UpdateRefused` lived here until the training policy moved to cf.training; the
    # old import path keeps working (cf.training imports this module, so the lookup is lazy).
    if name in ("train_model", "UpdateRefused"):
        from movierec.cf import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
