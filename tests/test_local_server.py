"""The managed server, with real processes on 127.0.0.1: the real ``llama_cpp.server`` on the embedded
model for the whole path, and ``python -m http.server`` (serving a ``v1/models`` file) where only the
process lifecycle matters. Every process a test starts carries ``BITAGENT_TEST_OWNER=<uuid>`` in its
environment, so the tests can prove none is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from process_helpers import ours, start_owner

from bitagent_plugins.backends.local_server import (
    MARKER_ENV,
    ManagedServer,
    PortReservation,
    ServerReadyTimeout,
    ServerStartError,
    cleanup_stale,
    is_running,
    process_create_time,
    read_records,
    server_processes,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX process groups and signals")

PY = sys.executable

#: a wrapper that leaves two extra processes behind the server: a child in the server's process group
#: that ignores SIGTERM, and a grandchild that moves to its own session (out of the group); their pids
#: go to the file named by $PIDS_FILE, then the wrapper becomes the server
SPAWNING_WRAPPER = r"""
import os, subprocess, sys
code = "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code])
grandchild = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
if os.environ.get("PIDS_FILE"):
    with open(os.environ["PIDS_FILE"], "w") as f:
        f.write(f"{child.pid} {grandchild.pid}")
os.execv(sys.argv[1], sys.argv[1:])
"""


# ------------------------------------------------------------------------------------------ helpers


def wait_until(predicate, limit_s: float = 60.0, step: float = 0.05) -> bool:
    """Poll ``predicate``; a liveness bound, not a timing assertion."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stub")
    (root / "v1").mkdir()
    (root / "v1" / "models").write_text(json.dumps({"object": "list", "data": [{"id": "stub-model"}]}))
    return root


