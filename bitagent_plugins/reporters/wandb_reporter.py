"""The ``wandb-reporter`` plugin: every run (an evaluation, or each model a validator evaluates) as a
Weights & Biases run.

Off unless ``BITAGENT_WANDB=1`` (``bitagent validate --wandb`` sets it). Needs the optional extra:
``pip install 'bitagent[wandb]'``; wandb is imported only when a run starts with reporting on. Settings:
``BITAGENT_WANDB_PROJECT`` (default ``bitagent``), ``BITAGENT_WANDB_ENTITY``, ``BITAGENT_WANDB_DIR``
(default: the run directory), and wandb's own variables (``WANDB_API_KEY``, ``WANDB_MODE=offline``...).

What is sent: the run's config (tasks, backend, model, scorer, seed, limit) and model identity at the start;
per sample its score, pass/fail, latency and tokens (step = samples done) plus the running mean; at the end
the summary of ``results.json`` (mean score, per category, failures, duration). Prompts, answers and the
task contents are not sent. A wandb failure is logged and turns reporting off for that run; it never
fails the evaluation.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from bitagent_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bitagent_core.records import RunResults, SampleRecord

log = logging.getLogger("bitagent.reporters.wandb")

_TRUE = ("1", "true", "yes", "on")
_lock = threading.Lock()
_runs: dict[str, dict[str, Any]] = {}  # run_dir -> {"run": wandb run, "n": samples, "total": score sum}


def enabled() -> bool:
    return os.environ.get("BITAGENT_WANDB", "").strip().lower() in _TRUE


def _key(run: Any) -> str:
    return str(getattr(run, "run_dir", id(run)))


@hookimpl
def on_run_start(run: Any) -> None:
    if not enabled():
        return
    try:
        import wandb
    except ImportError:
        log.warning("BITAGENT_WANDB is on but wandb is not installed: pip install 'bitagent[wandb]'")
        return
    config = run.config.to_json() if hasattr(run.config, "to_json") else dict(run.config)
    config.update({"n_tasks": run.n_tasks, "resumed": bool(getattr(run, "resumed", False))})
    try:
        handle = wandb.init(project=os.environ.get("BITAGENT_WANDB_PROJECT", "bitagent"),
                            entity=os.environ.get("BITAGENT_WANDB_ENTITY") or None,
                            dir=os.environ.get("BITAGENT_WANDB_DIR") or str(run.run_dir),
                            name=os.path.basename(str(run.run_dir)), config=config, reinit=True,
                            tags=[str(config.get("backend", "")), str(config.get("tasks", ""))])
    except Exception as exc:  # noqa: BLE001 - reporting must never break an evaluation
        log.warning("wandb.init failed, not reporting this run: %s", exc)
        return
    with _lock:
        _runs[_key(run)] = {"run": handle, "n": 0, "total": 0.0}


@hookimpl
def on_sample_scored(run: Any, sample: SampleRecord) -> None:
    with _lock:
        entry = _runs.get(_key(run))
        if entry is None:
            return
        entry["n"] += 1
        entry["total"] += sample.score
        n, mean = entry["n"], entry["total"] / entry["n"]
    metrics = {"score": sample.score, "passed": int(sample.passed), "failed": int(not sample.ok),
               "mean_score_so_far": mean, "latency_s": sample.completion.latency_s,
               "completion_tokens": sample.completion.completion_tokens}
    try:
        entry["run"].log(metrics, step=n)
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb log failed, not reporting this run any more: %s", exc)
        with _lock:
            _runs.pop(_key(run), None)


@hookimpl
def on_run_end(run: Any, results: RunResults) -> None:
    with _lock:
        entry = _runs.pop(_key(run), None)
    if entry is None:
        return
    data = results.to_json()
    summary: dict[str, Any] = {k: data.get(k) for k in ("status", "mean_score", "n_tasks", "n_scored", "n_failed",
                                                            "n_passed", "duration_s", "mean_latency_s",
                                                            "prompt_tokens", "completion_tokens")}
    for category, row in results.per_category.items():
        summary[f"mean_score/{category}"] = row.mean_score
    summary["model"] = results.model.get("model")
    try:
        entry["run"].summary.update(summary)
        entry["run"].finish(exit_code=0 if results.status == "complete" else 1)
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb finish failed: %s", exc)
