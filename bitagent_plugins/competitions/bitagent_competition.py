"""The built-in ``bitagent`` competition, and the ``competition:<name>`` task source.

``bitagent``: 1,000 tasks per evaluation (upstream's figure) from the procedurally generated ``bitagent``
tasks (single calls and irrelevance), half of them replaced by BFCL-derived tasks when a ``bfcl-shuffle``
task source is installed; scored by the ``bitagent`` scorer; weights by the upstream subnet's last rule,
(score/max)^3; models under upstream's licence policy only (apache-2.0).

Multi-turn share (upstream's 2025 competition scored multi-turn through BFCL's environment): when the ``bfcl``
task source and scorer are installed, ``multi_turn_share`` of the sample (10 % by default; the validator's
``--competition-option multi_turn_share=0.2`` changes it, 0 turns it off) are BFCL ``multi_turn_base`` tasks,
played by the agent loop and scored by the ``bfcl`` scorer's multi-turn checker; every other task is scored by
the ``bitagent`` scorer (scorer ``bitagent-multi-turn`` does both). Model longevity is off by default
(``longevity_versions=10``, ``longevity_share=0.02`` are upstream's figures).

Why 1,000: task scores spread with a standard deviation of about 0.4, so the 95 % confidence interval of a
mean over n tasks is +/- 1.96 * 0.4 / sqrt(n): +/- 0.078 at 100 tasks -- wider than the gaps between good
models -- and +/- 0.025 at 1,000 (the validator logs each evaluation's own interval).
"""

from __future__ import annotations

from typing import Any

from bitagent_core import (
    Completion,
    RegisterCompetition,
    RegisterScorer,
    RegisterTaskSource,
    Registry,
    Score,
    Task,
    Trajectory,
    hookimpl,
)
from bitagent_plugins.competitions import CompetitionTaskSource

BFCL_SOURCE = "bfcl-shuffle"
MULTI_TURN_SOURCE = "bfcl:multi_turn_base"
#: the scorer of the multi-turn tasks (registered by the bfcl plugin; looked up by name, never imported)
MULTI_TURN_SCORER = "bfcl"
SCORER = "bitagent"
COMBINED_SCORER = "bitagent-multi-turn"


def serves_multi_turn(registry: Registry) -> bool:
    return "bfcl" in registry.registrations("task_sources") and MULTI_TURN_SCORER in registry.registrations("scorers")


class BitagentCompetition:
    name = "bitagent"
    version = "1"
    description = (
        "Subnet 20's competition: bitagent tasks (+ BFCL-derived and BFCL multi-turn ones when "
        "installed), cubic weights."
    )
    sample_size = 1000
    weight_rule = "cubic"
    #: upstream's README: models must be apache-2.0 (its code also let cc-by-nc-4.0 and mit through)
    licenses = ("apache-2.0",)
    #: share of the sample that is BFCL multi_turn_base (when the bfcl plugin is installed)
    multi_turn_share = 0.1
    #: model longevity (off: upstream's figures are 10 versions at 0.02)
    longevity_versions = 0
    longevity_share = 0.02

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry

    def _multi_turn(self, registry: Registry | None = None) -> float:
        if self.multi_turn_share <= 0:
            return 0.0
        if not 0 < self.multi_turn_share < 1:
            raise ValueError(f"multi_turn_share must be in [0, 1), got {self.multi_turn_share}")
        if registry is None:
            from bitagent_core import get_registry

            registry = self._registry or get_registry()
        return float(self.multi_turn_share) if serves_multi_turn(registry) else 0.0

    @property
    def scorer(self) -> str:
        return COMBINED_SCORER if self._multi_turn() else SCORER

    def mix(self, registry: Registry) -> dict[str, float]:
        multi_turn = self._multi_turn(registry)
        if BFCL_SOURCE in registry.registrations("task_sources"):
            mix = {"bitagent": 0.5 * (1 - multi_turn), BFCL_SOURCE: 0.5 * (1 - multi_turn)}
        else:
            mix = {"bitagent": 1.0 - multi_turn}
        if multi_turn:
            mix[MULTI_TURN_SOURCE] = multi_turn
        return mix


class MultiTurnShareScorer:
    """Scorer ``bitagent-multi-turn``: single-turn tasks by the ``bitagent`` scorer, multi-turn ones by the
    ``bfcl`` scorer's multi-turn checker (both looked up in the registry)."""

    name = COMBINED_SCORER

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is None:
            from bitagent_core import get_registry

            registry = get_registry()
        self.single = registry.create("scorers", SCORER)
        self.multi: Any = registry.create("scorers", MULTI_TURN_SCORER)
        self.version = f"{self.single.version}+{self.multi.version}"  # either one's change regrades

    def score(self, task: Task, completion: Completion) -> Score:
        score: Score = self.single.score(task, completion)
        return score

    def score_trajectory(self, task: Task, trajectory: Trajectory) -> Score:
        score: Score = self.multi.score_trajectory(task, trajectory)
        return score


@hookimpl
def register_competitions(register: RegisterCompetition) -> None:
    register("bitagent", BitagentCompetition, description=BitagentCompetition.description)


@hookimpl
def register_scorers(register: RegisterScorer) -> None:
    register(
        COMBINED_SCORER,
        MultiTurnShareScorer,
        description="bitagent's scorer, and the bfcl scorer's multi-turn checker for multi-turn tasks "
        "(the bitagent competition's multi-turn share)",
    )


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register(
        "competition",
        CompetitionTaskSource,
        description="A competition's task sample for the seed: competition:<name>, e.g. competition:bitagent.",
    )
