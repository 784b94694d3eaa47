"""Managed inference servers: start one, know when it is ready, and always end it.

A :class:`ManagedServer` runs an OpenAI-compatible server (sglang, vLLM, llama.cpp...) as a child process:

* **Port.** A free port on 127.0.0.1 is reserved (a socket bound to it, ``SO_REUSEADDR``) and held until
  the process is spawned; the server only ever binds 127.0.0.1. A server that still loses the port race
  (it exits saying "address already in use") is relaunched on a new port, up to ``port_attempts`` times.
* **Process.** An argument list, never a shell, in its own session and process group, with stdin closed
  and stdout+stderr appended to a log file (``server.log`` in the run directory). ``CUDA_VISIBLE_DEVICES``
  comes from ``visible_devices``; every process of the server carries ``BITAGENT_SERVER_ID=<uuid>`` in its
  environment, which is how we recognise our own processes (children and grandchildren included).
* **Readiness.** ``GET /v1/models`` is polled until it answers 200, for at most ``ready_timeout`` seconds
  (900 by default). If the process exits first, the start fails at once with the exact command and the
  log's last lines.
* **Teardown.** SIGTERM to the whole process group and to every process with our marker, a grace period
  (``stop_timeout``), then SIGKILL; the leader is reaped last, so its group id cannot be reused while we
  signal it. It runs on success, on error, on cancellation (Ctrl-C, SIGTERM in the CLI), at interpreter
  exit (``atexit``), and on SIGTERM/SIGHUP when the process has no handler of its own.
* **SIGKILL of the owner.** Nothing runs in a SIGKILLed process, so two things cover it: with
  ``die_with_parent`` (the default, Linux) the kernel sends the server SIGTERM when its parent dies
  (``PR_SET_PDEATHSIG``); and every server has a *server record*, a JSON file in the server records directory
  (``$BITAGENT_SERVER_RECORDS``, default ``<cache dir>/servers``) with its pid, start time and owner. The next
  start ends servers whose owner is gone (:func:`cleanup_stale`). A process is only signalled if it carries
  the server's marker, or is the recorded leader with the recorded start time.

Processes are found and read through psutil (start times, environments, liveness).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil
import tenacity

from bitagent_core import BackendError
from bitagent_core.toolkit import write_json_atomic

HOST = "127.0.0.1"
MARKER_ENV = "BITAGENT_SERVER_ID"
RECORDS_ENV = "BITAGENT_SERVER_RECORDS"
DEFAULT_READY_TIMEOUT_S = 900.0
DEFAULT_STOP_TIMEOUT_S = 15.0
READY_PATH = "/v1/models"
LOG_TAIL_LINES = 40
_PORT_CONFLICT = ("address already in use", "errno 98", "eaddrinuse")
_KILL_WAIT_S = 5.0

#: Run in the child before the server: ask the kernel for SIGTERM when the parent dies, check the parent
#: did not die before that, then become the server (exec keeps the pid, the marker and the setting).
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('bitagent: the parent process died before the server started')\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class ServerError(BackendError):
    """A managed server failed; the message says what ran and what its log said. Whose fault is not known here
    (``fault`` unknown): the backend that knows the engine reads the log and raises a typed error from it."""


class ServerStartError(ServerError):
    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        log_path: Path | None = None,
        log_tail: str = "",
        returncode: int | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.log_tail = log_tail
        self.returncode = returncode
        parts = [message]
        if self.command:
            parts.append(f"command: {shlex.join(self.command)}")
        if log_path is not None:
            parts.append(f"log: {log_path}")
        if log_tail.strip():
            parts.append("last lines of the log:\n" + log_tail.rstrip())
        super().__init__("\n".join(parts))


class ServerReadyTimeout(ServerStartError):
    """The server did not answer ``GET /v1/models`` within ``ready_timeout``."""


class NotReady(Exception):
    """One readiness check found the server not ready yet; the message says what it saw."""


T = TypeVar("T")


async def poll_until_ready(check: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """``await check()`` until it returns, backing off from 0.1 s to 2 s between tries, for at most ``timeout``
    seconds. ``check`` raises :class:`NotReady` to be tried again (the last one is raised when time runs out);
    anything else ends the wait at once. The one readiness poller: managed servers and ``--base-url`` use it."""
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_before_delay(timeout),
        wait=tenacity.wait_exponential(multiplier=0.1, min=0.1, max=2.0),
        retry=tenacity.retry_if_exception_type(NotReady),
        reraise=True,
    )
    return await retrying(check)


# --------------------------------------------------------------------------------------------- ports


class PortReservation:
    """A free TCP port on ``host``, held by a bound (not listening) socket until :meth:`release`.

    The socket has ``SO_REUSEADDR`` so the server (uvicorn sets it too) can bind the port while we still
    hold it; the kernel will not hand the port to another ``bind(0)`` meanwhile.
    """

    def __init__(self, host: str = HOST) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
        except BaseException:
            sock.close()
            raise
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._sock: socket.socket | None = sock

    @property
    def held(self) -> bool:
        return self._sock is not None

    def release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -------------------------------------------------------------------------------------- processes


def _process(pid: int, create_time: float | None = None) -> psutil.Process | None:
    """``pid`` if it is alive (not a zombie) and, when given, started at ``create_time``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        if create_time is not None and proc.create_time() != create_time:
            return None  # the pid was reused by another process
    except psutil.Error:
        return None
    return proc


