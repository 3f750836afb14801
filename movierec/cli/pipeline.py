"""`movierec nightly`: the whole pipeline (movierec.pipeline) as one command, for cron."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from movierec.cli.options import alpha_option, echo_json, json_option, quiet_option, settings_options

if TYPE_CHECKING:
    from movierec.config import Settings


@click.command("nightly")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--retrain", is_flag=True, help="Train a new CF model even if the ratings did not change.")
@click.option(
    "--epochs",
    type=click.IntRange(1, 10_000),
    help="Cap CF training epochs (default: the model's, with early stopping). At ml-25m scale an "
    "implicit epoch takes ~14 min on 2 cores.",
)
@alpha_option
@json_option
@quiet_option
@settings_options
def nightly_cmd(
    settings: Settings,
    data_dir: str | None,
    retrain: bool,
    epochs: int | None,
    alpha: float,
    as_json: bool,
    quiet: bool,
) -> None:
    """Ingest DATA_DIR (if given) -> embed new movies -> retrain if ratings changed -> batch run.

    Stops at the first failing stage (non-zero exit); the previous lists stay published.
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
