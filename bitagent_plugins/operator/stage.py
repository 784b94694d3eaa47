"""``bitagent stage``: a whole subnet on a local (or test) chain, the upstream ``setup_and_run.sh`` flow.

Steps, each skippable (the upstream flags): wallets (owner, validators, miners; created under a prefix,
never overwritten), funding (transfers from the local chain's dev account ``//Alice``), subnet creation
(``RegisterSubnet`` + ``StartCall``), registrations (``BurnedRegister``; validators also stake so the chain
grants them a permit), launching (validators and miners as pm2 apps when pm2 is on PATH, else as child
processes supervised here, logs under the staging directory).

Each miner submits a Hugging Face model: ``--model org/name@rev`` for all, or (default) a local GGUF file
(``--model-file``, the embedded model when omitted) published as ``bitagent-stage/<prefix>-miner-<i>`` into
the staging directory's Hugging Face cache, which the validators read with ``--hf-offline``.

Spending on finney (``--main-net``) needs ``--yes-i-mean-mainnet``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bitagent_core.toolkit import write_json_atomic
from bitagent_plugins.operator.chain import (
    OperatorChain,
    coldkey_address,
    create_wallet,
    dev_wallet,
    hotkey_address,
    load_wallet,
    tao,
)
from bitagent_plugins.operator.processes import die_with_parent
from bitagent_plugins.operator.register import RegisterLimits, register_when_possible

log = logging.getLogger("bitagent.operator.stage")

LOCAL_ENDPOINT = "ws://127.0.0.1:9946"
NETWORKS = {"local": LOCAL_ENDPOINT, "test": "test", "main": "finney"}
STEPS = ("wallet", "faucet", "subnet", "val_reg", "miner_reg", "launch_miners", "launch_validators")
SPENDING = ("faucet", "subnet", "val_reg", "miner_reg")
EMBEDDED_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


class StageError(RuntimeError):
    """A step that cannot go on (a clear one-line reason)."""


@attrs.frozen
class Role:
    kind: str  # owner / validator / miner
    index: int
    prefix: str

    @property
    def coldkey(self) -> str:
        return f"{self.prefix}_coldkey_{self.kind}_{self.index}"

    @property
    def hotkey(self) -> str:
        return f"{self.prefix}_hotkey_{self.kind}_{self.index}"

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.kind}-{self.index}"


@attrs.frozen
class StageConfig:
    num_validators: int = 1
    num_miners: int = 2
    prefix: str = "local_subnet_testing_bitagent"
    #: local / test / main
    kind: str = "local"
    endpoint: str | None = None
    netuid: int | None = None
    steps: frozenset[str] = frozenset(STEPS)
    wallet_path: Path = Path("~/.bittensor/wallets")
    staging_dir: Path = Path("staging")
    fund_tao: float = 1000.0
    validator_stake_tao: float = 100.0
    max_registration_cost_tao: float = 100.0
    model: str | None = None
    model_file: Path | None = None
    backend: str = "llama-cpp"
    validator_args: tuple[str, ...] = ()
    miner_args: tuple[str, ...] = ()
    #: auto (pm2 when on PATH) / pm2 / process
    launcher: str = "auto"
    base_port: int = 8091
    yes_i_mean_mainnet: bool = False
    #: blocks to keep retrying ``StartCall`` after creating the subnet (the chain enforces a delay)
    start_call_wait_blocks: int = 1000

    @property
    def network(self) -> str:
        return self.endpoint or NETWORKS[self.kind]

    def roles(self, kind: str) -> list[Role]:
        count = {"owner": 1, "validator": self.num_validators, "miner": self.num_miners}[kind]
        return [Role(kind, i, self.prefix) for i in range(count)]

    def check(self) -> None:
        spending = sorted(self.steps & set(SPENDING))
        if self.kind == "main" and spending and not self.yes_i_mean_mainnet:
            raise StageError(
                f"--main-net with steps that spend TAO ({', '.join(spending)}): add "
                "--yes-i-mean-mainnet, or skip them (--skip-faucet --skip-subnet --skip-reg)"
            )
        if self.kind != "local" and "faucet" in self.steps:
            raise StageError(
                f"there is no dev account to fund wallets from on the {self.kind} network: fund the "
                "coldkeys yourself, then run with --skip-faucet"
            )


# launching -------------------------------------------------------------------------------------------


def default_launch_prefix(command: str) -> list[str]:
    """``bitagent <command>`` from this installation (the script beside this interpreter)."""
    script = Path(sys.executable).with_name("bitagent")
    return [str(script) if script.exists() else shutil.which("bitagent") or "bitagent", command]


def embedded_model_file() -> Path:
    """The assembled embedded model, where the llama-cpp backend keeps it (``$BITAGENT_CACHE_DIR/models``, else
    the platform's user cache directory)."""
    import platformdirs

    base = os.environ.get("BITAGENT_CACHE_DIR") or platformdirs.user_cache_dir("bitagent", appauthor=False)
    path = Path(base) / "models" / EMBEDDED_GGUF
    if not path.is_file():
        raise StageError(
            f"the embedded model is not at {path}: run `bitagent evaluate --limit 1` once to assemble "
            "it, or pass --model-file / --model"
        )
    return path


def publish_local_repo(cache_dir: Path, repo_id: str, model_file: Path) -> str:
    """Write ``repo_id`` into a Hugging Face cache (``blobs/``, ``snapshots/<sha>/``, ``refs/main``) holding
    ``model_file`` (hard-linked when possible) and an Apache-2.0 model card. Returns the commit sha."""
    readme = b"---\nlicense: apache-2.0\n---\n# A staging submission\n"
    stat = model_file.stat()
    sha = hashlib.sha1(f"{repo_id}:{model_file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    org, name = repo_id.split("/")
    storage = cache_dir / f"models--{org}--{name}"
    blobs, snapshot = storage / "blobs", storage / "snapshots" / sha
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    files = {
        "README.md": hashlib.sha256(readme).hexdigest(),
        model_file.name: hashlib.sha256(f"{model_file.resolve()}:{stat.st_size}".encode()).hexdigest(),
    }
    if not (blobs / files["README.md"]).exists():
        (blobs / files["README.md"]).write_bytes(readme)
    blob = blobs / files[model_file.name]
    if not blob.exists():
        try:
            os.link(model_file, blob)
        except OSError:
            shutil.copyfile(model_file, blob)
    for filename, digest in files.items():
        link = snapshot / filename
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blobs / digest, snapshot))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(sha)
    return sha


