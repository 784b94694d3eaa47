"""Competitions as plugins: the built-in ``bitagent`` competition, its sample per round, its version."""

from __future__ import annotations

import sys
import types

import pytest

from bitagent_core import _plugins as plugins
from bitagent_core import competition_version as effective_version
from bitagent_core._runner import load_tasks
from bitagent_core.hookspecs import hookimpl
from bitagent_plugins.competitions import (
    CompetitionTaskSource,
    allocate,
    check_competition,
    get_competition,
    sample_tasks,
)
from bitagent_plugins.competitions.bitagent_competition import BitagentCompetition


@pytest.fixture
def registry(fresh_registry):
    return fresh_registry


def test_allocate_splits_by_share_with_largest_remainders():
    assert allocate({"a": 1.0}, 7) == {"a": 7}
    assert allocate({"a": 0.5, "b": 0.5}, 7) == {"a": 4, "b": 3}
    assert allocate({"a": 1, "b": 2}, 10) == {"a": 3, "b": 7}
    assert allocate({"a": 1, "b": 0, "c": 1}, 3) == {"a": 2, "c": 1}
    assert allocate({"a": 1, "b": 1, "c": 1}, 1) == {"a": 1}
    with pytest.raises(ValueError):
        allocate({"a": 0}, 3)


def test_the_bitagent_competition_mixes_bfcl_tasks_in_when_that_source_is_installed(registry):
    competition = get_competition(registry, "bitagent")
    assert (competition.scorer, competition.weight_rule, competition.sample_size) == (
        "bitagent-multi-turn",
        "cubic",
        1000,
    )
    assert "bfcl-shuffle" in registry.registrations("task_sources")
    competition.multi_turn_share = 0  # the multi-turn share: tests/test_competitions_bfcl.py
    assert competition.mix(registry) == {"bitagent": 0.5, "bfcl-shuffle": 0.5}
    competition.sample_size = 10
    tasks = sample_tasks(competition, registry, seed=11)
    assert len(tasks) == 10 and len({t.id for t in tasks}) == 10
    sources = sorted(t.source for t in tasks)
    assert sources.count("bitagent") == 5 and len(sources) - 5 == 5


def test_without_bfcl_the_competition_is_bitagent_tasks_only(monkeypatch):
    monkeypatch.setenv("BITAGENT_PLUGINS", "bitagent-tasks,bitagent-scorer,bitagent-competition")
    plugins.reset_registry()
    try:
        registry = plugins.get_registry()
        competition = get_competition(registry, "bitagent")
        assert competition.mix(registry) == {"bitagent": 1.0}
        assert competition.scorer == "bitagent"  # no multi-turn share without the bfcl plugin
        assert {t.source for t in sample_tasks(competition, registry, seed=3, limit=8)} == {"bitagent"}
    finally:
        plugins.reset_registry()


def test_each_seed_draws_a_fresh_sample_and_the_same_seed_the_same_sample(registry):
    competition = BitagentCompetition()
    competition.sample_size = 12
    a = sample_tasks(competition, registry, seed=1)
    assert [t.to_json() for t in a] == [t.to_json() for t in sample_tasks(competition, registry, seed=1)]
    b = sample_tasks(competition, registry, seed=2)
    assert {t.id for t in a} != {t.id for t in b}
    assert len(sample_tasks(competition, registry, seed=1, limit=5)) == 5
    assert len(sample_tasks(competition, registry, seed=1, limit=30)) == 30  # a larger sample, not capped


def test_the_competition_is_a_task_source_for_the_runner(registry):
    tasks = load_tasks(registry, "competition:bitagent", seed=5, limit=6)
    competition = get_competition(registry, "bitagent")
    assert [t.id for t in tasks] == [t.id for t in sample_tasks(competition, registry, seed=5, limit=6)]
    source = CompetitionTaskSource("bitagent", registry=registry)
    assert source.version == effective_version(competition, registry)
    assert "bitagent:single_call" in source.categories()
    with pytest.raises(ValueError, match="needs a name"):
        CompetitionTaskSource(None)
    with pytest.raises(plugins.UnknownPluginObject, match="unknown competition 'nope'"):
        load_tasks(registry, "competition:nope", seed=1, limit=1)


def test_the_version_changes_with_anything_that_changes_the_grades(registry):
    competition = BitagentCompetition()
    base = effective_version(competition, registry)
    assert base.startswith("1;n=1000;bitagent-multi-turn=1+1;")
    competition.version = "2"
    assert effective_version(competition, registry) != base
    competition = BitagentCompetition()
    competition.sample_size = 50
    assert effective_version(competition, registry) != base


def test_a_third_party_competition_plugs_in(registry):
    class Tiny:
        name = "tiny"
        version = "7"
        description = "irrelevance only"
        sample_size = 4
        scorer = "bitagent"
        weight_rule = "linear"

        def mix(self, registry):
            return {"bitagent:irrelevance": 1}

    module = types.ModuleType("tiny_competition")

    @hookimpl
    def register_competitions(register):
        register("tiny", Tiny, description=Tiny.description)

    module.register_competitions = register_competitions
    sys.modules["tiny_competition"] = module
    try:
        registry.register_module(module, "tiny-competition")
        competition = get_competition(registry, "tiny")
        tasks = sample_tasks(competition, registry, seed=9)
        assert len(tasks) == 4 and {t.category for t in tasks} == {"irrelevance"}
        assert effective_version(competition, registry).startswith("7;n=4;bitagent=")
    finally:
        del sys.modules["tiny_competition"]


def test_broken_competitions_are_refused():
    class Broken:
        name = "broken"
        version = "1"
        sample_size = 0
        scorer = "bitagent"
        weight_rule = "cubic"

    with pytest.raises(ValueError, match="sample_size"):
        check_competition(Broken())
    Broken.sample_size = 3
    Broken.weight_rule = "quadratic"
    with pytest.raises(ValueError, match="weight_rule"):
        check_competition(Broken())
    del Broken.scorer
    with pytest.raises(ValueError, match="no 'scorer'"):
        check_competition(Broken())


def test_the_competition_example_in_the_docs_runs(registry):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "subnet.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(block, "docs/subnet.md", "exec"), namespace)
    competition = namespace["MyCompetition"]()
    check_competition(competition)
    tasks = sample_tasks(competition, registry, seed=1, limit=10)
    assert len(tasks) == 10 and sum(t.category == "irrelevance" for t in tasks) >= 3
