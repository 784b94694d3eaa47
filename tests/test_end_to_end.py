"""The real thing: the CLI, the embedded model through llama.cpp, the bitagent tasks and scorer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BITAGENT = [sys.executable, "-m", "bitagent_core"]
THREADS = ["-B", f"n_threads={min(2, os.cpu_count() or 1)}"]


def bitagent(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        BITAGENT + list(args), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@pytest.mark.model
def test_evaluate_the_embedded_model_on_ten_single_call_tasks(tmp_path, embedded_model):
    out = bitagent(
        "evaluate",
        "--tasks",
        "bitagent:single_call",
        "--limit",
        "10",
        "--seed",
        "0",
        "--output-dir",
        str(tmp_path),
        "--json",
        *THREADS,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)  # --json prints only the summary
    assert summary["status"] == "complete"
    assert summary["n_tasks"] == 10 and summary["n_failed"] == 0
    # the model answers simple tasks right; a broken prompt or decoder drops far below this
    assert summary["mean_score"] >= 0.5, summary
    run_dir = Path(summary["run_dir"])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"]["sha256"] == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert results["seed"] == 0 and results["plugins"]["llama-cpp"]
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 10
    assert all(s["completion"]["completion_tokens"] > 0 for s in samples)
    assert sum(s["passed"] for s in samples) >= 4


@pytest.mark.model
def test_ctrl_c_keeps_finished_samples_and_resume_completes_the_run(tmp_path, embedded_model, tasks_file):
    args = ["evaluate", "--tasks", f"jsonl:{tasks_file}", "--limit", "3", "--output-dir", str(tmp_path), *THREADS]
    proc = subprocess.Popen(BITAGENT + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    samples = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("*/samples.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            samples = found[0]
            break
        time.sleep(0.05)
    assert samples is not None, "no sample finished"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    run_dir = samples.parent
    results = json.loads((run_dir / "results.json").read_text())
    assert proc.returncode == 130, err  # two ~1 s generations were still to come when the signal was sent
    assert "stopping after the current request; Ctrl-C again to abort" in err
    assert "--resume" in err
    assert results["status"] == "interrupted"
    kept = results["n_scored"]
    assert 1 <= kept < 3
    out = bitagent("evaluate", "--resume", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "complete" and final["n_scored"] == 3
    ids = [json.loads(x)["task_id"] for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["discount", "no-tool", "weather"]  # nothing asked twice


@pytest.mark.model
def test_a_second_ctrl_c_aborts_the_llama_cpp_generation_in_flight(tmp_path, embedded_model, tasks_file):
    args = ["evaluate", "--tasks", f"jsonl:{tasks_file}", "--limit", "3", "--output-dir", str(tmp_path), *THREADS]
    proc = subprocess.Popen(BITAGENT + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(p.read_text() for p in tmp_path.glob("*/samples.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "aborting the requests in flight" in err and "Traceback" not in err
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    assert results["status"] == "interrupted" and 1 <= results["n_scored"] < 3


@pytest.mark.model
def test_timeout_stops_in_process_llama_cpp_generation_at_the_deadline(tmp_path, embedded_model, tasks_file):
    out = bitagent(
        "evaluate", "--tasks", f"jsonl:{tasks_file}", "--timeout", "0.1", "--output-dir", str(tmp_path), *THREADS
    )
    assert out.returncode == 4, out.stderr  # every request timed out: all failed is never exit 0
    samples = [json.loads(x) for x in next(tmp_path.glob("*/samples.jsonl")).read_text().splitlines()]
    assert len(samples) == 3 and all(s["error_type"] == "timeout" for s in samples)
    # the backend stopped the generation itself (asyncio cannot interrupt llama.cpp on the event loop's thread)
    assert all("generation stopped" in s["completion"]["error"] for s in samples)


@pytest.mark.slow
def test_config_file_and_environment_feed_options(tmp_path):
    config = tmp_path / "bitagent.toml"
    config.write_text('[evaluate]\nbackend = "no-such-backend"\nlimit = 2\n')
    out = bitagent("--config", str(config), "evaluate", "--output-dir", str(tmp_path))
    assert out.returncode == 1 and "unknown backend 'no-such-backend'" in out.stderr
    out = bitagent(
        "--config", str(config), "evaluate", "--output-dir", str(tmp_path), env={"BITAGENT_BACKEND": "from-env"}
    )
    assert "unknown backend 'from-env'" in out.stderr  # the environment wins over the file
    out = bitagent(
        "--config",
        str(config),
        "evaluate",
        "--backend",
        "from-cli",
        "--output-dir",
        str(tmp_path),
        env={"BITAGENT_BACKEND": "from-env"},
    )
    assert "unknown backend 'from-cli'" in out.stderr  # the command line wins over both
    bad = tmp_path / "bad.toml"
    bad.write_text("limit = = 2")
    out = bitagent("--config", str(bad), "evaluate")
    assert out.returncode == 2 and "bad.toml" in out.stderr


@pytest.mark.slow
def test_bad_backend_options_are_clear_errors(tmp_path, tasks_file):
    out = bitagent("evaluate", "--tasks", f"jsonl:{tasks_file}", "-B", "n_ctx=lots", "--output-dir", str(tmp_path))
    assert out.returncode == 2
    assert "-B n_ctx: backend option n_ctx='lots': Input should be a valid integer" in out.stderr
    out = bitagent("evaluate", "--tasks", f"jsonl:{tasks_file}", "-B", "colour=red", "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "-B colour: the llama-cpp backend has no option 'colour'" in out.stderr
    for bad in ("missing.gguf", "junk.gguf", "model.txt"):
        if bad != "missing.gguf":
            (tmp_path / bad).write_text("not a model\n")
        out = bitagent(
            "evaluate",
            "--model",
            str(tmp_path / bad),
            "--tasks",
            f"jsonl:{tasks_file}",
            "--output-dir",
            str(tmp_path / "runs"),
        )
        assert out.returncode == 3, out.stderr  # a startup error: exit 3, one line, no traceback
        assert "could not start" in out.stderr and "Traceback" not in out.stderr
    out = bitagent(
        "evaluate",
        "--model",
        "hf://acme/no-such-repo/model.gguf",
        "--tasks",
        f"jsonl:{tasks_file}",
        "--output-dir",
        str(tmp_path / "runs"),
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 3 and "could not start" in out.stderr and "Traceback" not in out.stderr
    statuses = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/results.json")]
    assert [r["status"] for r in statuses] == ["failed"] * 4 and all(r["error"] for r in statuses)


@pytest.mark.model
def test_a_third_party_plugin_installs_with_pip_and_runs(tmp_path, embedded_model):
    target = tmp_path / "site"
    example = ROOT / "examples" / "bitagent-tasks-example"
    shutil.copytree(example, tmp_path / "example")  # build outside the repo so no build files land in it
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(tmp_path / "example"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(target)}
    listed = bitagent("tasks", "list", "--json", env=env)
    sources = {row["name"]: row for row in json.loads(listed.stdout)}
    assert sources["unit-conversion"]["categories"] == ["single_call"]
    plugins = json.loads(bitagent("plugins", "--json", env=env).stdout)
    row = [p for p in plugins if p["name"] == "unit-conversion"][0]
    assert row["distribution"] == "bitagent-tasks-example" and row["version"] == "0.1.0"
    out = bitagent(
        "evaluate",
        "--tasks",
        "unit-conversion",
        "--limit",
        "3",
        "--json",
        "--output-dir",
        str(tmp_path / "runs"),
        *THREADS,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["n_scored"] == 3 and summary["config"]["tasks"] == "unit-conversion"
    assert summary["mean_score"] > 0.3


@pytest.fixture
def multi_turn_tasks(tmp_path):
    """Two BFCL multi-turn entries (GorillaFileSystem) as a JSONL file: their first two turns (with their ground
    truth; two are what multi-turn needs, a later turn appended to a played one), 2 steps a turn, and one prompt
    for both, cut to the functions their ground truth uses plus two (BFCL's full prompt is ~6k tokens: minutes per
    trajectory on 2 shared cores). One prompt: llama.cpp reuses its evaluated prefix for the second trajectory.
    The environment and the scorer are BFCL's as served."""
    import attrs

    from bitagent_core._plugins import get_registry
    from bitagent_core._runner import load_tasks
    from bitagent_plugins.bfcl import multi_turn

    tasks = {t.id: t for t in load_tasks(get_registry(), "bfcl:multi_turn_base", 0, None)}
    chosen = [tasks[task_id] for task_id in ("multi_turn_base_3", "multi_turn_base_9")]
    used = {call.split("(")[0] for task in chosen for turn in task.metadata["ground_truth"][:2] for call in turn}
    lines = []
    for task in chosen:
        tools = tuple(t for t in task.tools if t.name in used | {"ls", "pwd"})
        task = attrs.evolve(
            task,
            tools=tools,
            system_prompt=multi_turn.system_prompt([t.to_json() for t in tools]),
            turns=task.turns[:1],
            metadata={**task.metadata, "ground_truth": task.metadata["ground_truth"][:2]},
            max_steps_per_turn=2,
        )
        assert len(task.metadata["ground_truth"]) == 2
        lines.append(task.to_json())
    assert lines[0]["system_prompt"] == lines[1]["system_prompt"]
    path = tmp_path / "multi_turn.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.model
