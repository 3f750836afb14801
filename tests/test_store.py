"""The vector store: both backends, known-answer filters, congruence, model record, locking."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from movierec.config import Settings
from movierec.errors import BusyError, ModelError, NotFoundError
from movierec.store import Hit, SearchFilter, open_store

DIM = 16
N = 400
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]


def make_points(n: int = N, dim: int = DIM, seed: int = 1) -> tuple[list[int], np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [int(i) for i in rng.choice(200_000, size=n, replace=False)]
    payloads = []
    for k, movie_id in enumerate(ids):
        genres = [] if k % 17 == 0 else sorted(set(rng.choice(GENRES, size=1 + k % 3).tolist()))
        year = None if k % 11 == 0 else int(1930 + k % 90)
        payloads.append({"movie_id": movie_id, "title": f"Movie {k}", "year": year, "genres": genres})
    return ids, vectors, payloads


def expected(
    query: np.ndarray,
    vectors: np.ndarray,
    ids: list[int],
    payloads: list[dict],
    k: int,
    flt: SearchFilter | None,
) -> list[int]:
    """Brute force, the known answer for any filter."""
    keep = []
    for p in payloads:
        ok = True
        if flt is not None:
            genres = set(p["genres"])
            if flt.genres and not genres & set(flt.genres):
                ok = False
            if genres & set(flt.exclude_genres):
                ok = False
            if flt.year_min is not None and (p["year"] is None or p["year"] < flt.year_min):
                ok = False
            if flt.year_max is not None and (p["year"] is None or p["year"] > flt.year_max):
                ok = False
            if flt.ids and p["movie_id"] not in flt.ids:
                ok = False
        keep.append(ok)
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]]
    return [ids[i] for i in order[:k]], scores[order[: k + 1]]


NOISE = 1e-5  # the score tolerance below: ~50x the float32 rounding of a 16-d dot product (~2e-7)


def assert_same_ranking(got: list[int], want: list[int], scores, k: int) -> None:
    """`got` ranks the top `k` like `want`. Qdrant's SIMD kernels (AVX2, AVX-512, NEON) and numpy round a
    dot product differently in the last bits, so two hits whose scores lie within NOISE of each other may
    come in either order: ids are compared exactly position by position, except within such a near-tie,
    compared as a set. `scores` are `want`'s, best first, with the (k+1)-th if any: a near-tie across the
    cut may bring in either movie, so the comparison stops before it."""
    scores = np.asarray(scores, dtype=np.float64)
    assert len(got) == len(want) == min(k, len(scores)), (len(got), len(want), k)
    start = 0
    for end in range(1, len(want) + 1):
        if end < len(scores) and scores[end - 1] - scores[end] <= NOISE:
            continue  # `end - 1` and `end` are tied within float noise
        assert set(got[start:end]) == set(want[start:end]), (start, got, want)
        start = end
    assert len(want) - start < 3, "most of the list is one near-tie: the test data says nothing"


FILTERS = [
    None,
    SearchFilter(),
    SearchFilter(genres=("Horror",)),
    SearchFilter(genres=("Horror", "Sci-Fi")),
    SearchFilter(exclude_genres=("Drama", "Comedy")),
    SearchFilter(year_min=1990),
    SearchFilter(year_max=1960),
    SearchFilter(genres=("Action",), exclude_genres=("Comedy",), year_min=1950, year_max=2000),
]

BACKENDS = ["edge", "local-memory"]  # local-file is the same engine as local-memory, persisted (slow)


def settings_for(backend: str, tmp_path: Path) -> Settings:
    url = {"edge": None, "local-file": f"file:{tmp_path / 'qdrant-local'}", "local-memory": ":memory:"}[
        backend
    ]
    collection = f"movies_{tmp_path.name}"  # :memory: lives for the whole test process
    return Settings(home=tmp_path / "home", qdrant_url=url, collection=collection)


@pytest.fixture
def points() -> tuple[list[int], np.ndarray, list[dict]]:
    return make_points()


def fill(settings: Settings, points: tuple[list[int], np.ndarray, list[dict]], model: str = "m") -> None:
    ids, vectors, payloads = points
    with open_store(settings) as store:
        store.reset(model, DIM)
        store.upsert(ids, vectors, payloads)


@pytest.mark.parametrize("backend", [*BACKENDS, "local-file"])
def test_upsert_persists_with_model_record(backend: str, tmp_path: Path, points) -> None:
    settings = settings_for(backend, tmp_path)
    with open_store(settings) as store:
        assert store.model_info() is None
        assert store.count() == 0
    fill(settings, points)
    with open_store(settings) as store:  # reopened: the data and the record survive
        assert store.model_info() == ("m", DIM)
        assert store.count() == N
        first = store.search(points[1][0], 1)[0]
        assert first.movie_id == points[0][0]
        assert first.score == pytest.approx(1.0, abs=1e-5)
        assert first.payload["title"] == "Movie 0"
        assert first.payload["genres"] == points[2][0]["genres"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_filters_give_the_known_answer(backend: str, tmp_path: Path, points) -> None:
    ids, vectors, payloads = points
    settings = settings_for(backend, tmp_path)
    fill(settings, points)
    # A title lookup's films: only these ids (alone and with a payload filter), by cosine.
    filters = [
        *FILTERS,
        SearchFilter(ids=tuple(ids[::7])),
        SearchFilter(genres=("Horror",), ids=tuple(ids[::3])),
    ]
    queries = make_points(n=len(filters), seed=7)[1]
    with open_store(settings) as store:
        for query, flt in zip(queries, filters, strict=True):
            hits = store.search(query, 25, flt)
            want, scores = expected(query, vectors, ids, payloads, 25, flt)
            assert_same_ranking([h.movie_id for h in hits], want, scores, 25)
            np.testing.assert_allclose(
                [h.score for h in hits],
                [float(vectors[ids.index(h.movie_id)] @ query) for h in hits],
                atol=1e-5,
            )


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_batch_matches_single_searches(backend: str, tmp_path: Path, points) -> None:
    settings = settings_for(backend, tmp_path)
    fill(settings, points)
    queries = make_points(n=len(FILTERS), seed=8)[1]
    limits = [5 + 3 * i for i in range(len(FILTERS))]
    with open_store(settings) as store:
        batch = store.search_batch(queries, [k + 1 for k in limits], FILTERS)  # +1: who makes the cut
        single = [store.search(q, k + 1, f) for q, k, f in zip(queries, limits, FILTERS, strict=True)]
    assert [len(hits) for hits in batch] == [k + 1 for k in limits]
    for hits_b, hits_s, k in zip(batch, single, limits, strict=True):
        ids_b, ids_s = [h.movie_id for h in hits_b][:k], [h.movie_id for h in hits_s][:k]
        assert_same_ranking(ids_b, ids_s, [h.score for h in hits_s], k)


def test_edge_and_qdrant_client_agree(tmp_path: Path, points) -> None:
    """Congruence: the embedded engine and qdrant-client (server stand-in) return the same top-k."""
    edge, local = settings_for("edge", tmp_path), settings_for("local-memory", tmp_path)
    fill(edge, points)
    fill(local, points)
    queries = make_points(n=len(FILTERS), seed=9)[1]
    limits = [51] * len(FILTERS)  # the top 50 compared, the 51st says whether the cut is a near-tie
    with open_store(edge) as a, open_store(local) as b:
        results_a = a.search_batch(queries, limits, FILTERS)
        results_b = b.search_batch(queries, limits, FILTERS)
    for hits_a, hits_b in zip(results_a, results_b, strict=True):
        ids_a, ids_b = [h.movie_id for h in hits_a][:50], [h.movie_id for h in hits_b][:50]
        assert_same_ranking(ids_a, ids_b, [h.score for h in hits_b], 50)
        # atol=1e-5: the engines compute the same cosine with different SIMD kernels (float32).
        by_id = {h.movie_id: h for h in hits_b}
        for h in hits_a[:50]:
            if h.movie_id in by_id:
                assert abs(h.score - by_id[h.movie_id].score) <= 1e-5, (h, by_id[h.movie_id])
                assert h.payload == by_id[h.movie_id].payload


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_switches_model_and_drops_old_vectors(backend: str, tmp_path: Path, points) -> None:
    settings = settings_for(backend, tmp_path)
    fill(settings, points, model="old")
    with open_store(settings) as store:
        store.reset("new", 8)
        assert store.model_info() == ("new", 8)
        assert store.count() == 0
        with pytest.raises(ModelError, match="dimension 8"):
            store.upsert(points[0], points[1], points[2])  # 16-d vectors of the old model
        store.upsert(points[0][:3], points[1][:3, :8], points[2][:3])
        assert store.count() == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_and_payload_values(backend: str, tmp_path: Path, points) -> None:
    ids, vectors, payloads = points
    settings = settings_for(backend, tmp_path)
    with open_store(settings) as store:
        store.reset("m", DIM)
        store.upsert(ids, vectors, [{**p, "text_hash": f"h{p['movie_id']}"} for p in payloads])
        store.delete(ids[:10])
        values = store.payload_values("text_hash")
    assert len(values) == N - 10
    assert values == {i: f"h{i}" for i in ids[10:]}


def test_upsert_needs_a_model_record(settings: Settings, points) -> None:
    with open_store(settings) as store, pytest.raises(ModelError, match="records no model"):
        store.upsert(*points)


def test_require_model(settings: Settings, points) -> None:
    with open_store(settings) as store, pytest.raises(NotFoundError, match="movierec embed"):
        store.require_model("m")
    fill(settings, points, model="m")
    with open_store(settings) as store:
        assert store.require_model("m") == DIM
        with pytest.raises(ModelError, match="built with model 'm'.*--model other"):
            store.require_model("other")


def test_query_of_wrong_dimension_is_refused(settings: Settings, points) -> None:
    fill(settings, points)
    with open_store(settings) as store, pytest.raises(ModelError, match="dimension 8"):
        store.search(np.ones(8, dtype=np.float32), 5)


def test_search_filter_accepts_lists_and_is_hashable() -> None:
    flt = SearchFilter(genres=["Horror"], exclude_genres=["Comedy"])  # type: ignore[arg-type]
    assert flt.genres == ("Horror",) and hash(flt) == hash(SearchFilter(("Horror",), ("Comedy",)))
    assert SearchFilter().is_empty and not SearchFilter(year_max=2000).is_empty
    assert Hit(1, 0.5).payload == {}


HOLDER = """
import sys, time
from movierec.config import Settings
from movierec.store import open_store
with open_store(Settings(home=sys.argv[1], qdrant_url=sys.argv[2] or None)):
    print("holding", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("backend", ["edge", "local-file"])
def test_busy_store_names_the_holder(backend: str, tmp_path: Path) -> None:
    settings = settings_for(backend, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.home), settings.qdrant_url or ""],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with (
            pytest.raises(BusyError, match=rf"in use by PID {holder.pid}\b.*try again"),
            open_store(settings, wait=0.5),
        ):
            pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.communicate()
    with open_store(settings, wait=0) as store:  # released when the holder dies
        assert store.count() == 0


