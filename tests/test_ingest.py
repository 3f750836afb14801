"""Ingest: every GroupLens layout, awkward rows, bad input (database untouched), idempotence, upserts."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError, NotFoundError
from movierec.ingest.load import ingest_dir

MOVIES_CSV = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"American President, The (1995)",Comedy|Drama|Romance
3,"Misérables, Les (1995)",Drama|War
4,東京物語 (1953),Drama
5,Babylon 5,Sci-Fi
6,Spaced Out (1995 ),(no genres listed)
7,Cosmos (1980-1981),Documentary
8,"Quote ""Unquote"" (2001)",Comedy
"""
RATINGS_CSV = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,2,0.5,964981247
1,3,5.0,964982224
2,4,3.5,1260759144
2,5,2.5,1260759179
3,6,4.5,1260759182
3,7,1.0,1260759185
3,8,3.0,1260759205
"""
TAGS_CSV = """userId,movieId,tag,timestamp
1,1,pixar,1139045764
2,4,"slow, beautiful",1139045765
2,4,"slow, beautiful",1139045799
"""
LINKS_CSV = """movieId,imdbId,tmdbId
1,0114709,862
2,0112346,
"""


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return directory


def csv_dir(tmp_path: Path, name: str = "ml", **replace: str) -> Path:
    files = {
        "movies.csv": MOVIES_CSV,
        "ratings.csv": RATINGS_CSV,
        "tags.csv": TAGS_CSV,
        "links.csv": LINKS_CSV,
    }
    for key, content in replace.items():
        files[key.replace("_", ".")] = content
    return write(tmp_path / name, files)


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Every row of every ingest table, sorted: equal snapshots mean an unchanged database."""
    with connect(settings) as con:
        return {
            t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ("movies", "ratings", "tags", "links")
        }


def test_csv_format_keeps_awkward_rows_exactly(settings: Settings, tmp_path: Path) -> None:
    report = ingest_dir(settings, csv_dir(tmp_path))
    assert (report.format, report.movies, report.ratings, report.users, report.tags, report.links) == (
        "csv", 8, 8, 3, 2, 2,
    )  # fmt: skip
    rows = {r[0]: r[1:] for r in snapshot(settings)["movies"]}
    assert rows[1] == ("Toy Story (1995)", 1995, ["Adventure", "Animation", "Children", "Comedy", "Fantasy"])
    assert rows[2] == ("American President, The (1995)", 1995, ["Comedy", "Drama", "Romance"])
    assert rows[3] == ("Misérables, Les (1995)", 1995, ["Drama", "War"])
    assert rows[4] == ("東京物語 (1953)", 1953, ["Drama"])
    assert rows[5] == ("Babylon 5", None, ["Sci-Fi"])
    assert rows[6] == ("Spaced Out (1995 )", 1995, [])
    assert rows[7] == ("Cosmos (1980-1981)", 1980, ["Documentary"])
    assert rows[8] == ('Quote "Unquote" (2001)', 2001, ["Comedy"])
    with connect(settings) as con:
        assert con.execute(
            "SELECT rating, rated_at FROM ratings WHERE user_id = 2 AND movie_id = 4"
        ).fetchall() == [
            (3.5, utc(1260759144))  # Unix time read as UTC, not local time
        ]
        # A tag repeated with two timestamps is one row with the latest time.
        assert con.execute("SELECT tag, tagged_at FROM tags WHERE user_id = 2").fetchall() == [
            ("slow, beautiful", utc(1139045799))
        ]
        assert con.execute("SELECT * FROM links ORDER BY movie_id").fetchall() == [
            (1, "0114709", 862),
            (2, "0112346", None),
        ]


def dat_dir(tmp_path: Path) -> Path:
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        '2::City of Lost Children, The "La Cité" (1995)::Adventure|Sci-Fi\n'
        "3::Nobody's Film::Drama\n"
    ).encode("latin-1")
    ratings = "1::1::5::978300760\n1::2::3::978302109\n2::3::1::978301968\n2::1::4::978300275\n"
    tags = "1::1::funny::1188263867\n".encode("latin-1")
    return write(tmp_path / "ml-1m", {"movies.dat": movies, "ratings.dat": ratings, "tags.dat": tags})


