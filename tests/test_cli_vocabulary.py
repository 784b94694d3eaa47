"""One option vocabulary, and the rough edges a new miner hit: config files use the option names users type
(old internal names still work) and ``--config`` works after the command too, a bad value names the file, line
and key; ``OPENAI_BASE_URL``; ``--task-id`` and ``--tag``; ``--tasks bitagent,nope`` names ``nope``; an unwritable
``--output-dir`` is exit 5; ``--json`` and ``--format json`` print the same; CSV rows name the run and model;
results.json and samples.jsonl get the same file mode. Against the stub OpenAI server of test_evaluate_cli."""

from __future__ import annotations

import json
import os
import stat
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import SIMPLE_TASKS
from tests.test_evaluate_cli import Handler, bitagent, evaluate, results_of

pytestmark = pytest.mark.slow  # each test starts the CLI


@pytest.fixture
def stub_server(tmp_path):
    """test_evaluate_cli's OpenAI-compatible server on 127.0.0.1, and its tasks in tmp_path/tasks.jsonl."""
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in SIMPLE_TASKS))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.fail, httpd.slow = set(), set()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bitagent.toml"
    path.write_text(text)
    return path


def test_config_keys_are_the_option_names_and_config_works_after_the_command(tmp_path, stub_server):
    config = write_config(tmp_path, '[evaluate]\nformat = "csv"\ntimeout = 10\nlimit = 2\n')
    done = evaluate(tmp_path, stub_server, "--config", str(config))  # after the command
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("run,model,category,")  # format = "csv" applied
    (results,) = results_of(tmp_path)
    assert results["config"]["timeout_s"] == 10.0 and results["config"]["limit"] == 2
    # json = true, and the old internal names, at the top level (before the command) too
    config = write_config(tmp_path, "json = true\n[evaluate]\ntimeout-s = 12\n")
    done = bitagent(
        "--config",
        str(config),
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{stub_server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(tmp_path / "other"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config"]["timeout_s"] == 12.0
    # the command line wins over the file
    config = write_config(tmp_path, '[evaluate]\nformat = "csv"\n')
    done = evaluate(tmp_path, stub_server, "--config", str(config), "--format", "markdown")
    assert "| category |" in done.stdout
    # other commands take --config after their name too
    listed = bitagent(
        "runs", "list", "--config", str(write_config(tmp_path, f'output_dir = "{tmp_path / "runs"}"\n')), "--json"
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == len(results_of(tmp_path))


def test_a_bad_value_in_a_config_file_names_the_file_line_and_key(tmp_path, stub_server):
    config = write_config(tmp_path, '[evaluate]\nseed = 1\nlimit = "lots"\n')
    done = evaluate(tmp_path, stub_server, "--config", str(config))
    assert done.returncode == 2
    assert f"{config}:3: limit = 'lots'" in done.stderr and "BITAGENT_LIMIT" not in done.stderr
    config = write_config(tmp_path, '[evaluate]\nformat = "yaml"\n')
    done = evaluate(tmp_path, stub_server, "--config", str(config))
    assert done.returncode == 2 and f"{config}:2: format = 'yaml'" in done.stderr
    config = write_config(tmp_path, '[evaluate]\nfromat = "csv"\n')
    done = evaluate(tmp_path, stub_server, "--config", str(config))
    assert done.returncode == 2 and "has no option 'fromat'" in done.stderr and "format" in done.stderr


def test_openai_base_url_is_honoured_as_the_sdk_does(tmp_path, stub_server):
    env = {**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{stub_server.server_port}/v1"}
    import subprocess

    from tests.test_evaluate_cli import BIN

    done = subprocess.run(
        [
            str(BIN / "bitagent"),
            "evaluate",
            "--backend",
            "openai",
            "--tasks",
            f"jsonl:{tmp_path / 'tasks.jsonl'}",
            "--output-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_passed"] == 3


def test_task_ids_select_tasks_and_tags_label_the_run(tmp_path, stub_server):
    done = evaluate(
        tmp_path,
        stub_server,
        "--task-id",
        "weather",
        "--task-id",
        "no-tool",
        "--tag",
        "baseline",
        "--tag",
        "q4",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["n_tasks"] == 2 and results["config"]["task_ids"] == ["weather", "no-tool"]
    assert results["config"]["tags"] == ["baseline", "q4"]
    run_dir = Path(results["run_dir"])
    assert {json.loads(line)["task_id"] for line in (run_dir / "samples.jsonl").read_text().splitlines()} == {
        "weather",
        "no-tool",
    }
    listed = bitagent("runs", "list", "-o", str(tmp_path / "runs"))
    assert "#baseline #q4" in listed.stdout
    unknown = evaluate(tmp_path, stub_server, "--task-id", "nope")
    assert unknown.returncode == 1 and "has no task 'nope'" in unknown.stderr
    # the selection is part of what a resumed run keeps
    again = bitagent("evaluate", "--resume", str(run_dir), "--task-id", "discount")
    assert again.returncode == 1 and "task_ids" in again.stderr


def test_an_unknown_task_source_in_a_list_is_named(tmp_path, stub_server):
    done = evaluate(tmp_path, stub_server, "--tasks", "bitagent,nope")
    assert done.returncode == 1 and "unknown task source 'nope'" in done.stderr
    assert "'bitagent,nope'" not in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_an_unwritable_output_dir_is_exit_5(tmp_path, stub_server):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output directory should be")
    done = bitagent(
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{stub_server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(blocked / "runs"),
    )
    assert done.returncode == 5, done.stderr
    assert "cannot create a run directory" in done.stderr and "Traceback" not in done.stderr


def test_json_and_format_json_print_the_same_and_files_share_one_mode(tmp_path, stub_server):
    flag = evaluate(tmp_path, stub_server, "--json")
    option = evaluate(tmp_path, stub_server, "--format", "json")
    assert flag.returncode == option.returncode == 0
    a, b = json.loads(flag.stdout), json.loads(option.stdout)
    assert a["n_passed"] == b["n_passed"] == 3
    for done in (flag, option):  # progress on stderr in both cases; stdout is the JSON alone
        assert "[3/3] 100%" in done.stderr and "bitagent: jsonl:" in done.stderr
    run_dir = Path(a["run_dir"])
    modes = {stat.S_IMODE((run_dir / name).stat().st_mode) for name in ("results.json", "samples.jsonl")}
    assert len(modes) == 1, modes
