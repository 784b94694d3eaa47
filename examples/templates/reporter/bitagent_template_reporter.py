"""Template reporter ``template-reporter``: one JSON line per event in ``<run_dir>/template-report.jsonl``.

Replace ``_emit`` with your dashboard or alerting call. A reporter that raises is disabled for the rest
of the run (one warning line): it can never end a run or lose a sample.
"""

from __future__ import annotations

import json
from typing import Any

import bitagent_core as ba

BITAGENT_PLUGIN_API = "1.0"


def _emit(run: ba.RunView, event: dict[str, Any]) -> None:
    with open(run.run_dir / "template-report.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


@ba.hookimpl
def on_run_start(run: ba.RunView) -> None:
    _emit(run, {"event": "start", "n_tasks": run.n_tasks, "resumed": run.resumed, "backend": run.config.backend})


@ba.hookimpl
def on_sample_scored(run: ba.RunView, sample: ba.SampleRecord) -> None:
    _emit(run, {"event": "sample", "task_id": sample.task_id, "score": sample.score})


@ba.hookimpl
def on_run_end(run: ba.RunView, results: ba.RunResults) -> None:
    _emit(run, {"event": "end", "status": results.status, "mean_score": results.mean_score})
