"""Every command has working --help, the README documents it, and `movierec --help` starts fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from movierec.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(cmd, click.Group):
            found.extend(_commands(cmd, path))
    return found


ALL_COMMANDS = _commands(main)


def test_every_stage_contributes_its_commands() -> None:
    assert sorted(" ".join(path) for path in ALL_COMMANDS) == [
        "batch", "batch report", "batch run", "check", "data", "data synth", "embed", "evaluate", "ingest",
        "model", "model show", "nightly", "queries", "queries add", "queries disable", "queries enable",
        "queries list", "queries remove", "queries show", "queries update", "recommend", "search", "show",
        "similar", "sql", "train",
    ]  # fmt: skip


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_help_works_and_readme_mentions_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert f"movierec {' '.join(path)}" in README, f"README does not mention `movierec {' '.join(path)}`"


def test_cli_load_imports_no_heavy_library() -> None:
    """TensorFlow/torch cost seconds to import; benchmarks/bench_cli_startup.py times `--help` itself."""
    code = (
        "import sys, time; t = time.perf_counter(); from movierec.cli import main; "
        # The library modules the CLI commands call first must stay light as well.
        "import movierec.embedder, movierec.store, movierec.ingest, movierec.cf, movierec.batch; "
        "heavy = ('tensorflow', 'torch', 'keras', 'sentence_transformers', 'ray'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), f"heavy modules imported at CLI load: {out}"


def test_flags_declared_in_the_cli_agree_with_the_library() -> None:
    """The CLI declares a few choices itself so that `--help` needs no numpy; they must not drift."""
    import dataclasses

    from movierec.cf.train import OBJECTIVES, WEIGHTS, HyperParams
    from movierec.cli import cf as cf_cli
    from movierec.cli import ingest as ingest_cli
    from movierec.ingest.formats import FORMATS

    assert tuple(ingest_cli.FORMAT_CHOICES) == tuple(FORMATS)
    assert tuple(cf_cli.OBJECTIVES) == tuple(OBJECTIVES)
    assert tuple(cf_cli.WEIGHTS) == tuple(WEIGHTS)
    tunable = [f.name for f in dataclasses.fields(HyperParams) if f.name not in ("patience", "val_frac")]
    assert sorted(cf_cli.HYPERPARAM_FLAGS) == sorted(tunable)
    for command in ("train", "evaluate"):
        flags = {p.name for p in main.commands[command].params}
        assert set(tunable) <= flags, f"{command} lacks {set(tunable) - flags}"


def test_bad_settings_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value, message in (
        ("MOVIEREC_KEEP_RUNS", "abc", "bad setting keep_runs"),
        ("MOVIEREC_LOCK_TIMEOUT", "inf", "bad setting lock_timeout"),
        ("MOVIEREC_COLD_START_WEIGHT", "2", "bad setting cold_start_weight"),
        ("MOVIEREC_SQL_MEMORY_LIMIT", "200%", "bad setting sql_memory_limit"),  # DuckDB would refuse it later
    ):
        with monkeypatch.context() as m:
            m.setenv(key, value)
            result = CliRunner().invoke(main, ["queries", "list"])
        assert result.exit_code == 1 and result.output.startswith(f"Error: {message}"), result.output
        assert result.output.count("\n") == 1
    garbled = tmp_path / "movierec.toml"
    garbled.write_text("model = [")
    monkeypatch.setenv("MOVIEREC_CONFIG", str(garbled))
    result = CliRunner().invoke(main, ["queries", "list"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read settings from"), result.output


def test_our_errors_become_one_line_and_exit_1(tmp_path: Path) -> None:
    @main.command("_raise_for_test", hidden=True)
    def _raise() -> None:
        from movierec.errors import NotFoundError

        raise NotFoundError("no such thing: 42")

    try:
        result = CliRunner().invoke(main, ["_raise_for_test"])
    finally:
        main.commands.pop("_raise_for_test")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no such thing: 42"


def test_text_that_is_not_utf8_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A Latin-1 file name or a stray byte in a query reaches Python as surrogates, which failed deep
    inside (a lock's holder line, the tokenizer, DuckDB) with a traceback; the CLI refuses them first."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    env["MOVIEREC_HOME"] = str(tmp_path / "home")
    cases = [
        (["search", b"zomb\xff\xfeie"], env, "argument 'zomb\\xff\\xfeie' is not valid UTF-8"),
        (["ingest", str(tmp_path).encode() + b"/caf\xe9"], env, "is not valid UTF-8"),
        (["sql", "select 1"], {**env, "MOVIEREC_HOME": str(tmp_path).encode() + b"/h\xe9"},
         "$MOVIEREC_HOME is not valid UTF-8"),
    ]  # fmt: skip
    for args, environ, expected in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "movierec.cli", *args], env=environ, capture_output=True, timeout=60
        )
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 1 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "home").exists()  # refused before anything was opened or created


@pytest.mark.parametrize(("preset", "want"), [(None, "0 False"), ("1", "1 True")])
def test_commands_run_numpy_on_small_pages_unless_told(preset: str | None, want: str) -> None:
    """Huge pages made the 25M-rating ALS prep 2.5x slower on this project's machines; `movierec` turns
    numpy's madvise off before any command imports numpy, and NUMPY_MADVISE_HUGEPAGE=1 keeps it on."""
    import os

    code = (
        "import os; from click.testing import CliRunner; from movierec.cli import main; "
        "r = CliRunner().invoke(main, ['train', '--help']); assert r.exit_code == 0, r.output; "
        "import numpy as np; core = getattr(np, '_core', None) or np.core; "  # numpy 1.26 names it np.core
        "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], core.multiarray._set_madvise_hugepage(True))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if preset is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = preset
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == want
