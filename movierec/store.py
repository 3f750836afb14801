"""The one owner of the vector store: movie vectors with genre/year payloads, in Qdrant.

Two backends behind one small interface (`VectorStore`), chosen by `settings.qdrant_url`:
- unset: **Qdrant Edge**, the Qdrant engine in-process; one shard directory under `settings.edge_path`.
- `http(s)://...`: a **Qdrant server** through qdrant-client (collection `settings.collection`).
  `:memory:` or `file:PATH` run qdrant-client's local mode instead of a server (tests, experiments).

Points: id = movie id; a dense vector (cosine) and a sparse keyword vector `keywords` (word weights, scored
with Qdrant's IDF modifier: BM25-like; see movierec.ingest.text.keyword_vector); payload `movie_id, title,
year, genres` (+ `text_hash`, which makes embedding incremental); payload indexes on `genres` (keyword) and
`year` (integer). With keyword fusion on, a query with words is answered by one query with two prefetches
of `FUSION_DEPTH` points, the dense neighbours and the keyword matches, fused by Qdrant's
distribution-based score fusion (DBSF: each list's scores mapped from mean -/+ 3 std to 0..1, then
summed): the topic's words count even when the dense vector leans on the genre. DBSF, not RRF, because at
about the same topical precision it kept 5-10 points more genre precision (BENCHMARKS.md); the fixed depth
keeps a point's fused rank the same for any `limit` up to FUSION_DEPTH. Hits carry the cosine similarity
either way (the batch blends it).
The store records the model (name, dimension) that built it; `reset` is the only way to change it, so
vectors of two models never mix.

Both file backends allow one process at a time. Open late, close early: `open_store` waits up to
`settings.lock_timeout` seconds for another process to finish, then raises BusyError naming it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movierec.config import Settings
from movierec.errors import BusyError, DamagedError, ModelError, MovierecError, NotFoundError
from movierec.locks import file_lock

PAYLOAD_INDEXES = {"genres": "keyword", "year": "integer"}
KEYWORDS = "keywords"  # name of the sparse vector
FUSION_DEPTH = 250  # points per prefetch in a fused query (DBSF's statistics are over these)
Sparse = tuple[Sequence[int], Sequence[float]]  # (indices, values)
UPSERT_CHUNK = 2048
SCROLL_PAGE = 10_000


@dataclass(frozen=True)
class SearchFilter:
    """Payload filter: any of `genres`, none of `exclude_genres`, year within [year_min, year_max], and
    (when non-empty) only the movies `ids` (a title lookup scores the films it found; empty: no id filter,
    so a caller with no ids to score must not search at all)."""

    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from callers but keep the dataclass hashable.
        object.__setattr__(self, "genres", tuple(self.genres))
        object.__setattr__(self, "exclude_genres", tuple(self.exclude_genres))
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))

    @property
    def is_empty(self) -> bool:
        return (
            not (self.genres or self.exclude_genres or self.ids)
            and self.year_min is None
            and self.year_max is None
        )


@dataclass(frozen=True)
class Hit:
    """One search result: cosine similarity and the point's payload."""

    movie_id: int
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorStore(ABC):
    """What every backend offers. Use it through `open_store`."""

    backend: str
    location: str

    @abstractmethod
    def model_info(self) -> tuple[str, int] | None:
        """(model name, dimension) that built the store, or None for a new store."""

    def reset(self, model_name: str, dim: int) -> None:
        """Drop every point and record that `model_name` (vectors of length `dim`) builds the store now."""
        self.rebuild(model_name, dim, [], np.zeros((0, dim), np.float32), [])

    @abstractmethod
    def rebuild(
        self,
        model_name: str,
        dim: int,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        keywords: Sequence[Sparse] | None = None,
    ) -> None:
        """Replace the whole store with these points of `model_name` (and their keyword vectors),
        atomically: the new store is built beside the old one and swapped in at the end, so a crash at any
        point leaves one of the two, complete, with the record of its model."""

    @abstractmethod
    def count(self) -> int:
        """Number of points."""

    @abstractmethod
    def has_keywords(self) -> bool:
        """Whether the store holds keyword vectors (stores built before them do not: `embed` rebuilds)."""

    @abstractmethod
    def _upsert(
        self,
        ids: list[int],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        keywords: list[Sparse] | None,
    ) -> None: ...

    @abstractmethod
    def delete(self, ids: Sequence[int]) -> None:
        """Remove points (movies no longer in the catalogue)."""

    @abstractmethod
    def payload_values(self, key: str) -> dict[int, Any]:
        """One payload field of every point, by point id (e.g. `text_hash` for incremental embedding)."""

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every point's dense vector: (movie ids ascending, unit vectors [n, dim] float32). What the CF
        model's content side reads (`movierec.cf.content`); 1.5 s for 62k 512-d vectors on Edge."""
        ids, pages = [], []
        collecting = gc.isenabled()
        gc.disable()  # millions of short-lived floats: the cyclic collector's passes doubled the time
        try:
            for records in self._scroll_vectors():
                keep = [(int(r.id), v) for r in records if (v := _dense(r.vector)) is not None]
                if keep:
                    ids.append(np.fromiter((i for i, _ in keep), dtype=np.int64, count=len(keep)))
                    pages.append(np.asarray([v for _, v in keep], dtype=np.float32))
                del records, keep  # the page's Python floats go now, not at the next page
        finally:
            if collecting:
                gc.enable()
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        all_ids, vecs = np.concatenate(ids), np.concatenate(pages)
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], vecs[order]

    @abstractmethod
    def _scroll_vectors(self) -> Iterator[list[Any]]:
        """Pages of points with their dense vector (`.id`, `.vector`), every point once."""

    @abstractmethod
    def search_batch(
        self,
        vectors: np.ndarray,
        limits: list[int],
        filters: Sequence[SearchFilter | None],
        keywords: Sequence[Sparse] | None = None,
    ) -> list[list[Hit]]:
        """Several searches planned together; one list of hits per query vector. With `keywords` (one
        sparse query per vector) on a store that has keyword vectors, each search fuses the dense and the
        keyword ranking (DBSF); hits keep their cosine similarity as score, in fused order."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files and locks."""

    def upsert(
        self,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        keywords: Sequence[Sparse] | None = None,
    ) -> None:
        """Insert or replace points. Vectors must match the recorded model's dimension."""
        info = self.model_info()
        if info is None:
            raise ModelError(f"{self.describe()} records no model: call reset(model_name, dim) first")
        if not self.has_keywords():
            keywords = None  # a store from before keyword vectors: dense only until `embed` rebuilds it
        self._put(info, ids, vectors, payloads, keywords)

    def _put(
        self,
        info: tuple[str, int],
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        keywords: Sequence[Sparse] | None = None,
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if (
            vectors.ndim != 2
            or vectors.shape[1] != info[1]
            or not (len(ids) == len(vectors) == len(payloads))
            or (keywords is not None and len(keywords) != len(ids))
        ):
            raise ModelError(
                f"cannot upsert {vectors.shape} vectors for {len(ids)} ids into {self.describe()}, "
                f"built by {info[0]} with dimension {info[1]}"
            )
        if not np.isfinite(vectors).all():
            raise ModelError(f"refusing to store non-finite vectors of {info[0]} in {self.describe()}")
        for start in range(0, len(ids), UPSERT_CHUNK):
            stop = start + UPSERT_CHUNK
            self._upsert(
                [int(i) for i in ids[start:stop]],
                vectors[start:stop],
                list(payloads[start:stop]),
                None if keywords is None else list(keywords[start:stop]),
            )

    def _hits(self, points: Any, query: np.ndarray | None = None) -> list[Hit]:
        """Search results, refusing similarities no cosine gives (damaged vector files). With `query`
        (a fused search, whose scores are ranks), each hit's score is its cosine with the query, from the
        returned vector."""
        if query is None:
            hits = [Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in points]
        else:
            hits = [Hit(int(p.id), _cosine(p.vector, query), dict(p.payload or {})) for p in points]
        if any(not -1.001 <= h.score <= 1.001 for h in hits):  # NaN fails the comparison too
            worst = next(h for h in hits if not -1.001 <= h.score <= 1.001)
            raise DamagedError(
                f"{self.describe()} returned similarity {worst.score:g} for movie {worst.movie_id} (cosine "
                "lies in [-1, 1]): its vector files are damaged; run `movierec embed --rebuild`"
            )
        return hits

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        """Nearest movies to one query vector, best first."""
        return self.search_batch(np.asarray(vector, dtype=np.float32)[None, :], [limit], [flt])[0]

    def require_model(self, model_name: str) -> int:
        """The store's dimension, after checking that `model_name` built it (queries need the same model)."""
        info = self.model_info()
        if info is None or self.count() == 0:
            raise NotFoundError(f"{self.describe()} is empty: run `movierec embed` first")
        if info[0] != model_name:
            raise ModelError(
                f"{self.describe()} was built with model '{info[0]}' (dimension {info[1]}), not "
                f"'{model_name}': run `movierec embed --model {model_name}` to rebuild it, "
                f"or pass --model {info[0]}"
            )
        return info[1]

    def describe(self) -> str:
        return f"vector store {self.location} ({self.backend})"

    def _check_queries(
        self,
        vectors: np.ndarray,
        limits: list[int],
        filters: Sequence[SearchFilter | None],
        keywords: Sequence[Sparse] | None = None,
    ) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not (len(vectors) == len(limits) == len(filters)):
            raise ValueError("search_batch needs one limit and one filter (or None) per query vector")
        if keywords is not None and len(keywords) != len(vectors):
            raise ValueError("search_batch needs one keyword query per query vector")
        info = self.model_info()
        if info is not None and vectors.shape[1] != info[1]:
            raise ModelError(
                f"query vectors have dimension {vectors.shape[1]} but {self.describe()} holds "
                f"dimension {info[1]} (model {info[0]})"
            )
        if any(limit <= 0 for limit in limits):
            raise ValueError("search limits must be positive")
        return vectors


def _dense(vector: Any) -> Any:
    """The unnamed dense vector of a returned point (a dict when the point also has a sparse vector)."""
    return vector.get("") if isinstance(vector, dict) else vector


def _cosine(vector: Any, query: np.ndarray) -> float:
    """Dot product of a returned (unit, cosine-normalised) dense vector with the unit query vector."""
    vector = _dense(vector)
    if vector is None:
        return float("nan")  # caught by _hits as damage
    return float(np.dot(np.asarray(vector, dtype=np.float32), query))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic and durable write (fsync, rename, fsync the directory), so a crash never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- Qdrant Edge


def _edge_filter(flt: SearchFilter | None) -> Any:
    import qdrant_edge as qe

    if flt is None or flt.is_empty:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if flt.genres:
        must.append(qe.FieldCondition(key="genres", match=qe.MatchAny(list(flt.genres))))
    if flt.exclude_genres:
        must_not.append(qe.FieldCondition(key="genres", match=qe.MatchAny(list(flt.exclude_genres))))
    if flt.year_min is not None or flt.year_max is not None:
        must.append(qe.FieldCondition(key="year", range=qe.RangeFloat(gte=flt.year_min, lte=flt.year_max)))
    if flt.ids:
        must.append(qe.HasIdCondition(set(flt.ids)))
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeStore(VectorStore):
    """Qdrant Edge: `ROOT/model.json` records the model that built the store and names its shard directory
    (`{"model": ..., "dim": ..., "shard": "shard-1a2b3c"}`; stores written before the record named its
    shard use `ROOT/shard`). A rebuild writes a new shard directory beside the old one and then replaces
    `model.json` (an atomic rename): that one rename is the switch, so a crash leaves the old store or the
    new one, each with the record of its model. Shard directories no record names are leftovers of a
    killed rebuild and are deleted when the store is next opened (under its lock)."""

    backend = "qdrant-edge"
    LEGACY_SHARD = "shard"

    def __init__(self, root: Path, repair: bool = False) -> None:
        """`repair`: open a damaged store as empty (for a rebuild) instead of raising DamagedError."""
        import qdrant_edge as qe

        self._qe = qe
        self.root = root
        self.location = str(root)
        self.model_file = root / "model.json"
        self._shard: Any = None
        try:
            self._record = self._read_record()
        except DamagedError:
            if not repair:
                raise
            self._record = None
        self.shard_dir = root / (self._record or {}).get("shard", self.LEGACY_SHARD)
        if self._record is not None:
            self._remove_leftovers()
        if (self.shard_dir / "edge_config.json").exists():
            try:
                self._check_dim()
                self._shard = self._load(self.shard_dir)
            except DamagedError:
                if not repair:
                    raise

    def _read_record(self) -> dict[str, Any] | None:
        if not self.model_file.exists():
            return None
        try:
            data = json.loads(self.model_file.read_text())
            record = {
                "model": str(data["model"]),
                "dim": int(data["dim"]),
                "keywords": bool(data.get("keywords")),
            }
            shard = str(data.get("shard", self.LEGACY_SHARD))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DamagedError(
                f"the vector store's model record {self.model_file} is damaged ({type(exc).__name__}); "
                "run `movierec embed --rebuild`"
            ) from None
        if "/" in shard or shard in ("", ".", ".."):
            raise DamagedError(
                f"{self.model_file} names no valid shard ({shard!r}); run `movierec embed --rebuild`"
            )
        return {**record, "shard": shard}

    def _check_dim(self) -> None:
        """The record's dim must be the shard's vector size: an edited model.json would otherwise pass
        every query of the wrong length to the engine."""
        if self._record is None:
            return
        config = self.shard_dir / "edge_config.json"
        try:
            size = int(json.loads(config.read_text())["vectors"][""]["size"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DamagedError(
                f"{config} is damaged (no vector size); run `movierec embed --rebuild`"
            ) from None
        if size != self._record["dim"]:
            raise DamagedError(
                f"the vector store's record {self.model_file} says {self._record['dim']}-d vectors, but its "
                f"shard holds {size}-d ones: run `movierec embed --rebuild`"
            )

    def _load(self, shard_dir: Path) -> Any:
        try:
            return self._qe.EdgeShard.load(str(shard_dir))
        except Exception as exc:  # the engine reports a held WAL lock as a generic Exception
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise BusyError(f"{self.describe()} is in use by another process") from exc
            raise DamagedError(
                f"{self.describe()} cannot be opened ({str(exc).splitlines()[0][:200]}): its files in "
                f"{shard_dir} are damaged; run `movierec embed --rebuild`"
            ) from exc

    def _remove_leftovers(self) -> None:
        """Shard directories the record does not name: a rebuild killed before its switch, the shard it
        replaced (or the pre-record `shard`). Only called with a readable record, under the store lock."""
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            if d.is_dir() and d != self.shard_dir and (d.name.startswith("shard-") or d.name == "shard"):
                shutil.rmtree(d, ignore_errors=True)

    def model_info(self) -> tuple[str, int] | None:
        if self._shard is None or self._record is None:
            return None
        return self._record["model"], self._record["dim"]

    def has_keywords(self) -> bool:
        return self._shard is not None and bool((self._record or {}).get("keywords"))

    def rebuild(
        self,
        model_name: str,
        dim: int,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        keywords: Sequence[Sparse] | None = None,
    ) -> None:
        import uuid

        qe = self._qe
        self.root.mkdir(parents=True, exist_ok=True)
        new_dir = self.root / f"shard-{uuid.uuid4().hex[:12]}"
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            sparse_vectors={KEYWORDS: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        old_shard, old_dir = self._shard, self.shard_dir
        self._shard, self.shard_dir = qe.EdgeShard.create(str(new_dir), config), new_dir
        try:
            schema = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
            for name, kind in PAYLOAD_INDEXES.items():
                self._shard.update(qe.UpdateOperation.create_field_index(name, schema[kind]))
            self._put((model_name, dim), ids, vectors, payloads, keywords)
            self._shard.flush()
        except BaseException:
            self._shard.close()
            shutil.rmtree(new_dir, ignore_errors=True)
            self._shard, self.shard_dir = old_shard, old_dir
            raise
        _fsync_dir(self.root)
        record = {"model": model_name, "dim": dim, "shard": new_dir.name, "keywords": True}
        _write_json(self.model_file, record)  # the switch
        self._record = record
        if old_shard is not None:
            old_shard.close()
        self._remove_leftovers()

    def count(self) -> int:
        return 0 if self._shard is None else int(self._shard.count(self._qe.CountRequest(exact=True)))

    def _upsert(
        self,
        ids: list[int],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        keywords: list[Sparse] | None,
    ) -> None:
        qe = self._qe
        dense: list[Any] = vectors.tolist()
        if keywords is not None:
            dense = [
                {"": v, KEYWORDS: qe.SparseVector(list(i), list(w))}
                for v, (i, w) in zip(dense, keywords, strict=True)
            ]
        points = [qe.Point(i, v, p) for i, v, p in zip(ids, dense, payloads, strict=True)]
        self._shard.update(qe.UpdateOperation.upsert_points(points))

    def delete(self, ids: Sequence[int]) -> None:
        if self._shard is not None and len(ids):
            self._shard.update(self._qe.UpdateOperation.delete_points([int(i) for i in ids]))

    def payload_values(self, key: str) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if self._shard is None:
            return out
        offset = None
        while True:
            request = self._qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=[key])
            records, offset = self._shard.scroll(request)
            out.update({int(r.id): (r.payload or {}).get(key) for r in records})
            if offset is None:
                return out

    def _scroll_vectors(self) -> Iterator[list[Any]]:
        offset = None
        while self._shard is not None:
            request = self._qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_vector=[""])
            records, offset = self._shard.scroll(request)
            yield records
            if offset is None:
                return

    def search_batch(
        self,
        vectors: np.ndarray,
        limits: list[int],
        filters: Sequence[SearchFilter | None],
        keywords: Sequence[Sparse] | None = None,
    ) -> list[list[Hit]]:
        vectors = self._check_queries(vectors, limits, filters, keywords)
        if self._shard is None or not len(vectors):
            return [[] for _ in limits]
        qe = self._qe
        fused = keywords is not None and self.has_keywords()
        requests = []
        for n, (v, limit, f) in enumerate(zip(vectors.tolist(), limits, filters, strict=True)):
            flt = _edge_filter(f)
            if fused and len(keywords[n][0]):  # type: ignore[index]
                sparse = qe.SparseVector(list(keywords[n][0]), list(keywords[n][1]))  # type: ignore[index]
                depth = max(limit, FUSION_DEPTH)
                prefetches = [
                    qe.Prefetch(limit=depth, query=qe.Query.Nearest(v), filter=flt),
                    qe.Prefetch(limit=depth, query=qe.Query.Nearest(sparse, using=KEYWORDS), filter=flt),
                ]
                requests.append(
                    qe.QueryRequest(
                        limit=limit,
                        prefetches=prefetches,
                        query=qe.Fusion.Dbsf(),
                        with_payload=True,
                        with_vector=[""],
                    )
                )
            else:
                requests.append(
                    qe.QueryRequest(limit=limit, query=qe.Query.Nearest(v), filter=flt, with_payload=True)
                )
        results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [
            self._hits(points, vectors[n] if fused and len(keywords[n][0]) else None)  # type: ignore[index]
            for n, points in enumerate(results)
        ]

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


# --------------------------------------------------------------------------- qdrant-client


def _client_filter(flt: SearchFilter | None) -> Any:
    from qdrant_client import models

    if flt is None or flt.is_empty:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if flt.genres:
        must.append(models.FieldCondition(key="genres", match=models.MatchAny(any=list(flt.genres))))
    if flt.exclude_genres:
        must_not.append(
            models.FieldCondition(key="genres", match=models.MatchAny(any=list(flt.exclude_genres)))
        )
    if flt.year_min is not None or flt.year_max is not None:
        must.append(models.FieldCondition(key="year", range=models.Range(gte=flt.year_min, lte=flt.year_max)))
    if flt.ids:
        must.append(models.HasIdCondition(has_id=list(flt.ids)))
    return models.Filter(must=must or None, must_not=must_not or None)


def _local_path(url: str) -> Path | None:
    """The directory of a `file:PATH` (or `file://PATH`) store URL; None for anything else."""
    if not url.startswith("file:"):
        return None
    return Path(url.removeprefix("file://") if url.startswith("file://") else url.removeprefix("file:"))


_MEMORY_CLIENTS: dict[str, Any] = {}  # ":memory:" lives as long as the process, like a server would


class ClientStore(VectorStore):
    """A Qdrant server via qdrant-client (or its local mode standing in for one)."""

    def __init__(self, url: str, collection: str, api_key: str | None = None) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        if url == ":memory:":
            self.backend, self.location = "qdrant-local", f":memory:/{collection}"
            self._client = _MEMORY_CLIENTS.setdefault(url, QdrantClient(location=":memory:"))
            self._owned = False
        elif url.startswith("file:"):
            path = str(_local_path(url))
            self.backend, self.location = "qdrant-local", f"{path}/{collection}"
            try:
                self._client = QdrantClient(path=path)
            except RuntimeError as exc:  # qdrant-client's own file lock
                raise BusyError(f"{self.describe()} is in use by another process") from exc
            self._owned = True
        else:
            self.backend, self.location = "qdrant-server", f"{url.rstrip('/')}/collections/{collection}"
            # No version probe at construction: on an unreachable server it only adds a warning
            # before our own clear error below.
            self._client = QdrantClient(url=url, api_key=api_key, timeout=30, check_compatibility=False)
            self._owned = True
            try:
                self._client.get_collections()
            except Exception as exc:  # connection refused, DNS, TLS, auth: all mean "cannot use it"
                self._client.close()
                raise NotFoundError(
                    f"cannot reach the Qdrant server at {url} ({type(exc).__name__}): start it "
                    f"(`docker compose up -d qdrant`) or unset QDRANT_URL to use the embedded store"
                ) from exc

    def _exists(self) -> bool:
        return bool(self._client.collection_exists(self.collection))

    def model_info(self) -> tuple[str, int] | None:
        if not self._exists():
            return None
        meta = self._client.get_collection(self.collection).config.metadata or {}
        if "movierec_model" not in meta:
            return None
        try:
            return str(meta["movierec_model"]), int(meta["movierec_dim"])
        except (KeyError, TypeError, ValueError):
            raise DamagedError(
                f"{self.describe()} has a damaged model record in its metadata ({meta}); "
                "run `movierec embed --rebuild`"
            ) from None

    def has_keywords(self) -> bool:
        if not self._exists():
            return False
        sparse = self._client.get_collection(self.collection).config.params.sparse_vectors or {}
        return KEYWORDS in sparse

    def rebuild(
        self,
        model_name: str,
        dim: int,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        keywords: Sequence[Sparse] | None = None,
    ) -> None:
        """A new collection `<collection>-<id>` filled beside the old one, then the alias `<collection>`
        switched to it in one `update_collection_aliases` call (Qdrant's own mechanism for this), then the
        old collection dropped. A store from before aliases (a real collection under the name) is dropped
        just before the switch: that one-time migration is the only non-atomic step."""
        import uuid

        from qdrant_client import models

        alias, new = self.collection, f"{self.collection}-{uuid.uuid4().hex[:12]}"
        self._client.create_collection(
            new,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            sparse_vectors_config={KEYWORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"movierec_model": model_name, "movierec_dim": dim},
        )
        try:
            schema = {
                "keyword": models.PayloadSchemaType.KEYWORD,
                "integer": models.PayloadSchemaType.INTEGER,
            }
            with warnings.catch_warnings():
                # Local mode warns that it ignores payload indexes; creating them keeps one code path.
                warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
                for name, kind in PAYLOAD_INDEXES.items():
                    self._client.create_payload_index(new, name, schema[kind], wait=True)
            self.collection = new  # fill it under its own name
            self._put((model_name, dim), ids, vectors, payloads, keywords)
        except BaseException:
            self._client.delete_collection(new)
            raise
        finally:
            self.collection = alias
        old = self._alias_target()
        actions: list[Any] = []
        if old is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        elif self._client.collection_exists(alias):
            self._client.delete_collection(alias)  # the pre-alias layout, once
        create = models.CreateAlias(collection_name=new, alias_name=alias)
        actions.append(models.CreateAliasOperation(create_alias=create))
        self._client.update_collection_aliases(change_aliases_operations=actions)  # the switch
        for name in self._leftovers(keep=new):
            self._client.delete_collection(name)

    def _alias_target(self) -> str | None:
        for a in self._client.get_aliases().aliases:
            if a.alias_name == self.collection:
                return str(a.collection_name)
        return None

    def _leftovers(self, keep: str) -> list[str]:
        """Collections of earlier builds (and of builds killed before their switch)."""
        prefix = f"{self.collection}-"
        names = [c.name for c in self._client.get_collections().collections]
        return [n for n in names if n.startswith(prefix) and n != keep and len(n) == len(keep)]

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count) if self._exists() else 0

    def _upsert(
        self,
        ids: list[int],
        vectors: np.ndarray,
        payloads: list[dict[str, Any]],
        keywords: list[Sparse] | None,
    ) -> None:
        from qdrant_client import models

        if keywords is None:
            batch = models.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads)
            self._client.upsert(self.collection, points=batch, wait=True)
            return
        points = [
            models.PointStruct(
                id=i,
                vector={"": v, KEYWORDS: models.SparseVector(indices=list(k[0]), values=list(k[1]))},
                payload=p,
            )
            for i, v, p, k in zip(ids, vectors.tolist(), payloads, keywords, strict=True)
        ]
        self._client.upsert(self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[int]) -> None:
        from qdrant_client import models

        if len(ids) and self._exists():
            selector = models.PointIdsList(points=[int(i) for i in ids])
            self._client.delete(self.collection, points_selector=selector, wait=True)

    def payload_values(self, key: str) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if not self._exists():
            return out
        offset = None
        while True:
            records, offset = self._client.scroll(
                self.collection, limit=SCROLL_PAGE, offset=offset, with_payload=[key], with_vectors=False
            )
            out.update({int(r.id): (r.payload or {}).get(key) for r in records})
            if offset is None:
                return out

    def _scroll_vectors(self) -> Iterator[list[Any]]:
        offset = None
        while self._exists():
            records, offset = self._client.scroll(
                self.collection, limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=[""]
            )
            yield records
            if offset is None:
                return

    def search_batch(
        self,
        vectors: np.ndarray,
        limits: list[int],
        filters: Sequence[SearchFilter | None],
        keywords: Sequence[Sparse] | None = None,
    ) -> list[list[Hit]]:
        from qdrant_client import models

        vectors = self._check_queries(vectors, limits, filters, keywords)
        if not len(vectors) or not self._exists():
            return [[] for _ in limits]
        fused = [
            keywords is not None and bool(len(keywords[n][0])) for n in range(len(vectors))
        ] if self.has_keywords() else [False] * len(vectors)  # fmt: skip
        requests = []
        for n, (v, limit, f) in enumerate(zip(vectors.tolist(), limits, filters, strict=True)):
            flt = _client_filter(f)
            if fused[n]:
                sparse = models.SparseVector(indices=list(keywords[n][0]), values=list(keywords[n][1]))  # type: ignore[index]
                depth = max(limit, FUSION_DEPTH)
                prefetch = [
                    models.Prefetch(query=v, limit=depth, filter=flt),
                    models.Prefetch(query=sparse, using=KEYWORDS, limit=depth, filter=flt),
                ]
                requests.append(
                    models.QueryRequest(
                        prefetch=prefetch,
                        query=models.FusionQuery(fusion=models.Fusion.DBSF),
                        limit=limit,
                        with_payload=True,
                        with_vector=[""],
                    )
                )
            else:
                requests.append(models.QueryRequest(query=v, limit=limit, filter=flt, with_payload=True))
        responses = self._client.query_batch_points(self.collection, requests=requests)
        return [
            self._hits(response.points, vectors[n] if fused[n] else None)
            for n, response in enumerate(responses)
        ]

    def close(self) -> None:
        if self._owned:
            self._client.close()


