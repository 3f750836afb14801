"""Movie text, incremental embedding, model switches and the `movierec embed` command."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from vector_world import MOVIES, add_movies, set_title

from movierec.cli import main
from movierec.config import Settings
from movierec.db import connect
from movierec.embedder import BM25_K1, keyword_vector, tag_keyword_vector
from movierec.errors import NotFoundError
from movierec.ingest.embed import embed_movies
from movierec.ingest.text import (
    GENRE_WORDS,
    MovieText,
    clean_title,
    genre_text,
    movie_texts,
    title_key,
    title_keys,
    title_text,
    user_bucket,
)
from movierec.store import open_store


def test_title_keys_hold_every_name_of_a_film() -> None:
    assert title_keys("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)") == {
        "amelie", "le fabuleux destin d amelie poulain", "fabuleux destin d amelie poulain",
        "fabuleux destin d amelie poulain le"}  # fmt: skip
    assert title_keys("Godfather, The (1972)") == {"the godfather", "godfather the"}
    # A last word after a comma is not always an article: the title as written stays a key.
    assert "i love you man" in title_keys("I Love You, Man (2009)")
    assert "girls" not in title_keys("Girls, Les (1957)")  # not a name left alone after the article
    assert title_keys("Seven (a.k.a. Se7en) (1995)") == {"seven", "se7en"}
    assert title_keys("Untitled Home Video") == {"untitled home video"}
    assert title_key("  The Godfather! ") == "the godfather" and title_key("?!") == ""


def test_clean_title_drops_every_parenthesised_part() -> None:
    assert clean_title("Toy Story (1995)") == "Toy Story"
    assert clean_title("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)") == "Amélie"
    assert clean_title("Godfather, The (1972)") == "Godfather, The"
    assert clean_title("Untitled Home Video") == "Untitled Home Video"


def test_title_text_is_title_then_tags_and_genre_text_uses_the_genre_words() -> None:
    assert title_text("Toy Story (1995)") == "Toy Story"
    assert title_text("Heat (1995)", ["heist", "los angeles"]) == "Heat heist los angeles"
    assert title_text("(Untitled)") == "(Untitled)"  # nothing left after cleaning: the raw title
    assert genre_text(["Romance", "War"]) == f"{GENRE_WORDS['Romance']}. {GENRE_WORDS['War']}"
    assert genre_text(["(no genres listed)"]) == "" and genre_text([]) == ""
    assert genre_text(["Mumblecore"]) == "Mumblecore"  # a label without words of its own: its name


def test_every_movielens_genre_has_its_words() -> None:
    movielens = "Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy Film-Noir Horror"
    movielens += " IMAX Musical Mystery Romance Sci-Fi Thriller War Western"
    assert set(GENRE_WORDS) == set(movielens.split())


def test_movie_texts_from_duckdb_with_most_frequent_tags(settings: Settings) -> None:
    add_movies(settings)
    with connect(settings) as con:  # one user repeating a tag counts once: "gore" stays behind "zombies"
        con.executemany("INSERT INTO tags (user_id, movie_id, tag) VALUES (?, ?, ?)", [(3, 1, "gore")] * 3)
    with connect(settings, read_only=True) as con:
        plain = {m.movie_id: m for m in movie_texts(con, with_tags=False)}
        tagged = {m.movie_id: m.title_text for m in movie_texts(con, tags_per_movie=2)}
    assert len(plain) == len(MOVIES)
    assert plain[15].title_text == "Untitled Home Video" and plain[15].genre_text == ""
    assert plain[15].genres == [] and plain[15].year is None
    assert (plain[14].title_text, plain[14].genre_text) == ("Godfather, The", genre_text(["Crime", "Drama"]))
    # "mafia" x3 (any case) beats "classic" x1 and "al pacino" x1; ties go alphabetically; blank tags drop.
    assert tagged[14] == "Godfather, The mafia al pacino"
    assert tagged[1] == "Night of the Living Dead zombies classic"
    assert tagged[10] == "Interstellar space"
    assert tagged[5] == plain[5].title_text  # no tags: unchanged


@pytest.fixture
def catalogue(settings: Settings) -> Settings:
    add_movies(settings)
    return settings


@pytest.mark.slow
def test_second_run_upserts_nothing_and_a_changed_title_re_embeds_one(catalogue: Settings) -> None:
    first = embed_movies(catalogue)
    assert (first.embedded, first.upserted, first.unchanged) == (len(MOVIES), len(MOVIES), 0)
    assert (first.model, first.dim, first.backend, first.rebuilt) == (
        "offline-minilm",
        384,
        "qdrant-edge",
        None,
    )

    second = embed_movies(catalogue)
    assert (second.embedded, second.upserted, second.unchanged) == (0, 0, len(MOVIES))

    set_title(catalogue, 6, "Notting Hill Revisited (1999)")
    third = embed_movies(catalogue)
    assert (third.embedded, third.upserted, third.unchanged) == (1, 1, len(MOVIES) - 1)
    with open_store(catalogue) as store:
        assert store.count() == len(MOVIES)
        hits = store.search_batch(*_query(catalogue, "Notting Hill Revisited"), [None])[0]
        assert hits[0].movie_id == 6 and hits[0].payload["title"] == "Notting Hill Revisited (1999)"


def _query(settings: Settings, text: str):
    from movierec.embedder import encode, load_model

    return encode(load_model(settings.model), [text]), [1]


@pytest.mark.slow
def test_payload_only_change_and_removed_movies(catalogue: Settings) -> None:
    embed_movies(catalogue)
    with connect(catalogue) as con:
        con.execute("UPDATE movies SET year = 1970 WHERE movie_id = 1")  # text unchanged, payload not
        con.execute("DELETE FROM movies WHERE movie_id = 15")
    summary = embed_movies(catalogue)
    assert (summary.upserted, summary.removed, summary.movies) == (1, 1, len(MOVIES) - 1)
    with open_store(catalogue) as store:
        assert store.count() == len(MOVIES) - 1
        assert store.payload_values("year")[1] == 1970


@pytest.mark.slow
def test_deleted_store_is_rebuilt_in_full(catalogue: Settings) -> None:
    embed_movies(catalogue)
    shutil.rmtree(catalogue.edge_path)
    summary = embed_movies(catalogue)
    assert summary.upserted == len(MOVIES) and summary.rebuilt is None
    with open_store(catalogue) as store:
        assert store.count() == len(MOVIES)


@pytest.mark.slow
def test_switching_model_rebuilds_and_never_mixes_vectors(catalogue: Settings, tmp_path: Path) -> None:
    """A second model: the same weights under another name (a local directory), so no mocks."""
    from movierec.embedder import resolve_model

    other = tmp_path / "minilm-copy"
    other.symlink_to(resolve_model("offline-minilm"), target_is_directory=True)
    embed_movies(catalogue)

    switched = Settings(home=catalogue.home, model=str(other))
    summary = embed_movies(switched)
    assert summary.rebuilt is not None and "offline-minilm" in summary.rebuilt
    assert (summary.upserted, summary.unchanged) == (len(MOVIES), 0)
    with open_store(switched) as store:
        assert store.model_info() == (str(other), 384)
        assert store.count() == len(MOVIES)
        hashes = store.payload_values("text_hash")
    with connect(switched, read_only=True) as con:
        expected = {m.movie_id: m.point_hash(str(other)) for m in movie_texts(con)}
    assert hashes == expected  # every point comes from the new model

    assert embed_movies(switched).upserted == 0
    back = embed_movies(catalogue)
    assert back.rebuilt is not None and back.upserted == len(MOVIES)


@pytest.mark.slow
def test_tags_are_on_by_default_and_a_tag_change_re_embeds_that_movie_alone(catalogue: Settings) -> None:
    embed_movies(catalogue, with_tags=False)
    summary = embed_movies(catalogue)
    assert summary.upserted == 3  # movies 1, 10 and 14 have tags
    with connect(catalogue) as con:
        con.execute("INSERT INTO tags (user_id, movie_id, tag) VALUES (5, 12, 'gunslinger')")
    again = embed_movies(catalogue)
    assert (again.upserted, again.unchanged) == (1, len(MOVIES) - 1)


def test_no_movies_is_a_clear_error(settings: Settings) -> None:
    with connect(settings):
        pass
    with pytest.raises(NotFoundError, match="no movies.*movierec ingest"):
        embed_movies(settings)


def test_no_database_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="movierec ingest"):
        embed_movies(settings)


@pytest.mark.slow
def test_cli_embed_json_and_summary(catalogue: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["embed", "--json", "--batch-size", "4", "--home", str(catalogue.home)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["embedded"] == data["upserted"] == len(MOVIES)
    assert {"unchanged", "model", "dim", "backend"} <= set(data)
    assert "embedding" in result.stderr  # the progress bar, on stderr

    again = runner.invoke(main, ["embed", "--quiet", "--home", str(catalogue.home)])
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("embedded 0, upserted 0, unchanged 15")
    assert again.stderr == ""


@pytest.mark.slow
def test_cli_embed_to_a_qdrant_client_store(catalogue: Settings, tmp_path: Path) -> None:
    """--qdrant-url takes the server path (qdrant-client); local mode stands in for the server."""
    url = f"file:{tmp_path / 'server-stand-in'}"
    result = CliRunner().invoke(main, ["embed", "--json", "--qdrant-url", url, "--home", str(catalogue.home)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["backend"], data["upserted"]) == ("qdrant-local", len(MOVIES))
    assert not catalogue.edge_path.exists()


def test_cli_embed_bad_model_is_one_line(catalogue: Settings) -> None:
    result = CliRunner().invoke(
        main, ["embed", "--model", "movierec-tests/missing", "--home", str(catalogue.home)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: model 'movierec-tests/missing'")
    assert "--model offline-minilm" in result.stderr and "Traceback" not in result.output


def test_cli_embed_rejects_bad_batch_size() -> None:
    result = CliRunner().invoke(main, ["embed", "--batch-size", "0"])
    assert result.exit_code == 2 and "batch-size" in result.stderr


HOLDER = """
import sys, time
from movierec.config import Settings
from movierec.store import open_store
with open_store(Settings(home=sys.argv[1])):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_cli_embed_on_a_busy_store_names_the_holder(catalogue: Settings) -> None:
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(catalogue.home)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
            result = CliRunner(env={"MOVIEREC_LOCK_TIMEOUT": "0.5"}).invoke(
                main, ["embed", "--home", str(catalogue.home)]
            )
        finally:
            holder.kill()
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: vector store ") and f"in use by PID {holder.pid}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_model_that_fails_to_load_leaves_the_store_untouched(catalogue: Settings, tmp_path: Path) -> None:
    """Regression: the switch used to announce the rebuild before loading the new model."""
    embed_movies(catalogue)
    missing = str(tmp_path / "no-such-model")
    result = CliRunner().invoke(main, ["embed", "--model", missing])
    assert result.exit_code == 1 and "rebuilding" not in result.output
    with open_store(catalogue) as store:
        assert store.model_info() == ("offline-minilm", 384) and store.count() == len(MOVIES)