@attrs.frozen
class App:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = attrs.field(factory=dict)


class Stage:
    def __init__(
        self,
        config: StageConfig,
        *,
        substrate_factory: Callable[[], Any] | None = None,
        launch_prefix: Callable[[str], list[str]] = default_launch_prefix,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.substrate_factory = substrate_factory
        self.launch_prefix = launch_prefix
        self.echo = echo
        self.dir = config.staging_dir.expanduser().resolve()
        self.wallet_path = config.wallet_path.expanduser().resolve()
        self.netuid = config.netuid

    # the record of what was staged (netuid, wallets, apps) lets a later --only-launch find the subnet
    @property
    def record_path(self) -> Path:
        return self.dir / "stage.json"

    def _record(self, **changes: Any) -> None:
        record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {}
        record.update(changes)
        write_json_atomic(self.record_path, record)

    def _chain(self) -> OperatorChain:
        return OperatorChain(
            self.config.network, substrate=self.substrate_factory() if self.substrate_factory else None
        )

    # steps -----------------------------------------------------------------------------------------------

    def wallets(self) -> None:
        for kind in ("owner", "validator", "miner"):
            for role in self.config.roles(kind):
                wallet, created = create_wallet(role.coldkey, role.hotkey, self.wallet_path)
                self.echo(
                    f"wallet {role.coldkey}/{role.hotkey}: {'created' if created else 'exists, kept'} "
                    f"(coldkey {coldkey_address(wallet)})"
                )

    def _wallet(self, role: Role) -> Any:
        wallet = load_wallet(role.coldkey, role.hotkey, str(self.wallet_path))
        if not wallet.coldkey_file.exists_on_device() or not wallet.hotkey_file.exists_on_device():
            raise StageError(
                f"wallet {role.coldkey}/{role.hotkey} is missing under {self.wallet_path} (run without --skip-wallet)"
            )
        return wallet

    async def fund(self, chain: OperatorChain) -> None:
        dev = dev_wallet()
        for kind in ("owner", "validator", "miner"):
            for role in self.config.roles(kind):
                wallet = self._wallet(role)
                amount = self.config.fund_tao
                if kind == "owner":  # the subnet's lock cost on top
                    amount += tao(await chain.network_lock_cost()) * 2
                result = await chain.transfer(dev, coldkey_address(wallet), amount)
                if not result.success:
                    raise StageError(f"funding {role.coldkey} with {amount:g} TAO failed: {result.message}")
                self.echo(f"funded {role.coldkey} with {amount:g} TAO from the dev account")

    async def create_subnet(self, chain: OperatorChain) -> None:
        owner = self._wallet(self.config.roles("owner")[0])
        staged = self.netuid
        if staged is None and self.record_path.exists():
            staged = json.loads(self.record_path.read_text()).get("netuid")
        if (
            staged is not None
            and await chain.subnet_exists(staged)
            and await chain.subnet_owner(staged) == coldkey_address(owner)
        ):
            self.netuid = staged  # staged before (stage.json or --netuid) and still ours: not created twice
            self.echo(f"subnet {staged} exists, owned by {coldkey_address(owner)}: kept")
            return
        result = await chain.register_subnet(owner)
        if not result.success or "netuid" not in result.data:
            raise StageError(f"creating the subnet failed: {result.message}")
        self.netuid = int(result.data["netuid"])
        self._record(netuid=self.netuid)
        self.echo(f"subnet {self.netuid} created, owned by {coldkey_address(owner)}")
        # a new subnet can be started only after the chain's start-call delay: try every block for a while
        first = await chain.block()
        while True:
            started = await chain.start_call(owner, self.netuid)
            if started.success:
                self.echo(f"subnet {self.netuid} started")
                return
            if await chain.block() - first >= self.config.start_call_wait_blocks:
                raise StageError(
                    f"starting subnet {self.netuid} failed for {self.config.start_call_wait_blocks} "
                    f"blocks: {started.message}"
                )
            import asyncio  # at use: loading plugins (`bitagent --help`) stays light

            await asyncio.sleep(await chain.block_time())

    async def register(self, chain: OperatorChain, kind: str) -> None:
        limits = RegisterLimits(max_cost_tao=self.config.max_registration_cost_tao, max_attempts=3, max_blocks=100)
        for role in self.config.roles(kind):
            wallet = self._wallet(role)
            outcome = await register_when_possible(chain, wallet, self._need_netuid(), limits)
            self.echo(f"{role.name} ({hotkey_address(wallet)}): {outcome.line()}")
            if not outcome.registered:
                raise StageError(f"registering {role.name} failed: {outcome.reason}")
            if kind == "validator" and self.config.validator_stake_tao > 0 and outcome.state == "registered":
                staked = await chain.add_stake(wallet, self._need_netuid(), self.config.validator_stake_tao)
                if not staked.success:
                    raise StageError(
                        f"staking {self.config.validator_stake_tao:g} TAO to {role.name} failed: {staked.message}"
                    )
                self.echo(f"{role.name}: staked {self.config.validator_stake_tao:g} TAO (for a validator permit)")

    def _need_netuid(self) -> int:
        if self.netuid is None:
            raise StageError("no subnet: create one (drop --skip-subnet) or pass --netuid")
        return self.netuid

    async def chain_steps(self) -> None:
        steps = self.config.steps
        if not steps & {"faucet", "subnet", "val_reg", "miner_reg"}:
            return
        async with self._chain() as chain:
            if "faucet" in steps:
                await self.fund(chain)
            if "subnet" in steps:
                await self.create_subnet(chain)
            elif self.netuid is not None and not await chain.subnet_exists(self.netuid):
                raise StageError(f"subnet {self.netuid} does not exist on {self.config.network}")
            if "val_reg" in steps:
                await self.register(chain, "validator")
            if "miner_reg" in steps:
                await self.register(chain, "miner")

    # launching -----------------------------------------------------------------------------------------

    def _submission(self, role: Role) -> str:
        if self.config.model:
            return self.config.model
        model_file = self.config.model_file or embedded_model_file()
        repo_id = f"bitagent-stage/{role.prefix.replace('_', '-')}-miner-{role.index}"
        return f"{repo_id}@{publish_local_repo(self.dir / 'hf-cache', repo_id, model_file)}"

    def _common(self, role: Role) -> list[str]:
        return [
            "--netuid",
            str(self._need_netuid()),
            "--subtensor.network",
            self.config.network,
            "--wallet.name",
            role.coldkey,
            "--wallet.hotkey",
            role.hotkey,
            "--wallet.path",
            str(self.wallet_path),
        ]

    def apps(self) -> list[App]:
        apps = []
        logs = self.dir / "logs"
        if "launch_miners" in self.config.steps:
            for role in self.config.roles("miner"):
                argv = [
                    *self.launch_prefix("mine"),
                    *self._common(role),
                    "--hf-model-name",
                    self._submission(role),
                    "--axon.port",
                    str(self.config.base_port + role.index),
                    "--ready-file",
                    str(self.dir / f"{role.name}.ready"),
                    *self.config.miner_args,
                ]
                apps.append(App(role.name, argv, logs / f"{role.name}.log"))
        if "launch_validators" in self.config.steps:
            offline = self.config.model is None
            for role in self.config.roles("validator"):
                home = self.dir / role.name
                argv = [
                    *self.launch_prefix("validate"),
                    *self._common(role),
                    "--backend",
                    self.config.backend,
                    "--allow-private-axons",
                    "--state-path",
                    str(home / "state.sqlite"),
                    "--runs-dir",
                    str(home / "runs"),
                    "--cache-dir",
                    str(self.dir / "hf-cache"),
                    *(["--hf-offline"] if offline else []),
                    *self.config.validator_args,
                ]
                apps.append(
                    App(role.name, argv, logs / f"{role.name}.log", env={"HF_HUB_OFFLINE": "1"} if offline else {})
                )
        return apps

    def launcher(self) -> str:
        if self.config.launcher != "auto":
            return self.config.launcher
        return "pm2" if shutil.which("pm2") else "process"

    def launch_pm2(self, apps: Sequence[App]) -> int:
        pm2 = shutil.which("pm2")
        if pm2 is None:
            raise StageError("--launcher pm2: pm2 is not on PATH (npm install -g pm2)")
        for app in apps:
            app.log.parent.mkdir(parents=True, exist_ok=True)
            argv = [
                pm2,
                "start",
                app.argv[0],
                "--name",
                app.name,
                "--interpreter",
                "none",
                "--output",
                str(app.log),
                "--error",
                str(app.log),
                "--",
                *app.argv[1:],
            ]
            done = subprocess.run(argv, env={**os.environ, **app.env}, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise StageError(f"pm2 start {app.name} failed: {(done.stderr or done.stdout).strip()[-500:]}")
            self.echo(f"pm2 app {app.name} started (logs: {app.log})")
        self._record(apps={a.name: {"argv": a.argv, "log": str(a.log), "launcher": "pm2"} for a in apps})
        return 0

    def supervise(self, apps: Sequence[App], *, poll_s: float = 0.5, stop_timeout_s: float = 60.0) -> int:
        """Run ``apps`` as child processes until SIGINT/SIGTERM or until all have exited; 0 when all exited 0."""
        stopping = False

        def on_signal(_signum: int, _frame: Any) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        procs: dict[str, subprocess.Popen] = {}
        codes: dict[str, int] = {}
        try:
            for app in apps:
                app.log.parent.mkdir(parents=True, exist_ok=True)
                with open(app.log, "ab") as out:
                    procs[app.name] = subprocess.Popen(
                        app.argv,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env={**os.environ, **app.env},
                        preexec_fn=die_with_parent,
                    )
                self.echo(f"started {app.name} (pid {procs[app.name].pid}, log {app.log})")
            self._record(
                apps={
                    a.name: {"argv": a.argv, "log": str(a.log), "launcher": "process", "pid": procs[a.name].pid}
                    for a in apps
                }
            )
            while not stopping and len(codes) < len(procs):
                for name, proc in procs.items():
                    if name not in codes and proc.poll() is not None:
                        codes[name] = proc.returncode
                        self.echo(f"{name} exited with code {proc.returncode}")
                time.sleep(poll_s)
        finally:
            running = [p for p in procs.values() if p.poll() is None]
            for proc in running:
                proc.terminate()
            deadline = time.monotonic() + stop_timeout_s
            for proc in running:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for name, proc in procs.items():
            codes.setdefault(name, proc.returncode)
        if stopping:
            self.echo("stopped: every staged process was stopped")
            return 0
        return 0 if all(code == 0 for code in codes.values()) else 1

    def run(self) -> int:
        self.config.check()
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.netuid is None and "subnet" not in self.config.steps and self.record_path.exists():
            self.netuid = json.loads(self.record_path.read_text()).get("netuid")
        if "wallet" in self.config.steps:
            self.wallets()
        import asyncio  # at use: loading plugins (`bitagent --help`) stays light

        asyncio.run(self.chain_steps())
        apps = self.apps()
        if not apps:
            self.echo(f"staged subnet {self.netuid}; nothing launched")
            return 0
        if self.launcher() == "pm2":
            return self.launch_pm2(apps)
        return self.supervise(apps)
