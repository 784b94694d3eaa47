"""``bitagent update`` against a local package index built here: wheels of tiny test releases of a package
named ``bitagent`` (a ``bitagent`` entry point that answers ``validate --check`` and runs as ``validate``),
installed by the real pip into real virtualenvs with ``--no-index --find-links``. An upgrade that passes, one
whose check fails, one that crashes after the switch (both roll back), kill -9 during the switch, an
update that waits for a running evaluation, and the validator's state from the previous schema surviving."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from process_helpers import alive

from bitagent_plugins.operator.update import Releases, no_evaluation_running

ROOT = Path(__file__).resolve().parent.parent
BITAGENT = (
    [sys.executable, "-m", "bitagent_core._cli"]
    if not (Path(sys.executable).parent / "bitagent").exists()
    else [str(Path(sys.executable).parent / "bitagent")]
)

RELEASE_CODE = """\
import os, signal, sys, time

VERSION = {version!r}
CHECK_EXIT = {check_exit!r}
CRASH_AFTER = {crash_after!r}
BUMP_STATE = {bump_state!r}


def main():
    args = sys.argv[1:]
    if args[:1] == ["--version"]:
        print(VERSION)
        return 0
    if args[:2] == ["validate", "--check"]:
        print("check", VERSION, "state", args[2:])
        return CHECK_EXIT
    if args[:1] == ["validate"]:
        log = os.environ.get("FAKE_VALIDATOR_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"start {{VERSION}}\\n")
            with open(log + ".pids", "a") as f:
                f.write(f"{{os.getpid()}}\\n")
        if BUMP_STATE and os.environ.get("FAKE_STATE"):  # a forward-only migration of the validator state
            import sqlite3
            db = sqlite3.connect(os.environ["FAKE_STATE"])
            db.execute("UPDATE schema_version SET version = 99")
            db.commit()
            db.close()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        started = time.time()
        while not stop:
            if CRASH_AFTER is not None and time.time() - started > CRASH_AFTER:
                return 3
            time.sleep(0.05)
        return 0
    return 2
"""


def build_release(
    wheels: Path,
    version: str,
    *,
    check_exit: int = 0,
    crash_after: float | None = None,
    bump_state: bool = False,
    pin: bool = True,
) -> Path:
    """A wheel of ``bitagent==version`` (a real wheel: METADATA, entry points, RECORD with hashes)."""
    files = {
        "bitagent_release/__init__.py": RELEASE_CODE.format(
            version=version, check_exit=check_exit, crash_after=crash_after, bump_state=bump_state
        ).encode(),
        f"bitagent-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: bitagent\nVersion: {version}\nProvides-Extra: subnet\n"
        ).encode(),
        f"bitagent-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"bitagent-{version}.dist-info/entry_points.txt": b"[console_scripts]\nbitagent = bitagent_release:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"bitagent-{version}.dist-info/RECORD,,")
    files[f"bitagent-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / f"bitagent-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    if pin:  # the operator pins the release's hash as published with it
        with open(wheels.parent / "pinned.sha256", "a") as pinned:
            pinned.write(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return path


def update_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *BITAGENT,
        "update",
        "--root",
        str(tmp_path / "releases"),
        "--no-index",
        "--find-links",
        str(tmp_path / "wheels"),
        "--hash-file",
        str(tmp_path / "pinned.sha256"),
        "--state-path",
        str(tmp_path / "state.sqlite"),
        "--check-command",
        "{bin}/bitagent validate --check --state-path {state}",
        *extra,
    ]


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FAKE_VALIDATOR_LOG": str(tmp_path / "validator.log"),
        "BITAGENT_PLUGINS": "operator",
        **extra,
    }


def run_update(tmp_path: Path, *extra: str, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        update_args(tmp_path, *extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(tmp_path, **environ),
        timeout=300,
    )


def current_version(tmp_path: Path) -> str:
    done = subprocess.run(
        [str(tmp_path / "releases" / "current" / "bin" / "bitagent"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def venv_versions(tmp_path: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (tmp_path / "releases" / "venvs").iterdir())


@pytest.mark.slow
def test_upgrade_then_a_failing_check_keeps_the_current_release(tmp_path):
    build_release(tmp_path / "wheels", "0.1.0")
    done = run_update(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "updated bitagent (none) -> 0.1.0" in done.stdout and current_version(tmp_path) == "0.1.0"

    build_release(tmp_path / "wheels", "0.1.1")
    done = run_update(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0.1.1 passed its check" in done.stdout and "updated bitagent 0.1.0 -> 0.1.1" in done.stdout
    assert current_version(tmp_path) == "0.1.1"
    releases = Releases(tmp_path / "releases")
    assert releases.version(releases.target(releases.previous)) == "0.1.0"
    assert json.loads((releases.target(releases.current) / "release.json").read_text())["source"][:1] == [
        "--only-binary=:all:"
    ]

    done = run_update(tmp_path)
    assert done.returncode == 0 and "bitagent 0.1.1 is the newest release" in done.stdout

    build_release(tmp_path / "wheels", "0.2.0", check_exit=1)
    done = run_update(tmp_path)
    assert done.returncode == 1
    assert "0.2.0 failed its check (exit code 1: check 0.2.0 state ['--state-path', ''])" in done.stdout
    assert "staying on 0.1.1" in done.stdout
    assert current_version(tmp_path) == "0.1.1" and venv_versions(tmp_path) == ["0.1.0", "0.1.1"]
    assert releases.read_journal()["phase"] == "check-failed"
    # a rejected version is not tried again unless pinned
    done = run_update(tmp_path)
    assert done.returncode == 0 and "0.2.0 was rejected before" in done.stdout
    done = run_update(tmp_path, "--version", "0.2.0")
    assert done.returncode == 1 and "failed its check" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("point", ["switch", "switched"])
def test_kill_9_during_the_switch(tmp_path, point):
    build_release(tmp_path / "wheels", "0.1.0")
    assert run_update(tmp_path).returncode == 0
    build_release(tmp_path / "wheels", "0.1.1")
    marker = tmp_path / "paused"
    proc = subprocess.Popen(
        update_args(tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env(tmp_path, BITAGENT_UPDATE_TEST_PAUSE=point, BITAGENT_UPDATE_TEST_PAUSE_FILE=str(marker)),
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # whatever instant it died at, `current` is a working release
    assert current_version(tmp_path) == ("0.1.0" if point == "switch" else "0.1.1")
    releases = Releases(tmp_path / "releases")
    assert releases.read_journal()["phase"] == "switching"

    done = run_update(tmp_path)  # the next run undoes the half-done update, then does it properly
    assert done.returncode == 0, done.stdout + done.stderr
    assert "an update interrupted while switching: rolled back to 0.1.0" in done.stdout
    assert "updated bitagent 0.1.0 -> 0.1.1" in done.stdout
    assert current_version(tmp_path) == "0.1.1" and venv_versions(tmp_path) == ["0.1.0", "0.1.1"]
    assert not (tmp_path / "releases" / ".current.tmp").exists()


@pytest.mark.slow
def test_auto_update_rolls_back_a_crash_and_takes_a_good_release(tmp_path):
    from bitagent_plugins.subnet.state import SCHEMA_VERSION, ValidatorState

    wheels = tmp_path / "wheels"
    build_release(wheels, "0.1.0")
    state = tmp_path / "state.sqlite"
    with ValidatorState(state) as db:
        db.sync_neurons({0: "hk0", 1: "hk1"}, block=10)
    out = tmp_path / "supervisor.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            update_args(
                tmp_path,
                "--auto-update",
                "--interval-minutes",
                "0.02",
                "--probation-minutes",
                "0.05",
                "--",
                "validate",
                "--netuid",
                "20",
            ),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env(tmp_path, FAKE_STATE=str(state)),
        )
    validator_log = tmp_path / "validator.log"

    def wait_for(text: str, path: Path = out, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while text not in (path.read_text() if path.exists() else ""):
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"{text!r} not in:\n{out.read_text()}"
            time.sleep(0.1)

    try:
        wait_for("start 0.1.0", validator_log)
        build_release(wheels, "0.2.0", crash_after=0.5, bump_state=True)
        wait_for("0.2.0 crashed after the switch (it exited with code 3); rolled back to 0.1.0")
        assert "restored the validator state from before the update" in out.read_text()
        assert current_version(tmp_path) == "0.1.0"
        with ValidatorState(state) as db:  # the previous release opens its state again
            assert db.schema_version == SCHEMA_VERSION and db.neurons() == {0: "hk0", 1: "hk1"}
        time.sleep(3)  # more checks pass: the crashed release is not installed again
        assert out.read_text().count("installing bitagent 0.2.0") == 1
        build_release(wheels, "0.3.0")
        wait_for("updated bitagent 0.1.0 -> 0.3.0")
        assert current_version(tmp_path) == "0.3.0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    starts = validator_log.read_text().split("\n")
    assert starts[:4] == ["start 0.1.0", "start 0.2.0", "start 0.1.0", "start 0.3.0"], starts


def _old_state(path: Path) -> None:
    """A validator state file as the previous release wrote it: schema version SCHEMA_VERSION - 1."""
    from bitagent_plugins.subnet.state import MIGRATIONS, SCHEMA_VERSION

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for step in MIGRATIONS[: SCHEMA_VERSION - 1]:
        for statement in step:
            db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION - 1,))
    db.execute("INSERT INTO neurons VALUES (3, 'hk3', 100)")
    db.execute("INSERT INTO submissions VALUES ('hk3', 3, 'acme/m', NULL, ?, 120, 1.0)", ("b" * 40,))
    key = "acme/m@" + "b" * 40
    db.execute("INSERT INTO vetting VALUES (?, 1, 'ok', 1.5)", (key,))
    db.execute(
        "INSERT INTO evaluations (model_key, competition, competition_version, score, n_tasks, run_dir,"
        " status, updated_at) VALUES (?, 'bitagent', '1', 0.5, 6, NULL, 'done', 2.0)",
        (key,),
    )
    db.commit()
    db.close()


@pytest.mark.slow
def test_the_state_of_the_previous_release_survives_an_update_and_migrates(tmp_path):
    from bitagent_plugins.subnet.state import SCHEMA_VERSION, ValidatorState

    state = tmp_path / "state.sqlite"
    _old_state(state)
    before = state.read_bytes()
    build_release(tmp_path / "wheels", "0.1.0")
    assert run_update(tmp_path).returncode == 0
    build_release(tmp_path / "wheels", "0.1.1", check_exit=1)
    done = run_update(tmp_path)
    assert done.returncode == 1  # a rollback does not touch it either
    # the check ran on a copy of the state (a check that migrates must not migrate the live file)
    assert f"state ['--state-path', '{tmp_path / 'releases' / 'check-state.sqlite'}']" in done.stdout
    assert state.read_bytes() == before
    with ValidatorState(state) as db:  # the new release opens it: migrated, nothing lost
        assert db.schema_version == SCHEMA_VERSION and db.check() == []
        assert db.neurons() == {3: "hk3"}
        assert [s.repo_id for s in db.submissions()] == ["acme/m"]
        (evaluation,) = db.evaluations()
        assert evaluation.score == 0.5 and evaluation.status == "done"


def test_no_switch_while_an_evaluation_runs(tmp_path):
    from bitagent_plugins.subnet.state import ValidatorState

    state = tmp_path / "state.sqlite"
    with ValidatorState(state) as db:
        db.record_vetting("acme/m@" + "c" * 40, True, "ok")
        assert db.claim_evaluation("acme/m@" + "c" * 40, "bitagent", "1")
    # a validator died mid-evaluation (nothing holds its lock): the row is stale and does not block
    with no_evaluation_running(state, timeout_s=0.3, poll_s=0.1):
        pass
    # a validator holds its state while the evaluation runs (its exclusive lock on <state>.lock): the update waits
    import filelock

    with filelock.FileLock(str(state.with_name(state.name + ".lock")), timeout=0):
        with pytest.raises(TimeoutError, match="still running"):
            with no_evaluation_running(state, timeout_s=0.3, poll_s=0.1):
                pytest.fail("entered while an evaluation runs")
    with ValidatorState(state) as db:
        db.finish_evaluation("acme/m@" + "c" * 40, "bitagent", "1", score=1.0, n_tasks=1, run_dir=None)
    claimed = []
    with no_evaluation_running(state, timeout_s=1, poll_s=0.1):
        # while held, the validator cannot claim the next evaluation (its write waits for the update)
        def claim():
            with ValidatorState(state, timeout=0.3) as db:
                db.record_vetting("acme/n@" + "d" * 40, True, "ok")
                claimed.append(db.claim_evaluation("acme/n@" + "d" * 40, "bitagent", "1"))

        thread = threading.Thread(target=lambda: claimed.append(_raises(claim)))
        thread.start()
        thread.join(timeout=30)
    assert claimed == ["OperationalError: database is locked"]


def _raises(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def test_the_auto_update_pm2_app_sets_only_variables_the_commands_read():
    from bitagent_plugins.operator.plugin import update_command
    from bitagent_plugins.subnet.plugin import validate_command

    text = (ROOT / "ecosystem.config.js").read_text()
    (block,) = re.findall(r'name: "bitagent-validator-autoupdate",(.*?)\n    \}', text, re.S)
    readable = {p.envvar for command in (validate_command(), update_command()) for p in command.params if p.envvar}
    used = set(re.findall(r"(BITAGENT_[A-Z_]+):", block))
    assert {"BITAGENT_UPDATE_INTERVAL_MINUTES", "BITAGENT_STATE_PATH"} <= used <= readable, used - readable
    assert 'args: "update --root /var/lib/bitagent/releases --auto-update -- validate"' in block


@pytest.mark.slow
def test_update_a_pm2_app_rolls_back_a_crash(tmp_path, pm2_env):
    from pm2_helpers import PM2_BIN, pm2_apps

    wheels = tmp_path / "wheels"
    build_release(wheels, "0.1.0")
    assert run_update(tmp_path).returncode == 0
    environ = {**env(tmp_path), **pm2_env}
    script = tmp_path / "releases" / "current" / "bin" / "bitagent"  # pm2 keeps the link's path: it follows switches
    started = subprocess.run(
        [str(PM2_BIN / "pm2"), "start", str(script), "--name", "val", "--interpreter", "none", "--", "validate"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    validator_log = tmp_path / "validator.log"
    deadline = time.monotonic() + 60
    while "start 0.1.0" not in (validator_log.read_text() if validator_log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    build_release(wheels, "0.2.0", crash_after=0.3)
    done = subprocess.run(
        update_args(tmp_path, "--pm2-app", "val", "--probation-minutes", "0.2"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    # seen after pm2 restarted it, or between its exit and the restart
    assert re.search(
        r"^0\.2\.0 crashed after the switch \(it exited; pm2 (restarted it|status stopped)\); "
        r"rolled back to 0\.1\.0$",
        done.stdout,
        re.M,
    ), done.stdout
    assert current_version(tmp_path) == "0.1.0"
    app = pm2_apps(pm2_env)["val"]
    assert app["pm2_env"]["status"] == "online"
    starts = validator_log.read_text().split()
    assert "0.2.0" in starts and starts[-1] == "0.1.0"

    build_release(wheels, "0.3.0")
    done = subprocess.run(
        update_args(tmp_path, "--pm2-app", "val", "--probation-minutes", "0.05"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "updated bitagent 0.1.0 -> 0.3.0" in done.stdout
    assert validator_log.read_text().split()[-1] == "0.3.0"
    assert pm2_apps(pm2_env)["val"]["pm2_env"]["status"] == "online"


@pytest.mark.slow
def test_kill_9_of_the_auto_update_supervisor_takes_its_validator_along(tmp_path):
    build_release(tmp_path / "wheels", "0.1.0")
    pids = tmp_path / "validator.log.pids"
    proc = subprocess.Popen(
        update_args(tmp_path, "--auto-update", "--", "validate"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(tmp_path),
    )
    try:
        deadline = time.monotonic() + 240
        while not (pids.exists() and pids.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        child = int(pids.read_text().split()[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(child):
            assert time.monotonic() < deadline, "the validator outlived its supervisor"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
