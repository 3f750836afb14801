"""A data directory made by movierec 0.1 (before the one-house move) keeps working, and the one ranking
engine gives exactly the lists the old batch engine gave.

`tests/data/home-v0.1.tar.gz` was made with the 0.1 code (commit d4bbedc) from synthetic data:
`movierec data synth --users 40 --movies 60 --ratings 800 --seed 3`, ingest, embed (offline-minilm),
`train --epochs 2 --dim 8`, two saved queries, one `batch run`; beside it `show7.json` and `rec7.json`
are what `movierec show 7 --json` and `movierec recommend 7 "scary films" --json` printed then. The
directory names its files by absolute path, so it is unpacked where it was made.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect

ARCHIVE = Path(__file__).parent / "data" / "home-v0.1.tar.gz"
PLACE = Path("/tmp/movierec-compat-v0.1")


@pytest.fixture
def old_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    shutil.rmtree(PLACE, ignore_errors=True)
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(PLACE.parent, filter="data")
    monkeypatch.setenv("MOVIEREC_HOME", str(PLACE / "home"))
    monkeypatch.setenv("MOVIEREC_POPULARITY_WEIGHT", "0")  # v0.1's blend: no popularity term (now -0.1)
    yield PLACE
    shutil.rmtree(PLACE, ignore_errors=True)


# Scores and similarities come from float32 BLAS/ONNX kernels, which round differently on other processors
# (AVX-512, oneDNN): the same list, printed to six decimals, can differ in the last digit. Ids, ranks and
# sources must be identical; floats agree to well within what ranking can tell apart.
FLOAT_TOLERANCE = {"rel": 1e-4, "abs": 1e-5}


def _same(got: object, want: object) -> None:
    """Equal, floats within FLOAT_TOLERANCE, everything else exactly (keys, ids, ranks, order)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, **FLOAT_TOLERANCE)
    elif isinstance(want, dict) and isinstance(got, dict):
        assert got.keys() == want.keys()
        for key in want:
            _same(got[key], want[key])
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    else:
        assert got == want


def _json(args: list[str]) -> list[dict]:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.elsewhere  # float scores across processors (issue 14)
def test_a_v01_home_reads_ranks_and_republishes_the_same_lists(old_home: Path) -> None:
    shown = _json(["show", "7", "--json"])
    # A run published before `because_movie_id` existed reads with it NULL (issue 18); the rest is as it was.
    assert all(r.pop("because_movie_id") is None and r.pop("because_title") is None for r in shown)
    assert all(isinstance(r.pop("year"), int) for r in shown)  # rows carry the year since 0.x (issue 18 walk)
    _same(shown, json.loads((old_home / "show7.json").read_text()))
    # Computed live by the new engine from the old model directory (legacy recommender.json manifest), at
    # v0.1's alpha 0 (the default is 0.1 since the list evaluation chose it).
    live = _json(["recommend", "7", "scary films", "--alpha", "0", "--json"])
    assert all(isinstance(r.pop("year"), int) for r in live)
    _same(live, json.loads((old_home / "rec7.json").read_text()))
    result = CliRunner().invoke(main, ["batch", "run", "--alpha", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    with connect(Settings(home=old_home / "home"), read_only=True) as con:
        runs = con.execute("SELECT run_id, status FROM batch_runs ORDER BY run_id").fetchall()
        keys = ["query_name", "user_id", "rank", "movie_id", "source"]
        old_rows, new_rows = (
            con.execute(
                f"SELECT {', '.join(keys)}, score, similarity FROM recommendations WHERE run_id = ? "
                f"ORDER BY {', '.join(keys)}",
                [run],
            ).fetchall()
            for run in (1, 2)
        )
    assert runs == [(1, "succeeded"), (2, "succeeded")]
    assert len(new_rows) == 246
    assert [r[:5] for r in new_rows] == [r[:5] for r in old_rows]  # the same lists: ids, ranks, sources
    new_floats, old_floats = ([r[5:] for r in rows] for rows in (new_rows, old_rows))
    assert np.allclose(new_floats, old_floats, rtol=FLOAT_TOLERANCE["rel"], atol=FLOAT_TOLERANCE["abs"])
    with connect(Settings(home=old_home / "home"), read_only=True) as con:  # the new run explains its rows
        sql = "SELECT count(because_movie_id) FROM recommendations WHERE run_id = 2"
        assert con.execute(sql).fetchone()[0] > 0
    shown = _json(["model", "show", "--json", "--min-ratings", "1", "--limit", "2"])
    assert shown["model"]["objective"] == "implicit" and len(shown["highest_bias"]) == 2
