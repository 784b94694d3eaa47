"""Miner feedback: the per-task results of a finished round, one file per miner.

When a round is over (every model of the round evaluated on its private sample), each hotkey whose model was
evaluated in it gets ``<runs-dir>/feedback/round-<id>/uid-<uid>-<hotkey>.json``: the round, its uid, hotkey and
model, its score, the moving average it now has, whether it got the credit (a copy does not), and for every
task the conversation, the tools, its answer, the expected calls and its score. The files are written only
after the round's last evaluation, so a round's tasks are never revealed while another model could still be
asked them; an operator sends a miner its file. The same entries go to reporters (``on_round_end``: the wandb
reporter logs them as a table).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from bitagent_core import RunDir
from bitagent_core.toolkit import write_json_atomic
from bitagent_plugins.subnet.keys import credited

log = logging.getLogger("bitagent.subnet.validator")


def task_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-task results of one evaluation run, as a miner reads them."""
    out = []
    for task_id, sample in sorted(RunDir(Path(run_dir)).read_samples().items()):
        record = sample.to_json()
        completion = record.get("completion") or {}
        out.append(
            {
                "task_id": task_id,
                "category": record.get("category"),
                "status": record.get("status"),
                "score": record.get("score"),
                "messages": record.get("messages"),
                "tools": record.get("tools"),
                "answer": completion.get("text"),
                "answer_calls": record.get("decoded_calls"),
                "expected_calls": record.get("expected_calls"),
                "error": completion.get("error"),
                "detail": record.get("detail"),
            }
        )
    return out


def round_feedback(state: Any, *, round_id: int, competition: str, version: str) -> list[dict[str, Any]]:
    """One entry per hotkey whose model was evaluated in round ``round_id``."""
    evaluated = {}
    for row in state.history(limit=10_000, round_id=round_id):  # newest first: a model's last of the round
        if row["competition"] == competition and row["model_key"] not in evaluated:
            evaluated[row["model_key"]] = row
    if not evaluated:
        return []
    groups = state.weights_groups()
    scores = state.scores_by_hotkey(competition, version)
    by_group = {groups.get(key): row for key, row in evaluated.items()}
    subs = state.submissions()
    winners = credited(subs, {sub.hotkey: groups[sub.model_key] for sub in subs})
    entries = []
    for sub in subs:
        row = by_group.get(groups.get(sub.model_key))
        if row is None:
            continue
        entries.append(
            {
                "round": round_id,
                "competition": competition,
                "competition_version": version,
                "uid": sub.uid,
                "hotkey": sub.hotkey,
                "model": sub.model_key,
                "evaluated_model": row["model_key"],
                "status": row["status"],
                "score": row["score"],
                "ci95": row["ci95"],
                "error": row["error"],
                "moving_average": scores.get(sub.hotkey),
                "credited": winners[groups[sub.model_key]] == sub.hotkey,
                "tasks": task_results(row["run_dir"]) if row["run_dir"] else [],
            }
        )
    return entries


def write_feedback(entries: list[dict[str, Any]], runs_dir: Path, round_id: int) -> Path | None:
    if not entries:
        return None
    folder = runs_dir / "feedback" / f"round-{round_id}"
    folder.mkdir(parents=True, exist_ok=True)
    written = time.time()
    for entry in entries:
        write_json_atomic(folder / f"uid-{entry['uid']}-{entry['hotkey']}.json", {**entry, "written_at": written})
    log.info("feedback: %d miner file(s) in %s", len(entries), folder)
    return folder
