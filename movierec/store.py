"""The one owner of the vector store: movie vectors with genre/year payloads, in Qdrant.

Two backends behind one small interface (`VectorStore`), chosen by `settings.qdrant_url`:
- unset: **Qdrant Edge**, the Qdrant engine in-process; one shard directory under `settings.edge_path`.
- `http(s)://...`: a **Qdrant server** through qdrant-client (collection `settings.collection`).
  `:memory:` or `file:PATH` run qdrant-client's local mode instead of a server (tests, experiments).

Points: id = movie id; payload `movie_id, title, year, genres` (+ `text_hash`, which makes embedding
incremental); payload indexes on `genres` (keyword) and `year` (integer); cosine distance.
The store records the model (name, dimension) that built it; `reset` is the only way to change it, so
vectors of two models never mix.

Both file backends allow one process at a time. Open late, close early: `open_store` waits up to
`settings.lock_timeout` seconds for another process to finish, then raises BusyError naming it.
"""

from __future__ import annotations

import contextlib
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
from movierec.errors import BusyError, ModelError, MovierecError, NotFoundError
from movierec.locks import file_lock

PAYLOAD_INDEXES = {"genres": "keyword", "year": "integer"}
UPSERT_CHUNK = 2048
SCROLL_PAGE = 10_000


