"""The built-in ``bitagent`` competition, and the ``competition:<name>`` task source.

``bitagent``: 100 tasks a round from the procedurally generated ``bitagent`` tasks (single calls and
irrelevance), half of them replaced by BFCL-derived tasks when a ``bfcl-shuffle`` task source is installed;
scored by the ``bitagent`` scorer; weights by the upstream subnet's last rule, (score/max)^3.
"""

from __future__ import annotations

from bitagent_core import PluginRegistry, RegisterCompetition, RegisterTaskSource, hookimpl
from bitagent_plugins.competitions import CompetitionTaskSource

BFCL_SOURCE = "bfcl-shuffle"


class BitagentCompetition:
    name = "bitagent"
    version = "1"
    description = "Subnet 20's competition: bitagent tasks (+ BFCL-derived ones when installed), cubic weights."
    sample_size = 100
    scorer = "bitagent"
    weight_rule = "cubic"

    def mix(self, registry: PluginRegistry) -> dict[str, float]:
        if BFCL_SOURCE in registry.registrations("task_sources"):
            return {"bitagent": 0.5, BFCL_SOURCE: 0.5}
        return {"bitagent": 1.0}


@hookimpl
def register_competitions(register: RegisterCompetition) -> None:
    register("bitagent", BitagentCompetition, description=BitagentCompetition.description)


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register("competition", CompetitionTaskSource,
             description="A competition's task sample for the seed: competition:<name>, e.g. competition:bitagent.")
