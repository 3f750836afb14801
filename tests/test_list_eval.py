"""`movierec evaluate --lists`: the lists judged by later behaviour, on a world whose answer is known.

World: 30 horror films (1-15 zombie films, 16-30 ghost films; every one tagged), 10 comedies. Before the
cut-off (2020) a crowd of 40 users all rate film 1, which makes it by far the most rated; ten "known" users
rate five other horror films each; one cold-start user rates two. After the cut-off (2021) the known user,
the cold-start user and three fresh users (no earlier rating) rate film 1 with 5 stars and nothing else.
So for the popularity baseline every known user's only later-liked horror film is first in their list:
hit rate, recall and nDCG@10 are exactly 1. Two queries filter by Horror: "zombies" (film 1 is on its topic)
and "ghosts" (film 1 is a horror film, so it counts for nDCG, but not on the topic: topic nDCG skips it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from movierec.batch.evaluate import (
    PeriodResult,
    Variant,
    choose,
    evaluate_lists,
    personalisation,
    read_query_file,
    resolve_cutoff,
    topic_terms,
)
from movierec.cli import main as cli
from movierec.config import Settings
from movierec.db import connect
from movierec.errors import BadInputError

KNOWN, COLD, FRESH, CROWD = range(1, 11), (301,), (201, 202, 203), range(100, 140)


def _world(settings: Settings) -> Settings:
    from movierec.ingest.embed import embed_movies

    rng = np.random.default_rng(0)
    movies = [(i, f"Zombie Night {i} (1990)", 1990, ["Horror"]) for i in range(1, 16)]
    movies += [(i, f"Ghost House {i} (1990)", 1990, ["Horror"]) for i in range(16, 31)]
    movies += [(i, f"Office Party {i} (2000)", 2000, ["Comedy"]) for i in range(31, 41)]
    before, after = "2020-01-01", "2021-01-01"
    ratings = [(u, 1, 4.0, before) for u in CROWD]
    ratings += [
        (u, int(m), 3.5, before) for u in CROWD for m in rng.choice(np.arange(2, 41), 3, replace=False)
    ]
    ratings += [(u, m, 4.0, before) for u in KNOWN for m in range(2 + u, 7 + u)]
    ratings += [(u, m, 4.0, before) for u in COLD for m in (20, 21)]
    ratings += [(u, 1, 5.0, after) for u in (*KNOWN, *COLD, *FRESH)]
    tags = [
        (100, i, "zombies" if i <= 15 else "ghosts" if i <= 30 else "office", before) for i in range(1, 41)
    ]
    with connect(settings) as con:
        con.executemany("INSERT INTO movies VALUES (?, ?, ?, ?)", movies)
        con.executemany(
            "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES (?, ?, ?, ?::TIMESTAMP)",
            ratings,
        )
        con.executemany("INSERT INTO tags VALUES (?, ?, ?, ?::TIMESTAMP)", tags)
    embed_movies(settings)
    return settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path, dict]:
    import os

    home = tmp_path_factory.mktemp("lists") / "home"
    os.environ["HF_HUB_OFFLINE"] = "1"
    settings = _world(Settings(home=home, model="offline-minilm"))
    qfile = home.parent / "queries.csv"
    qfile.write_text(
        "name,text,genres,topic\nzombies,zombie films,Horror,zombie\nghosts,ghost films,Horror,ghost\n"
    )
    variants = [
        Variant("reference: similarity", "similarity", 20, 1.0),
        Variant("popularity", "popularity", 40),
        Variant("cf a0 k250 (old default)", "cf", 40, 0.0),
        Variant("cf a0.5 k20", "cf", 20, 0.5),
    ]
    report = evaluate_lists(
        settings, qfile, cutoff="2020-06-01", validation=0, variants=variants, hyperparams={"iterations": 3}
    )
    return settings, qfile, report


def test_popularity_baseline_finds_the_later_liked_film_first(world) -> None:
    (period,) = world[2]["periods"]
    assert period["name"] == "test" and period["cutoff"] == "2020-06-01"
    assert period["users"] == {"known": len(KNOWN), "cold_start": len(COLD), "fresh": len(FRESH)}
    known = period["variants"]["popularity"]["known"]
    assert known["pairs_judged"] == 2 * len(KNOWN)  # film 1 is a horror film: both queries' genre
    assert known["hit@10"] == known["recall@10"] == known["ndcg@10"] == 1.0
    # On topic it is a zombie film only: the ghost query's pairs have no later-liked film on topic.
    assert known["topic_pairs"] == len(KNOWN) and known["topic_ndcg@10"] == 1.0


def test_every_variant_is_judged_with_topic_and_spread_metrics(world) -> None:
    (period,) = world[2]["periods"]
    assert set(period["variants"]) == {"reference: similarity", "popularity", "cf a0 k250 (old default)",
                                       "cf a0.5 k20"}  # fmt: skip
    for m in period["variants"].values():
        a = m["all"]
        assert a["pairs_judged"] == 2 * (len(KNOWN) + len(COLD) + len(FRESH))  # all later liked film 1
        assert a["topic_pairs"] == len(KNOWN) + len(COLD) + len(FRESH)  # on the zombie query's topic only
        assert a["topic_judged"] == 1.0  # every film carries a tag
        assert 0.0 <= a["topical_precision"] <= 1.0 and 0.0 <= a["personalisation"] <= 1.0
        assert 0 < a["coverage"] <= 30 / 40  # horror films only: the query filters by genre
        assert a["novelty_pop_rank"] >= 1
    # Film 1 is the only later-liked film and the crowd's favourite: the popularity list places it
    # first, so its novelty (mean popularity rank) is the lowest of all variants'.
    novelty = {n: m["all"]["novelty_pop_rank"] for n, m in period["variants"].items()}
    assert min(novelty, key=novelty.get) == "popularity"
    # Each variant against the old default pair by pair: the difference of the two means, with its error.
    for m in period["variants"].values():
        k = m["known"]
        old = period["variants"]["cf a0 k250 (old default)"]["known"]
        assert k["ndcg@10_vs_old"] == pytest.approx(k["ndcg@10"] - old["ndcg@10"], abs=2e-4)
    assert period["variants"]["cf a0 k250 (old default)"]["known"]["ndcg@10_vs_old_se"] == 0.0


def test_lists_cli_json_and_bad_cutoff(world, monkeypatch) -> None:
    settings, qfile, _ = world
    env = {"MOVIEREC_HOME": str(settings.home)}
    bad = CliRunner().invoke(cli, ["evaluate", "--lists", "--cutoff", "someday"], env=env)
    assert bad.exit_code == 1 and "--cutoff 'someday'" in bad.output and "Traceback" not in bad.output
    with monkeypatch.context() as m:  # a cut-off outside the data is refused before any model is fitted
        m.setattr("movierec.batch.evaluate.KerasCF.fit", lambda *a, **k: pytest.fail("fitted a model"))
        for cut, says in (("2999-01-01", "no ratings after 2999-01-01"), ("1971-01-01", "no ratings before")):
            args = ["evaluate", "--lists", "--queries", str(qfile), "--cutoff", cut, "--quiet"]
            late = CliRunner().invoke(cli, args, env=env)
            assert late.exit_code == 1 and says in late.output, late.output
    missing = CliRunner().invoke(cli, ["evaluate", "--lists", "--queries", "/no/such.csv"], env=env)
    assert missing.exit_code == 1 and "cannot read query file" in missing.output
    ok = CliRunner().invoke(
        cli,
        ["evaluate", "--lists", "--queries", str(qfile), "--cutoff", "2020-06-01", "--validation", "0",
         "--iterations", "2", "--json", "--quiet"],
        env=env,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert [p["name"] for p in report["periods"]] == ["test"] and report["chosen"] is None


def test_personalisation_known_answers() -> None:
    same = np.array([[1, 2, 3]] * 4)
    disjoint = np.array([[1, 2], [3, 4], [5, 6]])
    half = np.array([[1, 2, -1], [2, 3, -1]])  # Jaccard 1/3; empty slots ignored
    assert personalisation(same) == 0.0
    assert personalisation(disjoint) == 1.0
    assert personalisation(half) == pytest.approx(2 / 3, abs=1e-6)  # float32 products
    assert personalisation(np.array([[1, 2]])) is None


def test_cutoff_as_share_or_date() -> None:
    ts = np.arange(1, 101, dtype=np.int64)
    assert resolve_cutoff(None, ts) == 90  # the time by which 90% of ratings happened
    assert resolve_cutoff("0.5", ts) == 50
    assert resolve_cutoff("1970-01-01", ts) == 0
    assert resolve_cutoff("1970-01-01T01:00:00+01:00", ts) == 0  # an offset names that instant
    assert resolve_cutoff("1970-01-01T00:00:00-00:30", ts) == 1800
    for bad in ("1.5", "0", "next week"):
        with pytest.raises(BadInputError):
            resolve_cutoff(bad, ts)


def test_query_file_and_topic_words(tmp_path: Path) -> None:
    good = tmp_path / "q.csv"
    good.write_text(
        "name,text,genres,topic\nz,Horror films with zombies,Horror,Zombie|undead\nm,mafia films,,\n"
    )
    (z, zt), (m, mt) = read_query_file(good)
    assert z.genres == ("Horror",) and zt == ("zombie", "undead") and m.genres == () and mt == ()
    assert topic_terms("Horror films with zombies") == ("horror", "zombies")
    assert topic_terms("Horror films with zombies", ("Horror",)) == ("zombies",)  # a filter is no topic
    bad = tmp_path / "bad.csv"
    bad.write_text("query,relevant_genres\nzombies,Horror\n")
    with pytest.raises(BadInputError, match="name,text"):
        read_query_file(bad)


def test_choose_takes_the_most_on_topic_blend_within_noise_of_the_best() -> None:
    def m(ndcg: float, topic: float | None, pers: float) -> dict:
        # the floor is the known users': "all" also holds fresh users' identical cold-start lists
        return {"all": {"personalisation": 1.0 - pers},
                "known": {"ndcg@10": ndcg, "ndcg@10_se": 0.01, "topic_ndcg@10": topic,
                          "personalisation": pers}}  # fmt: skip

    period = PeriodResult("validation", "2020-01-01", "2021-01-01", 100, {}, {
        "reference: similarity": m(0.9, 0.9, 0.9),  # baselines: never chosen
        "popularity": m(0.8, 0.9, 0.9),
        "cf a0 k250 (old default)": m(0.20, 0.10, 0.50),
        "more on topic, within noise": {**m(0.195, 0.20, 0.51), "alpha": 0.2, "pop_weight": -0.1,
                                        "candidates": 250},  # fmt: skip
        "on topic, a little less personal": m(0.195, 0.25, 0.49),  # personalisation fell: not chosen
        "most on topic, fewer later hits": m(0.15, 0.40, 0.50),  # below the best's nDCG minus its SE
        "on topic, the same list for all": m(0.20, 0.30, 0.40),  # personalisation < the old default's
    })  # fmt: skip
    chosen = choose(period)
    assert chosen["variant"] == "more on topic, within noise"
    # What to set to publish the chosen lists.
    assert chosen["apply"].startswith("MOVIEREC_ALPHA=0.2, MOVIEREC_POPULARITY_WEIGHT=-0.1, --candidates 250")
    # Paired with the old default on the same pairs, the chosen blend's small loss turns out plain
    # (-0.005 with a paired s.e. of 0.002): the next most on-topic blend whose loss is noise is chosen.
    period.variants["more on topic, within noise"]["known"].update({"ndcg@10_vs_old": -0.005,
                                                                    "ndcg@10_vs_old_se": 0.002})  # fmt: skip
    period.variants["a little on topic"] = m(0.199, 0.15, 0.50)
    period.variants["a little on topic"]["known"].update(
        {"ndcg@10_vs_old": -0.001, "ndcg@10_vs_old_se": 0.002}
    )
    assert choose(period)["variant"] == "a little on topic"
    assert "paired standard error" in choose(period)["rule"]
    # Where no later-liked film is on any topic, nDCG decides under the same floors.
    for v in period.variants.values():
        v["known"]["topic_ndcg@10"] = None
    assert choose(period)["variant"] == "cf a0 k250 (old default)"


def test_topic_ndcg_counts_later_liked_films_on_the_topic_and_in_the_genre_only() -> None:
    """A zombie horror film, a ghost horror film and a zombie comedy, all liked later by user 7, for
    "zombie films" filtered by Horror: nDCG credits both horror films, topic nDCG only the zombie horror
    film (the zombie comedy is outside the filter, the ghost film off the topic)."""
    from movierec.batch.evaluate import (
        EvalQuery,
        _judge,
        _Movies,
        _on_topic,
        _relevant_keys,
        _relevant_movies,
    )
    from movierec.batch.queries import SavedQuery
    from movierec.cf import Ratings

    movies = _Movies(
        np.array([1, 2, 3, 4]),
        [{"Horror"}, {"Horror"}, {"Comedy"}, {"Comedy"}],
        ["zombie night (1990) | ", "ghost house (1990) | ghosts", "party (2000) | zombies", "office | "],
        np.array([False, True, True, False]),
    )
    q = EvalQuery(SavedQuery("z", "zombie films", ("Horror",)), ("zombie",))
    relevant = _relevant_movies(q, None, None, movies)
    on_topic = _on_topic(q, relevant, movies)
    assert relevant.tolist() == [1, 2] and on_topic.tolist() == [1]
    liked = Ratings.from_arrays(np.array([7, 7, 7]), np.array([1, 2, 3]), np.array([5.0, 5.0, 5.0]))
    keys, users = (liked.user_ids << 32) | liked.movie_ids, np.array([7])
    rel = _relevant_keys(np.isin(liked.movie_ids, relevant), liked, keys, users)
    rel_topic = _relevant_keys(np.isin(liked.movie_ids, on_topic), liked, keys, users)
    top = np.array([[2, 1] + [-1] * 8])  # the ghost film first, the zombie film second
    topical = (np.array([1, 2]), np.array([1, 0]))
    out = _judge(top, users, rel, rel_topic, topical, movies, np.array([1, 2, 3, 4]))
    assert (out["n_rel"][0], out["n_topic"][0]) == (2, 1)
    assert out["ndcg"][0] == pytest.approx(1.0)  # both relevant films fill the first two places
    assert out["ndcg_topic"][0] == pytest.approx(1 / np.log2(3))  # the one on-topic film second, not first


def test_a_plain_querys_topic_does_not_grow_with_the_variants_candidates(world, monkeypatch) -> None:
    """Without a genre filter a query's relevant films are its `NEAREST` most similar ones. Here the 15
    ghost films are the 15 nearest to "ghost films", so film 1 (a zombie film, the only one liked later)
    is relevant to no pair, even when a variant asks for all 40 films as candidates: a variant's figures
    must not depend on which other variants run beside it (they once took max(candidates) as the topic)."""
    import movierec.batch.evaluate as ev

    settings, qfile, _ = world
    plain = qfile.parent / "plain.csv"
    plain.write_text("name,text,genres,topic\nghosts,ghost films,,ghost\n")
    monkeypatch.setattr(ev, "NEAREST", 15)
    variants = [Variant("popularity", "popularity", 40), Variant("cf a0 k250 (old default)", "cf", 40)]
    report = evaluate_lists(
        settings, plain, cutoff="2020-06-01", validation=0, variants=variants, hyperparams={"iterations": 3}
    )
    (period,) = report["periods"]
    for m in period["variants"].values():
        assert m["all"]["pairs_judged"] == 0
    monkeypatch.setattr(ev, "NEAREST", 40)  # every film is among the 40 nearest: film 1 counts
    report = evaluate_lists(
        settings, plain, cutoff="2020-06-01", validation=0, variants=variants, hyperparams={"iterations": 3}
    )
    (period,) = report["periods"]
    assert period["variants"]["popularity"]["all"]["pairs_judged"] == len(KNOWN) + len(COLD) + len(FRESH)


def test_the_configured_blend_is_judged_over_each_querys_own_candidates(world) -> None:
    """A home that set MOVIEREC_ALPHA sees its own blend beside the grid, ranked over each saved query's
    own candidate count (here 12 of the 30 horror films), as the nightly ranks it: the same lists as a
    grid blend with the same weights over 12 candidates, not those over the grid's 250 (all 30)."""
    from movierec.batch.evaluate import default_variants
    from movierec.batch.queries import SavedQuery, add_query, remove_query

    settings, _, _ = world
    home = settings.model_copy(update={"alpha": 0.35, "popularity_weight": -0.1})
    configured = default_variants(home)[-1]
    assert (configured.name, configured.candidates) == ("configured: a0.35 p-0.1", None)
    assert (configured.alpha, configured.pop) == (0.35, -0.1)
    twelve = Variant("cf a0.35 p-0.1 k12", "cf", 12, 0.35, -0.1)
    every = Variant("cf a0.35 p-0.1 k250", "cf", 250, 0.35, -0.1)
    with connect(settings) as con:
        add_query(con, SavedQuery("zombies", "zombie films", ("Horror",), candidates=12))
    try:
        variants = [configured, twelve, every]
        report = evaluate_lists(home, None, cutoff="2020-06-01", validation=0, variants=variants,
                                hyperparams={"iterations": 3})  # fmt: skip
    finally:
        with connect(settings) as con:
            remove_query(con, "zombies")
    (period,) = report["periods"]
    got = period["variants"]
    assert got[configured.name]["candidates"] is None
    assert got[configured.name]["all"] == got[twelve.name]["all"]
    assert got[configured.name]["all"]["coverage"] < got[every.name]["all"]["coverage"]  # 12 films, not 30
    # A configured blend the batch would refuse is refused before any model is fitted, in one line.
    with pytest.raises(BadInputError, match="exceeds 1"):
        evaluate_lists(settings.model_copy(update={"alpha": 0.9, "popularity_weight": 0.5}))
    # Chosen, it says to keep each query's own count.
    chosen = choose(PeriodResult("validation", "", "", 1, {}, {configured.name: got[configured.name]}))
    assert chosen["apply"].endswith("each saved query's own --candidates")


