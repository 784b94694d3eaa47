"""The ``bfcl`` competition (BFCL v4's overall over the categories served), model longevity in the validator's
state, the ``bitagent`` competition's multi-turn share, and competition options."""

from __future__ import annotations

import logging

import pytest

from bitagent_core import Completion, Score, Trajectory
from bitagent_plugins.competitions import get_competition, sample_tasks
from bitagent_plugins.competitions.bfcl_competition import (
    CATEGORIES,
    MULTI_TURN,
    BfclCompetition,
    bfcl_groups,
    bfcl_overall,
    category_accuracies,
)
from bitagent_plugins.subnet.scoring import Scoreboard
from bitagent_plugins.subnet.state import ValidatorState
from bitagent_plugins.subnet.validator import configure_competition

#: served by the bfcl task source on this branch; java/javascript come with their own task sources
JAVA_JS = ("bfcl:simple_java", "bfcl:simple_javascript")


@pytest.fixture
def registry(fresh_registry):
    return fresh_registry


def test_the_overall_follows_bfcl_v4s_group_rules():
    accuracies = {
        "simple_python": 0.9,
        "simple_java": 0.6,
        "simple_javascript": 0.3,  # simple = 0.6
        "multiple": 0.8,
        "parallel": 0.4,
        "parallel_multiple": 0.2,  # non-live = (0.6+0.8+0.4+0.2)/4 = 0.5
        "live_simple": 0.5,
        "live_multiple": 0.7,
        "live_parallel": 0.25,
        "live_parallel_multiple": 0.0,
        "irrelevance": 1.0,
        "live_irrelevance": 0.5,  # 0.75
        "multi_turn_base": 0.4,
        "multi_turn_miss_func": 0.2,
        "multi_turn_miss_param": 0.1,
        "multi_turn_long_context": 0.3,  # 0.25
        "live_relevance": 0.0,  # shown by BFCL, weighted nowhere
    }
    live = (0.5 * 258 + 0.7 * 1053 + 0.25 * 16 + 0.0 * 24) / (258 + 1053 + 16 + 24)  # count-weighted
    groups = bfcl_groups(accuracies)
    assert groups == pytest.approx({"non_live": 0.5, "live": live, "irrelevance": 0.75, "multi_turn": 0.25})
    # BFCL's weights 10/10/10/30 (+40 agentic, not served) renormalised over the groups served
    assert bfcl_overall(accuracies) == pytest.approx((0.1 * 0.5 + 0.1 * live + 0.1 * 0.75 + 0.3 * 0.25) / 0.6)
    assert bfcl_overall({c: 1.0 for c in CATEGORIES}) == pytest.approx(1.0)
    assert bfcl_overall({}) == 0.0


def test_a_category_not_served_is_left_out_of_its_group_not_counted_zero():
    # without java and javascript, simple is python's accuracy alone
    assert bfcl_groups({"simple_python": 0.9, "multiple": 0.5})["non_live"] == pytest.approx(0.7)
    assert bfcl_groups({"simple_python": 0.9, "simple_java": 0.0, "multiple": 0.5})["non_live"] == pytest.approx(
        0.475
    )  # simple = (0.9 + 0) / 2
    # one group only: its own accuracy
    assert bfcl_overall({"multi_turn_base": 0.4, "multi_turn_miss_func": 0.2}) == pytest.approx(0.3)


def test_category_accuracies_count_failed_samples_zero():
    samples = [
        {"category": "multiple", "status": "ok", "score": 1.0},
        {"category": "multiple", "status": "failed", "score": 1.0},
        {"category": "multiple", "status": "ok", "score": 0.0},
        {"category": "irrelevance", "status": "ok", "score": 1.0},
    ]
    assert category_accuracies(samples) == pytest.approx({"multiple": 1 / 3, "irrelevance": 1.0})
    assert BfclCompetition().score_samples(samples) == pytest.approx((1 / 3 * 0.1 + 1.0 * 0.1) / 0.2)


@pytest.mark.slow  # loads every BFCL category
def test_the_bfcl_competition_samples_every_served_category_and_says_which_are_not(registry, caplog):
    competition = get_competition(registry, "bfcl")
    assert (competition.scorer, competition.weight_rule) == ("bfcl", "cubic")
    missing = competition.unavailable(registry)
    served = [f"bfcl:{c}" for c in CATEGORIES if f"bfcl:{c}" not in missing]
    assert set(missing) <= set(JAVA_JS)  # java/js: on the branch that adds their task sources
    for why in missing.values():
        assert "simple_j" in why  # the task source's own reason (unknown category)
    with caplog.at_level(logging.WARNING, logger="bitagent.competitions"):
        import bitagent_plugins.competitions.bfcl_competition as module

        module._warned.clear()
        mix = competition.mix(registry)
    assert list(mix) == served and set(mix.values()) == {1.0}
    assert all("left out of the BFCL overall" in r.getMessage() for r in caplog.records)
    assert {spec for spec in JAVA_JS if any(spec in r.getMessage() for r in caplog.records)} == set(missing)
    tasks = sample_tasks(competition, registry, seed=7, limit=len(served))
    assert sorted(t.category for t in tasks) == sorted(spec.split(":")[1] for spec in served)
    assert sum(t.environment is not None for t in tasks) == len(MULTI_TURN)  # multi-turn played by the agent
    other = sample_tasks(competition, registry, seed=8, limit=len(served))
    assert {t.id for t in tasks} != {t.id for t in other}  # a fresh sample per round seed


