"""``bitagent evaluate`` as a user runs it, against a real OpenAI-compatible HTTP server on 127.0.0.1 (the
``openai`` backend): exit codes, failures reported with their top errors, startup errors, resume rules,
progress in a log file, the output formats, several task sources, ``--limit all``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import SIMPLE_TASKS

BIN = Path(sys.executable).parent
ANSWERS = {t["messages"][-1]["content"]: t for t in SIMPLE_TASKS}
RIGHT = {
    "discount": "[calculate_discount(original_price=200, discount_percentage=20)]",
    "weather": '[get_weather(city="Paris")]',
    "no-tool": "I cannot help with that.",
}


class Handler(BaseHTTPRequestHandler):
    """/v1/models, and /v1/chat/completions answering right, or HTTP 400 for the task ids in ``server.fail``."""

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        last = request["messages"][-1]["content"]  # the question, or the prompt folded into it (upstream's layout)
        task = next(t for question, t in ANSWERS.items() if last.endswith(question))
        if task["id"] in self.server.slow:
            time.sleep(100)
        if "*" in self.server.fail or task["id"] in self.server.fail:
            self._send(400, {"error": {"message": "prompt is too long for the context", "type": "invalid_request"}})
            return
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "model": "stub-model",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": RIGHT[task["id"]]},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.fail = set()
    httpd.slow = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def evaluate(tmp_path: Path, server, *args: str) -> subprocess.CompletedProcess:
    base = [
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(tmp_path / "runs"),
    ]
    return bitagent(*base, *args)


def bitagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "bitagent"), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def tasks(tmp_path):
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in SIMPLE_TASKS))


def results_of(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*/results.json"))]


@pytest.mark.slow
def test_all_failed_is_never_exit_0_and_the_cause_is_printed(tmp_path, server):
    server.fail = {"*"}
    done = evaluate(tmp_path, server)
    assert done.returncode == 4, done.stderr
    assert "3 of 3 samples failed" in done.stdout and "prompt is too long for the context" in done.stdout
    assert results_of(tmp_path)[0]["status"] == "complete"


@pytest.mark.slow
def test_max_failures_as_a_count_or_a_percentage(tmp_path, server):
    server.fail = {"weather"}
    assert evaluate(tmp_path, server).returncode == 0  # default: reported, not fatal
    assert evaluate(tmp_path, server, "--max-failures", "0").returncode == 4
    assert evaluate(tmp_path, server, "--max-failures", "1").returncode == 0
    assert evaluate(tmp_path, server, "--max-failures", "20%").returncode == 4
    assert evaluate(tmp_path, server, "--max-failures", "50%").returncode == 0
    bad = evaluate(tmp_path, server, "--max-failures", "lots")
    assert bad.returncode == 2 and "--max-failures" in bad.stderr
    assert "Exit codes:" in bitagent("evaluate", "--help").stdout


@pytest.mark.slow
def test_an_unreachable_server_is_a_startup_error_not_an_interrupted_run(tmp_path, server):
    port = server.server_port
    server.shutdown()
    server.server_close()
    done = bitagent(
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}",
        "--ready-timeout",
        "1",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(tmp_path / "runs"),
    )
    assert done.returncode == 3 and "could not start" in done.stderr and "Traceback" not in done.stderr
    (results,) = results_of(tmp_path)
    assert results["status"] == "failed" and "not usable" in results["error"] and results["n_scored"] == 0


@pytest.mark.slow
def test_progress_lines_in_a_log_file_and_the_titled_table(tmp_path, server):
    done = evaluate(tmp_path, server, "--limit", "all", "--temperature", "0.2", "--seed", "3")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "bitagent: jsonl:" in err and "3 tasks" in err and "backend openai" in err and "limit all" in err
    assert "loading model" in err and "ready after" in err
    assert "[3/3] 100% mean 1.000" in err and "ETA" in err  # plain lines: stderr is not a terminal
    table = " ".join(done.stdout.split())  # the title may wrap
    assert "stub-model (openai), scorer bitagent v1, seed 3, limit all, temperature 0.2" in table
    assert "95% CI" in table
    assert results_of(tmp_path)[0]["config"]["temperature"] == 0.2


@pytest.mark.slow
def test_output_formats(tmp_path, server):
    csv = evaluate(tmp_path, server, "--format", "csv").stdout.splitlines()
    assert csv[0] == "run,model,category,tasks,passed,mean_score,ci_low,ci_high"
    run = Path(results_of(tmp_path)[0]["run_dir"]).name
    assert csv[-1].startswith(f"{run},stub-model,all,3,3,1.0,")
    markdown = evaluate(tmp_path, server, "--format", "markdown").stdout
    assert "| category | tasks | passed | mean score | 95% CI |" in markdown
    data = json.loads(evaluate(tmp_path, server, "--format", "json").stdout)
    assert data["schema_version"] == "1.0" and data["n_passed"] == 3


@pytest.mark.slow
def test_a_limit_that_samples_a_fixed_source_is_said_and_several_sources_run_together(tmp_path, server):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**t, "id": t["id"] + "-2"}) + "\n" for t in SIMPLE_TASKS))
    done = evaluate(tmp_path, server, "--limit", "2")
    note = " ".join(done.stdout.split())
    assert "took 2 of jsonl:" in note and "'s 3 tasks" in note
    both = bitagent(
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'},jsonl:{other}",
        "--output-dir",
        str(tmp_path / "b"),
        "--json",
    )
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout)["n_tasks"] == 6


@pytest.mark.slow
def test_resume_refuses_conflicting_flags_and_records_the_ones_it_may_change(tmp_path, server):
    server.fail = {"weather"}
    evaluate(tmp_path, server)
    run_dir = Path(results_of(tmp_path)[0]["run_dir"])
    assert Path(results_of(tmp_path)[0]["config"]["tasks"].split(":", 1)[1]).is_absolute()
    for flags in (
        ["--limit", "2"],
        ["--seed", "5"],
        ["--scorer", "bfcl"],
        ["--tasks", "bitagent"],
        ["--model", "other"],
    ):
        done = bitagent("evaluate", "--resume", str(run_dir), *flags)
        assert done.returncode == 1 and "--resume continues a run" in done.stderr, flags
    server.fail = set()
    done = bitagent("evaluate", "--resume", str(run_dir), "--timeout", "30", "--concurrency", "2", "--limit", "20")
    assert done.returncode == 0, done.stderr
    assert "resuming: 2 of 3 samples already done (mean 1.000)" in done.stderr  # the mean counts earlier samples
    (results,) = results_of(tmp_path)
    assert results["n_scored"] == 3 and results["config"]["timeout_s"] == 30.0
    assert results["resumes"][0]["changed"] == {"timeout_s": [300.0, 30.0], "concurrency": [None, 2]}


@pytest.mark.slow
def test_ctrl_c_is_acknowledged_at_once_and_a_second_one_aborts_the_request_in_flight(tmp_path, server):
    server.slow = {"weather"}  # answered after 100 s: only the second Ctrl-C can end the run before
    args = [
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(tmp_path / "runs"),
        "--concurrency",
        "1",
    ]
    proc = subprocess.Popen([str(BIN / "bitagent"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/samples.jsonl")):
        time.sleep(0.05)
    samples = next((tmp_path / "runs").glob("*/samples.jsonl"))
    while time.monotonic() < deadline and not samples.read_text():
        time.sleep(0.05)
    time.sleep(0.3)  # the slow request is in flight
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping after the current request; Ctrl-C again to abort" in err
    assert "aborting the requests in flight" in err
    assert "--resume" in err and "Traceback" not in err
    (results,) = results_of(tmp_path)
    assert results["status"] == "interrupted" and results["n_scored"] == 1
    assert [json.loads(x)["task_id"] for x in samples.read_text().splitlines()] == ["discount"]


@pytest.mark.slow
def test_a_full_disk_is_one_clear_line_whole_sample_lines_and_a_failed_run(tmp_path, server):
    """Files may not grow past 4,500 bytes (RLIMIT_FSIZE, like a disk that fills up after two samples)."""
    import resource

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4500, 4500))

    args = [
        "evaluate",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{server.server_port}",
        "--tasks",
        f"jsonl:{tmp_path / 'tasks.jsonl'}",
        "--output-dir",
        str(tmp_path / "runs"),
        "--concurrency",
        "1",
    ]
    done = subprocess.run(
        [str(BIN / "bitagent"), *args], capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size
    )
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write" in errors[0] and "samples.jsonl" in errors[0]
    (results,) = results_of(tmp_path)
    assert results["status"] == "failed" and "cannot write" in results["error"]
    lines = next((tmp_path / "runs").glob("*/samples.jsonl")).read_text().splitlines()
    assert 1 <= len(lines) < 3 and all(json.loads(line)["task_id"] for line in lines)  # whole lines only
    assert results["n_scored"] == len(lines)
