"""Every command in the README's and docs' shell blocks runs as written, so none can rot.

Each fenced ``bash``/``sh``/``shell``/``console`` block is read (in a ``console`` block with ``$`` prompts, only
the prompted lines; a ``\\`` continues a line; a trailing ``# comment`` is dropped) and its commands run in order,
through bash, in one scratch directory that has the repository's ``.venv`` and the files the commands name
(``answers.jsonl``, a ``my-finetune.Q4_K_M.gguf``, a run to ``--resume``...). Bounded, not rewritten: task counts
come down to 1 (``BITAGENT_LIMIT``, and ``-n``/``--limit`` values above 1), nothing else changes: what is
checked is that the command runs as written; what a run of many tasks does is the other tests' subject.

What cannot run here is marked in the document itself, right before its block, with a reason the reader sees in
the source: ``<!-- docs-test: skip PREFIX -- REASON -->`` skips the block's commands that start with PREFIX (after
``.venv/bin/``), ``*`` every command of the block. A marker that matches no command is an error too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"((?:<!-- docs-test:[^\n]*-->\n)*)```(bash|sh|shell|console)\n(.*?)```", re.S)
MARKER = re.compile(r"<!-- docs-test: skip (.+?) -- (.+?) -->")
#: commands whose documented outcome is a non-zero exit: tasks validate lists the data's errors and exits 1
EXPECTED_EXIT = {"bitagent tasks validate bfcl:live_multiple": 1}
LIMIT = 1


def _commands(block: str, language: str) -> list[str]:
    lines = block.splitlines()
    if language == "console" and any(line.startswith("$ ") for line in lines):
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    out: list[str] = []
    pending = ""
    for line in lines:
        line = pending + line.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        line = _without_comment(line)
        if line:
            out.append(line)
    return out


def _without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (at the start or after a blank, outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def _bare(command: str) -> str:
    return command.removeprefix(".venv/bin/")


def collect() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """``[(where, command)]`` to run and ``[(where, command, reason)]`` skipped, in document order."""
    run, skipped, unused = [], [], []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            markers, language, block = match.groups()
            where = f"{doc.relative_to(ROOT)}:{text[: match.start(2)].count(chr(10)) + 1}"
            skips = MARKER.findall(markers)
            used = set()
            for command in _commands(block, language):
                reason = next((r for p, r in skips if p == "*" or _bare(command).startswith(p)), None)
                if reason is None:
                    if _bare(command) not in {_bare(c) for _, c in run}:  # the docs repeat the README's
                        run.append((where, command))
                    continue
                skipped.append((where, command, reason))
                used |= {p for p, _ in skips if p == "*" or _bare(command).startswith(p)}
            unused += [f"{where}: {p}" for p, _ in skips if p not in used]
    assert not unused, f"skip markers that match no command: {unused}"
    return run, skipped


RUN, SKIPPED = collect()


def _bounded(command: str) -> str:
    """``-n``/``--limit`` above the bound brought down to it."""
    return re.sub(r"(?<=\s)(-n|--limit)(\s+|=)(\d+)", lambda m: f"{m[1]}{m[2]}{min(int(m[3]), LIMIT)}", command)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory with the repository's venv and the files the documented commands name."""
    from bitagent_plugins.backends import embedded_model

    work = tmp_path_factory.mktemp("docs")
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (work / "my-finetune.Q4_K_M.gguf").symlink_to(embedded_model.embedded_model_path())
    rows = [json.loads(line) for line in (ROOT / "tests/data/bfcl_reference.jsonl").read_text().splitlines()[1:]]
    answers = [{"task_id": r["task_id"], "response": r["response"]} for r in rows if r["label"] == "gt"][:5]
    (work / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    multi = [
        json.loads(line) for line in (ROOT / "tests/data/bfcl_multi_turn_reference.jsonl").read_text().splitlines()
    ]
    multi = [r for r in multi if r["category"] == "multi_turn_base" and r["variant"] == "ground_truth"][:3]
    (work / "trajectories.jsonl").write_text(
        "".join(json.dumps({"task_id": r["task_id"], "response": r["result"]}) + "\n" for r in multi)
    )
    (work / "BFCL_v4_multi_turn_base_result.json").write_text(
        "\n".join(json.dumps({"id": r["task_id"], "result": r["result"]}) for r in multi)
    )
    return work


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITAGENT_")}
    env.update(
        PATH=f"{work / '.venv' / 'bin'}:{env.get('PATH', '')}",
        BITAGENT_LIMIT=str(LIMIT),
        HOME=env.get("HOME", str(work)),
    )
    return env


def _resumable(work: Path, name: str) -> None:
    """``--resume runs/NAME``: an earlier run of the embedded model, copied under that name, its last sample
    dropped (as if interrupted before it)."""
    target = work / "runs" / name
    if target.exists():
        return
    source = next(p for p in sorted((work / "runs").glob("*_bitagent_default")) if p.name != name)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.lock"))
    lines = (target / "samples.jsonl").read_text().splitlines(keepends=True)
    (target / "samples.jsonl").write_text("".join(lines[:-1]))


def test_the_docs_have_commands_and_say_why_they_skip_some():
    assert len(RUN) >= 15, RUN
    assert all(reason.strip() for _, _, reason in SKIPPED)
    # what must never be skipped: the miner's commands, BFCL's, multi-turn's, the validator-equivalent run
    ran = " | ".join(c for _, c in RUN)
    for must in (
        "score --tasks bfcl:multi_turn_base",
        "evaluate --as-validator",
        "evaluate --resume",
        "bfcl-summary",
        "score --tasks bfcl",
    ):
        assert must in ran, must


@pytest.mark.slow
@pytest.mark.parametrize(("where", "command"), RUN, ids=[f"{w} {_bare(c)[:60]}" for w, c in RUN])
def test_documented_command_runs_as_written(where, command, workdir):
    for name in re.findall(r"--resume\s+runs/(\S+)", command):
        _resumable(workdir, name)
    done = subprocess.run(
        ["bash", "-c", _bounded(command)], cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=600
    )
    expected = EXPECTED_EXIT.get(_bare(command), 0)
    assert done.returncode == expected, f"{where}: {command}\nexit {done.returncode}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