@pytest.mark.slow
def test_embed_leaves_the_query_encoder_and_restores_a_missing_one(catalogue: Settings) -> None:
    from movierec.embedder import has_query_encoder, query_encoder_dir

    embed_movies(catalogue)
    assert has_query_encoder(catalogue.home, "offline-minilm")
    shutil.rmtree(query_encoder_dir(catalogue.home, "offline-minilm"))
    again = embed_movies(catalogue)
    assert again.upserted == 0 and has_query_encoder(catalogue.home, "offline-minilm")


@pytest.mark.slow
def test_movie_vectors_weight_the_title_against_the_genre_words(catalogue: Settings) -> None:
    import numpy as np

    from movierec.embedder import encode, load_model, normalise
    from movierec.ingest.embed import movie_vectors
    from movierec.ingest.text import TITLE_WEIGHT

    with connect(catalogue, read_only=True) as con:
        movies = {m.movie_id: m for m in movie_texts(con)}
    model = load_model(catalogue.model)
    godfather, untitled = movies[14], movies[15]  # Crime|Drama; no genres
    vectors = movie_vectors(model, [godfather, untitled])
    title, genres, bare = encode(model, [godfather.title_text, godfather.genre_text, untitled.title_text])
    np.testing.assert_allclose(vectors[0], normalise((TITLE_WEIGHT * title + genres)[None])[0], atol=1e-5)
    np.testing.assert_allclose(vectors[1], bare, atol=1e-5)  # no genres: the title's own vector


