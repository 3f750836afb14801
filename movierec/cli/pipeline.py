"""`movierec nightly`: the whole pipeline (movierec.pipeline) as one command, for cron."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from movierec.cli.options import (
    alpha_option,
    echo_json,
    engine_options,
    json_option,
    quiet_option,
    settings_options,
)

if TYPE_CHECKING:
    from movierec.config import Settings


@click.command("nightly")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--retrain", is_flag=True,
              help="Fit a new CF model from scratch, even if the ratings did not change (default: update "
                   "the current model with the changed ratings).")  # fmt: skip
@click.option(
    "--epochs",
    type=click.IntRange(1, 10_000),
    help="Cap CF training epochs of the rating objective (the default implicit model ignores it).",
)
@alpha_option
@json_option
@quiet_option
@settings_options
@engine_options
def nightly_cmd(
    settings: Settings,
    data_dir: str | None,
    retrain: bool,
    epochs: int | None,
    alpha: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Ingest DATA_DIR (if given) -> embed new movies -> update the CF model if ratings changed -> batch run.

    The update starts from the current model (a full fit with --retrain, or by the retrain rule: see
    `movierec train --help`); an update refused by its quality check keeps the current model, with a
    warning. Stops at the first failing stage (non-zero exit); the previous lists stay published.
    """
    from movierec.pipeline import nightly

    train_options = {"epochs": epochs} if epochs else None
    report = nightly(
        settings, data_dir, retrain=retrain, alpha=alpha, train_options=train_options, progress=not quiet
    )
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(report.line())


COMMANDS: list[click.Command] = [nightly_cmd]
