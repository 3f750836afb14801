"""The `movierec` command: one click group per stage, joined under this root.

The CLI is its own layer above the library: each module parses options, calls one library function and
prints the result; our own exceptions become a one-line error. Library modules are imported inside the
commands, so `movierec --help` loads neither DuckDB, numpy nor TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any

import click

from movierec import __version__
from movierec.cli import batch, cf, doctor, ingest, pipeline, sql, vectors
from movierec.cli.tflogs import filter_tensorflow_logs
from movierec.errors import MovierecError


class MovierecGroup(click.Group):
    """Turns our own exceptions into a one-line error and exit code 1, wherever they are raised; so are
    database errors and OS errors (a damaged file found mid-command, a disk full), which name what failed
    and point at `movierec check`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse text that is not UTF-8 before any command sees it: Python hands such bytes over as
        surrogates, which fail deep inside (a lock's holder line, the tokenizer, DuckDB) as tracebacks."""
        named = [(f"argument {a!r}", a) for a in args]
        named += [
            (f"${k}", v) for k, v in os.environ.items() if k.startswith("MOVIEREC_") or k == "QDRANT_URL"
        ]
        for what, text in named:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                what = what if what.startswith("$") else f"argument '{shown}'"
                raise click.ClickException(
                    f"{what} is not valid UTF-8; movierec reads text, paths and settings as UTF-8"
                ) from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MovierecError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            line = _external_error(exc)
            if line is None:
                raise
            raise click.ClickException(line) from exc


def _external_error(exc: Exception) -> str | None:
    """One line for a DuckDB or OS error that reached the top; None for anything else (a bug: traceback)."""
    from movierec.db import unwritable

    first = (str(exc).splitlines() or [""])[0][:300]
    if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb"):
        if type(exc).__name__ == "OutOfMemoryException":  # not damage: nothing to look for with `check`
            return f"database error: {first}; free memory (other jobs) and run it again"
        if advice := unwritable(first):  # a full or read-only disk: nothing is damaged, nothing to rebuild
            return f"database error: {first}; {advice}"
        return f"database error: {first}; run `movierec check` to see what is damaged and how to recover"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or first
        advice = unwritable(reason)
        return f"{type(exc).__name__}{where}: {reason}" + (f"; {advice}" if advice else "")
    return None


@click.group(cls=MovierecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="movierec")
def main() -> None:
    """movierec: nightly personalised recommendations for saved text queries.

    Pipeline: ingest (MovieLens -> DuckDB), embed (movie text -> Qdrant), train (Keras CF model),
    batch run (saved queries x users -> DuckDB tables). `movierec nightly` runs all of it.
    """
    filter_tensorflow_logs()  # before any command may import TensorFlow
    small_pages()  # before any command imports numpy


def small_pages() -> None:
    """numpy asks the kernel for transparent huge pages for every large array (madvise). On this project's
    machines (virtual machines, THP in "madvise" mode) a fresh huge page costs about five times what the
    same memory in small pages does to fault in, and the batch jobs allocate GBs of fresh arrays: the ALS
    prep at 25M ratings took 10-11 s with them and 4.4 s without, the sweeps the same either way
    (BENCHMARKS.md, issue 17). So the command turns them off unless NUMPY_MADVISE_HUGEPAGE is set (1:
    numpy's default). It must be set before numpy loads; the commands import it lazily."""
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


for _module in (ingest, vectors, cf, batch, pipeline, sql, doctor):
    for _command in _module.COMMANDS:
        main.add_command(_command)