# --------------------------------------------------------------------------- entry point
EDGE_FREE_MIN = 64 << 20  # the engine maps two 32 MiB WAL segments on open


def require_free_space(path: Path) -> None:
    """Refuse to open the Edge store on a full disk: the engine maps its sparse WAL segments and, when
    the file system cannot back a page, the process dies of SIGBUS (no error, no message)."""
    import shutil

    where = path if path.exists() else path.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # the open reports it
    if free < EDGE_FREE_MIN:
        raise MovierecError(
            f"the disk holding the vector store {path} is full ({free >> 20} MiB free, it needs "
            f"{EDGE_FREE_MIN >> 20} MiB to open): free space and run the command again"
        )


@contextlib.contextmanager
def open_store(settings: Settings, wait: float | None = None, repair: bool = False) -> Iterator[VectorStore]:
    """Open the configured store for one unit of work and close it straight after.

    File backends are exclusive to one process: wait up to `wait` seconds (default
    `settings.lock_timeout`) for another holder, then raise BusyError naming it. A damaged store raises
    DamagedError, or with `repair` opens as empty so that a rebuild can replace it.
    """
    wait = settings.lock_timeout if wait is None else wait
    url = settings.qdrant_url
    lock_dir = _local_path(url) if url else settings.edge_path  # a server handles its own concurrency
    lock = file_lock(lock_dir / ".movierec.lock", f"vector store {lock_dir}", wait) if lock_dir else None
    with lock or contextlib.nullcontext():
        store: VectorStore
        if url:
            store = ClientStore(url, settings.collection, settings.qdrant_api_key)
        else:
            require_free_space(settings.edge_path)
            store = EdgeStore(settings.edge_path, repair=repair)
        try:
            yield store
        finally:
            store.close()
