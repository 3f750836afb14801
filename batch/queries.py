"""Saved queries: the text searches the nightly batch answers for every user.

Stored in the DuckDB table `saved_queries` (schema in movierec/db.py). Every value reaches SQL as a
parameter, never spliced into the statement. Validation happens here, once, for add and update alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from movierec.catalog import validate_genres
from movierec.errors import BadInputError, NotFoundError
from movierec.limits import MAX_LIST, MAX_RANK, check_range, check_user_id, check_year

DEFAULT_CANDIDATES = 250  # at most movierec.limits.MAX_LIST (100,000)
DEFAULT_TOP_N = 10

_COLUMNS = (
    "name, text, genres, exclude_genres, year_min, year_max, candidates, top_n, users, enabled, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class SavedQuery:
    """One saved query. `users` None means every user; `genres` is any-of, as in `movierec search`."""

    name: str
    text: str
    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    candidates: int = DEFAULT_CANDIDATES
    top_n: int = DEFAULT_TOP_N
    users: tuple[int, ...] | None = None
    enabled: bool = True
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["genres"], d["exclude_genres"] = list(self.genres), list(self.exclude_genres)
        d["users"] = None if self.users is None else list(self.users)
        return d


def validate(con: duckdb.DuckDBPyConnection, q: SavedQuery) -> SavedQuery:
    """Check a query before it is stored; returns it with text and name stripped."""
    name, text = q.name.strip(), q.text.strip()
    if not name:
        raise BadInputError("query name is empty")
    if any(not ch.isprintable() for ch in name):  # a newline or NUL would break every table printed
        raise BadInputError(f"query name {name!r} holds a control character (newline, tab, NUL...)")
    if not text:
        raise BadInputError(f"query {name!r}: text is empty; say what to look for, e.g. 'zombie films'")
    for label, value in (("candidates", q.candidates), ("top-n", q.top_n)):
        if value <= 0:
            raise BadInputError(f"query {name!r}: --{label} must be a positive number, got {value}")
    check_range("--candidates", q.candidates, 1, MAX_LIST, f"query {name!r}: ")
    check_range("--top-n", q.top_n, 1, MAX_RANK, f"query {name!r}: ")
    if q.top_n > q.candidates:
        raise BadInputError(
            f"query {name!r}: --top-n {q.top_n} is larger than --candidates {q.candidates}; "
            "a list cannot be longer than the candidates it is ranked from"
        )
    for label, value in (("year-min", q.year_min), ("year-max", q.year_max)):
        if value is not None and value <= 0:
            raise BadInputError(f"query {name!r}: --{label} must be a positive year, got {value}")
        check_year(f"--{label}", value, f"query {name!r}: ")
    if q.year_min is not None and q.year_max is not None and q.year_min > q.year_max:
        raise BadInputError(f"query {name!r}: --year-min {q.year_min} is after --year-max {q.year_max}")
    if q.users is not None:
        if not q.users:
            raise BadInputError(f"query {name!r}: an empty user list would serve nobody")
        bad = [u for u in q.users if u <= 0]
        if bad:
            raise BadInputError(f"query {name!r}: user ids must be positive, got {bad[0]}")
        for u in q.users:
            check_user_id(u, f"query {name!r}: ")
    if overlap := set(q.genres) & set(q.exclude_genres):
        raise BadInputError(f"query {name!r}: genre {sorted(overlap)[0]!r} is both wanted and excluded")
    genres, excluded = tuple(q.genres), tuple(q.exclude_genres)
    if genres or excluded:
        # Stored in the catalogue's spelling, because the store's payload filter matches exactly.
        genres, excluded = tuple(validate_genres(con, genres)), tuple(validate_genres(con, excluded))
    users = None if q.users is None else tuple(sorted(set(q.users)))
    return dataclasses.replace(q, name=name, text=text, genres=genres, exclude_genres=excluded, users=users)


def add_query(con: duckdb.DuckDBPyConnection, q: SavedQuery) -> SavedQuery:
    """Store a new query; a name already taken is an error (use update_query to change it)."""
    q = validate(con, q)
    if _exists(con, q.name):
        raise BadInputError(f"a saved query named {q.name!r} already exists; use `movierec queries update`")
    con.execute(
        f"INSERT INTO saved_queries ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp, current_timestamp)",
        _params(q),
    )
    return get_query(con, q.name)


def update_query(con: duckdb.DuckDBPyConnection, name: str, **changes: Any) -> SavedQuery:
    """Change some fields of a stored query (fields given as None stay as they are)."""
    old = get_query(con, name)
    unknown = set(changes) - {f.name for f in dataclasses.fields(SavedQuery)}
    if unknown:
        raise BadInputError(f"unknown saved-query fields: {', '.join(sorted(unknown))}")
    new = validate(con, dataclasses.replace(old, **{k: v for k, v in changes.items() if v is not None}))
    con.execute(
        "UPDATE saved_queries SET text = ?, genres = ?, exclude_genres = ?, year_min = ?, year_max = ?, "
        "candidates = ?, top_n = ?, users = ?, enabled = ?, updated_at = current_timestamp WHERE name = ?",
        [*_params(new)[1:], old.name],
    )
    return get_query(con, old.name)


def clear_fields(con: duckdb.DuckDBPyConnection, name: str, fields: list[str]) -> SavedQuery:
    """Reset optional fields to 'no constraint' (year bounds, genre lists, users = all)."""
    allowed = {
        "genres": "[]",
        "exclude_genres": "[]",
        "year_min": "NULL",
        "year_max": "NULL",
        "users": "NULL",
    }
    get_query(con, name)
    if fields:
        sets = ", ".join(f"{f} = {allowed[f]}" for f in fields)
        con.execute(f"UPDATE saved_queries SET {sets}, updated_at = current_timestamp WHERE name = ?", [name])
    return get_query(con, name)


def set_enabled(con: duckdb.DuckDBPyConnection, name: str, enabled: bool) -> SavedQuery:
    get_query(con, name)
    con.execute(
        "UPDATE saved_queries SET enabled = ?, updated_at = current_timestamp WHERE name = ?", [enabled, name]
    )
    return get_query(con, name)


def remove_query(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Delete a saved query; lists already published for it stay with their runs."""
    get_query(con, name)
    con.execute("DELETE FROM saved_queries WHERE name = ?", [name])


