"""Every command has working --help, the README documents it, and `movierec --help` starts fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from movierec.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(cmd, click.Group):
            found.extend(_commands(cmd, path))
    return found


ALL_COMMANDS = _commands(main)


def test_there_are_commands() -> None:
    assert len(ALL_COMMANDS) >= 1


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
        "import movierec.embedder, movierec.store, ingest.search, ingest.embed, cf, batch; "
        "heavy = [m for m in ('tensorflow', 'torch', 'keras', 'sentence_transformers') if m in sys.modules]; "
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), f"heavy modules imported at CLI load: {out}"


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
