"""The analyst API (`movierec.open`) returns DataFrames that agree with the CLI's `--json` output, on the
planted world of tests/batch_world.py."""

from __future__ import annotations

import json

import batch_world as world
import pandas as pd
import pytest
from click.testing import CliRunner

import movierec
from movierec.batch import run_batch
from movierec.cli import main
from movierec.config import Settings
from movierec.errors import BadInputError

pytestmark = pytest.mark.slow  # loads the offline sentence-transformers model


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("api") / "home"
    settings = world.build(Settings(home=home), (world.ZOMBIES, world.EVERYTHING))
    run_batch(settings)
    return settings


def _cli(settings: Settings, *args: str) -> list[dict]:
    result = CliRunner().invoke(main, [*args, "--json", "--home", str(settings.home)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _records(df: pd.DataFrame, keys: list[str]) -> list[dict]:
    return [
        {k: (list(v) if k == "genres" else v) for k, v in row.items()} for row in df[keys].to_dict("records")
    ]


FLOATS = {"score", "similarity", "predicted_rating"}


def _agree(got: list[dict], want: list[dict]) -> None:
    """The same rows: ids, ranks, titles and sources exactly; scores computed live twice (query encoder,
    Qdrant, the model's BLAS product) within rel=1e-5, the float32 noise of another summation order."""
    assert [{k: v for k, v in r.items() if k not in FLOATS} for r in got] == [
        {k: v for k, v in r.items() if k not in FLOATS} for r in want
    ]
    for g, w in zip(got, want, strict=True):
        for k in FLOATS & set(w):
            assert g[k] == pytest.approx(w[k], rel=1e-5, nan_ok=True), (k, g, w)


def test_recommendations_agree_with_show_json(planted: Settings) -> None:
    home = movierec.open(planted.home)
    shown = _cli(planted, "show", "2")
    keys = list(shown[0])
    df = home.recommendations(user_id=2)
    assert _records(df, keys) == shown
    assert list(df.user_id.unique()) == [2]
    everyone = home.recommendations()
    assert len(everyone) == 7 * 2 + 7 * 3 and set(everyone["query"]) == {"zombies", "everything"}
    assert _records(home.recommendations(user_id=2, query="zombies", run_id=1), keys) == [
        r for r in shown if r["query"] == "zombies"
    ]


def test_recommend_and_search_agree_with_the_cli(planted: Settings) -> None:
    home = movierec.open(planted.home)
    live = _cli(planted, "recommend", "2", "zombie horror films", "--genre", "Horror")
    df = home.recommend(2, "zombie horror films", genres=["Horror"])
    _agree(_records(df, list(live[0])), live)
    found = _cli(planted, "search", "zombie films", "--limit", "3")
    _agree(_records(home.search("zombie films", limit=3), list(found[0])), found)


def test_runs_queries_and_sql(planted: Settings) -> None:
    home = movierec.open(planted.home)
    runs = home.runs()
    assert runs[["run_id", "status", "n_rows"]].to_dict("records") == [
        {"run_id": 1, "status": "succeeded", "n_rows": 35}
    ]
    assert list(home.queries()["name"]) == ["everything", "zombies"]
    assert home.sql("SELECT count(*) AS n FROM movies")["n"].tolist() == [8]
    with pytest.raises(BadInputError, match="empty SQL"):
        home.sql(" ")
