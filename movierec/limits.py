"""The ranges every numeric argument must fall in, defined once: the library checks them (one
BadInputError line) and the CLI's option types (movierec/cli/options.py) use the same numbers.

Ids are stored as DuckDB INTEGER (int32), so a larger one could never match a row; list lengths are
capped so that a typo cannot ask the vector store or the ranking for billions of rows.
"""

from __future__ import annotations

from movierec.errors import BadInputError

MAX_ID = 2**31 - 1  # DuckDB INTEGER, the type of every user and movie id
MAX_LIST = 100_000  # candidates per query, list lengths, search/similar limits
MAX_RANK = 2**15 - 1  # a saved query's --top-n: published ranks are SMALLINT (2 bytes a row at ml-25m scale)
YEARS = (1, 9999)
MAX_SEED = 2**32 - 1  # numpy's seed range


def check_range(label: str, value: int | float, lo: int | float, hi: int | float, what: str = "") -> None:
    """Raise one BadInputError line unless lo <= value <= hi (NaN is never in range)."""
    if not lo <= value <= hi:
        raise BadInputError(f"{what}{label} must be between {lo:,} and {hi:,}, got {value}")


def check_user_id(user_id: int, what: str = "") -> None:
    check_range("user id", user_id, 1, MAX_ID, what)


def check_year(label: str, year: int | None, what: str = "") -> None:
    if year is not None:
        check_range(label, year, *YEARS, what)