def process_create_time(pid: int) -> float | None:
    proc = _process(pid)
    try:
        return proc.create_time() if proc is not None else None
    except psutil.Error:
        return None


def is_running(pid: int, create_time: float | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie and (if given) started at ``create_time``."""
    return _process(pid, create_time) is not None


def server_processes(server_id: str, pgid: int | None = None) -> list[int]:
    """Live (non-zombie) processes carrying ``server_id``'s marker, plus members of ``pgid`` if given
    (pass ``pgid`` only when the group is known to be ours: its leader is our unreaped child)."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["status"]):
        if proc.pid == me or proc.info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue
        try:
            if (pgid is not None and os.getpgid(proc.pid) == pgid) or proc.environ().get(MARKER_ENV) == server_id:
                found.append(proc.pid)
        except (psutil.Error, OSError):  # gone, or another user's process: never ours
            continue
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -------------------------------------------------------------------------------- server records


def records_dir() -> Path:
    """Where running servers are recorded: ``$BITAGENT_SERVER_RECORDS`` or ``<cache dir>/servers``."""
    if os.environ.get(RECORDS_ENV):
        return Path(os.environ[RECORDS_ENV])
    from bitagent_plugins.backends.embedded_model import cache_dir

    return cache_dir() / "servers"


def read_records(directory: Path | None = None) -> list[dict[str, Any]]:
    """The server records (each has a ``path`` key added)."""
    directory = directory or records_dir()
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("server_id"), str):
            record["path"] = str(path)
            records.append(record)
    return records


def _owner_alive(record: dict[str, Any]) -> bool:
    owner = record.get("owner_pid")
    if not isinstance(owner, int):
        return False
    return is_running(owner, record.get("owner_create_time"))


def cleanup_stale(directory: Path | None = None, *, stop_timeout: float = _KILL_WAIT_S) -> list[dict[str, Any]]:
    """End servers whose owner process is gone (e.g. a validator killed with SIGKILL) and forget them.

    Only processes that carry the record's marker, or the recorded leader with its recorded start time,
    are signalled. Records from another host are left alone; records from a previous boot are dropped.
    Returns the records it acted on, each with ``ended`` (the pids it signalled).
    """
    acted = []
    hostname, boot = socket.gethostname(), psutil.boot_time()
    for record in read_records(directory):
        if record.get("hostname") not in (None, hostname):
            continue
        path = Path(record["path"])
        if record.get("boot_time") is not None and record["boot_time"] != boot:
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(record):
            continue
        pids = set(server_processes(record["server_id"]))
        leader, started = record.get("pid"), record.get("create_time")
        if isinstance(leader, int) and started is not None and is_running(leader, started):
            pids.add(leader)
        if pids:
            _terminate(sorted(pids), record["server_id"], stop_timeout)
        path.unlink(missing_ok=True)
        acted.append({**record, "ended": sorted(pids)})
    return acted


def _terminate(pids: list[int], server_id: str, stop_timeout: float) -> None:
    """TERM, wait, KILL for processes that are not our children (stale servers)."""
    procs = [p for p in (_process(pid) for pid in pids) if p is not None]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=stop_timeout)
    # a marker scan also catches processes the server spawned while it was being stopped
    alive_pids = {p.pid for p in alive} | set(server_processes(server_id))
    left = [p for p in (_process(pid) for pid in sorted(alive_pids)) if p is not None]
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=_KILL_WAIT_S)


# ------------------------------------------------------------------------------- interpreter exit

_LIVE: set[ManagedServer] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def _on_fatal_signal(signum: int, frame: Any) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the same signal, as if we had never caught it


def _install_exit_hooks() -> None:
    """``atexit`` always; SIGTERM/SIGHUP handlers only where the process has none (the default action
    would kill it without running ``atexit``) and only from the main thread."""
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, _on_fatal_signal)


# ---------------------------------------------------------------------------------- the server

Argv = Sequence[str] | Callable[[int], Sequence[str]]


