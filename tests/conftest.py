"""Shared fixtures: every test runs against its own MOVIEREC_HOME with the offline model, seeded RNGs."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from movierec.config import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ML_SMALL = SHARED / "data" / "ml-latest-small"
QUERIES_CSV = SHARED / "eval" / "queries.csv"


def pytest_configure(config: pytest.Config) -> None:
    # `requests`, on its first import, probes urllib3's optional SOCKS support, and urllib3 warns
    # (DependencyWarning) when PySocks is absent. Under filterwarnings=error that import fails in whichever
    # thread makes it first: with some test orders, train_model's background import of TensorFlow
    # (keras -> tf.keras callbacks -> requests), whose error then surfaces in an unrelated test.
    config.addinivalue_line(
        "filterwarnings", "ignore:SOCKS support in urllib3:urllib3.exceptions.DependencyWarning"
    )


@pytest.fixture(scope="session")
def _empty_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty movierec.toml: MOVIEREC_CONFIG must name a file that exists."""
    path = tmp_path_factory.mktemp("config") / "movierec.toml"
    path.write_text("")
    return path


@pytest.fixture(scope="session", autouse=True)
def _offline_model_for_shared_fixtures(_empty_config: Path):
    """Module-scoped fixtures run before `_isolated`: they too get the offline model and an empty
    movierec.toml (the checkout's names no model; the default is the packaged multilingual one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOVIEREC_MODEL", "offline-minilm")
        mp.setenv("MOVIEREC_CONFIG", str(_empty_config))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_config: Path) -> None:
    """No test reads the developer's environment, movierec.toml or data directory."""
    for key in list(os.environ):
        if key.startswith("MOVIEREC_") or key.startswith("QDRANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOVIEREC_MODEL", "offline-minilm")
    monkeypatch.setenv("MOVIEREC_CONFIG", str(_empty_config))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(0)
    np.random.seed(0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def ml_small() -> Path:
    """The real ml-latest-small from ../shared, or a skip saying why."""
    if not (ML_SMALL / "ratings.csv").exists():
        pytest.skip(f"real MovieLens data not found at {ML_SMALL}")
    return ML_SMALL