def test_store_waits_for_a_short_holder(settings: Settings) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.replace("time.sleep(60)", "time.sleep(1)"), str(settings.home), ""],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with open_store(settings, wait=30) as store:
            assert store.count() == 0
    finally:
        holder.kill()
        holder.communicate()


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, qdrant_url="http://127.0.0.1:9")
    started = time.monotonic()
    with (
        pytest.raises(NotFoundError, match=r"cannot reach the Qdrant server at http://127.0.0.1:9"),
        open_store(settings),
    ):
        pass
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_reads_every_dense_vector_by_id(backend: str, tmp_path: Path) -> None:
    """What the CF model's content side reads: every point's dense vector (also beside a keyword vector),
    ids ascending; an empty store gives none."""
    ids, vectors, payloads, kws = keyword_points()
    settings = settings_for(backend, tmp_path)
    with open_store(settings) as store:
        assert len(store.vectors()[0]) == 0
        store.reset("m", DIM)
        store.upsert(ids[::-1], vectors[::-1], payloads[::-1], kws[::-1])
        got_ids, got = store.vectors()
    assert got_ids.tolist() == sorted(ids)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # cosine points are stored normalised
    np.testing.assert_allclose(got, unit[np.argsort(ids)], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- keyword vectors, fused search

WORDS = ["heist", "baseball", "vampire", "pirate", "samurai", "robot", "boxing", "dinosaur"]


def keyword_points() -> tuple[list[int], np.ndarray, list[dict], list[tuple[list[int], list[float]]]]:
    """`points` plus one keyword text per movie: word k % 8, and "heist" also for every 40th movie."""
    from movierec.embedder import keyword_vector

    ids, vectors, payloads = make_points()
    texts = [f"{WORDS[k % len(WORDS)]} {'heist' if k % 40 == 0 else ''}" for k in range(len(ids))]
    return ids, vectors, payloads, [keyword_vector(t) for t in texts]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_search_adds_keyword_matches_with_cosine_scores(backend: str, tmp_path: Path) -> None:
    """Keyword matches among the dense neighbours move up (DBSF: their keyword score is added to their
    normalised cosine), keyword matches far from the query stay out of a small top k; scores stay the
    cosine with the query; a query without words, or a filter, behaves as before."""
    from movierec.embedder import keyword_vector

    ids, vectors, payloads, words = keyword_points()
    settings = settings_for(backend, tmp_path)
    with open_store(settings) as store:
        store.rebuild("m", DIM, ids, vectors, payloads, words)
    query = make_points(n=1, seed=11)[1][0]
    dense, dense_scores = expected(query, vectors, ids, payloads, len(ids), None)
    heist = {i for k, i in enumerate(ids) if k % 40 == 0}  # every 40th movie also says "heist"
    near = [m for m in dense[:50] if m in heist]  # keyword matches among the 50 nearest (ranks 35, 40)
    far = [m for m in dense[-100:] if m in heist]  # and among the 100 farthest
    assert near and far and not set(near) & set(dense[:3])
    with open_store(settings) as store:
        assert store.has_keywords()
        fused = store.search_batch(query[None, :], [10], [None], [keyword_vector("heist", query=True)])[0]
        plain = store.search_batch(query[None, :], [10], [None], [([], [])])[0]
        filtered = store.search_batch(
            query[None, :], [10], [SearchFilter(genres=("Horror",))], [keyword_vector("heist", query=True)]
        )[0]
    assert_same_ranking([h.movie_id for h in plain], dense[:10], dense_scores[:10], 10)
    top = [h.movie_id for h in fused]
    assert top[: len(near)] == near  # each near match gains a whole keyword score: ahead of any dense-only
    assert not set(far) & set(top)  # a keyword match alone does not beat the dense neighbours
    np.testing.assert_allclose(
        [h.score for h in fused], [float(vectors[ids.index(h.movie_id)] @ query) for h in fused], atol=1e-5
    )  # float32 dot products in two engines
    assert filtered and all("Horror" in h.payload["genres"] for h in filtered)


def test_a_store_without_keyword_vectors_is_searched_dense(settings: Settings, points) -> None:
    """Stores written before keyword vectors (no `keywords` in model.json) still answer, dense only."""
    import json

    from movierec.embedder import keyword_vector

    fill(settings, points)
    record = settings.edge_path / "model.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in data.items() if k != "keywords"}))
    ids, vectors, payloads = points
    with open_store(settings) as store:
        assert not store.has_keywords()
        hits = store.search_batch(vectors[:1], [5], [None], [keyword_vector("anything", query=True)])[0]
    assert_same_ranking([h.movie_id for h in hits], *expected(vectors[0], vectors, ids, payloads, 5, None), 5)
