"""Factories get the registry that builds the run: ``competition:<name>`` resolves through a registry built by
hand, never through the process-wide one."""

import bitagent_plugins.scorers as bitagent_scorer
from bitagent_core import PluginRegistry, get_registry, hookimpl, load_tasks
from bitagent_core._runner import competition_version
from bitagent_plugins.competitions import bitagent_competition
from bitagent_plugins.competitions.bitagent_competition import BitagentCompetition
from bitagent_plugins.tasks import bitagent_tasks


class Mine(BitagentCompetition):
    name = "mine"
    description = "a competition only this registry knows"
    sample_size = 4

    def mix(self, registry):
        return {"bitagent": 1.0}


class MinePlugin:
    @hookimpl
    def register_competitions(self, register):
        register("mine", Mine)


def hand_built():
    registry = PluginRegistry()
    for name, module in (
        ("tasks", bitagent_tasks),
        ("scorer", bitagent_scorer),
        ("competitions", bitagent_competition),
    ):
        registry.register_module(module, name)
    registry.register_module(MinePlugin(), "mine")
    return registry


def test_competition_tasks_resolve_through_the_registry_that_built_the_run():
    registry = hand_built()
    assert "mine" not in get_registry().registrations("competitions")  # only the hand-built one knows it
    tasks = load_tasks(registry, "competition:mine", seed=3, limit=None)
    assert len(tasks) == 4 and {t.source for t in tasks} == {"bitagent"}
    source = registry.create("task_sources", "competition", "mine")
    assert source.registry is registry
    assert competition_version(registry.create("competitions", "mine"), registry).startswith("1;n=4;bitagent=")


def test_a_factory_without_a_registry_keyword_is_called_as_before():
    registry = hand_built()
    assert not registry.get("scorers", "bitagent").wants_registry()
    assert registry.get("task_sources", "competition").wants_registry()
    assert registry.create("scorers", "bitagent").name == "bitagent"
