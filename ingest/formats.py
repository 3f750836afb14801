"""The MovieLens layouts GroupLens ships, and DuckDB `read_csv` calls that turn each file into our columns.

- `csv`: movies.csv, ratings.csv (+ tags.csv, links.csv); UTF-8, header, quoted fields.
  ml-latest(-small), ml-20m, ml-25m, ml-32m.
- `dat`: movies.dat, ratings.dat (+ tags.dat); `::` separated, latin-1, no header. ml-1m, ml-10m.
- `100k`: u.item (`|`, latin-1, 19 genre flags), u.data (tab), u.genre. ml-100k.

Every reader is one `read_csv` with explicit column names and types and `store_rejects`, so DuckDB does the
parsing (in parallel) and records each malformed line with its line number; no Python row loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from movierec.errors import BadInputError, NotFoundError

FORMATS = ("csv", "dat", "100k")

# ml-100k's genre flags in column order, used when u.genre is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# Files per format: table -> (file name, required?).
_FILES: dict[str, dict[str, tuple[str, bool]]] = {
    "csv": {
        "movies": ("movies.csv", True),
        "ratings": ("ratings.csv", True),
        "tags": ("tags.csv", False),
        "links": ("links.csv", False),
    },
    "dat": {"movies": ("movies.dat", True), "ratings": ("ratings.dat", True), "tags": ("tags.dat", False)},
    "100k": {"movies": ("u.item", True), "ratings": ("u.data", True)},
}

# CSV header names (ml-latest) -> (DuckDB type, our column).
_CSV_COLUMNS: dict[str, dict[str, str]] = {
    "movies": {"movieId": "INTEGER", "title": "VARCHAR", "genres": "VARCHAR"},
    "ratings": {"userId": "INTEGER", "movieId": "INTEGER", "rating": "FLOAT", "timestamp": "BIGINT"},
    "tags": {"userId": "INTEGER", "movieId": "INTEGER", "tag": "VARCHAR", "timestamp": "BIGINT"},
    "links": {"movieId": "INTEGER", "imdbId": "VARCHAR", "tmdbId": "INTEGER"},
}
_DAT_COLUMNS = {
    "movies": ["movieId", "title", "genres"],
    "ratings": ["userId", "movieId", "rating", "timestamp"],
    "tags": ["userId", "movieId", "tag", "timestamp"],
}

# Year from a trailing "(1995)", also "(1995 )" and series ranges "(2007-2013)" / "(2007-)";
# "Babylon 5" or "(a.k.a. ...)" give NULL.
MAX_LINE = 16 << 20  # bytes per line: a 5 MB title loads as shipped; longer lines are one error line
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31 23:59:59 UTC, in seconds; timestamps are 0..this
YEAR_REGEX = r"\(\s*(\d{4})\s*(?:[-–]\s*(?:\d{4})?\s*)?\)\s*$"

# One genre vocabulary across formats: ml-1m/ml-100k say "Children's", later releases "Children".
_GENRE_FIX = "list_transform({}, lambda g: CASE g WHEN 'Children''s' THEN 'Children' ELSE g END)"


@dataclass(frozen=True)
class Source:
    """A MovieLens directory: its format and the file of each table present."""

    directory: Path
    format: str
    files: dict[str, Path] = field(default_factory=dict)


def detect(directory: Path | str, fmt: str | None = None) -> Source:
    """Find the format of `directory` (or check the forced `fmt`) and the files it has."""
    root = Path(directory)
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such directory")
    if fmt is None:
        fmt = next((f for f in FORMATS if (root / _FILES[f]["ratings"][0]).exists()), None)
        if fmt is None:
            expected = ", ".join(_FILES[f]["ratings"][0] for f in FORMATS)
            raise NotFoundError(f"{root}: no MovieLens ratings file found (looked for {expected})")
    elif fmt not in FORMATS:
        raise BadInputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    files: dict[str, Path] = {}
    for table, (name, required) in _FILES[fmt].items():
        path = root / name
        if path.is_dir():
            raise BadInputError(f"{path}: is a directory, not a file")
        if path.exists():
            files[table] = path
        elif required:
            raise NotFoundError(f"{path}: missing file (needed for the {fmt} format)")
    for table, path in files.items():
        if path.stat().st_size == 0:
            raise BadInputError(f"{path}: empty file")
        if table in ("movies", "ratings") and fmt == "csv" and _data_after_header(path) is False:
            raise BadInputError(f"{path}: empty file (a header but no rows)")
    return Source(root, fmt, files)


def _data_after_header(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.readline()
        return any(line.strip() for line in (fh.readline(), fh.readline()))


def _header(path: Path, table: str) -> list[str]:
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        names = [n.strip().strip('"') for n in fh.readline().rstrip("\r\n").split(",")]
    missing = [c for c in _CSV_COLUMNS[table] if c not in names]
    if missing:
        raise BadInputError(
            f"{path}:1: missing column {', '.join(missing)} (header has {', '.join(names)}; "
            f"expected {', '.join(_CSV_COLUMNS[table])})"
        )
    return names


def _text_encoding(path: Path) -> str:
    """ml-1m is latin-1; later `.dat` releases may be UTF-8. The text files are small (a few MB), so
    decoding them once decides it."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_csv(path: Path, columns: dict[str, str], rejects: str, **options: str | bool) -> str:
    cols = "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in columns.items()) + "}"
    opts = "".join(f", {k}={_quote(v) if isinstance(v, str) else str(v).lower()}" for k, v in options.items())
    return (  # max_line_size: a line up to MAX_LINE loads (as in the pyarrow path); longer is rejected
        f"read_csv({_quote(str(path))}, columns={cols}, auto_detect=false, store_rejects=true, "
        f"max_line_size={MAX_LINE}, "
        f"rejects_table={_quote(rejects)}, rejects_scan={_quote(rejects + '_scan')}{opts})"
    )


