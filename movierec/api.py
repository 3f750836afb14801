"""The Python API for analysts: `movierec.open(home)` and pandas DataFrames, read-only.

It calls the same library functions as the CLI (whose `--json` output carries the same rows), opens the
database read-only and retries while the nightly job holds its short publish lock, like every reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec import runs
from movierec.config import Settings
from movierec.db import check_confined_query, connect, connect_confined, time_limited
from movierec.errors import BadInputError


def _user_id(user_id: Any) -> int:
    """A user id as the CLI would take it: an int in range, not a bool (True is 1 to Python) or a str."""
    from movierec.limits import check_user_id

    if isinstance(user_id, bool) or not isinstance(user_id, int | np.integer):
        raise BadInputError(f"user_id must be an integer, got {type(user_id).__name__} {user_id!r}")
    check_user_id(int(user_id))
    return int(user_id)


def _genre_filters(options: dict[str, Any]) -> None:
    """genres / exclude_genres as tuples: one string is one genre (tuple("Horror") would be its letters)."""
    for key in ("genres", "exclude_genres"):
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            options[key] = (value,)
        elif isinstance(value, list | tuple | set | frozenset) and all(isinstance(g, str) for g in value):
            options[key] = tuple(value)
        else:
            raise BadInputError(f"{key} must be a genre name or a list of them, got {value!r}")


class Movierec:
    """A movierec data directory, seen from pandas. Every method returns a DataFrame."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"movierec.open({str(self.settings.home)!r})"

    def recommendations(
        self, user_id: int | None = None, query: str | None = None, run_id: int | None = None
    ) -> pd.DataFrame:
        """Published lists of one run (default: the latest successful), optionally one user's or query's:
        query, rank, movie_id, title, year, genres, score, similarity, predicted_rating, source, run_id,
        user_id."""
        from movierec.batch.recommend import published

        if user_id is not None:
            user_id = _user_id(user_id)
        with connect(self.settings, read_only=True) as con:
            columns, rows = published(con, user_id, query, run_id)
        return pd.DataFrame.from_records(rows, columns=columns)

    def runs(self) -> pd.DataFrame:
        """Every batch run recorded, newest first (the `batch_runs` table)."""
        return self.sql(runs.history_sql())

    def queries(self) -> pd.DataFrame:
        """The saved queries."""
        from movierec.batch import list_queries

        with connect(self.settings, read_only=True) as con:
            rows = [q.to_dict() for q in list_queries(con)]
        return pd.DataFrame(rows)

    def search(self, text: str, limit: int = 10, **filters: Any) -> pd.DataFrame:
        """Movies nearest to `text` (as `movierec search`); filters: genres, exclude_genres, year_min,
        year_max."""
        from movierec.ingest import search
        from movierec.store import SearchFilter

        _genre_filters(filters)
        return pd.DataFrame(search(self.settings, text, limit=limit, flt=SearchFilter(**filters)))

    def recommend(self, user_id: int, text: str, **options: Any) -> pd.DataFrame:
        """One user's list for `text`, computed now as the batch would (as `movierec recommend`);
        options: top_n, candidates, genres, exclude_genres, year_min, year_max, alpha."""
        from movierec.batch import recommend

        _genre_filters(options)
        return pd.DataFrame(recommend(self.settings, _user_id(user_id), text, **options).items)

    def sql(self, query: str) -> pd.DataFrame:
        """Any read-only SQL over the database, as a DataFrame (confined like `movierec sql`)."""
        import duckdb

        with connect_confined(self.settings) as con:
            check_confined_query(con, query)
            try:
                return time_limited(con, self.settings.sql_timeout, lambda: con.execute(query).df())
            except duckdb.Error as exc:
                raise BadInputError(f"SQL failed: {str(exc).splitlines()[0]}") from None


def open(home: str | Path | None = None, **settings: Any) -> Movierec:  # noqa: A001 - the API's name
    """Open a movierec data directory (default: the configured one) for reading into DataFrames."""
    return Movierec(Settings.load(home=home, **settings))
