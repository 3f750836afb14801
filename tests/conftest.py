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


@pytest.fixture(scope="session", autouse=True)
def _offline_model_for_shared_fixtures(tmp_path_factory: pytest.TempPathFactory):
    """Module-scoped fixtures run before `_isolated`: they too get the offline model and no movierec.toml
    (the checkout's no longer names a model, and the default is the packaged multilingual one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOVIEREC_MODEL", "offline-minilm")
        mp.setenv("MOVIEREC_CONFIG", str(tmp_path_factory.getbasetemp() / "no-such-movierec.toml"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's environment, movierec.toml or data directory."""
    for key in list(os.environ):
        if key.startswith("MOVIEREC_") or key.startswith("QDRANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOVIEREC_MODEL", "offline-minilm")
    monkeypatch.setenv("MOVIEREC_CONFIG", str(tmp_path / "no-such-movierec.toml"))
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
