"""Issue 16, item 5: straight after `pip install`, from any directory and with no movierec.toml, the CLI
runs on its embedded defaults (the packaged multilingual model), offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vector_world import MOVIES, TAGS

ROOT = Path(__file__).resolve().parents[1]


def _write_movielens(directory: Path) -> None:
    """A tiny MovieLens directory in the ml-latest layout (movies, ratings, tags)."""
    directory.mkdir()
    with open(directory / "movies.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["movieId", "title", "genres"])
        w.writerows([mid, title, "|".join(g) or "(no genres listed)"] for mid, title, _, g in MOVIES)
    with open(directory / "ratings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows(
            [u, m, 1 + (u * m) % 5, 1_000_000 + u * 100 + m] for u in range(1, 21) for m in range(1, 16)
        )
    with open(directory / "tags.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "tag", "timestamp"])
        w.writerows([u, m, t, 1_000_000] for u, m, t in TAGS)


@pytest.mark.slow
def test_cli_runs_on_its_defaults_outside_the_checkout(tmp_path: Path) -> None:
    """Regression: outside the checkout (no movierec.toml naming the offline model) `embed` and `nightly`
    stopped at once with "model 'sentence-transformers/LaBSE' is not in the local Hugging Face cache"."""
    workdir = tmp_path / "anywhere"
    workdir.mkdir()
    data = tmp_path / "ml"
    _write_movielens(data)
    assert not (workdir / "movierec.toml").exists() and ROOT not in workdir.parents
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "QDRANT_"))}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hf-cache")}

    def movierec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "movierec", *args], cwd=workdir, env=env, capture_output=True, text=True
        )

    night = movierec("nightly", str(data), "--quiet", "--json")
    assert night.returncode == 0, night.stderr
    assert [s["stage"] for s in json.loads(night.stdout)["stages"]] == ["ingest", "embed", "train", "batch"]
    assert (workdir / "movierec-data" / "movierec.duckdb").is_file()  # the default home, under this cwd

    found = movierec("search", "películas de zombis", "--limit", "3", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert any("Horror" in h["genres"] for h in hits[:3])
    info = json.loads(
        (workdir / "movierec-data" / "qdrant" / "model.json").read_text()
    )  # the store records the default model
    assert info["model"] == "use-multilingual-v3" and info["dim"] == 512