def test_keyword_text_is_the_tags_alone(catalogue: Settings) -> None:
    """The keyword side carries only what users tagged: a title word or a genre label is the dense side's
    (title words in keyword matches pulled "War of the Worlds" into "films about the second world war")."""
    with connect(catalogue, read_only=True) as con:
        movies = {m.movie_id: m for m in movie_texts(con)}
    godfather = movies[14]  # "Godfather, The (1972)", Crime|Drama, tagged mafia (x2), al pacino, classic
    assert godfather.keyword_text == "mafia al pacino classic"
    assert godfather.title_text == "Godfather, The mafia al pacino classic"  # the dense side has the title
    assert movies[15].keyword_text == ""  # no tags: an empty keyword vector
    # Each tag's word weighs by the users behind it (mafia: two users; one user per tag is the plain text).
    assert godfather.tag_users == (2, 1, 1)
    plain, counted = _vec(keyword_vector(godfather.keyword_text)), _vec(godfather.keyword_vector)
    (mafia,) = keyword_vector("mafia")[0]
    assert counted[mafia] > plain[mafia] and {k: v for k, v in counted.items() if k != mafia} == {
        k: v for k, v in plain.items() if k != mafia
    }


def test_keyword_side_has_every_tag_the_title_text_the_most_frequent(settings: Settings) -> None:
    """A topic is often a film's tenth tag where popular films carry hundreds: the keyword vector holds
    every tag (BM25 over all tags finds it), the dense title text only the first few; a new tag beyond
    those few still changes the point, so the next embed updates the keyword vector."""
    add_movies(settings)
    with connect(settings, read_only=True) as con:
        before = {m.movie_id: m for m in movie_texts(con, tags_per_movie=1)}[14]
    with connect(settings) as con:
        con.execute("INSERT INTO tags (user_id, movie_id, tag) VALUES (9, 14, 'Time Travel')")
    with connect(settings, read_only=True) as con:
        after = {m.movie_id: m for m in movie_texts(con, tags_per_movie=1)}[14]
    assert after.title_text == before.title_text == "Godfather, The mafia"
    assert after.keyword_text == "mafia al pacino classic time travel"
    (travel,) = keyword_vector("travel")[0]
    assert travel in after.keyword_vector[0] and travel not in before.keyword_vector[0]
    assert after.point_hash("m") != before.point_hash("m")