class ManagedServer:
    """One server process: ``await start()``, use :attr:`base_url`, ``stop()`` (or ``await aclose()``).

    ``argv`` is a list (``"{port}"`` in an item is replaced by the reserved port) or a function
    ``port -> list``. ``die_with_parent`` ties the server to the *thread* that starts it (a kernel rule):
    start it from a thread that outlives it, e.g. the event loop's.
    """

    def __init__(
        self,
        argv: Argv,
        *,
        name: str = "server",
        env: dict[str, str] | None = None,
        visible_devices: str | None = None,
        log_path: Path | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
        ready_path: str = READY_PATH,
        headers: dict[str, str] | None = None,
        die_with_parent: bool = True,
        records: Path | None = None,
        port_attempts: int = 3,
        cleanup_stale_first: bool = True,
    ) -> None:
        if ready_timeout <= 0 or stop_timeout < 0:
            raise ValueError("ready_timeout must be > 0 and stop_timeout >= 0")
        self._argv = argv
        self.name = name
        self.extra_env = dict(env or {})
        self.visible_devices = visible_devices
        self._log_path = log_path
        self.ready_timeout = float(ready_timeout)
        self.stop_timeout = float(stop_timeout)
        self.ready_path = ready_path
        self.headers = dict(headers or {})
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self.records = records  # the server records directory (default: records_dir())
        self.port_attempts = max(1, port_attempts)
        self.cleanup_stale_first = cleanup_stale_first
        self.server_id = ""
        self.port: int | None = None
        self.command: list[str] = []
        self.env: dict[str, str] = {}
        self.model_ids: list[str] = []
        self.log_path: Path | None = log_path
        self._auto_log = log_path is None
        self._log_offset = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._record_path: Path | None = None
        self._create_time: float | None = None
        self._last_returncode: int | None = None
        self._lock = threading.RLock()

    # ---- identity

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} has not been started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": list(self.command),
            "port": self.port,
            "pid": self.pid,
            "log": str(self.log_path) if self.log_path else None,
            "model_ids": list(self.model_ids),
            "visible_devices": self.visible_devices,
        }

    # ---- launching

    def build_command(self, port: int) -> list[str]:
        if callable(self._argv):
            argv = [str(a) for a in self._argv(port)]
        else:
            argv = [str(a).replace("{port}", str(port)) for a in self._argv]
        if not argv:
            raise ValueError(f"{self.name}: empty command")
        return argv

    def build_env(self, server_id: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        if self.visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.visible_devices
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[MARKER_ENV] = server_id
        return env

    def launch(self) -> None:
        """Spawn the process (not waiting for readiness). Raises :class:`ServerStartError`."""
        with self._lock:
            if self._proc is not None:
                raise RuntimeError(f"{self.name} is already running (pid {self._proc.pid})")
            _install_exit_hooks()
            self.server_id = uuid.uuid4().hex
            self.model_ids = []
            self._last_returncode = None
            reservation = PortReservation(HOST)
            try:
                self.port = reservation.port
                self.command = self.build_command(self.port)
                self.env = self.build_env(self.server_id)
                program = self.command[0]
                if shutil.which(program, path=self.env.get("PATH")) is None:
                    raise ServerStartError(
                        f"{self.name}: cannot run {program!r}: not found or not executable", command=self.command
                    )
                log = self._open_log()
                try:
                    self._write_record(pid=None)
                    argv = self.command
                    if self.die_with_parent:
                        argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *self.command]
                    try:
                        self._proc = subprocess.Popen(
                            argv,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=self.env,
                            start_new_session=True,
                            close_fds=True,
                        )
                    except OSError as exc:
                        self._remove_record()
                        raise ServerStartError(
                            f"{self.name}: cannot start: {exc}", command=self.command, log_path=self.log_path
                        ) from exc
                finally:
                    log.close()
            finally:
                reservation.release()  # held until the process exists, then the server binds it
            with _LIVE_LOCK:
                _LIVE.add(self)
            self._create_time = process_create_time(self._proc.pid)
            self._write_record(pid=self._proc.pid)

    def _open_log(self) -> IO[bytes]:
        if self._auto_log:
            self.log_path = (self.records or records_dir()) / f"{self.server_id}.log"
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        devices = f" CUDA_VISIBLE_DEVICES={self.visible_devices}" if self.visible_devices is not None else ""
        log.write(
            f"# bitagent {stamp}: starting {self.name} on {HOST}:{self.port}{devices}\n"
            f"# command: {shlex.join(self.command)}\n".encode()
        )
        log.flush()
        self._log_offset = log.tell()
        return log

    def _write_record(self, pid: int | None) -> None:
        directory = self.records or records_dir()
        self._record_path = directory / f"{self.server_id}.json"
        self._record_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self._record_path,
            {
                "server_id": self.server_id,
                "name": self.name,
                "pid": pid,
                "pgid": pid,
                "create_time": self._create_time if pid else None,
                "port": self.port,
                "command": self.command,
                "log": str(self.log_path) if self.log_path else None,
                "owner_pid": os.getpid(),
                "owner_create_time": process_create_time(os.getpid()),
                "hostname": socket.gethostname(),
                "boot_time": psutil.boot_time(),
                "created": time.time(),
            },
        )

    def _remove_record(self) -> None:
        path, self._record_path = self._record_path, None
        if path is not None:
            path.unlink(missing_ok=True)

    # ---- state

    def returncode(self) -> int | None:
        """The exit code if the process has exited, else None. Does not reap it (see :meth:`stop`)."""
        proc = self._proc
        if proc is None:
            return self._last_returncode
        if proc.returncode is not None:
            return proc.returncode
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return proc.poll()
        except (AttributeError, OSError):  # no waitid: reaping is acceptable there
            return proc.poll()
        if info is None or info.si_pid == 0:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    @property
    def running(self) -> bool:
        return self._proc is not None and self.returncode() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this launch wrote to the log."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                start = max(self._log_offset, size - 64 * 1024)
                f.seek(start)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])

    def _start_error(self, cls: type[ServerStartError], message: str, code: int | None) -> ServerStartError:
        return cls(message, command=self.command, log_path=self.log_path, log_tail=self.log_tail(), returncode=code)

    # ---- readiness

    async def wait_ready(self) -> None:
        """Poll ``GET {base_url}{ready_path}`` until 200; fail fast if the process exits."""
        import httpx

        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), headers=self.headers, trust_env=False) as client:

            async def check() -> None:
                code = self.returncode()
                if code is not None:
                    raise self._start_error(
                        ServerStartError, f"{self.name} exited with code {code} before it was ready", code
                    )
                try:
                    response = await client.get(self.base_url + self.ready_path)
                except httpx.HTTPError as exc:
                    raise NotReady(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
                if response.status_code in (401, 403):
                    raise self._start_error(
                        ServerStartError,
                        f"{self.name} refused us (HTTP {response.status_code}) at {self.ready_path}",
                        None,
                    )
                if response.status_code != 200:
                    raise NotReady(f"HTTP {response.status_code}")
                self.model_ids = _model_ids(response)

            try:
                await poll_until_ready(check, timeout=self.ready_timeout)
            except NotReady as exc:
                raise self._start_error(
                    ServerReadyTimeout, f"{self.name} was not ready after {self.ready_timeout:g} s (last: {exc})", None
                ) from None

    async def start(self) -> None:
        """Launch and wait until ready; on any failure (or cancellation) the process is torn down."""
        if self.cleanup_stale_first:
            await asyncio.to_thread(cleanup_stale, self.records)
        for attempt in range(1, self.port_attempts + 1):
            self.launch()
            try:
                await self.wait_ready()
                return
            except ServerStartError as exc:
                self.stop()
                conflict = exc.returncode is not None and any(s in exc.log_tail.lower() for s in _PORT_CONFLICT)
                if conflict and attempt < self.port_attempts:
                    continue
                raise
            except BaseException:
                self.stop()
                raise

    # ---- teardown

    def stop(self) -> None:
        """End the server and everything it started: TERM, wait ``stop_timeout``, KILL. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                self._terminate_tree(proc)
            finally:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=_KILL_WAIT_S)  # reap the leader only now: its pgid stayed ours
                self._last_returncode = proc.returncode
                self._proc = None
                self._remove_record()
                with _LIVE_LOCK:
                    _LIVE.discard(self)
                if self._auto_log and self.log_path is not None and self._last_returncode in (0, -15, -9):
                    self.log_path.unlink(missing_ok=True)

    def _terminate_tree(self, proc: subprocess.Popen[bytes]) -> None:
        pgid = proc.pid  # its own session: group id == pid, and the unreaped leader keeps it ours

        def remaining() -> list[int]:
            return server_processes(self.server_id, pgid)

        _signal_group(pgid, signal.SIGTERM)
        _signal(remaining(), signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            if self.returncode() is not None and not remaining():
                return
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        _signal(remaining(), signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT_S
        while (self.returncode() is None or remaining()) and time.monotonic() < deadline:
            time.sleep(0.05)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> ManagedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _model_ids(response: Any) -> list[str]:
    try:
        data = response.json()
    except ValueError:
        return []
    items = data.get("data") if isinstance(data, dict) else None
    return [str(m["id"]) for m in items or [] if isinstance(m, dict) and "id" in m]