def stub_argv(stub_dir: Path) -> list[str]:
    return [PY, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", str(stub_dir)]


def llama_argv(model: Path, port: int | str = "{port}", n_ctx: int = 512) -> list[str]:
    return [
        PY,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
    ]


def listening_addresses(port: int) -> list[str]:
    """Local IP addresses with a socket in LISTEN state on ``port`` (any process)."""
    import psutil

    return sorted(
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    )


def environ_of(pid: int) -> dict[str, str]:
    import psutil

    return psutil.Process(pid).environ()


# -------------------------------------------------------------------------------------------- ports


def test_reserved_port_is_held_on_loopback_until_released():
    with PortReservation() as first, PortReservation() as second:
        assert first.host == "127.0.0.1" and first.held
        assert first.port != second.port
        probe = socket.socket()
        with pytest.raises(OSError):  # a plain bind (no SO_REUSEADDR) cannot take a held port
            probe.bind(("127.0.0.1", first.port))
        probe.close()
    assert not first.held
    probe = socket.socket()
    probe.bind(("127.0.0.1", first.port))
    probe.close()


# ----------------------------------------------------------------------------- the real llama server


def test_llama_server_start_ready_teardown(embedded_model, server_records, owner_token, tmp_path):
    log = tmp_path / "run" / "server.log"
    server = ManagedServer(
        llama_argv(embedded_model), name="llama", log_path=log, visible_devices="0", ready_timeout=120
    )
    asyncio.run(server.start())
    try:
        assert server.running and server.model_ids == [str(embedded_model)]
        reply = httpx.get(server.base_url + "/v1/models", timeout=10)
        assert reply.status_code == 200
        # bound to loopback only, never 0.0.0.0
        assert listening_addresses(server.port) == ["127.0.0.1"]
        env = environ_of(server.pid)
        assert env["CUDA_VISIBLE_DEVICES"] == "0" and env[MARKER_ENV] == server.server_id
        assert os.getpgid(server.pid) == server.pid  # its own process group
        assert [r["pid"] for r in read_records(server_records)] == [server.pid]
        record = read_records(server_records)[0]
        assert record["owner_pid"] == os.getpid() and record["create_time"] == process_create_time(server.pid)
        text = log.read_text()
        assert "# command: " in text and "llama_cpp.server" in text and "--host 127.0.0.1" in text
    finally:
        server.stop()
    assert not server.running and server.returncode() is not None
    assert read_records(server_records) == []
    assert listening_addresses(server.port) == []
    assert ours(owner_token) == []
    server.stop()  # idempotent


# -------------------------------------------------------------------------------- failing starts


def test_a_server_that_exits_fails_fast_with_its_command_and_log(server_records, tmp_path):
    code = "import sys; print('boom: unknown flag --frobnicate'); sys.exit(3)"
    server = ManagedServer([PY, "-c", code], log_path=tmp_path / "server.log", ready_timeout=600)
    with pytest.raises(ServerStartError) as info:
        asyncio.run(server.start())
    message = str(info.value)
    assert info.value.returncode == 3
    assert "exited with code 3 before it was ready" in message
    assert "boom: unknown flag --frobnicate" in message and "boom" in info.value.log_tail
    assert "command: " in message and "-c" in info.value.command
    assert read_records(server_records) == []


def test_a_missing_server_program_is_a_clear_error(server_records):
    server = ManagedServer(["/nonexistent/bin/python", "-m", "sglang.launch_server"])
    with pytest.raises(ServerStartError, match="cannot run '/nonexistent/bin/python'"):
        asyncio.run(server.start())
    assert server.pid is None and read_records(server_records) == []


def test_ready_timeout_ends_a_server_that_never_answers(server_records, owner_token):
    server = ManagedServer([PY, "-c", "import time; time.sleep(600)"], ready_timeout=1.0, stop_timeout=5)
    with pytest.raises(ServerReadyTimeout, match="was not ready after 1 s"):
        asyncio.run(server.start())
    assert not server.running and ours(owner_token) == []
    assert read_records(server_records) == []


def test_cancelling_a_start_tears_the_server_down(server_records, owner_token):
    server = ManagedServer([PY, "-c", "import time; time.sleep(600)"], ready_timeout=600)

    async def main() -> None:
        task = asyncio.create_task(server.start())
        while server.pid is None:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert server.pid is None and ours(owner_token) == []
    assert read_records(server_records) == []


def test_a_lost_port_race_is_retried_on_a_new_port(server_records, stub_dir):
    calls = []

    def argv(port: int) -> list[str]:
        calls.append(port)
        if len(calls) == 1:
            return [PY, "-c", "import sys; print('OSError: [Errno 98] Address already in use'); sys.exit(1)"]
        return [a.replace("{port}", str(port)) for a in stub_argv(stub_dir)]

    server = ManagedServer(argv, ready_timeout=60)
    asyncio.run(server.start())
    try:
        assert len(calls) == 2 and server.model_ids == ["stub-model"]
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------- teardown


@pytest.mark.slow
def test_teardown_ends_children_and_grandchildren(server_records, owner_token, stub_dir, tmp_path):
    pids_file = tmp_path / "pids"
    server = ManagedServer(
        [PY, "-c", SPAWNING_WRAPPER, *stub_argv(stub_dir)],
        env={"PIDS_FILE": str(pids_file)},
        stop_timeout=1.0,
        ready_timeout=60,
    )
    asyncio.run(server.start())
    child, grandchild = map(int, pids_file.read_text().split())
    assert os.getpgid(child) == server.pid  # in the group, ignoring SIGTERM
    assert os.getpgid(grandchild) == grandchild  # escaped the group: found by its marker
    assert set(server_processes(server.server_id)) == {server.pid, child, grandchild}
    server.stop()
    assert not is_running(child) and not is_running(grandchild)
    assert ours(owner_token) == []


def test_sigterm_to_the_owner_ends_its_server(embedded_model, server_records, owner_token, tmp_path):
    validator, info = start_owner(llama_argv(embedded_model), log_path=str(tmp_path / "server.log"))
    assert is_running(info["pid"])
    validator.send_signal(signal.SIGTERM)
    assert validator.wait(timeout=60) == -signal.SIGTERM  # our handler stops the server, then dies of it
    assert not is_running(info["pid"]) and ours(owner_token) == []
    assert read_records(server_records) == []


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_interpreter_exit_stops_servers_left_running(ending, server_records, owner_token, stub_dir):
    """A program that forgets to stop its server (or dies of an exception): ``atexit`` does it.
    ``die_with_parent`` is off here so that only the exit hook can be what ends it."""
    last = "raise RuntimeError('crash')" if ending == "raise" else "sys.exit(0)"
    script = (
        "import asyncio, sys\n"
        "from bitagent_plugins.backends.local_server import ManagedServer\n"
        f"server = ManagedServer({stub_argv(stub_dir)!r}, die_with_parent=False, ready_timeout=60)\n"
        "asyncio.run(server.start())\n"
        "print(server.pid, flush=True)\n"
        f"{last}\n"
    )
    done = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == (1 if ending == "raise" else 0), done.stderr
    pid = int(done.stdout.split()[0])
    assert not is_running(pid) and ours(owner_token) == []
    assert read_records(server_records) == []


def test_a_server_left_by_a_sigkilled_owner_is_ended_by_the_next_start(
    embedded_model, server_records, owner_token, stub_dir, tmp_path
):
    validator, info = start_owner(
        llama_argv(embedded_model), log_path=str(tmp_path / "server.log"), die_with_parent=False
    )
    validator.kill()
    validator.wait()
    # nothing ran in the killed validator: its server is still there, holding its port (and a GPU)
    assert is_running(info["pid"])
    assert httpx.get(info["base_url"] + "/v1/models", timeout=10).status_code == 200
    assert [r["server_id"] for r in read_records(server_records)] == [info["server_id"]]
    nxt = ManagedServer(stub_argv(stub_dir), ready_timeout=60)
    asyncio.run(nxt.start())
    try:
        assert not is_running(info["pid"])
        assert [r["server_id"] for r in read_records(server_records)] == [nxt.server_id]
    finally:
        nxt.stop()
    assert ours(owner_token) == []


def test_die_with_parent_ends_the_server_when_its_owner_is_sigkilled(
    embedded_model, server_records, owner_token, tmp_path
):
    validator, info = start_owner(llama_argv(embedded_model), log_path=str(tmp_path / "server.log"))
    validator.kill()
    validator.wait()
    assert wait_until(lambda: not is_running(info["pid"]))  # the kernel sent it SIGTERM
    ended = cleanup_stale()  # only the record is left to forget
    assert [(r["server_id"], r["ended"]) for r in ended] == [(info["server_id"], [])]
    assert read_records(server_records) == [] and ours(owner_token) == []


def test_cleanup_spares_live_owners_and_processes_that_are_not_ours(
    embedded_model, server_records, owner_token, tmp_path
):
    validator, info = start_owner(llama_argv(embedded_model), log_path=str(tmp_path / "server.log"))
    try:
        assert cleanup_stale() == [] and is_running(info["pid"])  # its owner is alive
    finally:
        validator.terminate()
        validator.wait(timeout=60)
    # a record whose pid now belongs to an unrelated process (pid reuse): dead owner, other start time
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(600)"])
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    try:
        record = {
            "server_id": uuid.uuid4().hex,
            "pid": bystander.pid,
            "pgid": bystander.pid,
            "create_time": process_create_time(bystander.pid) - 1,
            "owner_pid": gone.pid,
            "owner_create_time": 1.0,
            "hostname": socket.gethostname(),
        }
        (server_records / f"{record['server_id']}.json").write_text(json.dumps(record))
        ended = cleanup_stale()
        assert [r["ended"] for r in ended] == [[]]
        assert is_running(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
    assert ours(owner_token) == []


def test_twenty_start_kill_cycles_leave_no_process(embedded_model, server_records, owner_token, stub_dir, tmp_path):
    """Servers started and ended every way we know, children and grandchildren included."""
    modes = ["stop", "sigterm", "sigkill", "sigint", "sigkill-die-with-parent"]
    left_behind: list[int] = []
    for cycle in range(20):
        mode = modes[cycle % len(modes)]
        server_argv = llama_argv(embedded_model)
        if cycle % 3 == 0:  # every third server also leaves a child and an escaped grandchild
            server_argv = [PY, "-c", SPAWNING_WRAPPER, *server_argv]
        log = str(tmp_path / f"server-{cycle}.log")
        if mode == "stop":
            server = ManagedServer(server_argv, log_path=Path(log), ready_timeout=120, stop_timeout=2)
            asyncio.run(server.start())
            server.stop()
            continue
        validator, info = start_owner(server_argv, log_path=log, stop_timeout=2, die_with_parent=mode != "sigkill")
        assert is_running(info["pid"]), f"cycle {cycle}"
        {"sigterm": validator.terminate, "sigint": lambda v=validator: v.send_signal(signal.SIGINT)}.get(
            mode, validator.kill
        )()
        validator.wait(timeout=60)
        if mode in ("sigterm", "sigint"):
            assert not is_running(info["pid"]), f"cycle {cycle} ({mode})"
        if mode == "sigkill":  # left running until the next start ends it
            assert is_running(info["pid"]), f"cycle {cycle}"
            left_behind.append(info["pid"])
    # servers of SIGKILLed validators were ended by the next start; the last ones by this cleanup
    cleanup_stale()
    assert len(left_behind) == 4 and not any(is_running(pid) for pid in left_behind)
    assert read_records(server_records) == []
    assert ours(owner_token) == []