def _vec(sparse: tuple[list[int], list[float]]) -> dict[int, float]:
    return dict(zip(*sparse, strict=True))


def test_tag_users_weigh_keywords_in_powers_of_two() -> None:
    """A film tagged "zombie" by many users matches "zombie" more strongly than one tagged once (on a
    large catalogue this is what tells apart the hundreds of films a tag would tie); the count is kept in
    powers of two, so a film is re-embedded when it doubles, not with every new tagger."""
    assert [user_bucket(n) for n in (0, 1, 2, 3, 4, 7, 8, 1000)] == [1, 1, 2, 2, 4, 4, 8, 512]
    (z,) = keyword_vector("zombie")[0]
    one, many = _vec(tag_keyword_vector(["zombie"], [1])), _vec(tag_keyword_vector(["zombie"], [8]))
    assert one == _vec(keyword_vector("zombie")) and 1.0 == one[z] < many[z] < BM25_K1 + 1
    both = _vec(tag_keyword_vector(["zombie", "zombie comedy"], [2, 1]))
    assert both[z] == pytest.approx(3 * (BM25_K1 + 1) / (3 + BM25_K1))  # a word in two tags sums users
    a = MovieText(1, "A (2000)", 2000, ["Horror"], "A zombie", "horror", ("zombie",), (2,))
    assert a.point_hash("m") != replace(a, tag_users=(4,)).point_hash("m")
