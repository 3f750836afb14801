"""The house: one import name, layers that only import downward, a library that never imports click."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = {"config", "errors", "limits", "db", "runs", "store", "embedder", "locks", "catalog", "progress"}
STAGES = {"ingest", "cf", "batch"}
TOP = {"pipeline", "api", "cli"}


def _layer(module: str) -> str:
    """'core', a stage name, or 'top' for a dotted movierec module name."""
    parts = module.split(".")
    if parts[0] != "movierec" or len(parts) == 1:
        return "front"
    return "core" if parts[1] in CORE else parts[1] if parts[1] in STAGES else "top"


def _sources() -> dict[str, Path]:
    """Dotted module name -> file, with the stage folders under their installed names."""
    out = {}
    for folder, package in (("movierec", "movierec"), ("ingest", "movierec.ingest"),
                            ("cf", "movierec.cf"), ("batch", "movierec.batch")):  # fmt: skip
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_layers_only_import_downward() -> None:
    """core -> stages -> pipeline/api/cli; a stage uses another stage only through its package front."""
    wrong = []
    for module, path in _sources().items():
        me = _layer(module)
        for imported in _imports(path):
            if not imported.startswith("movierec") or imported == "movierec":
                continue
            other = _layer(imported)
            if me == "core" and other != "core":
                wrong.append(f"{module} (core) imports {imported}")
            elif me in STAGES and other == "top":
                wrong.append(f"{module} (stage) imports {imported} (above it)")
            elif me in STAGES and other in STAGES and other != me and imported != f"movierec.{other}":
                wrong.append(f"{module} reaches into another stage's internals: {imported}")
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_click() -> None:
    users = sorted(
        m for m, p in _sources().items() if "click" in _imports(p) and not m.startswith("movierec.cli")
    )
    assert users == []


def test_a_bare_stage_import_is_a_lint_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import cf\nfrom batch.run import run_batch\nfrom movierec.ingest import load\n")
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), "--select", "TID251", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stdout.count("TID251") == 2, result.stdout


@pytest.mark.slow
def test_the_wheel_installs_movierec_as_its_only_top_level_package(tmp_path: Path) -> None:
    """Building the wheel and installing it into a fresh venv: nothing but `movierec` lands in site-packages
    (`cf`, `ingest` and `batch` would shadow or be shadowed by other projects)."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("movierec", "ingest", "cf", "batch"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("movierec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"movierec"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run([str(py), "-c", purelib], check=True, capture_output=True, text=True).stdout.strip()
    )
    before = {p.name for p in site.iterdir()}
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   capture_output=True)  # fmt: skip
    added = {p.name for p in site.iterdir()} - before
    assert {n for n in added if not n.endswith(".dist-info")} == {"movierec"}
    for sub in ("ingest", "cf", "batch", "cli"):
        assert (site / "movierec" / sub / "__init__.py").exists(), sub


RUNS_SQL = re.compile(r"(FROM|INTO|UPDATE|JOIN)\s+batch_runs\b|read_parquet|\.parquet\b", re.IGNORECASE)


def test_published_runs_are_reached_only_through_runs_py() -> None:
    """Issue 15: one owner for published runs. No other module queries the `batch_runs` ledger, reads or
    names a run's Parquet, or opens the filesystems runs live on; db.py only creates the table."""
    wrong = []
    for module, path in _sources().items():
        if module == "movierec.runs" or module.startswith("movierec.ingest"):  # ingest reads input files
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            found = RUNS_SQL.search(text)
            if found and not (module == "movierec.db" and "CREATE TABLE" in text):
                wrong.append(f"{module}:{node.lineno}: {found[0]!r}")
        wrong += [f"{module} imports {m}" for m in _imports(path) if m in ("pyarrow.parquet", "pyarrow.fs")]
    assert not wrong, "\n".join(wrong)
