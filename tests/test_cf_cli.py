"""The model registry (versioned directories, one current row in cf_models, refusing mismatches) and the
cf commands end to end on the planted set, in-process with CliRunner."""

from __future__ import annotations

import json
import shutil

import pytest
from cf_world import checkerboard, write_ratings
from click.testing import CliRunner

from movierec.cf import (
    current_model,
    keras_cf,
    list_models,
    load_current_model,
    load_model,
    registry,
    train_model,
)
from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import ModelError, NotFoundError

FAST = ["--dim", "8", "--epochs", "3", "--batch-size", "128", "--lr", "0.02", "--l2", "0.03"]
FAST_KW = {"dim": 8, "epochs": 3, "batch_size": 128, "lr": 0.02, "l2": 0.03, "tune": False}


@pytest.fixture
def world(settings: Settings) -> Settings:
    titles = {m: f"Movie {m} (2000)" for m in range(101, 381)}
    titles[101] = "Night of the Living Dead (1968)"
    titles[102] = "Dawn of the Dead (1978)"
    write_ratings(settings, checkerboard(), titles)
    return settings


def test_no_model_yet_is_a_clear_error(world: Settings) -> None:
    assert current_model(world) is None
    with pytest.raises(NotFoundError, match="run `movierec train`"):
        load_current_model(world)


@pytest.mark.slow
def test_train_model_records_one_current_version(world: Settings) -> None:
    first = train_model(world, objective="rating", **FAST_KW)
    second = train_model(world, objective="implicit", **FAST_KW)
    assert first.version != second.version
    assert current_model(world).version == second.version
    assert [m.is_current for m in list_models(world)] == [True, False]
    with connect(world, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM cf_models WHERE is_current").fetchone()[0] == 1
    record, model = load_current_model(world)
    assert record.n_ratings == len(checkerboard()) and record.max_rated_at is not None
    assert model.factors.objective == "implicit" and model.factors.dim == 8
    manifest = json.loads((record.path / "model.json").read_text())  # the one manifest
    assert manifest["kind"] == "keras" and manifest["params"]["dim"] == 8
    assert manifest["version"] == record.version and manifest["data"]["n_ratings"] == len(checkerboard())
    assert set(manifest["versions"]) == {"keras", "tensorflow", "numpy"}
    assert sorted(p.name for p in record.path.iterdir()) == [
        "contract.npz", "digests.npz", "factors.npz", "model.json", "model.keras"
    ]  # fmt: skip
    assert (first.path / "loss.png").is_file()  # the rating objective's loss curve
    # the older version is still on disk and loadable
    assert load_model(first.path).factors.objective == "rating"


@pytest.mark.slow
def test_loading_refuses_a_model_directory_that_disagrees_with_its_manifest(world: Settings) -> None:
    a = train_model(world, **FAST_KW)
    b_kw = {**FAST_KW, "dim": 4}
    b = train_model(world, **b_kw)
    shutil.copy(a.path / "factors.npz", b.path / "factors.npz")  # dim 8 factors in a dim 4 model
    with pytest.raises(ModelError, match="dimension 8 but the model was trained with dim=4"):
        load_current_model(world)
    shutil.rmtree(b.path)
    with pytest.raises(ModelError, match="missing"):
        load_current_model(world)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["while writing the directory", "while recording the version"])
