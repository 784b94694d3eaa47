"""``bitagent update``: install a newer release beside the current one, check it, switch, roll back on failure.

Source: only a package index or wheel directory the operator names (``--index-url`` / ``--find-links``;
pip's default index is never used: the name ``bitagent`` there is not this project's), installed as **wheels
only** (``--only-binary=:all:``), so no build backend or ``setup.py`` runs at install time. The release's
wheel is downloaded first and its sha256 must be one the operator pinned (``--wheel-sha256`` or
``--hash-file``, as published with the release); that very file is what gets installed. A git remote with
signed tags was the alternative: it needs a keyring to trust and a build from source (arbitrary code at
build time), and a force-pushed branch is one misconfiguration away; an index release is immutable.

Layout under ``--root`` (pm2 runs ``<root>/current/bin/bitagent``)::

    venvs/<version>-<time>/   one virtualenv per release, each with release.json (package, version, source)
    current -> venvs/...      the running release: switched with one rename(2) of a new symlink onto it
    previous -> venvs/...     the release to roll back to
    update.json               the journal (phase, from, to): a run killed at any point is finished or undone
    update.lock               one updater at a time (filelock)

Flow: newest version on the index -> fresh virtualenv -> ``pip install pkg[extras]==version`` -> the check
command with the new venv (``{bin}/bitagent validate --check``) -> wait until no evaluation is running ->
stop the validator -> switch ``current`` -> start it -> probation: a crash within ``probation`` seconds switches
back and restarts the previous release. Only code pip installed from the pinned source runs: the check and
the validator are the new venv's own entry points.

"Never in the middle of an evaluation": the validator's SQLite state marks an evaluation ``running`` while it
runs (``evaluations.status``). The updater opens a write transaction (``BEGIN IMMEDIATE``) on that database,
checks that nothing is running, and sends the stop signal while holding it: the validator cannot claim a new
evaluation (a write) in between, and it stops on the signal. The transaction ends before waiting for the
validator to exit, so its last writes go through. While an evaluation runs, the updater waits (polling).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from bitagent_core.toolkit import write_json_atomic
from bitagent_plugins.operator.processes import die_with_parent

log = logging.getLogger("bitagent.operator.update")

DEFAULT_CHECK = ("{bin}/bitagent", "validate", "--check")
#: a test hook: ``BITAGENT_UPDATE_TEST_PAUSE=<point>`` stops the updater there (for kill -9 tests)
PAUSE_ENV = "BITAGENT_UPDATE_TEST_PAUSE"


class UpdateError(RuntimeError):
    """The update could not go on; the current release is untouched (or restored)."""


@attrs.frozen
class UpdateConfig:
    root: Path
    package: str = "bitagent"
    #: extras installed with the package (``bitagent[subnet]``)
    extras: str = "subnet"
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    #: install exactly this version (default: the newest on the index)
    version: str | None = None
    #: argv; ``{bin}`` = the new venv's bin/, ``{python}`` its interpreter, ``{state}`` the state path
    check_command: tuple[str, ...] = DEFAULT_CHECK
    state_path: Path | None = None
    #: seconds after the switch during which a crash rolls back
    probation_s: float = 600.0
    pip_timeout_s: float = 1800.0
    check_timeout_s: float = 1800.0
    #: longest wait for a running evaluation to finish before giving up this time
    idle_timeout_s: float = 6 * 3600.0
    keep_releases: int = 3
    #: sha256 of the release wheels the operator accepts (``--wheel-sha256``)
    wheel_sha256: tuple[str, ...] = ()
    #: a file of accepted wheel sha256s, one per line (``--hash-file``; re-read at every update)
    hash_file: Path | None = None

    def check_source(self) -> None:
        """Refuse to run without a source and a pinned hash the operator named."""
        if not self.index_url and not self.find_links:
            raise UpdateError(
                "name where releases come from: --index-url URL (your package index) or --find-links "
                "DIR (a wheel directory); pip's default index is never used (the name "
                f"{self.package!r} there is not this project's)"
            )
        if not self.pinned_hashes():
            raise UpdateError(
                "pin the release: --wheel-sha256 HEX or --hash-file FILE (the sha256 of the wheel, "
                "as published with the release)"
            )

    def pinned_hashes(self) -> frozenset[str]:
        found = {h.lower().removeprefix("sha256:") for h in self.wheel_sha256}
        if self.hash_file is not None:
            try:
                text = Path(self.hash_file).read_text()
            except OSError as exc:
                raise UpdateError(f"--hash-file {self.hash_file}: {exc}") from None
            for line in text.splitlines():
                found.update(word.lower().removeprefix("sha256:") for word in line.split("#")[0].split())
        return frozenset(h for h in found if re.fullmatch(r"[0-9a-f]{64}", h))

    def pip_source_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--no-input", "--disable-pip-version-check"]
        if self.no_index or not self.index_url:  # a wheel directory alone: never pip's default index
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    @property
    def requirement_name(self) -> str:
        return f"{self.package}[{self.extras}]" if self.extras else self.package


@attrs.frozen
class UpdateResult:
    #: up-to-date / updated / check-failed / rolled-back / busy
    state: str
    message: str
    version: str | None = None

    @property
    def exit_code(self) -> int:
        return {"up-to-date": 0, "updated": 0, "busy": 75}.get(self.state, 1)


def _pause(point: str) -> None:
    if os.environ.get(PAUSE_ENV) != point:
        return
    marker = os.environ.get(PAUSE_ENV + "_FILE")
    if marker:
        Path(marker).write_text(point)
    while True:  # wait here to be killed
        time.sleep(1)


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.+-]", version))


class Releases:
    """The release directory: virtualenvs, the ``current``/``previous`` links, the journal."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.venvs = self.root / "venvs"
        self.current = self.root / "current"
        self.previous = self.root / "previous"
        self.journal = self.root / "update.json"
        self.rejected_path = self.root / "rejected.json"

    def rejected(self) -> dict[str, str]:
        """Versions that failed their check or crashed after the switch: not tried again unless pinned."""
        try:
            return dict(json.loads(self.rejected_path.read_text()))
        except (OSError, ValueError):
            return {}

    def reject(self, version: str, why: str) -> None:
        write_json_atomic(self.rejected_path, {**self.rejected(), version: why})

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        import filelock

        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / "update.lock"), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise UpdateError(f"another update is running on {self.root}") from None
        try:
            yield
        finally:
            lock.release()

    def target(self, link: Path) -> Path | None:
        try:
            target = Path(os.readlink(link))
        except OSError:
            return None
        target = target if target.is_absolute() else link.parent / target
        return target if target.is_dir() else None

    def version(self, venv: Path | None) -> str | None:
        if venv is None:
            return None
        try:
            return json.loads((venv / "release.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return None

    def point(self, link: Path, venv: Path, *, pause: str | None = None) -> None:
        """``link`` -> ``venv`` atomically: a new symlink renamed onto the old one (rename(2) is atomic)."""
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(venv, link.parent))
        if pause:
            _pause(pause)
        os.replace(tmp, link)

    def write_journal(self, **record: Any) -> None:
        write_json_atomic(self.journal, {**record, "at": time.time()})

    def read_journal(self) -> dict:
        try:
            return json.loads(self.journal.read_text())
        except (OSError, ValueError):
            return {}

    def recover(self) -> str | None:
        """Finish or undo a run that was killed: returns what was done, or None when nothing was pending."""
        for stray in (self.root / ".current.tmp", self.root / ".previous.tmp"):
            stray.unlink(missing_ok=True)
        journal = self.read_journal()
        phase = journal.get("phase")
        if phase in (None, "done", "rolled-back", "check-failed"):
            return None
        source = Path(journal["from"]) if journal.get("from") else None
        new = Path(journal["to"]) if journal.get("to") else None
        note = f"an update interrupted while {phase}"
        if phase in ("switching", "probation") and source is not None and source.is_dir():
            # the new release never finished its probation: back to the one that ran before
            if self.target(self.current) != source:
                self.point(self.current, source)
            note += f": rolled back to {self.version(source)}"
        live = {self.target(self.current), self.target(self.previous)}
        if new is not None and new.is_dir() and new not in live:
            shutil.rmtree(new, ignore_errors=True)
        if self.venvs.is_dir():  # a venv whose install was cut short has no release.json
            for venv in self.venvs.iterdir():
                if venv not in live and not (venv / "release.json").exists():
                    shutil.rmtree(venv, ignore_errors=True)
        self.write_journal(phase="rolled-back", **{"from": journal.get("from"), "to": journal.get("to")}, note=note)
        return note

    def prune(self, keep: int) -> None:
        """Remove old release venvs, never the current or previous one."""
        live = {self.target(self.current), self.target(self.previous)}
        venvs = (
            sorted((p for p in self.venvs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            if self.venvs.is_dir()
            else []
        )
        for venv in venvs[:-keep] if keep else venvs:
            if venv not in live:
                shutil.rmtree(venv, ignore_errors=True)


# the package manager --------------------------------------------------------------------------------------


def _pip(args: Sequence[str], *, timeout: float, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout)


def fetch_release(config: UpdateConfig, folder: Path) -> tuple[str, Path]:
    """``(version, wheel)``: the release the source offers (``config.version`` if pinned), downloaded into
    ``folder`` (emptied first); :func:`verify_release` checks it before it is installed."""
    config.check_source()
    spec = f"{config.package}=={config.version}" if config.version else config.package
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    done = _pip(
        ["download", "--no-deps", "--dest", str(folder), *config.pip_source_args(), spec], timeout=config.pip_timeout_s
    )
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise UpdateError(
            f"no release of {spec} from {config.index_url or ' '.join(config.find_links)}: "
            f"{(done.stderr or done.stdout).strip()[-400:]}"
        )
    return wheels[0].name.split("-")[1], wheels[0]


def verify_release(config: UpdateConfig, wheel: Path) -> None:
    """Raise unless ``wheel``'s sha256 is one the operator pinned."""
    digest = _sha256(wheel)
    if digest not in config.pinned_hashes():
        raise UpdateError(
            f"{wheel.name} has sha256 {digest}, which is not pinned (--wheel-sha256 / --hash-file): not installed"
        )


def install(config: UpdateConfig, releases: Releases, version: str, wheel: Path) -> Path:
    """A fresh virtualenv with the checked ``wheel`` (and its extras, dependencies from the named source);
    removed again on failure."""
    releases.venvs.mkdir(parents=True, exist_ok=True)
    venv = releases.venvs / f"{version}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, timeout=300
        )
        if made.returncode != 0:
            raise UpdateError(f"creating the virtualenv failed: {made.stderr.strip()[-400:]}")
        python = str(venv / "bin" / "python")
        requirement = f"{wheel}[{config.extras}]" if config.extras else str(wheel)
        # the current pip installs into the new interpreter (``--python``): the new venv needs no pip of its own
        done = _pip(
            ["--python", python, "install", *config.pip_source_args(), requirement], timeout=config.pip_timeout_s
        )
        if done.returncode != 0:
            raise UpdateError(
                f"pip could not install {config.package}=={version}: {(done.stderr or done.stdout).strip()[-600:]}"
            )
        write_json_atomic(
            venv / "release.json",
            {
                "package": config.package,
                "version": version,
                "extras": config.extras,
                "source": config.pip_source_args(),
                "wheel_sha256": _sha256(wheel),
                "installed_at": time.time(),
            },
        )
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    return venv


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def backup_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API; WAL content included)."""
    target.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def schema_version(path: Path) -> int | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            row = db.execute("SELECT version FROM schema_version").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])


def run_check(config: UpdateConfig, venv: Path, scratch: Path) -> tuple[bool, str]:
    """The check command with the new release. It gets a copy of the validator's state (``{state}``, and
    ``BITAGENT_STATE_PATH``): a check that migrates the schema must not migrate the live file."""
    state = ""
    if config.state_path is not None and Path(config.state_path).exists():
        backup_sqlite(Path(config.state_path), scratch)
        state = str(scratch)
    values = {"bin": str(venv / "bin"), "python": str(venv / "bin" / "python"), "state": state}
    argv = [part.format(**values) for part in config.check_command]
    environ = {**os.environ, "VIRTUAL_ENV": str(venv)}
    if state:
        environ["BITAGENT_STATE_PATH"] = state
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=config.check_timeout_s, env=environ)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    output = (done.stdout + done.stderr).strip()
    return done.returncode == 0, f"exit code {done.returncode}: {output[-600:]}"


# never in the middle of an evaluation ---------------------------------------------------------------------


def validator_running(state_path: Path) -> bool:
    """Whether a validator holds its state file (its exclusive ``flock`` on ``<state>.lock``)."""
    import filelock

    lock_path = Path(state_path).with_name(Path(state_path).name + ".lock")
    if not lock_path.exists():
        return False
    probe = filelock.FileLock(str(lock_path), timeout=0)
    try:
        probe.acquire()
    except filelock.Timeout:
        return True
    probe.release()
    return False


@contextlib.contextmanager
def no_evaluation_running(state_path: Path | None, *, timeout_s: float, poll_s: float = 5.0) -> Iterator[None]:
    """Held while the validator is stopped: no evaluation runs and none can start (a write transaction on the
    validator's state database blocks ``claim_evaluation``). Raises ``TimeoutError`` after ``timeout_s``.

    ``running`` rows count only while a validator holds the state: a validator that died mid-evaluation leaves
    them behind (it resets them when it starts again), and they must not hold the update back."""
    if state_path is None or not Path(state_path).exists():
        yield
        return
    deadline = time.monotonic() + timeout_s
    while True:
        db = sqlite3.connect(str(state_path), timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                running = db.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'running'").fetchone()[0]
            except sqlite3.OperationalError:  # no evaluations table yet: nothing runs
                running = 0
            if not running or not validator_running(Path(state_path)):
                try:
                    yield
                finally:
                    db.execute("ROLLBACK")
                return
            db.execute("ROLLBACK")
        finally:
            db.close()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"an evaluation was still running after {timeout_s:.0f} s")
        log.warning("an evaluation is running; the update waits for it to finish")
        time.sleep(poll_s)


# restarting -----------------------------------------------------------------------------------------------


class Restarter:
    """How the validator is stopped and started around a switch, and how a crash is noticed."""

    def begin_stop(self) -> Callable[[], None]:
        """Ask the validator to stop, without waiting; returns what waits until it has stopped."""
        return lambda: None

    def stop(self) -> None:
        self.begin_stop()()

    def start(self) -> None: ...

    def crashed(self) -> str | None:
        """A reason when the running release has crashed since ``start``, else None."""
        return None

    #: whether a probation makes sense (something runs the new release)
    supervised = False


class Pm2App(Restarter):
    """A pm2 app whose script is ``<root>/current/bin/bitagent``: restarted with pm2, crashes read from
    ``pm2 jlist`` (restart count up or status errored/stopped)."""

    supervised = True

    def __init__(self, name: str, pm2: str = "pm2") -> None:
        self.name, self.pm2 = name, shutil.which(pm2) or pm2
        self._restarts: int | None = None

    def _run(self, *args: str) -> str:
        done = subprocess.run([self.pm2, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise UpdateError(f"pm2 {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def _app(self) -> dict:
        for app in json.loads(self._run("jlist") or "[]"):
            if app.get("name") == self.name:
                return app
        raise UpdateError(f"pm2 has no app named {self.name!r}")

    def begin_stop(self) -> Callable[[], None]:
        proc = subprocess.Popen(
            [self.pm2, "stop", self.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

        def wait() -> None:
            output, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise UpdateError(f"pm2 stop {self.name} failed: {output.strip()[-400:]}")

        return wait

    def start(self) -> None:
        self._run("restart", self.name)
        self._restarts = int(self._app().get("pm2_env", {}).get("restart_time", 0))

    def crashed(self) -> str | None:
        env = self._app().get("pm2_env", {})
        # pm2 marks an app that exited "stopped" until it restarts it (or "errored" once it gives up): which
        # of the two a poll sees is timing, the crash is the same
        if env.get("status") in ("errored", "stopped"):
            return f"it exited; pm2 status {env.get('status')}"
        if self._restarts is not None and int(env.get("restart_time", 0)) > self._restarts:
            return "it exited; pm2 restarted it"
        return None


class ChildProcess(Restarter):
    """The validator as this process's child (``bitagent update --auto-update -- validate ...``)."""

    supervised = True

    def __init__(
        self, argv: Callable[[], list[str]], *, log_path: Path | None = None, stop_timeout_s: float = 120.0
    ) -> None:
        self.argv, self.log_path, self.stop_timeout_s = argv, log_path, stop_timeout_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else None
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        finally:
            if out:
                out.close()

    def begin_stop(self) -> Callable[[], None]:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return lambda: None
        proc.send_signal(signal.SIGTERM)

        def wait() -> None:
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        return wait

    def crashed(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode != 0:
            return f"it exited with code {self.proc.returncode}"
        return None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


# the update -----------------------------------------------------------------------------------------------


def update_once(
    config: UpdateConfig,
    restarter: Restarter | None = None,
    *,
    echo: Callable[[str], None] = print,
    poll_s: float = 1.0,
) -> UpdateResult:
    restarter = restarter or Restarter()
    releases = Releases(config.root)
    with releases.locked():
        running_before = releases.target(releases.current)
        note = releases.recover()
        if note:
            echo(note)
            if restarter.supervised and releases.target(releases.current) != running_before:
                restarter.stop()  # it may run the release the interrupted update switched to
                restarter.start()
        current = releases.target(releases.current)
        current_version = releases.version(current)
        version, wheel = fetch_release(config, releases.root / "download")
        if (
            current_version is not None
            and not config.version
            and _version_key(version) <= _version_key(current_version)
        ):
            return UpdateResult(
                "up-to-date", f"{config.package} {current_version} is the newest release", current_version
            )
        if current_version == version:
            return UpdateResult("up-to-date", f"{config.package} {version} is installed", version)
        if not config.version and version in releases.rejected():
            return UpdateResult(
                "up-to-date",
                f"{config.package} {version} was rejected before "
                f"({releases.rejected()[version]}); staying on {current_version} "
                f"(pin it with --version to try again)",
                current_version,
            )
        verify_release(config, wheel)
        echo(f"installing {config.package} {version} beside {current_version or 'nothing'}")
        releases.write_journal(phase="installing", **{"from": str(current) if current else None}, version=version)
        venv = install(config, releases, version, wheel)
        releases.write_journal(
            phase="checking", **{"from": str(current) if current else None, "to": str(venv)}, version=version
        )
        ok, output = run_check(config, venv, releases.root / "check-state.sqlite")
        if not ok:
            shutil.rmtree(venv, ignore_errors=True)
            releases.reject(version, f"check failed: {output[:200]}")
            releases.write_journal(
                phase="check-failed",
                **{"from": str(current) if current else None, "to": str(venv)},
                version=version,
                output=output,
            )
            return UpdateResult(
                "check-failed", f"{version} failed its check ({output}); staying on {current_version}", current_version
            )
        echo(f"{version} passed its check")
        try:
            # the stop is asked for while no evaluation can start; the validator's last writes wait for after
            with no_evaluation_running(config.state_path, timeout_s=config.idle_timeout_s):
                finish_stop = restarter.begin_stop()
            finish_stop()
        except TimeoutError as exc:
            shutil.rmtree(venv, ignore_errors=True)
            releases.write_journal(phase="rolled-back", note=str(exc))
            return UpdateResult("busy", f"not updated: {exc}", current_version)
        # the state as the current release left it: restored if the new one migrates it and then rolls back
        state_backup = releases.root / "state-before-update.sqlite"
        state = Path(config.state_path) if config.state_path is not None else None
        if state is not None and state.exists():
            backup_sqlite(state, state_backup)
        else:
            state_backup.unlink(missing_ok=True)
        releases.write_journal(
            phase="switching", **{"from": str(current) if current else None, "to": str(venv)}, version=version
        )
        if current is not None:
            releases.point(releases.previous, current)
        releases.point(releases.current, venv, pause="switch")
        _pause("switched")
        releases.write_journal(
            phase="probation", **{"from": str(current) if current else None, "to": str(venv)}, version=version
        )
        restarter.start()
        crash = _probation(restarter, config.probation_s, poll_s) if restarter.supervised else None
        if crash is not None and current is not None:
            restarter.stop()
            if state is not None and state_backup.exists() and schema_version(state) != schema_version(state_backup):
                # forward-only migrations: the previous release could not open what the new one wrote
                for suffix in ("-wal", "-shm"):  # the new release's log must not replay onto the restored file
                    Path(f"{state}{suffix}").unlink(missing_ok=True)
                backup_sqlite(state_backup, state)
                echo(f"restored the validator state from before the update ({state_backup})")
            releases.point(releases.current, current)
            restarter.start()
            shutil.rmtree(venv, ignore_errors=True)
            releases.reject(version, f"crashed after the switch: {crash}")
            releases.write_journal(
                phase="rolled-back", **{"from": str(current), "to": str(venv)}, version=version, note=crash
            )
            return UpdateResult(
                "rolled-back",
                f"{version} crashed after the switch ({crash}); rolled back to {current_version}",
                current_version,
            )
        releases.write_journal(
            phase="done", **{"from": str(current) if current else None, "to": str(venv)}, version=version
        )
        releases.prune(config.keep_releases)
        return UpdateResult("updated", f"updated {config.package} {current_version or '(none)'} -> {version}", version)


def _probation(restarter: Restarter, seconds: float, poll_s: float) -> str | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        crash = restarter.crashed()
        if crash is not None:
            return crash
        time.sleep(poll_s)
    return None


def auto_update(
    config: UpdateConfig,
    command: Sequence[str],
    *,
    interval_s: float,
    restart_delay_s: float = 10.0,
    echo: Callable[[str], None] = print,
    max_checks: int | None = None,
    log_path: Path | None = None,
) -> int:
    """Run ``<root>/current/bin/bitagent <command>`` and keep it updated (checked every ``interval_s``).

    A crash outside an update's probation restarts it after ``restart_delay_s`` (as pm2 would). Stops on
    SIGTERM/SIGINT (stopping the child first) and exits 0.
    """
    releases = Releases(config.root)
    child = ChildProcess(lambda: [str(releases.current / "bin" / "bitagent"), *command], log_path=log_path)
    stopping = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    checks = 0
    config.check_source()  # before anything runs: no source or no pinned hash is an error, not a wait
    try:
        with releases.locked():  # a previous supervisor killed mid-update: undo it before anything runs
            note = releases.recover()
        if note:
            echo(note)
        if releases.target(releases.current) is None:
            result = update_once(config, echo=echo)
            echo(result.message)
            if releases.target(releases.current) is None:
                return 1
        child.start()
        next_check = time.monotonic() + interval_s
        while not stopping:
            code = child.exited()
            if code is not None:
                echo(f"the validator exited with code {code}; restarting in {restart_delay_s:g} s")
                time.sleep(restart_delay_s)
                child.start()
            if time.monotonic() >= next_check and (max_checks is None or checks < max_checks):
                checks += 1
                try:
                    result = update_once(config, child, echo=echo)
                    echo(result.message)
                except (UpdateError, OSError, subprocess.SubprocessError, sqlite3.Error) as exc:
                    echo(f"update skipped: {type(exc).__name__}: {exc}")
                if child.proc is None:  # stopped for an update that did not start it again
                    child.start()
                next_check = time.monotonic() + interval_s
            time.sleep(0.2)
    finally:
        child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
