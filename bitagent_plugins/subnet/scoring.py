"""Scoring: which models to evaluate next, and what their evaluations mean for each hotkey.

* **Jobs**: every distinct submitted ``repo@sha`` still to vet, or to evaluate under the competition's current
  version. A model's first evaluation comes before any re-evaluation; then the earliest commitment first.
  Models whose weights are a copy of an earlier submission's (same weights digest, or same commit) are vetted
  but not evaluated: their weights already have a score, and the earliest committer gets it.
* **Re-evaluation**: every ``reevaluate_blocks`` blocks each vetted model is evaluated again, on that round's
  fresh private sample; a new competition version (its own, its scorer's, its sources', the sample size)
  regrades every model from scratch.
* **Scores**: per competition version, a moving average per weights (``state.DEFAULT_EMA_ALPHA``, first
  evaluation sets it); each hotkey gets its weights' average if it committed them first, else 0. With model
  longevity (a competition's ``longevity_versions``/``longevity_share``), the averages under the last
  earlier versions weigh in too.
"""

from __future__ import annotations

import logging

import attrs

from bitagent_plugins.subnet.failures import Failure
from bitagent_plugins.subnet.keys import ModelKey, earliest_committer, weights_digest
from bitagent_plugins.subnet.state import DEFAULT_EMA_ALPHA, ValidatorState
from bitagent_plugins.subnet.vetting import VettingReport

log = logging.getLogger("bitagent.subnet.validator")


@attrs.frozen
class ModelJob:
    """One distinct model to vet and evaluate."""

    model: ModelKey
    committed_block: int
    #: False for a model never evaluated under this version (first evaluations go first)
    reevaluation: bool = False

    @property
    def key(self) -> str:
        return self.model.key


class Scoreboard:
    def __init__(
        self,
        state: ValidatorState,
        *,
        competition: str,
        version: str,
        alpha: float = DEFAULT_EMA_ALPHA,
        reevaluate_blocks: int | None = None,
        longevity: tuple[int, float] = (0, 0.0),
    ) -> None:
        self.state = state
        self.competition = competition
        self.version = version
        self.alpha = alpha
        self.reevaluate_blocks = reevaluate_blocks
        #: model longevity: (earlier versions, share of each) mixed into every score
        self.longevity = longevity

    # -- what to do next ------------------------------------------------------------------------------------

    def pending_jobs(self, deferred: set[str] = frozenset()) -> list[ModelJob]:  # type: ignore[assignment]
        """Models still to vet or evaluate, first evaluations first, then by earliest commitment."""
        subs = self.state.submissions()
        groups = self.state.weights_groups()
        first: dict[str, tuple[int, str]] = {}
        for row in subs:
            first[row.model_key] = min(
                first.get(row.model_key, (row.committed_block, row.hotkey)), (row.committed_block, row.hotkey)
            )
        evaluations = {e.model_key: e for e in self.state.evaluations(self.competition, self.version)}
        order = sorted(first, key=first.__getitem__)
        vetted = {key: self.state.vetting(key) for key in order}
        # who holds each weights' evaluation: the earliest committed key that has one, else the earliest vetted
        holder: dict[str, str] = {}
        for key in order:
            if key in evaluations:
                holder.setdefault(groups[key], key)
        for key in order:
            if vetted[key] is not None and vetted[key].ok:  # type: ignore[union-attr]
                holder.setdefault(groups[key], key)
        jobs: list[ModelJob] = []
        for key in order:
            block = first[key][0]
            if key in deferred:
                continue
            verdict = vetted[key]
            if verdict is not None and not verdict.ok:
                continue
            if verdict is not None and holder[groups[key]] != key:
                continue  # a copy of weights that have (or will have) their own evaluation
            evaluation = evaluations.get(key)
            if evaluation is None or evaluation.status == "pending":
                again = evaluation is not None and evaluation.n_done > 0
                jobs.append(ModelJob(ModelKey.parse(key), block, reevaluation=again))
        return sorted(jobs, key=lambda job: job.reevaluation)  # stable: commitment order within each kind

    def copy_of(self, key: str) -> str | None:
        """The model ``key``'s weights were first submitted as, if it is a copy; else None."""
        groups = self.state.weights_groups()
        group = groups.get(key)
        if group is None:
            return None
        subs = [row for row in self.state.submissions() if groups.get(row.model_key) == group]
        winner = earliest_committer(subs)
        original = next((row.model_key for row in subs if row.hotkey == winner), None)
        return original if original not in (None, key) else None

    def sealed(self, key: str) -> bool:
        """Whether ``key``'s fate under the current version is settled (vetted out, or evaluated)."""
        vetted = self.state.vetting(key)
        if vetted is not None and not vetted.ok:
            return True
        evaluation = self.state.evaluation(key, self.competition, self.version)
        return evaluation is not None and evaluation.status in ("done", "failed")

    def schedule_reevaluations(self, head: int) -> int:
        if self.reevaluate_blocks is None:
            return 0
        n = self.state.schedule_reevaluations(
            self.competition, self.version, finished_before_block=head - self.reevaluate_blocks
        )
        if n:
            log.info(
                "re-evaluation: %d model(s) due (every %d blocks), each on a fresh private sample",
                n,
                self.reevaluate_blocks,
            )
        return n

    # -- recording ------------------------------------------------------------------------------------------

    def record_vetting(self, key: str, report: VettingReport) -> None:
        digest = weights_digest(dict(report.weight_hashes)) if report.ok and report.weight_hashes else None
        previous = self.state.vetting(key)
        if previous is None or previous.ok != report.ok or previous.weights_digest != digest:
            self.state.record_vetting(key, report.ok, report.reason, weights_digest=digest)

    def claim(self, key: str) -> bool:
        return self.state.claim_evaluation(key, self.competition, self.version)

    def finish(
        self,
        key: str,
        *,
        score: float,
        n_tasks: int,
        ci95: float | None,
        run_dir: str,
        block: int,
        round_id: int | None,
        data_digest: str | None,
    ) -> float:
        """Record an evaluation; returns the weights' moving average now."""
        self.state.finish_evaluation(
            key,
            self.competition,
            self.version,
            score=score,
            n_tasks=n_tasks,
            run_dir=run_dir,
            block=block,
            round_id=round_id,
            ci95=None if ci95 is None or ci95 == float("inf") else ci95,
            data_digest=data_digest,
            alpha=self.alpha,
        )
        return self._average(key)

    def fail(self, key: str, failure: Failure, *, block: int, round_id: int | None) -> float:
        """The model's own failure: counts 0 in its moving average."""
        self.state.fail_evaluation(
            key, self.competition, self.version, reason=failure.reason, block=block, round_id=round_id, alpha=self.alpha
        )
        return self._average(key)

    def release(self, key: str) -> None:
        """The validator's own failure: back to pending, no score changes."""
        self.state.release_evaluation(key, self.competition, self.version)

    def _average(self, key: str) -> float:
        group = self.state.weights_groups().get(key, "sha:" + ModelKey.parse(key).sha)
        value, _n = self.state.ema(self.competition, self.version).get(group, (0.0, 0))
        return value

    def scores(self) -> dict[str, float]:
        return self.state.scores_by_hotkey(self.competition, self.version, longevity=self.longevity)