def test_train_failure_after_writing_leaves_no_row_and_no_directory(
    world: Settings, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The model is trained and its files are written when the failure strikes: nothing may remain."""
    first = train_model(world, **FAST_KW)

    def boom(*args, **kwargs):
        raise OSError(f"disk full ({where})")

    if where == "while writing the directory":
        monkeypatch.setattr(keras_cf, "write_cf_model", boom)  # after the contract and the factors
    else:
        monkeypatch.setattr(registry, "transaction", boom)  # after the rename to the final name
    with pytest.raises(OSError, match="disk full"):
        train_model(world, **FAST_KW)
    assert current_model(world).version == first.version
    assert [m.version for m in list_models(world)] == [first.version]
    assert [p.name for p in world.models_path.iterdir() if p.name != ".train.lock"] == [first.version]


def test_bad_hyperparameter_is_refused_before_anything_is_written(world: Settings) -> None:
    with pytest.raises(Exception, match="objective"):
        train_model(world, objective="clicks")
    assert current_model(world) is None
    assert not world.models_path.exists()


@pytest.mark.slow
def test_cli_train_show_similar(world: Settings) -> None:
    runner = CliRunner()
    home = ["--home", str(world.home)]
    r = runner.invoke(main, ["train", *home, *FAST, "--objective", "rating", "--json"])
    assert r.exit_code == 0, r.output
    trained = json.loads(r.stdout)
    assert trained["objective"] == "rating" and trained["n_ratings"] == len(checkerboard())
    assert "epoch 3/3" in r.stderr, "progress per epoch on stderr"

    r = runner.invoke(main, ["model", "show", *home, "--json", "--min-ratings", "15", "--limit", "3"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["model"]["version"] == trained["version"]
    # group movies (5 stars from 18 users) have the highest learned bias, 1-star-heavy ones never
    assert all(101 <= row["movie_id"] <= 210 for row in shown["highest_bias"])
    assert all(row["ratings"] >= 15 for row in shown["highest_bias"] + shown["lowest_bias"])

    r = runner.invoke(main, ["similar", "night of the living", *home, "--limit", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["movie"]["movie_id"] == 101
    ids = [row["movie_id"] for row in out["similar"]]
    assert len(ids) == 5 and 101 not in ids
    cos = [row["cosine"] for row in out["similar"]]
    assert cos == sorted(cos, reverse=True)

    r = runner.invoke(main, ["similar", "102", *home])
    assert r.exit_code == 0 and "Dawn of the Dead" in r.stdout

    for args, message in (
        (["similar", "no such title"], "no movie title contains"),
        (["similar", "99999"], "no movie with id 99999"),
        (["similar", ""], "empty movie"),
    ):
        r = runner.invoke(main, [*args, *home])
        assert r.exit_code == 1 and message in r.output, r.output


@pytest.mark.slow
def test_cli_update_with_nothing_new_saves_no_version(world: Settings) -> None:
    """Before, each no-op `train --update` saved a version: it pushed real ones out of the kept models and
    counted towards the full-fit rule. The update's own change detection decides (not a cheaper check
    before it), and a flag that changes the model's shape is still a full fit."""
    runner = CliRunner()
    home = ["--home", str(world.home)]
    r = runner.invoke(main, ["train", *home, "--dim", "8", "--iterations", "2", "--no-tune", "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["unchanged"] is False
    r = runner.invoke(main, ["train", *home, "--update", "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["unchanged"] is True and again["version"] == first["version"]
    r = runner.invoke(main, ["train", *home, "--update"])
    assert r.exit_code == 0 and "up to date" in r.stdout and "nothing saved" in r.stdout, r.output
    assert [m.version for m in list_models(world)] == [first["version"]]
    r = runner.invoke(main, ["train", *home, "--update", "--update-iterations", "3", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["unchanged"] is True, r.output
    r = runner.invoke(main, ["train", *home, "--update", "--dim", "16", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["unchanged"] is False, r.output


def test_cli_evaluate_json_has_model_and_both_baselines(world: Settings) -> None:
    r = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--home",
            str(world.home),
            *FAST,
            "--objective",
            "rating",
            "--split",
            "random",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    keys = {"rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10", "hit@10", "coverage"}
    assert keys <= set(report["model"]) and keys <= set(report["baselines"]["popularity"])
    assert keys <= set(report["baselines"]["bias"])
    assert report["split"]["ranking"] == "random"
    assert report["baselines"]["popularity"]["rmse"] is None  # popularity predicts no ratings
    assert 0 < report["model"]["rmse"] < 4.5
    for r_ in (report["model"], *report["baselines"].values()):
        assert all(0 <= r_[k] <= 1 for k in keys - {"rmse", "mae"})


def test_cli_errors_are_one_line(settings: Settings) -> None:
    r = CliRunner().invoke(main, ["train", "--home", str(settings.home), *FAST])
    assert r.exit_code == 1 and "no database" in r.output
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    r = CliRunner().invoke(main, ["model", "show", "--home", str(settings.home)])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