def header_lines(source: Source) -> int:
    """Lines before the first data row (1 for CSV files with a header)."""
    return 1 if source.format == "csv" else 0


def select_sql(source: Source, table: str, rejects: str) -> str:
    """A SELECT producing our columns for `table` from its file; malformed lines go to `rejects`."""
    path = source.files[table]
    fmt = source.format
    if fmt == "csv":
        names = _header(path, table)
        types = {n: _CSV_COLUMNS[table].get(n, "VARCHAR") for n in names}
        # Extra columns keep their position (as VARCHAR) and are ignored.
        types = {
            (n if n in _CSV_COLUMNS[table] else f"_extra{i}"): t for i, (n, t) in enumerate(types.items())
        }
        reader = _read_csv(path, types, rejects, header=True, quote='"', escape='"', delim=",")
    elif fmt == "dat":
        names = _DAT_COLUMNS[table]
        types = {n: _CSV_COLUMNS[table][n] for n in names}
        enc = _text_encoding(path) if table in ("movies", "tags") else "utf-8"
        reader = _read_csv(path, types, rejects, header=False, delim="::", quote="", escape="", encoding=enc)
    else:  # 100k
        return _select_100k(source, table, rejects)
    return _normalise(table, reader)


def _normalise(table: str, reader: str) -> str:
    if table == "movies":
        genres = (
            "CASE WHEN genres IS NULL OR trim(genres) IN ('', '(no genres listed)') THEN []::VARCHAR[] "
            "ELSE string_split(genres, '|') END"
        )
        return (
            f"SELECT movieId AS movie_id, title, "
            f"TRY_CAST(nullif(regexp_extract(title, {_quote(YEAR_REGEX)}, 1), '') AS INTEGER) AS year, "
            f"{_GENRE_FIX.format(genres)} AS genres FROM {reader}"
        )
    # A timestamp outside MAX_TIMESTAMP gives a NULL time; the raw value stays in _ts for validation.
    raw = "timestamp AS _ts"
    when = f"CASE WHEN timestamp BETWEEN 0 AND {MAX_TIMESTAMP} THEN make_timestamp(timestamp * 1000000) END"
    if table == "ratings":
        return (
            f"SELECT userId AS user_id, movieId AS movie_id, rating, {when} AS rated_at, {raw} FROM {reader}"
        )
    if table == "tags":
        return f"SELECT userId AS user_id, movieId AS movie_id, tag, {when} AS tagged_at, {raw} FROM {reader}"
    if table == "links":
        return f"SELECT movieId AS movie_id, imdbId AS imdb_id, tmdbId AS tmdb_id FROM {reader}"
    raise ValueError(table)