def test_validation_folds_are_pooled_pair_by_pair() -> None:
    """Two folds whose users differ: the pooled period judges every fold's (user, query) pairs, so its
    means and paired differences are those of the pairs put together, not of the folds' means."""
    from movierec.batch.evaluate import _Fold, _pooled

    variants = [Variant("cf a0 k250 (old default)", "cf", 250), Variant("blend", "cf", 250, 0.2)]

    def part(ndcg: list[float], top: list[list[int]], users: list[int]) -> dict[str, np.ndarray]:
        n = len(ndcg)
        return {"top": np.array(top), "user": np.array(users), "n_rel": np.ones(n, int),
                "n_topic": np.ones(n, int), "hit": np.array(ndcg) > 0, "ndcg": np.array(ndcg),
                "ndcg_topic": np.array(ndcg),
                "recall": np.array(ndcg), "judged": np.ones(n, int), "on": np.ones(n, int),
                "listed": np.ones(n, int), "poprank": np.ones(n, int)}  # fmt: skip

    # Fold 1: two known users and a fresh one (whose lists do not count for the known figures).
    one = _Fold({"cf a0 k250 (old default)": [part([1.0, 0.0, 0.5], [[1], [2], [3]], [10, 11, 12])],
                 "blend": [part([1.0, 0.5, 0.5], [[1], [4], [3]], [10, 11, 12])]},
                np.array(["known", "known", "fresh"]))  # fmt: skip
    # Fold 2: user 10 again, where the blend loses.
    two = _Fold({"cf a0 k250 (old default)": [part([1.0], [[5]], [10])], "blend": [part([0.0], [[6]], [10])]},
                np.array(["known"]))  # fmt: skip
    spans = [PeriodResult(f"validation {i}/2", c, e, n, {"known": k, "cold_start": 0, "fresh": f})
             for i, (c, e, n, k, f) in enumerate((("2019-01-01", "2020-01-01", 10, 2, 1),
                                                 ("2020-01-01", "2021-01-01", 20, 1, 0)), 1)]  # fmt: skip
    pooled = _pooled(spans, [one, two], variants, n_movies=10)
    assert (pooled.name, pooled.cutoff, pooled.end) == ("validation", "2019-01-01", "2021-01-01")
    assert pooled.users == {"known": 3, "cold_start": 0, "fresh": 1} and len(pooled.folds) == 2
    known = pooled.variants["blend"]["known"]
    assert known["pairs_judged"] == 3 and known["ndcg@10"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert pooled.variants["blend"]["all"]["pairs_judged"] == 4
    # Paired: differences 0 (user 10), +0.5 (user 11), -1 (user 10 again) -> mean -1/6; clustered by
    # user, residual sums -2/3 and +2/3 over 2 users: s.e. = sqrt(2 / 1 * 8 / 9) / 3 = 4 / 9.
    assert known["ndcg@10_vs_old"] == pytest.approx(-1 / 6, abs=1e-4)
    assert known["ndcg@10_vs_old_se"] == pytest.approx(4 / 9, abs=1e-4)
    # Coverage counts the films listed in any fold: 1, 4, 3 and 6 (of 10) for the blend's lists.
    assert pooled.variants["blend"]["all"]["coverage"] == pytest.approx(0.4)


def test_validation_folds_that_do_not_fit_are_refused_before_fitting(world, monkeypatch) -> None:
    settings, qfile, _ = world
    monkeypatch.setattr("movierec.batch.evaluate.KerasCF.fit", lambda *a, **k: pytest.fail("fitted a model"))
    # The world's ratings fall on two days: three folds cannot be cut from the ratings before the cut-off.
    with pytest.raises(BadInputError, match="validation fold"):
        evaluate_lists(settings, qfile, cutoff="2020-06-01", validation=0.05, folds=3)
    with pytest.raises(BadInputError, match="lower --folds or --validation"):
        evaluate_lists(settings, qfile, cutoff="2020-06-01", validation=0.4, folds=3)
    bad = CliRunner().invoke(
        cli, ["evaluate", "--lists", "--folds", "0"], env={"MOVIEREC_HOME": str(settings.home)}
    )
    assert bad.exit_code == 2 and "--folds" in bad.output
    for flags in (["--folds", "2"], ["--validation", "0.2"], ["--cutoff", "2020-06-01"]):
        ignored = CliRunner().invoke(cli, ["evaluate", *flags], env={"MOVIEREC_HOME": str(settings.home)})
        assert ignored.exit_code == 2 and f"{flags[0]} only apply with --lists" in ignored.output
    split = CliRunner().invoke(
        cli, ["evaluate", "--lists", "--split", "time"], env={"MOVIEREC_HOME": str(settings.home)}
    )
    assert split.exit_code == 2 and "--split does not apply with --lists" in split.output


def test_standard_errors_are_clustered_by_user() -> None:
    """One value per user: the plain standard error of the mean. A user's values that move together
    (the same user's lists for several queries) count as one draw, so the error grows."""
    from movierec.batch.evaluate import _clustered_se

    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    assert _clustered_se(x, np.arange(50)) == pytest.approx(x.std(ddof=1) / np.sqrt(50))
    # Each user's value repeated for 12 queries: 600 pairs, but still 50 draws.
    assert _clustered_se(np.repeat(x, 12), np.repeat(np.arange(50), 12)) == pytest.approx(
        x.std(ddof=1) / np.sqrt(50))  # fmt: skip
    assert _clustered_se(x, np.zeros(50, int)) is None  # one user: no error to estimate