@dataclass(frozen=True)
class SearchFilter:
    """Payload filter: any of `genres`, none of `exclude_genres`, year within [year_min, year_max]."""

    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None

    def __post_init__(self) -> None:
        # Accept lists from callers but keep the dataclass hashable.
        object.__setattr__(self, "genres", tuple(self.genres))
        object.__setattr__(self, "exclude_genres", tuple(self.exclude_genres))

    @property
    def is_empty(self) -> bool:
        return not (self.genres or self.exclude_genres) and self.year_min is None and self.year_max is None


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

    @abstractmethod
    def reset(self, model_name: str, dim: int) -> None:
        """Drop every point and record that `model_name` (vectors of length `dim`) builds the store now."""

    @abstractmethod
    def count(self) -> int:
        """Number of points."""

    @abstractmethod
    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None: ...

    @abstractmethod
    def delete(self, ids: Sequence[int]) -> None:
        """Remove points (movies no longer in the catalogue)."""

    @abstractmethod
    def payload_values(self, key: str) -> dict[int, Any]:
        """One payload field of every point, by point id (e.g. `text_hash` for incremental embedding)."""

    @abstractmethod
    def search_batch(
        self, vectors: np.ndarray, limits: list[int], filters: Sequence[SearchFilter | None]
    ) -> list[list[Hit]]:
        """Several nearest-neighbour searches planned together; one list of hits per query vector."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files and locks."""

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert or replace points. Vectors must match the recorded model's dimension."""
        info = self.model_info()
        if info is None:
            raise ModelError(f"{self.describe()} records no model: call reset(model_name, dim) first")
        vectors = np.asarray(vectors, dtype=np.float32)
        if (
            vectors.ndim != 2
            or vectors.shape[1] != info[1]
            or not (len(ids) == len(vectors) == len(payloads))
        ):
            raise ModelError(
                f"cannot upsert {vectors.shape} vectors for {len(ids)} ids into {self.describe()}, "
                f"built by {info[0]} with dimension {info[1]}"
            )
        for start in range(0, len(ids), UPSERT_CHUNK):
            stop = start + UPSERT_CHUNK
            self._upsert([int(i) for i in ids[start:stop]], vectors[start:stop], list(payloads[start:stop]))

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
        self, vectors: np.ndarray, limits: list[int], filters: Sequence[SearchFilter | None]
    ) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not (len(vectors) == len(limits) == len(filters)):
            raise ValueError("search_batch needs one limit and one filter (or None) per query vector")
        info = self.model_info()
        if info is not None and vectors.shape[1] != info[1]:
            raise ModelError(
                f"query vectors have dimension {vectors.shape[1]} but {self.describe()} holds "
                f"dimension {info[1]} (model {info[0]})"
            )
        if any(limit <= 0 for limit in limits):
            raise ValueError("search limits must be positive")
        return vectors


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write (rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


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
    return qe.Filter(must=must or None, must_not=must_not or None)


class EdgeStore(VectorStore):
    """Qdrant Edge: `ROOT/shard` is the shard, `ROOT/model.json` the model that built it."""

    backend = "qdrant-edge"

    def __init__(self, root: Path) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.root = root
        self.location = str(root)
        self.shard_dir = root / "shard"
        self.model_file = root / "model.json"
        self._shard: Any = None
        if (self.shard_dir / "edge_config.json").exists():
            try:
                self._shard = qe.EdgeShard.load(str(self.shard_dir))
            except Exception as exc:  # the engine reports a held WAL lock as a generic Exception
                if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                    raise BusyError(f"{self.describe()} is in use by another process") from exc
                raise MovierecError(
                    f"{self.describe()} cannot be opened ({exc}); delete {root} and run `movierec embed`"
                ) from exc

    def model_info(self) -> tuple[str, int] | None:
        if self._shard is None or not self.model_file.exists():
            return None
        data = json.loads(self.model_file.read_text())
        return data["model"], int(data["dim"])

    def reset(self, model_name: str, dim: int) -> None:
        qe = self._qe
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        self.model_file.unlink(
            missing_ok=True
        )  # first: a crash mid-reset leaves "no model", never a wrong one
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        self._shard = qe.EdgeShard.create(str(self.shard_dir), config)
        schema = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
        for name, kind in PAYLOAD_INDEXES.items():
            self._shard.update(qe.UpdateOperation.create_field_index(name, schema[kind]))
        _write_json(self.model_file, {"model": model_name, "dim": dim})

    def count(self) -> int:
        return 0 if self._shard is None else int(self._shard.count(self._qe.CountRequest(exact=True)))

    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        qe = self._qe
        points = [qe.Point(i, v, p) for i, v, p in zip(ids, vectors.tolist(), payloads, strict=True)]
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

    def search_batch(
        self, vectors: np.ndarray, limits: list[int], filters: Sequence[SearchFilter | None]
    ) -> list[list[Hit]]:
        vectors = self._check_queries(vectors, limits, filters)
        if self._shard is None or not len(vectors):
            return [[] for _ in limits]
        qe = self._qe
        requests = [
            qe.QueryRequest(limit=limit, query=qe.Query.Nearest(v), filter=_edge_filter(f), with_payload=True)
            for v, limit, f in zip(vectors.tolist(), limits, filters, strict=True)
        ]
        results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [[Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in points] for points in results]

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
        return str(meta["movierec_model"]), int(meta["movierec_dim"])

    def reset(self, model_name: str, dim: int) -> None:
        from qdrant_client import models

        if self._exists():
            self._client.delete_collection(self.collection)
        self._client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            metadata={"movierec_model": model_name, "movierec_dim": dim},
        )
        schema = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER}
        with warnings.catch_warnings():
            # Local mode warns that it ignores payload indexes; creating them keeps one code path.
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for name, kind in PAYLOAD_INDEXES.items():
                self._client.create_payload_index(self.collection, name, schema[kind], wait=True)

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count) if self._exists() else 0

    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from qdrant_client import models

        batch = models.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads)
        self._client.upsert(self.collection, points=batch, wait=True)

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

    def search_batch(
        self, vectors: np.ndarray, limits: list[int], filters: Sequence[SearchFilter | None]
    ) -> list[list[Hit]]:
        from qdrant_client import models

        vectors = self._check_queries(vectors, limits, filters)
        if not len(vectors) or not self._exists():
            return [[] for _ in limits]
        requests = [
            models.QueryRequest(query=v, limit=limit, filter=_client_filter(f), with_payload=True)
            for v, limit, f in zip(vectors.tolist(), limits, filters, strict=True)
        ]
        responses = self._client.query_batch_points(self.collection, requests=requests)
        return [
            [Hit(int(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
            for response in responses
        ]

    def close(self) -> None:
        if self._owned:
            self._client.close()


# --------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def open_store(settings: Settings, wait: float | None = None) -> Iterator[VectorStore]:
    """Open the configured store for one unit of work and close it straight after.

    File backends are exclusive to one process: wait up to `wait` seconds (default
    `settings.lock_timeout`) for another holder, then raise BusyError naming it.
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
            store = EdgeStore(settings.edge_path)
        try:
            yield store
        finally:
            store.close()
