"""The built-in ``bitagent`` competition, and the ``competition:<name>`` task source.

``bitagent``: 1,000 tasks per evaluation (upstream's figure) from the procedurally generated ``bitagent``
tasks (single calls and irrelevance), half of them replaced by BFCL-derived tasks when a ``bfcl-shuffle``
task source is installed; scored by the ``bitagent`` scorer; weights by the upstream subnet's last rule,
(score/max)^3; models under upstream's licence policy only (apache-2.0).

Why 1,000: task scores spread with a standard deviation of about 0.4, so the 95 % confidence interval of a
mean over n tasks is +/- 1.96 * 0.4 / sqrt(n): +/- 0.078 at 100 tasks -- wider than the gaps between good
models -- and +/- 0.025 at 1,000 (the validator logs each evaluation's own interval).
"""

from __future__ import annotations

from bitagent_core import RegisterCompetition, RegisterTaskSource, Registry, hookimpl
from bitagent_plugins.competitions import CompetitionTaskSource

BFCL_SOURCE = "bfcl-shuffle"


class BitagentCompetition:
    name = "bitagent"
    version = "1"
    description = "Subnet 20's competition: bitagent tasks (+ BFCL-derived ones when installed), cubic weights."
    sample_size = 1000
    scorer = "bitagent"
    weight_rule = "cubic"
    #: upstream's README: models must be apache-2.0 (its code also let cc-by-nc-4.0 and mit through)
    licenses = ("apache-2.0",)

    def mix(self, registry: Registry) -> dict[str, float]:
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