def test_model_longevity_mixes_in_the_last_versions_scores(tmp_path):
    key = f"acme/a@{'a' * 40}"
    with ValidatorState(tmp_path / "state.sqlite") as db:
        db.sync_neurons({0: "a", 1: "b"}, 1)
        db.upsert_submission("a", 0, "acme/a", None, "a" * 40, 10)
        db.upsert_submission("b", 1, "acme/b", None, "b" * 40, 11)
        db.record_vetting(key, True, "ok")
        db.record_vetting(f"acme/b@{'b' * 40}", True, "ok")
        # a is evaluated under four versions in turn; b only under the last
        for version, score in (("v1", 0.1), ("v2", 0.2), ("v3", 0.4), ("v4", 0.8)):
            board = Scoreboard(db, competition="c", version=version, longevity=(2, 0.1))
            assert board.claim(key)
            board.finish(key, score=score, n_tasks=4, ci95=None, run_dir="r", block=5, round_id=1, data_digest=None)
        assert board.claim(f"acme/b@{'b' * 40}")
        board.finish(
            f"acme/b@{'b' * 40}", score=0.8, n_tasks=4, ci95=None, run_dir="r", block=6, round_id=1, data_digest=None
        )
        # the current version weighs 1 - 2 x 0.1, each of the last two earlier ones (v3, v2) 0.1; v1 is too old
        assert board.scores() == pytest.approx({"a": 0.8 * 0.8 + 0.1 * 0.4 + 0.1 * 0.2, "b": 0.8 * 0.8})
        assert Scoreboard(db, competition="c", version="v4").scores() == pytest.approx({"a": 0.8, "b": 0.8})
        with pytest.raises(Exception, match="longevity"):
            Scoreboard(db, competition="c", version="v4", longevity=(11, 0.1)).scores()


@pytest.mark.slow  # loads BFCL's multi-turn data, or builds a validator
def test_the_validator_uses_the_competitions_longevity(tmp_path):
    from subnet_helpers import make_wallet

    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    validator = Validator(
        ValidatorConfig(
            competition="bfcl",
            state_path=tmp_path / "s.sqlite",
            backend="llama-cpp",
            competition_options={"longevity_versions": "5"},
        ),
        wallet=make_wallet(tmp_path / "wallets", "validator"),
    )
    with ValidatorState(tmp_path / "s.sqlite") as db:
        validator._build_parts(db)
        assert validator.scoreboard is not None and validator.scoreboard.longevity == (5, 0.02)


def test_competition_options_set_numeric_settings_and_refuse_others():
    competition = BfclCompetition()
    configure_competition(competition, {"longevity_share": "0.03", "longevity_versions": "4"})
    assert (competition.longevity_share, competition.longevity_versions) == (0.03, 4)
    assert BfclCompetition.longevity_versions == 10  # the instance's, not the class's
    with pytest.raises(ValueError, match="no setting 'multi_turn_share'.*longevity_share"):
        configure_competition(competition, {"multi_turn_share": "0.2"})
    with pytest.raises(ValueError, match="not a int"):
        configure_competition(competition, {"longevity_versions": "many"})
    with pytest.raises(ValueError, match="negative"):
        configure_competition(competition, {"longevity_share": "-1"})


@pytest.mark.slow  # loads BFCL's multi-turn data, or builds a validator
def test_the_bitagent_competition_has_a_multi_turn_share(registry):
    competition = get_competition(registry, "bitagent")
    assert competition.scorer == "bitagent-multi-turn"
    assert competition.mix(registry) == pytest.approx(
        {"bitagent": 0.45, "bfcl-shuffle": 0.45, "bfcl:multi_turn_base": 0.1}
    )
    tasks = sample_tasks(competition, registry, seed=3, limit=20)
    multi = [t for t in tasks if t.environment is not None]
    assert len(multi) == 2 and {t.category for t in multi} == {"multi_turn_base"}
    competition.multi_turn_share = 0.0
    assert competition.scorer == "bitagent" and "bfcl:multi_turn_base" not in competition.mix(registry)


@pytest.mark.slow  # loads BFCL's multi-turn data, or builds a validator
def test_the_multi_turn_share_scorer_uses_each_scorers_rules(registry):
    scorer = registry.get("scorers", "bitagent-multi-turn").factory()
    single = registry.get("scorers", "bitagent").factory()
    bfcl = registry.get("scorers", "bfcl").factory()
    assert scorer.version == f"{single.version}+{bfcl.version}"
    task = next(iter(registry.get("task_sources", "bitagent").factory(None).tasks(seed=1, limit=1)))
    completion = Completion(text="[get_weather(city='Paris')]")
    assert scorer.score(task, completion) == single.score(task, completion)
    (multi,) = registry.get("task_sources", "bfcl").factory("multi_turn_base").tasks(seed=1, limit=1)
    empty = Trajectory(tuple(() for _ in multi.metadata["ground_truth"]))
    verdict: Score = scorer.score_trajectory(multi, empty)
    assert verdict == bfcl.score_trajectory(multi, empty) and not verdict.passed