def test_dat_file_without_rows_is_empty(settings: Settings, tmp_path: Path) -> None:
    source = dat_dir(tmp_path)
    (source / "ratings.dat").write_text("\n\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"ratings\.dat: empty file"):
        ingest_dir(settings, source)


def test_dat_format_latin1_double_colon(settings: Settings, tmp_path: Path) -> None:
    report = ingest_dir(settings, dat_dir(tmp_path))
    assert (report.format, report.movies, report.ratings, report.users, report.tags) == ("dat", 3, 4, 2, 1)
    rows = {r[0]: r[1:] for r in snapshot(settings)["movies"]}
    # "Children's" (ml-1m spelling) becomes "Children", as in later releases; quotes are plain text.
    assert rows[1] == ("Toy Story (1995)", 1995, ["Animation", "Children", "Comedy"])
    assert rows[2] == ('City of Lost Children, The "La Cité" (1995)', 1995, ["Adventure", "Sci-Fi"])
    assert rows[3] == ("Nobody's Film", None, ["Drama"])
    assert sorted(r[:3] for r in snapshot(settings)["ratings"]) == [
        (1, 1, 5.0),
        (1, 2, 3.0),
        (2, 1, 4.0),
        (2, 3, 1.0),
    ]


def test_dat_format_utf8_text_is_detected(settings: Settings, tmp_path: Path) -> None:
    """ml-1m ships latin-1; a .dat release in UTF-8 must not come out as mojibake."""
    source = dat_dir(tmp_path)
    (source / "movies.dat").write_text(
        "1::Amélie (2001)::Comedy|Romance\n2::東京物語 (1953)::Drama\n3::X::Drama\n", encoding="utf-8"
    )
    ingest_dir(settings, source)
    titles = {r[0]: r[1] for r in snapshot(settings)["movies"]}
    assert titles[1] == "Amélie (2001)" and titles[2] == "東京物語 (1953)"


def ml100k_dir(tmp_path: Path, with_genre_file: bool = True) -> Path:
    flags = {
        1: [0, 0, 0, 1, 1, 1] + [0] * 13,  # Animation, Children's, Comedy
        2: [0, 1, 1] + [0] * 16,  # Action, Adventure
        3: [1] + [0] * 18,  # unknown
    }
    titles = {1: "Toy Story (1995)", 2: "GoldenEye (1995)", 3: "Café Society (1995)"}
    item = "".join(
        f"{i}|{titles[i]}|01-Jan-1995||http://us.imdb.com/x|" + "|".join(map(str, f)) + "\n"
        for i, f in flags.items()
    ).encode("latin-1")
    files: dict[str, str | bytes] = {
        "u.item": item,
        "u.data": "196\t1\t3\t881250949\n186\t2\t5\t891717742\n22\t3\t1\t878887116\n196\t3\t4\t881250950\n",
    }
    if with_genre_file:
        from movierec.ingest.formats import ML100K_GENRES

        files["u.genre"] = "".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n"
    return write(tmp_path / "ml-100k", files)


@pytest.mark.parametrize("with_genre_file", [True, False])
def test_100k_format_genre_flags(settings: Settings, tmp_path: Path, with_genre_file: bool) -> None:
    report = ingest_dir(settings, ml100k_dir(tmp_path, with_genre_file))
    assert (report.format, report.movies, report.ratings, report.users) == ("100k", 3, 4, 3)
    rows = {r[0]: r[1:] for r in snapshot(settings)["movies"]}
    assert rows == {
        1: ("Toy Story (1995)", 1995, ["Animation", "Children", "Comedy"]),
        2: ("GoldenEye (1995)", 1995, ["Action", "Adventure"]),
        3: ("Café Society (1995)", 1995, []),
    }


def test_forced_format_must_match_the_files(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"movies\.dat: missing file"):
        ingest_dir(settings, csv_dir(tmp_path), fmt="dat")
    assert ingest_dir(settings, csv_dir(tmp_path), fmt="csv").ratings == 8


def test_not_a_movielens_directory(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no MovieLens ratings file found"):
        ingest_dir(settings, tmp_path / "empty")


RATINGS_HEAD = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.0,964982703\n"

# (name, files that replace the valid ones, expected error: file and line and why)
BAD_INPUTS = [
    ("missing movies file", {"movies.csv": None}, r"movies\.csv: missing file"),
    (
        "missing column",
        {"ratings.csv": "userId,movieId,timestamp\n1,1,964982703\n"},
        r"ratings\.csv:1: missing column rating",
    ),
    (
        "too few fields",
        {"ratings.csv": RATINGS_HEAD + "1,3\n"},
        r"ratings\.csv:4: malformed line \(too few fields\)",
    ),
    (
        "too many fields",
        {"ratings.csv": RATINGS_HEAD + "1,3,4.0,964982703,9\n"},
        r"ratings\.csv:4: malformed line \(too many",
    ),
    (
        "non-numeric rating",
        {"ratings.csv": RATINGS_HEAD + "1,3,four,964982703\n"},
        r"ratings\.csv:4: malformed value .*four",
    ),
    (
        "rating above 5",
        {"ratings.csv": RATINGS_HEAD + "1,3,5.5,964982703\n"},
        r"ratings\.csv:4: rating out of range",
    ),
    (
        "rating zero",
        {"ratings.csv": RATINGS_HEAD + "1,3,0,964982703\n"},
        r"ratings\.csv:4: rating out of range",
    ),
    ("missing rating", {"ratings.csv": RATINGS_HEAD + "1,3,,964982703\n"}, r"ratings\.csv:4: missing rating"),
    (
        "unknown movie",
        {"ratings.csv": RATINGS_HEAD + "1,999,4.0,964982703\n"},
        r"ratings\.csv:4: unknown movie \(user_id=1, movie_id=999",
    ),
    (
        "duplicate rating",
        {"ratings.csv": RATINGS_HEAD + "1,1,2.0,964982704\n"},
        r"ratings\.csv:4: duplicate key",
    ),
    (
        "duplicate movie",
        {"movies.csv": MOVIES_CSV + "3,Again (2000),Drama\n"},
        r"movies\.csv:10: duplicate key",
    ),
    ("movie without title", {"movies.csv": MOVIES_CSV + "9,,Drama\n"}, r"movies\.csv:10: missing title"),
    (
        "bad movie id",
        {"movies.csv": MOVIES_CSV + "x9,Nine (1999),Drama\n"},
        r"movies\.csv:10: malformed value",
    ),
    (
        "tag for unknown movie",
        {"tags.csv": "userId,movieId,tag,timestamp\n1,77,x,1\n"},
        r"tags\.csv:2: unknown movie",
    ),
    ("empty ratings file", {"ratings.csv": ""}, r"ratings\.csv: empty file"),
    ("header-only movies file", {"movies.csv": "movieId,title,genres\n"}, r"movies\.csv: empty file"),
    (
        "bad line after a blank line",
        {"ratings.csv": RATINGS_HEAD + "\n1,3,9.0,964982703\n"},
        r"ratings\.csv:5: rating out",
    ),
    (  # a row appended with `echo` to a GroupLens file (CRLF): DuckDB only says "invalid state"
        "mixed line endings",
        {
            "ratings.csv": "".join([RATINGS_HEAD, *(f"{u},1,4.0,964982703\n" for u in range(2, 62))]).replace(
                "\n", "\r\n"
            )
            + "1,3,4.0,964982703\n"
        },  # DuckDB reads a short file of mixed endings
        r"ratings\.csv: cannot read: mixed line endings \(line 1 ends with CRLF, line 64 with LF",
    ),
    (
        "bad rating after a malformed line",
        {"ratings.csv": RATINGS_HEAD + "x,1,1.0,1\n1,3,9,1\n"},
        r"ratings\.csv:4: malformed",
    ),
]


@pytest.mark.parametrize(("files", "message"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_fails_clearly_and_changes_nothing(
    settings: Settings, tmp_path: Path, files: dict[str, str | None], message: str
) -> None:
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    before = snapshot(settings)
    # The new snapshot also renames a movie: that upsert happens before the bad row is found, and
    # must be rolled back with everything else.
    bad = csv_dir(tmp_path, "v2", movies_csv=MOVIES_CSV.replace("Toy Story (1995)", "Toy Story 2 (1999)"))
    for name, content in files.items():
        if content is None:
            (bad / name).unlink()
        else:
            (bad / name).write_text(
                content.replace("Toy Story (1995)", "Toy Story 2 (1999)"), encoding="utf-8"
            )
    with pytest.raises((BadInputError, NotFoundError), match=message):
        ingest_dir(settings, bad)
    assert snapshot(settings) == before


def test_first_bad_line_is_reported_with_the_total(settings: Settings, tmp_path: Path) -> None:
    ratings = RATINGS_HEAD + "1,3,9.0,1\n1,4,4.0,1\n1,999,4.0,1\n1,5,oops,1\n"
    with pytest.raises(BadInputError) as err:
        ingest_dir(settings, csv_dir(tmp_path, ratings_csv=ratings))
    message = str(err.value)
    assert (
        "ratings.csv:4: rating out of range 0.5..5 (user_id=1, movie_id=3, rating=9.0); 2 more bad rows"
        in message
    )
    assert "--skip-bad-rows" in message
    assert snapshot(settings)["ratings"] == []


def test_skip_bad_rows_loads_the_rest_and_counts_why(settings: Settings, tmp_path: Path) -> None:
    ratings = RATINGS_HEAD + "1,3,9.0,1\n1,4,4.0,1\n1,999,4.0,1\n1,5,oops,1\n1,6\n1,1,1.0,1\n"
    report = ingest_dir(settings, csv_dir(tmp_path, ratings_csv=ratings), skip_bad_rows=True)
    assert report.skipped == 5
    assert report.skipped_reasons == {
        "ratings.csv: duplicate key": 1,
        "ratings.csv: malformed line (too few fields)": 1,
        "ratings.csv: malformed value": 1,
        "ratings.csv: rating out of range 0.5..5": 1,
        "ratings.csv: unknown movie": 1,
    }
    assert sorted(r[:3] for r in snapshot(settings)["ratings"]) == [(1, 1, 4.0), (1, 2, 3.0), (1, 4, 4.0)]


def test_reingesting_the_same_snapshot_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    source = csv_dir(tmp_path)
    first = ingest_dir(settings, source)
    before = snapshot(settings)
    again = ingest_dir(settings, source)
    assert snapshot(settings) == before
    assert sum(again.new.values()) == sum(again.updated.values()) == 0
    assert (again.movies, again.ratings, again.tags, again.links) == (first.movies, first.ratings, 2, 2)


def _newer_snapshot(tmp_path: Path, rerated: str) -> Path:
    """v2: user 1's rating of movie 1 replaced by `rerated`, plus a new movie 9 that user 4 rated."""
    return csv_dir(
        tmp_path,
        "v2",
        movies_csv=MOVIES_CSV + "9,Nine Lives (2016),Comedy\n",
        ratings_csv=RATINGS_CSV.replace("1,1,4.0,964982703", rerated) + "4,9,5.0,1500000001\n",
    )


def test_newer_snapshot_upserts_by_key(settings: Settings, tmp_path: Path) -> None:
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    newer = _newer_snapshot(tmp_path, "1,1,2.5,1500000000")
    report = ingest_dir(settings, newer)
    assert report.new == {"movies": 1, "links": 0, "ratings": 1, "tags": 0}
    assert report.updated == {"movies": 0, "links": 0, "ratings": 1, "tags": 0}
    with connect(settings) as con:
        assert con.execute(
            "SELECT rating, rated_at FROM ratings WHERE user_id = 1 AND movie_id = 1"
        ).fetchall() == [(2.5, utc(1500000000))]
        assert con.execute(
            "SELECT count(*), count(DISTINCT (user_id, movie_id)) FROM ratings"
        ).fetchall() == [(9, 9)]
    assert (report.movies, report.ratings, report.users) == (9, 9, 4)


def test_ratings_carry_the_ingest_that_wrote_them(settings: Settings, tmp_path: Path) -> None:
    """Each ingest takes the next number and stamps the ratings it writes (issue 17: a CF update asks them
    what changed); an ingest that fails takes none, and re-ingesting the same snapshot stamps nothing."""
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    newer = _newer_snapshot(tmp_path, "1,1,2.5,964982703")  # re-rated, same timestamp
    ingest_dir(settings, newer)
    ingest_dir(settings, newer)
    bad = csv_dir(tmp_path, "v3", ratings_csv=RATINGS_CSV + "4,9,9.0,1500000002\n")
    with pytest.raises(BadInputError, match="rating out of range"):
        ingest_dir(settings, bad)
    with connect(settings) as con:
        stamps = dict(
            ((u, m), i)
            for u, m, i in con.execute("SELECT user_id, movie_id, ingest_id FROM ratings").fetchall()
        )
        ingests = con.execute("SELECT ingest_id, source, length(token) FROM ingests ORDER BY 1").fetchall()
    assert stamps.pop((1, 1)) == stamps.pop((4, 9)) == 2
    assert set(stamps.values()) == {1} and len(stamps) == 7
    with connect(settings) as con:  # the re-rated pair keeps the ingest that first wrote it; the new one not
        first = dict(
            ((u, m), i)
            for u, m, i in con.execute("SELECT user_id, movie_id, first_ingest FROM ratings").fetchall()
        )
    assert first[(1, 1)] == 1 and first[(4, 9)] == 2 and set(first.values()) == {1, 2}
    assert ingests == [(1, str(tmp_path / "v1"), 32), (2, str(newer), 32), (3, str(newer), 32)]


def test_readers_read_while_a_newer_snapshot_is_compared(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the comparison of ratings and tags with the stored rows (a 25M x 25M join at ml-25m size)
    runs before the database is opened for writing, so a reader started meanwhile gets in at once (no lock
    wait allowed). The small movies and links files are still compared inside the write."""
    load = importlib.import_module("movierec.ingest.load")  # the module; the package exports a function
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    calls: list[str] = []
    reads: list[subprocess.CompletedProcess] = []
    compare = load._changed_sql

    def compare_beside_a_reader(table: str, stage: str) -> str:
        calls.append(table)
        if table in ("ratings", "tags"):
            env = {**os.environ, "MOVIEREC_HOME": str(settings.home), "MOVIEREC_LOCK_TIMEOUT": "0"}
            sql = [sys.executable, "-m", "movierec.cli", "sql", "SELECT count(*) AS n FROM ratings", "--json"]
            reads.append(subprocess.run(sql, capture_output=True, text=True, env=env, timeout=120))
        return compare(table, stage)

    monkeypatch.setattr(load, "_changed_sql", compare_beside_a_reader)
    changed = RATINGS_CSV.replace("1,1,4.0,964982703", "1,1,2.5,1500000000")
    report = ingest_dir(settings, csv_dir(tmp_path, "v2", ratings_csv=changed))
    assert sorted(calls[:2]) == ["ratings", "tags"] and sorted(calls[2:]) == ["links", "movies"]
    assert [r.returncode for r in reads] == [0, 0], [r.stderr for r in reads]
    assert json.loads(reads[0].stdout) == [{"n": 8}]
    assert report.updated["ratings"] == 1 and report.new["ratings"] == 0
    with connect(settings, read_only=True) as con:
        rating = con.execute("SELECT rating FROM ratings WHERE user_id = 1 AND movie_id = 1").fetchall()
    assert rating == [(2.5,)]


def test_a_write_between_the_comparison_and_the_write_is_not_doubled(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that bypasses the ingest lock (`load()` on its own connection) adds rows after the
    comparison: the comparison is stale, so the write compares again instead of inserting them twice."""
    load = importlib.import_module("movierec.ingest.load")
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    newer = csv_dir(tmp_path, "v2", ratings_csv=RATINGS_CSV + "4,1,5.0,1500000001\n")
    compare = load._compare

    def compare_then_another_writer(*args: object) -> dict:
        found = compare(*args)
        with connect(settings) as con:
            load.load(con, newer)
        return found

    monkeypatch.setattr(load, "_compare", compare_then_another_writer)
    report = ingest_dir(settings, newer)
    assert report.new["ratings"] == 0 and report.ratings == 9
    with connect(settings, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ratings WHERE user_id = 4").fetchall() == [(1,)]


def test_changed_movie_title_and_genres_are_updated(settings: Settings, tmp_path: Path) -> None:
    ingest_dir(settings, csv_dir(tmp_path, "v1"))
    movies = MOVIES_CSV.replace("5,Babylon 5,Sci-Fi", '5,"Babylon 5, The Movie (1998)",Sci-Fi|Drama')
    report = ingest_dir(settings, csv_dir(tmp_path, "v2", movies_csv=movies))
    assert report.updated["movies"] == 1
    rows = {r[0]: r[1:] for r in snapshot(settings)["movies"]}
    assert rows[5] == ("Babylon 5, The Movie (1998)", 1998, ["Sci-Fi", "Drama"])
    assert report.movies == 8


def test_cli_ingest_text_json_and_error(tmp_path: Path) -> None:
    runner = CliRunner()
    source = csv_dir(tmp_path)
    result = runner.invoke(main, ["ingest", str(source), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "8 movies, 8 ratings from 3 users, 2 tags, 2 links" in result.stdout
    result = runner.invoke(main, ["ingest", str(source), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["movies"], data["ratings"], data["users"], data["skipped"]) == (8, 8, 3, 0)
    assert sum(data["new"].values()) == 0

    (source / "ratings.csv").write_text(RATINGS_HEAD + "1,3,7,1\n", encoding="utf-8")
    result = runner.invoke(main, ["ingest", str(source), "--quiet"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "Error: " in result.stderr and "ratings.csv:4: rating out of range" in result.stderr
    result = runner.invoke(main, ["ingest", str(source), "--quiet", "--skip-bad-rows"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 bad rows" in result.stdout and "rating out of range" in result.stdout


def test_cli_progress_goes_to_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ingest", str(csv_dir(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    assert "ingest" in result.stderr
    assert json.loads(result.stdout)["ratings"] == 8


@pytest.mark.parametrize("args", [["ingest", "--help"], ["data", "--help"], ["data", "synth", "--help"]])
def test_help_and_readme(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "Usage:" in result.output
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"movierec {' '.join(a for a in args if a != '--help')}" in readme


def test_database_file_is_created_once_and_reused(settings: Settings, tmp_path: Path) -> None:
    ingest_dir(settings, csv_dir(tmp_path))
    con = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM ratings").fetchall() == [(8,)]
    finally:
        con.close()


@pytest.mark.realdata
def test_real_ml_latest_small(settings: Settings, ml_small: Path) -> None:
    report = ingest_dir(settings, ml_small)
    assert (report.movies, report.ratings, report.users) == (9125, 100_004, 671)
    assert report.skipped == 0
    again = ingest_dir(settings, ml_small)
    assert sum(again.new.values()) == sum(again.updated.values()) == 0
    with connect(settings) as con:
        assert con.execute("SELECT min(rating), max(rating) FROM ratings").fetchall() == [(0.5, 5.0)]
        assert con.execute("SELECT count(*) FROM movies WHERE year IS NULL").fetchall()[0][0] < 20
        assert con.execute("SELECT count(DISTINCT (user_id, movie_id)) FROM ratings").fetchall() == [
            (100_004,)
        ]


def test_fast_and_diagnostic_readers_store_the_same_rows(tmp_path: Path) -> None:
    """Clean ratings and tags go through pyarrow, files with a bad row through DuckDB's reader: same
    result (including the repeated tag kept once with its latest time)."""
    fast, slow = Settings(home=tmp_path / "fast"), Settings(home=tmp_path / "slow")
    ingest_dir(fast, csv_dir(tmp_path, "clean"))
    dirty = csv_dir(
        tmp_path, "dirty", ratings_csv=RATINGS_CSV + "1,3,nope,1\n", tags_csv=TAGS_CSV + "1,2,,1139045800\n"
    )
    report = ingest_dir(slow, dirty, skip_bad_rows=True)
    assert report.skipped_reasons == {"ratings.csv: malformed value": 1, "tags.csv: missing tag": 1}
    assert snapshot(fast) == snapshot(slow)
    assert len(snapshot(slow)["tags"]) == 2
