"""CLI commands of this stage (filled in by its issue)."""

import click

COMMANDS: list[click.Command] = []
