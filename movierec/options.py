"""Options many commands share, defined once so names, help and defaults cannot drift."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from movierec.config import Settings


def settings_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --home/--db/--qdrant-url/--model flags and pass a ready `settings: Settings` instead."""

    @click.option("--home", type=click.Path(file_okay=False), help="Data directory [env MOVIEREC_HOME].")
    @click.option("--db", type=click.Path(dir_okay=False), help="DuckDB file [env MOVIEREC_DB].")
    @click.option("--qdrant-url", help="Qdrant server URL; default is the embedded store [env QDRANT_URL].")
    @click.option("--model", "model_name", help="sentence-transformers model [env MOVIEREC_MODEL].")
    @functools.wraps(f)
    def wrapper(
        *args: Any,
        home: str | None,
        db: str | None,
        qdrant_url: str | None,
        model_name: str | None,
        **kw: Any,
    ) -> Any:
        kw["settings"] = Settings(home=home, db=db, qdrant_url=qdrant_url, model=model_name)
        return f(*args, **kw)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")


def echo_json(data: Any) -> None:
    """JSON to stdout, one document, stable key order."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