def _select_100k(source: Source, table: str, rejects: str) -> str:
    path = source.files[table]
    if table == "ratings":
        types = {"userId": "INTEGER", "movieId": "INTEGER", "rating": "FLOAT", "timestamp": "BIGINT"}
        return _normalise(table, _read_csv(path, types, rejects, header=False, delim="\t", quote=""))
    genres = _genres_100k(source.directory / "u.genre")
    types = {
        "movieId": "INTEGER",
        "title": "VARCHAR",
        "released": "VARCHAR",
        "video": "VARCHAR",
        "url": "VARCHAR",
    }
    types |= {f"g{i}": "TINYINT" for i in range(len(genres))}
    reader = _read_csv(
        path, types, rejects, header=False, delim="|", quote="", escape="", encoding=_text_encoding(path)
    )
    # "unknown" is ml-100k's "(no genres listed)": it becomes the empty list.
    flags = ", ".join(
        f"CASE WHEN g{i} = 1 THEN {_quote(g)} END" for i, g in enumerate(genres) if g != "unknown"
    )
    listed = f"list_filter([{flags}], lambda x: x IS NOT NULL)"
    return (
        f"SELECT movieId AS movie_id, title, "
        f"TRY_CAST(nullif(regexp_extract(title, {_quote(YEAR_REGEX)}, 1), '') AS INTEGER) AS year, "
        f"{_GENRE_FIX.format(listed)} AS genres FROM {reader}"
    )


def _genres_100k(path: Path) -> tuple[str, ...]:
    """Genre names in flag order from u.genre ("Action|1"), else the list ml-100k documents."""
    if not path.exists():
        return ML100K_GENRES
    pairs = [line.rsplit("|", 1) for line in path.read_text(encoding="latin-1").splitlines() if "|" in line]
    try:
        ordered = sorted((int(i), name) for name, i in pairs)
    except ValueError as exc:
        raise BadInputError(f"{path}: expected lines like 'Action|1'") from exc
    return tuple(name for _, name in ordered)


def read_arrow(source: Source, table: str) -> pa.Table | None:
    """Ratings (any format) or tags (`csv` format) via pyarrow's multithreaded CSV reader: the fast path,
    2-3x quicker than DuckDB's reader here.

    Returns our columns (user_id, movie_id, rating, rated_at / tag, tagged_at; times as timestamp[s]), or
    None when the file does not parse cleanly or has no fast path; the DuckDB reader then finds and
    reports the bad lines. `::` ratings parse with `:` as the delimiter: the empty fields between the
    colons are simply not read (tags may contain colons, so tags.dat has no fast path).
    """
    import pyarrow.csv as pacsv

    path = source.files[table]
    value, value_type, time_col = (
        ("rating", pa.float32(), "rated_at") if table == "ratings" else ("tag", pa.string(), "tagged_at")
    )
    if table not in ("ratings", "tags") or (table == "tags" and source.format != "csv"):
        return None
    ours = {"userId": "user_id", "movieId": "movie_id", value: value, "timestamp": "ts"}
    if source.format == "csv":
        names = [ours.get(n, f"_extra{i}") for i, n in enumerate(_header(path, table))]
        skip, delimiter = 1, ","
    elif source.format == "dat":
        names, skip, delimiter = ["user_id", "_a", "movie_id", "_b", "rating", "_c", "ts"], 0, ":"
    else:
        names, skip, delimiter = ["user_id", "movie_id", "rating", "ts"], 0, "\t"
    types = {"user_id": pa.int32(), "movie_id": pa.int32(), value: value_type, "ts": pa.int64()}
    try:
        data = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char='"' if delimiter == "," else False
            ),
            # Empty strings become NULL, as in DuckDB's reader, so both paths judge them alike.
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid:
        return None
    ts = data["ts"]
    if pc.any(pc.or_(pc.less(ts, 0), pc.greater(ts, MAX_TIMESTAMP))).as_py():
        return None  # the DuckDB path names the line
    return data.set_column(3, time_col, data["ts"].cast(pa.timestamp("s")))
