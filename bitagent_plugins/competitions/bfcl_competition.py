"""The ``bfcl`` competition: a model's score is BFCL v4's overall accuracy, as the leaderboard computes it, over
the BFCL categories this validator can run.

Each round draws, with the round's private seed, an equal share of the sample from each category (upstream's
16: python, java and javascript simple, multiple, parallel, parallel_multiple, irrelevance, the live ones and
the four multi-turn ones), scores every answer with the ``bfcl`` scorer (its multi-turn checker for multi-turn
tasks) and combines the per-category accuracies with BFCL v4's rules (:func:`bfcl_overall`):

* non-live = unweighted mean of simple (= mean of python, java, javascript), multiple, parallel, parallel_multiple;
* live = mean of its four AST categories weighted by BFCL's category sizes (258, 1053, 16, 24);
* irrelevance = mean of irrelevance and live_irrelevance;
* multi-turn = unweighted mean of its four categories;
* overall = 10 % non-live + 10 % live + 10 % irrelevance + 30 % multi-turn (+ 40 % agentic on the leaderboard).

Agentic (web search, memory) is not part of the competition: web search needs a live search API, and memory
needs prerequisite conversations that a per-round sample cannot draw. The group weights are renormalised over
the groups served, so a perfect model scores 1 (the leaderboard's own overall, with unserved categories
counting 0, is ``bitagent bfcl-summary``'s). A category whose task source is not registered here (java and
javascript need the ``bfcl:simple_java``/``bfcl:simple_javascript`` sources) is left out of its group and
said so in one WARNING line; :meth:`BfclCompetition.unavailable` lists them with the reason.

Model longevity (upstream's 2025 rule): a model's final score is 80 % its score under the current competition
version and 2 % its score under each of the last 10 earlier versions (0 where it has none); the validator
keeps every version's scores in its state and applies ``longevity_versions`` and ``longevity_share``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bitagent_core import RegisterCompetition, Registry, hookimpl

log = logging.getLogger("bitagent.competitions")

#: BFCL v4's categories in the competition, by group (upstream's 16)
SIMPLE = ("simple_python", "simple_java", "simple_javascript")
NON_LIVE = ("multiple", "parallel", "parallel_multiple")
LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
CATEGORIES = SIMPLE + NON_LIVE + LIVE + IRRELEVANCE + MULTI_TURN
#: BFCL v4's category sizes (bfcl-eval 2026.3.23): live is weighted by them
LIVE_SIZES = {"live_simple": 258, "live_multiple": 1053, "live_parallel": 16, "live_parallel_multiple": 24}
#: BFCL v4's overall weights (eval_checker/eval_runner_helper.py)
GROUP_WEIGHTS = {"non_live": 0.10, "live": 0.10, "irrelevance": 0.10, "multi_turn": 0.30, "agentic": 0.40}


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def bfcl_groups(accuracies: Mapping[str, float]) -> dict[str, float]:
    """BFCL v4's group accuracies from per-category accuracies; a category absent from ``accuracies`` is left
    out of its group, and a group with none of its categories is left out."""

    def present(names: Sequence[str]) -> list[float]:
        return [float(accuracies[name]) for name in names if name in accuracies]

    groups: dict[str, float | None] = {}
    simple = _mean(present(SIMPLE))
    groups["non_live"] = _mean(([simple] if simple is not None else []) + present(NON_LIVE))
    live = [name for name in LIVE if name in accuracies]
    size = sum(LIVE_SIZES[name] for name in live)
    groups["live"] = math.fsum(accuracies[n] * LIVE_SIZES[n] for n in live) / size if live else None
    groups["irrelevance"] = _mean(present(IRRELEVANCE))
    groups["multi_turn"] = _mean(present(MULTI_TURN))
    return {name: value for name, value in groups.items() if value is not None}


def bfcl_overall(accuracies: Mapping[str, float]) -> float:
    """BFCL v4's overall over the groups present, its group weights renormalised over them (0 if none)."""
    groups = bfcl_groups(accuracies)
    weight = math.fsum(GROUP_WEIGHTS[name] for name in groups)
    return math.fsum(GROUP_WEIGHTS[name] * value for name, value in groups.items()) / weight if weight else 0.0


def category_accuracies(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per BFCL category, the mean score of its samples (a failed sample counts 0)."""
    totals: dict[str, list[float]] = {}
    for sample in samples:
        value = float(sample.get("score") or 0.0) if sample.get("status") == "ok" else 0.0
        totals.setdefault(str(sample.get("category")), []).append(value)
    return {category: math.fsum(values) / len(values) for category, values in totals.items()}


_warned: set[tuple[str, str]] = set()


class BfclCompetition:
    name = "bfcl"
    version = "1"
    description = (
        "BFCL v4's overall accuracy (its group weights and rules) over upstream's 16 categories, "
        "multi-turn included; cubic weights; model longevity"
    )
    #: 50 tasks per category (16 x 50); a category with fewer tasks (live_parallel: 16) gives all it has
    sample_size = 800
    scorer = "bfcl"
    weight_rule = "cubic"
    licenses = ("apache-2.0",)
    #: upstream's model longevity: the last 10 earlier competition versions, 2 % each (20 % in all)
    longevity_versions = 10
    longevity_share = 0.02

    def unavailable(self, registry: Registry) -> dict[str, str]:
        """The competition's task source specs that cannot run here, with the reason."""
        missing: dict[str, str] = {}
        for category in CATEGORIES:
            spec = f"bfcl:{category}"
            try:
                registry.create("task_sources", "bfcl", category)
            except (LookupError, ValueError) as exc:
                missing[spec] = str(exc).splitlines()[0][:200]
        return missing

    def mix(self, registry: Registry) -> dict[str, float]:
        missing = self.unavailable(registry)
        for spec, why in missing.items():
            if (spec, why) not in _warned:
                _warned.add((spec, why))
                log.warning(
                    "competition bfcl: %s is not served here and is left out of the BFCL overall (%s)", spec, why
                )
        return {f"bfcl:{c}": 1.0 for c in CATEGORIES if f"bfcl:{c}" not in missing}

    def score_samples(self, samples: Sequence[Mapping[str, Any]]) -> float:
        """BFCL's overall over the evaluation's samples."""
        return bfcl_overall(category_accuracies(samples))


@hookimpl
def register_competitions(register: RegisterCompetition) -> None:
    register("bfcl", BfclCompetition, description=BfclCompetition.description)