def test_multi_turn_on_the_embedded_model_with_ctrl_c_and_resume(tmp_path, embedded_model, multi_turn_tasks):
    """A short BFCL multi-turn evaluation: interrupted after its first trajectory, then resumed."""
    out_dir = tmp_path / "runs"
    args = [
        "evaluate",
        "--tasks",
        f"jsonl:{multi_turn_tasks}",
        "--scorer",
        "bfcl",
        "--limit",
        "2",
        "--output-dir",
        str(out_dir),
        "--max-tokens",
        "64",
        "-B",
        "n_ctx=8192",
        *THREADS,
    ]
    proc = subprocess.Popen(BITAGENT + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 1200  # a ~1k-token prompt per trajectory; 2 cores shared with other runs
        samples = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out_dir.glob("*/samples.jsonl"))
            if found and found[0].read_text().count("\n") >= 1:
                samples = found[0]
                break
            time.sleep(0.05)
        assert samples is not None, proc.stderr.read() if proc.poll() is not None else "no trajectory finished"
        proc.send_signal(signal.SIGINT)  # the second trajectory (2 turns, >= 2 requests) is still being played
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_dir = samples.parent
    assert proc.returncode == 130, err
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted" and results["n_scored"] == 1
    # the trajectory being played stopped after its request in flight: kept as far as played, marked failed
    for cut in [json.loads(x) for x in samples.read_text().splitlines()][1:]:
        assert cut["status"] == "failed" and "interrupted" in cut["completion"]["error"]
    first = json.loads(samples.read_text().splitlines()[0])
    assert first["status"] == "ok" and first["error_type"] != "backend_error"
    turns = first["trajectory"]["turns"]
    # every user turn was played, unless a turn ran past its 2 steps (the model repeating a call)
    terminated = first["trajectory"]["terminated"]
    assert len(turns) == len(first["turns"]) + 1 if terminated is None else terminated.endswith("more than 2 steps")
    steps = [s for turn in turns for s in turn]
    assert all(s["completion_tokens"] > 0 for s in steps)
    out = bitagent("evaluate", "--resume", str(run_dir), "--json", timeout=900)
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "complete" and final["n_scored"] == 2 and final["n_failed"] == 0
    ids = [json.loads(x)["task_id"] for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    # the finished trajectory was not replayed; the interrupted one was kept (failed: "interrupted") and replayed
    assert ids.count("multi_turn_base_3") == 1 and set(ids) == {"multi_turn_base_3", "multi_turn_base_9"}