def get_query(con: duckdb.DuckDBPyConnection, name: str) -> SavedQuery:
    row = con.execute(f"SELECT {_COLUMNS} FROM saved_queries WHERE name = ?", [name]).fetchone()
    if row is None:
        known = [q.name for q in list_queries(con)]
        hint = (
            f"; saved queries: {', '.join(known)}" if known else "; none saved yet (`movierec queries add`)"
        )
        raise NotFoundError(f"no saved query named {name!r}{hint}")
    return _from_row(row)


def list_queries(con: duckdb.DuckDBPyConnection, enabled_only: bool = False) -> list[SavedQuery]:
    where = "WHERE enabled" if enabled_only else ""
    rows = con.execute(f"SELECT {_COLUMNS} FROM saved_queries {where} ORDER BY name").fetchall()
    return [_from_row(r) for r in rows]


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT count(*) FROM saved_queries WHERE name = ?", [name]).fetchone()[0] > 0


def _params(q: SavedQuery) -> list[Any]:
    users = None if q.users is None else list(q.users)
    return [
        q.name, q.text, list(q.genres), list(q.exclude_genres), q.year_min, q.year_max,
        q.candidates, q.top_n, users, q.enabled,
    ]  # fmt: skip


def _from_row(row: tuple[Any, ...]) -> SavedQuery:
    name, text, genres, excl, ymin, ymax, cand, top_n, users, enabled, created, updated = row
    return SavedQuery(
        name=name,
        text=text,
        genres=tuple(genres or ()),
        exclude_genres=tuple(excl or ()),
        year_min=ymin,
        year_max=ymax,
        candidates=cand,
        top_n=top_n,
        users=None if users is None else tuple(users),
        enabled=enabled,
        created_at=created,
        updated_at=updated,
    )
