"""The ``wandb-reporter`` plugin: every run (an evaluation, or each model a validator evaluates) as a
Weights & Biases run.

Off unless ``BITAGENT_WANDB=1`` (``bitagent validate --wandb`` sets it). Needs the optional extra:
``pip install 'bitagent[wandb]'``; wandb is imported only when a run starts with reporting on. Settings:
``BITAGENT_WANDB_PROJECT`` (default ``bitagent``), ``BITAGENT_WANDB_ENTITY``, ``BITAGENT_WANDB_DIR``
(default: the run directory), and wandb's own variables (``WANDB_API_KEY``, ``WANDB_MODE=offline``...).

What is sent: the run's config (tasks, backend, model, scorer, seed, limit) and model identity at the start;
per sample its score, pass/fail, latency and tokens (step = samples done) plus the running mean; at the end
the summary of ``results.json`` (mean score, per category, failures, duration). Prompts, answers and the
task contents are not sent with a run: a validator's round keeps its tasks private until every model has
answered them. When a validator round is over (``on_round_end``) one more run, ``round-<id>``, gets the
miners' feedback as a table: per miner (uid, hotkey, model) and task, the answer, the expected calls and
the score. A wandb failure is logged and turns reporting off for that run; it never fails the evaluation.

Each ``finish`` is followed by ``wandb.teardown()`` once no run is open: wandb-core closes (and flushes) a
run's ``.wandb`` file only after ``finish()`` has returned, so without it the data of the last run could
still be in wandb-core's buffers when the process is killed or the file is read.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from bitagent_core import hookimpl

if TYPE_CHECKING:
    from bitagent_core import RunResults, RunView, SampleRecord

log = logging.getLogger("bitagent.reporters.wandb")

_TRUE = ("1", "true", "yes", "on")
_lock = threading.Lock()
_runs: dict[str, dict[str, Any]] = {}  # run_dir -> {"run": wandb run, "n": samples, "total": score sum}


def enabled() -> bool:
    return os.environ.get("BITAGENT_WANDB", "").strip().lower() in _TRUE


def _key(run: RunView) -> str:
    return str(run.run_dir)


@hookimpl
def on_run_start(run: RunView) -> None:
    if not enabled():
        return
    try:
        import wandb
    except ImportError:
        log.warning("BITAGENT_WANDB is on but wandb is not installed: pip install 'bitagent[wandb]'")
        return
    config = run.config.to_json()
    config.update({"n_tasks": run.n_tasks, "resumed": run.resumed})
    try:
        handle = wandb.init(
            project=os.environ.get("BITAGENT_WANDB_PROJECT", "bitagent"),
            entity=os.environ.get("BITAGENT_WANDB_ENTITY") or None,
            dir=os.environ.get("BITAGENT_WANDB_DIR") or str(run.run_dir),
            name=os.path.basename(str(run.run_dir)),
            config=config,
            reinit=True,
            tags=[str(config.get("backend", "")), str(config.get("tasks", ""))],
        )
    except Exception as exc:  # noqa: BLE001 - reporting must never break an evaluation
        log.warning("wandb.init failed, not reporting this run: %s", exc)
        return
    with _lock:
        _runs[_key(run)] = {"run": handle, "n": 0, "total": 0.0}


@hookimpl
def on_sample_scored(run: RunView, sample: SampleRecord) -> None:
    with _lock:
        entry = _runs.get(_key(run))
        if entry is None:
            return
        entry["n"] += 1
        entry["total"] += sample.score
        n, mean = entry["n"], entry["total"] / entry["n"]
    metrics = {
        "score": sample.score,
        "passed": int(sample.passed),
        "failed": int(not sample.ok),
        "mean_score_so_far": mean,
        "latency_s": sample.completion.latency_s,
        "completion_tokens": sample.completion.completion_tokens,
    }
    try:
        entry["run"].log(metrics, step=n)
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb log failed, not reporting this run any more: %s", exc)
        with _lock:
            _runs.pop(_key(run), None)


@hookimpl
def on_run_end(run: RunView, results: RunResults) -> None:
    with _lock:
        entry = _runs.pop(_key(run), None)
    if entry is None:
        return
    data = results.to_json()
    summary: dict[str, Any] = {
        k: data.get(k)
        for k in (
            "status",
            "mean_score",
            "n_tasks",
            "n_scored",
            "n_failed",
            "n_passed",
            "duration_s",
            "mean_latency_s",
            "prompt_tokens",
            "completion_tokens",
        )
    }
    for category, row in results.per_category.items():
        summary[f"mean_score/{category}"] = row.mean_score
    summary["model"] = results.model.get("model")
    try:
        entry["run"].summary.update(summary)
        entry["run"].finish(exit_code=0 if results.status == "complete" else 1)
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb finish failed: %s", exc)
    _flush()


def _flush() -> None:
    """Wait until wandb-core has written every finished run out (``finish`` only informs it)."""
    with _lock:
        if _runs:
            return
    try:
        import wandb

        wandb.teardown()
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb teardown failed: %s", exc)


FEEDBACK_COLUMNS = (
    "uid",
    "hotkey",
    "model",
    "credited",
    "task_id",
    "category",
    "status",
    "score",
    "answer",
    "expected_calls",
)


@hookimpl
def on_round_end(round: dict[str, Any], feedback: list[dict[str, Any]]) -> None:
    if not enabled() or not feedback:
        return
    try:
        import json

        import wandb

        handle = wandb.init(
            project=os.environ.get("BITAGENT_WANDB_PROJECT", "bitagent"),
            entity=os.environ.get("BITAGENT_WANDB_ENTITY") or None,
            dir=os.environ.get("BITAGENT_WANDB_DIR") or round.get("dir") or None,
            name=f"round-{round.get('id')}",
            config=dict(round),
            reinit=True,
            tags=["round", str(round.get("competition", ""))],
        )
        table = wandb.Table(columns=list(FEEDBACK_COLUMNS))
        for entry in feedback:
            for task in entry.get("tasks") or []:
                table.add_data(
                    entry["uid"],
                    entry["hotkey"],
                    entry["model"],
                    bool(entry.get("credited")),
                    task.get("task_id"),
                    task.get("category"),
                    task.get("status"),
                    task.get("score"),
                    task.get("answer"),
                    json.dumps(task.get("expected_calls")),
                )
        handle.log({"feedback": table})
        handle.summary.update({f"score/uid-{e['uid']}": e.get("score") for e in feedback})
        handle.finish()
    except Exception as exc:  # noqa: BLE001 - reporting must never break a validator
        log.warning("wandb round report failed: %s", exc)
    _flush()
