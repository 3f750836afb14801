"""Settings precedence: flag > environment > movierec.toml > default."""

from pathlib import Path

import pytest

from movierec.config import LABSE_MODEL, SHIPPED_MODEL, Settings


def test_defaults_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOVIEREC_HOME")
    monkeypatch.delenv("MOVIEREC_MODEL")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    s = Settings()
    assert s.home == Path("movierec-data")
    assert s.model == SHIPPED_MODEL  # no LaBSE weights here: the packaged multilingual model
    assert s.db_path == Path("movierec-data/movierec.duckdb")
    assert s.edge_path == Path("movierec-data/qdrant")
    assert s.qdrant_url is None


def test_labse_is_the_default_when_its_weights_are_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """LaBSE stays the reference design's model wherever it can load without the network."""
    monkeypatch.delenv("MOVIEREC_MODEL")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--sentence-transformers--LaBSE" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert Settings().model == SHIPPED_MODEL  # an empty snapshot (an interrupted download) is not a model
    (snapshot / "modules.json").write_text("[]")
    assert Settings().model == LABSE_MODEL


def test_precedence_flag_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "movierec.toml"
    toml.write_text('model = "from-toml"\nkeep_runs = 3\ncollection = "toml-coll"\n')
    monkeypatch.setenv("MOVIEREC_CONFIG", str(toml))
    monkeypatch.delenv("MOVIEREC_MODEL")
    assert Settings().model == "from-toml"
    assert Settings().keep_runs == 3
    monkeypatch.setenv("MOVIEREC_MODEL", "from-env")
    assert Settings().model == "from-env"
    assert Settings().collection == "toml-coll"
    assert Settings(model="from-flag").model == "from-flag"
    # A flag left unset (None) does not mask the environment.
    assert Settings(model=None).model == "from-env"


def test_qdrant_url_reads_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    assert Settings().qdrant_url == "http://qdrant:6333"
    assert Settings(qdrant_url="http://other:6333").qdrant_url == "http://other:6333"


def test_explicit_paths_override_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, db=tmp_path / "x.duckdb", store_path=tmp_path / "vec")
    assert s.db_path == tmp_path / "x.duckdb"
    assert s.edge_path == tmp_path / "vec"
    assert s.models_path == tmp_path / "models"


def test_invalid_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_KEEP_RUNS", "0")
    with pytest.raises(ValueError, match="keep_runs"):
        Settings()
