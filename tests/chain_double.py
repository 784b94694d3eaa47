"""A subtensor chain for tests, behind bittensor 11's lowest seam: its ``Substrate`` protocol.

``bittensor.Client(substrate=FileChain(path))`` runs the SDK's real code above the transport (metagraph
decoding, intents, the executor, SetWeights' preflight and conforming) against this chain. Its state lives
in one JSON file guarded by a file lock so miner and validator *processes* share one chain, as on a real
network. What it models:

* blocks advance with wall-clock time (``block_time`` seconds each, fast blocks by default);
* ``SubnetInfoRuntimeApi.get_metagraph``, the ``Commitments`` maps, the ``SubtensorModule`` storage the
  SDK reads for weights (``Uids``, ``MinAllowedWeights``, ``MaxWeightsLimit``, ``LastUpdate``...);
* extrinsics: each is signed by the caller's real keypair and the signature verified (sr25519) before it
  is applied; ``set_mechanism_weights`` is checked like the runtime does (registered hotkey, validator
  permit, version key, min weights, max weight limit, rate limit); ``serve_axon`` and
  ``Commitments.set_commitment`` require a registered hotkey and update the state;
* every submitted extrinsic is appended to ``extrinsics`` (what the tests assert on).

Calls a validator or miner never makes (multisig, offline signing) raise ``ChainError`` saying so.

What operators need (``bitagent register`` / ``stage``), see :func:`add_operator_state`: TAO balances
(``System.Account``), ``Balances.transfer_keep_alive``, the burn cost (``Burn``) following a scripted schedule
so it rises and falls, registration windows (``AdjustmentInterval``, ``TargetRegistrationsPerInterval`` x 3 per
interval, ``MaxRegistrationsPerBlock``), registrations by others scheduled at given blocks (they take the
window's slots), ``burned_register`` (sent MEV-shielded by the SDK: the carrier's ML-KEM ciphertext is not
decrypted; the inner extrinsic this double signed for it is applied, its signature verified),
``register_network`` (one subnet per chain file), ``start_call`` and ``add_stake`` (a staked hotkey gets a
validator permit, standing in for the epoch that grants permits on a small subnet).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

U16_MAX = 65535
_NOTHING = object()


def _hex(value: Any) -> Any:
    """Bytes -> 0x-hex, recursively (how the transport decodes byte strings)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _hex(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hex(v) for v in value]
    return value


@dataclass(frozen=True)
class ComposedCall:
    """A chain-ready call: what ``Substrate.compose`` returns (it carries ``data``, like the real one)."""

    module: str
    function: str
    params: dict

    @property
    def data(self) -> bytes:
        return json.dumps([self.module, self.function, _hex(self.params)], sort_keys=True).encode()


def new_chain(
    path: str | Path,
    *,
    netuid: int,
    neurons: list[dict],
    block_time: float = 0.2,
    start_block: int = 1000,
    hyperparameters: dict | None = None,
) -> Path:
    """Write a fresh chain file. ``neurons``: dicts with hotkey, coldkey, validator_permit, stake (TAO),
    block_at_registration (default ``start_block``)."""
    hyper = {
        "MinAllowedWeights": 1,
        "MaxWeightsLimit": U16_MAX,
        "WeightsSetRateLimit": 0,
        "CommitRevealWeightsEnabled": False,
        "WeightsVersionKey": 0,
        "Tempo": 360,
    }
    hyper.update(hyperparameters or {})
    state = {
        "netuid": netuid,
        "block_time": block_time,
        "start_block": start_block,
        "genesis_time": time.time(),
        "hyper": hyper,
        "neurons": [
            {
                "hotkey": n["hotkey"],
                "coldkey": n.get("coldkey", n["hotkey"]),
                "validator_permit": bool(n.get("validator_permit", False)),
                "stake": int(float(n.get("stake", 0)) * 1e9),
                "axon": None,
                "last_update": 0,
                "block_at_registration": int(n.get("block_at_registration", start_block)),
            }
            for n in neurons
        ],
        "commitments": {},
        "extrinsics": [],
        "nonces": {},
    }
    path = Path(path)
    _write(path, state)
    return path


#: the local chain's dev account (``//Alice``), funded at genesis
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
#: a valid (all-zero) ML-KEM-768 encapsulation key, so the SDK can encrypt shielded calls
MEV_KEY = bytes(1184)
RAO = 10**9


def add_operator_state(
    path: str | Path,
    *,
    balances: dict[str, float] | None = None,
    burn_schedule: list[tuple[int, float]] | None = None,
    burn: float = 1.0,
    adjustment_interval: int = 0,
    target_registrations: int = 1,
    max_registrations_per_block: int = 1,
    others: list[dict] | None = None,
    max_uids: int = 256,
    network_cost: float = 100.0,
    registration_allowed: bool = True,
    no_subnet: bool = False,
    tx_fee: float = 0.0,
) -> Path:
    """Turn on what operators need on an existing chain file (amounts in TAO, blocks absolute).

    ``burn_schedule``: ``(from_block, cost)`` pairs (the cost from that block on; ``burn`` before the first).
    ``adjustment_interval``: blocks per registration window (0: one endless window); each window admits
    ``3 * target_registrations`` registrations, at most ``max_registrations_per_block`` per block.
    ``others``: ``{"block", "hotkey"[, "coldkey"]}`` registrations by someone else, applied at that block;
    ``{"front_run": True, "hotkey"}`` ones land in the same block just before the next ``burned_register``.
    ``no_subnet``: the chain holds no subnet yet (``register_network`` creates netuid ``state["netuid"]``).
    ``tx_fee``: charged to the signer for every extrinsic applied, failed ones included (as on chain).
    """
    path = Path(path)
    state = json.loads(path.read_text())
    state["balances"] = {ALICE: 1_000_000 * RAO} | {k: int(v * RAO) for k, v in (balances or {}).items()}
    state["burn_schedule"] = [[int(b), int(c * RAO)] for b, c in sorted(burn_schedule or [])]
    state["registrations"] = []
    state["scheduled_registrations"] = sorted(
        (o for o in others or [] if not o.get("front_run")), key=lambda o: o["block"]
    )
    state["front_runs"] = [o for o in others or [] if o.get("front_run")]
    state["hyper"].update(
        {
            "Burn": int(burn * RAO),
            "AdjustmentInterval": int(adjustment_interval),
            "TargetRegistrationsPerInterval": int(target_registrations),
            "MaxRegistrationsPerBlock": int(max_registrations_per_block),
            "MaxAllowedUids": int(max_uids),
            "NetworkRegistrationAllowed": registration_allowed,
            "ImmunityPeriod": 0,
        }
    )
    state["network_cost"] = int(network_cost * RAO)
    state["tx_fee"] = int(tx_fee * RAO)
    state["subnet_exists"] = not no_subnet
    state["subnet_owner"] = None
    _write(path, state)
    return path


def _write(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


class FileChain:
    """``bittensor.Substrate`` over a JSON file shared between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.token_symbols: dict[int, str] = {}
        #: inner extrinsics signed for a MEV-shielded carrier: (signer, nonce) -> (call, payload, signature, hash)
        self._signed_inner: dict[tuple[str, int], Any] = {}
        #: events of the extrinsic being applied (besides ExtrinsicSuccess)
        self._events: list[dict] = []

    # state -------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, write: bool) -> Iterator[dict]:
        with FileLock(self.lock_path):  # readers take it too: one exclusive lock is enough for a test double
            state = json.loads(self.path.read_text())
            self._settle(state)
            yield state
            if write:
                _write(self.path, state)

    def state(self) -> dict:
        with self._locked(False) as state:
            return state

    def update(self, fn: Any) -> None:
        """Change the chain from a test: ``fn(state)`` edits the dict in place."""
        with self._locked(True) as state:
            fn(state)

    @staticmethod
    def _head(state: dict) -> int:
        return int(state["start_block"] + (time.time() - state["genesis_time"]) / state["block_time"])

    # Substrate protocol: display ------------------------------------------------------------------

    def balance(self, rao: int, netuid: int = 0) -> Any:
        from bittensor import Balance

        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        if not self.path.exists():
            from bittensor import RpcConnectionError

            raise RpcConnectionError(f"no chain at {self.path}")

    async def close(self) -> None:
        return None

    # reads --------------------------------------------------------------------------------------

    async def block_hash(self, block: int | None = None) -> str:
        number = await self.block_number() if block is None else int(block)
        return f"0x{number:064x}"  # the number itself: the double needs no block store

    def _block_of(self, block_hash: str | None, state: dict) -> int:
        head = self._head(state)
        if block_hash is None:
            return head
        number = int(block_hash, 16)
        if number > head:
            from bittensor import ChainError

            raise ChainError(f"unknown block hash {block_hash}")
        return number

    async def block_number(self) -> int:
        return self._head(self.state())

    async def finalized_block_number(self) -> int:
        return self._head(self.state()) - 2

    async def block_time(self) -> float:
        return float(self.state()["block_time"])

    async def spec_version(self) -> int:
        return 400

    async def get_block(self, block_number: int | None = None, block_hash: str | None = None) -> dict:
        state = self.state()
        number = self._block_of(block_hash, state) if block_hash else (block_number or self._head(state))
        return {"header": {"number": number, "hash": await self.block_hash(number)}, "extrinsics": []}

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        state = self.state()
        params = list(params or [])
        hyper = state["hyper"]
        if "balances" in state:
            # a receipt's block (head + 1 when submitted) is readable at once
            block = min(int(block_hash, 16), self._head(state) + 1) if block_hash else self._head(state)
            found = self._operator_query(state, module, storage_function, params, block)
            if found is not _NOTHING:
                return found
        if module == "SubtensorModule":
            if storage_function == "Uids":
                return self._uid(state, params[1]) if params[0] == state["netuid"] else None
            if storage_function in hyper:
                return hyper[storage_function] if params and params[0] == state["netuid"] else None
            if storage_function == "LastUpdate":
                return [n["last_update"] for n in state["neurons"]]
            if storage_function == "ValidatorPermit":
                return [n["validator_permit"] for n in state["neurons"]]
            if storage_function == "SubnetEpochConsensus":
                return "Yuma"
            if storage_function in (
                "RevealPeriodEpochs",
                "LastEpochBlock",
                "PendingEpochAt",
                "SubnetEpochIndex",
                "BlocksSinceLastStep",
            ):
                return 1 if storage_function == "RevealPeriodEpochs" else 0
            return None
        if module == "Commitments" and storage_function == "CommitmentOf":
            return state["commitments"].get(params[1]) if params[0] == state["netuid"] else None
        if module == "System" and storage_function == "Account":
            return {"nonce": state["nonces"].get(params[0], 0), "data": {"free": 10**12}}
        return None

    async def map_has_entries(
        self, module: str, storage_function: str, params: list, block_hash: str | None = None
    ) -> bool:
        return bool(await self.query_map(module, storage_function, params, block_hash))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        state = self.state()
        params = list(params or [])
        if module == "Commitments" and storage_function == "CommitmentOf":
            if params and params[0] != state["netuid"]:
                return []
            return [(hotkey, record) for hotkey, record in state["commitments"].items()]
        if module == "SubtensorModule" and storage_function == "Uids":
            return [(n["hotkey"], uid) for uid, n in enumerate(state["neurons"])]
        return []

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: str | None = None
    ) -> list[Any]:
        return [await self.query(module, storage_function, p, block_hash) for p in param_sets]

    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            from bittensor import ChainError

            raise ChainError(f"the test chain does not implement {api}.{method}")
        state = self.state()
        if params[0] != state["netuid"] or not state.get("subnet_exists", True):
            return None
        block = self._block_of(block_hash, state)
        neurons = state["neurons"]
        return {
            "netuid": state["netuid"],
            "name": "bitagent",
            "symbol": "t",
            "block": block,
            "tempo": state["hyper"]["Tempo"],
            "last_step": block - block % 360,
            "blocks_since_last_step": block % 360,
            "owner_hotkey": neurons[0]["hotkey"] if neurons else "",
            "owner_coldkey": neurons[0]["coldkey"] if neurons else "",
            "network_registered_at": 1,
            "num_uids": len(neurons),
            "max_uids": 256,
            "hotkeys": [n["hotkey"] for n in neurons],
            "coldkeys": [n["coldkey"] for n in neurons],
            "axons": [n["axon"] or {"ip": 0, "port": 0, "ip_type": 4} for n in neurons],
            "active": [True] * len(neurons),
            "validator_permit": [n["validator_permit"] for n in neurons],
            "last_update": [n["last_update"] for n in neurons],
            "block_at_registration": [n["block_at_registration"] for n in neurons],
            "total_stake": [n["stake"] for n in neurons],
            "alpha_stake": [n["stake"] for n in neurons],
            "tao_stake": [0] * len(neurons),
        }

    async def constant(self, module: str, name: str) -> Any:
        return None

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain stores decoded values; there is no SCALE to decode")

    async def blocks(self, *, finalized: bool = False) -> AsyncIterator[dict]:
        last = await self.block_number()
        while True:
            await asyncio.sleep(float(self.state()["block_time"]) / 2)
            head = await self.block_number()
            for number in range(last + 1, head + 1):
                yield {"header": {"number": number, "parentHash": await self.block_hash(number - 1)}}
            last = max(last, head)

    async def events(self, block_hash: str | None = None) -> list[dict]:
        return []

    # calls and fees -------------------------------------------------------------------------------

    async def compose(self, call: Any) -> ComposedCall:
        module, function, params = call
        return ComposedCall(module, function, dict(params))

    async def estimate_fee(self, call: Any, keypair: Any) -> Any:
        from bittensor import Balance

        return Balance.from_rao(0)

    async def estimate_weight(self, call: Any, keypair: Any) -> dict:
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        return int(self.state()["nonces"].get(address, 0))

    # writes -------------------------------------------------------------------------------------------

    async def mev_next_key(self) -> bytes | None:
        return MEV_KEY if "balances" in self.state() else None

    async def sign_extrinsic(self, call: Any, keypair: Any, *, nonce: int, period: int) -> tuple[bytes, str]:
        payload = self._payload(call, keypair.ss58_address, nonce)
        signature = bytes(keypair.sign(payload))
        extrinsic_hash = "0x" + hashlib.sha256(payload + signature).hexdigest()
        self._signed_inner[(keypair.ss58_address, int(nonce))] = (call, payload, signature, extrinsic_hash)
        return payload + signature, extrinsic_hash

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> Any:
        from bittensor import ChainError, ExtrinsicResult

        number = int(block_hash, 16)
        for index, x in enumerate(self.state()["extrinsics"]):
            if x.get("hash") == extrinsic_hash and x["block"] == number:
                error = x["error"]
                return ExtrinsicResult(
                    success=error is None,
                    message=error or "Success",
                    block_hash=block_hash,
                    extrinsic_id=f"{number}-{index:04d}",
                    error=ChainError(error, error) if error else None,
                )
        return None

    async def prepare(self, call: Any, **kwargs: Any) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain does not support offline signing")

    async def submit_signature(self, unsigned: Any, signature: Any, **kwargs: Any) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain does not support offline signing")

    async def submit_signed(self, extrinsic: Any, keypair: Any, **kwargs: Any) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain does not accept pre-signed extrinsics")

    def multisig_account(self, signatories: list[str], threshold: int) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain does not support multisig")

    async def submit_multisig(self, call: Any, keypair: Any, multisig_account: Any, **kwargs: Any) -> Any:
        from bittensor import ChainError

        raise ChainError("the test chain does not support multisig")

    @staticmethod
    def _payload(call: Any, signer: str, nonce: int) -> bytes:
        data = call.data if hasattr(call, "data") else ComposedCall(*call).data
        return json.dumps({"call": data.decode(), "signer": signer, "nonce": nonce}, sort_keys=True).encode()

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> Any:
        from bittensor import ChainError, ExtrinsicResult
        from bittensor.sp_core import verify

        signer = keypair.ss58_address
        used_nonce = await self.account_next_index(signer) if nonce is None else int(nonce)
        payload = self._payload(call, signer, used_nonce)
        signature = bytes(keypair.sign(payload))
        if not verify(payload, signature, signer, getattr(keypair, "crypto_type", 1)):
            return ExtrinsicResult(success=False, message="BadProof", error=ChainError("BadProof"))
        if call.module == "MevShield" and call.function == "submit_encrypted":
            # the block author decrypts the carrier and runs the inner extrinsic (signed at nonce + 1)
            inner = self._signed_inner.pop((signer, used_nonce + 1), None)
            if inner is None:
                return ExtrinsicResult(success=False, message="BadEncryptedCall", error=ChainError("BadEncryptedCall"))
            inner_call, inner_payload, inner_signature, inner_hash = inner
            if not verify(inner_payload, inner_signature, signer, getattr(keypair, "crypto_type", 1)):
                return ExtrinsicResult(success=False, message="BadProof", error=ChainError("BadProof"))
            call = inner_call
            used_nonce += 1  # the carrier and the inner extrinsic each take a nonce
        else:
            inner_hash = None
        self._events = []
        with self._locked(True) as state:
            block = self._head(state) + 1
            error = self._apply(state, call, signer, block)
            if state.get("tx_fee"):
                state["balances"][signer] = max(0, int(state["balances"].get(signer, 0)) - state["tx_fee"])
            record = {
                "block": block,
                "signer": signer,
                "module": call.module,
                "function": call.function,
                "params": _hex(call.params),
                "success": error is None,
                "error": error,
                "nonce": used_nonce,
            }
            if inner_hash is not None:
                record["hash"] = inner_hash
            state["extrinsics"].append(record)
            state["nonces"][signer] = used_nonce + 1
            index = len(state["extrinsics"]) - 1
        block_hash = await self.block_hash(block)
        if error is not None:
            return ExtrinsicResult(
                success=False,
                message=error,
                block_hash=block_hash,
                extrinsic_id=f"{block}-{index:04d}",
                error=ChainError(error, error),
            )
        if not (wait_for_inclusion or wait_for_finalization):
            return ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return ExtrinsicResult(
            success=True,
            message="Success",
            block_hash=block_hash,
            extrinsic_id=f"{block}-{index:04d}",
            events=[
                *self._events,
                {"event": {"module_id": "System", "event_id": "ExtrinsicSuccess", "attributes": {}}},
            ],
        )

    # the runtime's checks, as far as the subnet needs them ----------------------------------------------

    @staticmethod
    def _uid(state: dict, hotkey: str) -> int | None:
        for uid, n in enumerate(state["neurons"]):
            if n["hotkey"] == hotkey:
                return uid
        return None

    def _apply(self, state: dict, call: ComposedCall, signer: str, block: int) -> str | None:
        if "balances" in state:
            error = self._apply_operator(state, call, signer, block)
            if error is not _NOTHING:
                return error
        params = call.params
        netuid = params.get("netuid")
        if netuid != state["netuid"]:
            return "SubnetNotExists"
        uid = self._uid(state, signer)
        if call.module == "Commitments" and call.function == "set_commitment":
            if uid is None:
                return "AccountNotAllowedCommit"
            fields = []
            for entry in params["info"]["fields"]:
                ((variant, value),) = entry.items()
                data = bytes(value)
                if not variant.startswith("Raw") or int(variant[3:]) != len(data) or len(data) > 128:
                    return "BadCommitmentField"
                fields.append({variant: "0x" + data.hex()})
            state["commitments"][signer] = {"block": block, "deposit": 0, "info": {"fields": fields}}
            return None
        if call.module != "SubtensorModule":
            return f"the test chain does not implement {call.module}.{call.function}"
        if uid is None:
            return "HotKeyNotRegisteredInSubNet"
        neuron = state["neurons"][uid]
        if call.function == "serve_axon":
            ip = int(params["ip"])
            ipaddress.ip_address(ip)
            neuron["axon"] = {
                "ip": ip,
                "port": int(params["port"]),
                "ip_type": int(params["ip_type"]),
                "protocol": int(params["protocol"]),
                "version": int(params["version"]),
            }
            return None
        if call.function in ("set_mechanism_weights", "commit_timelocked_mechanism_weights"):
            hyper = state["hyper"]
            if not neuron["validator_permit"]:
                return "NeuronNoValidatorPermit"
            limit = int(hyper["WeightsSetRateLimit"])
            if limit and neuron["last_update"] and block - neuron["last_update"] < limit:
                return "SettingWeightsTooFast"
            if call.function == "set_mechanism_weights":
                dests, weights = list(params["dests"]), list(params["weights"])
                if int(params["version_key"]) < int(hyper["WeightsVersionKey"]):
                    return "IncorrectWeightVersionKey"
                if len(dests) != len(weights) or len(set(dests)) != len(dests):
                    return "WeightVecNotEqualSize"
                if any(not 0 <= int(d) < len(state["neurons"]) for d in dests):
                    return "UidVecContainInvalidOne"
                if any(not 0 <= int(w) <= U16_MAX for w in weights):
                    return "InvalidWeights"
                if dests != [uid] and len(dests) < int(hyper["MinAllowedWeights"]):
                    return "WeightVecLengthIsLow"
                total = sum(weights)
                if dests != [uid] and total and max(weights) * U16_MAX > int(hyper["MaxWeightsLimit"]) * total:
                    return "MaxWeightExceeded"
            neuron["last_update"] = block
            return None
        return f"the test chain does not implement SubtensorModule.{call.function}"

    # operators: balances, registration windows, burned registration, subnet creation ----------------

    @staticmethod
    def _burn(state: dict, block: int) -> int:
        cost = int(state["hyper"]["Burn"])
        for start, rao in state["burn_schedule"]:
            if block >= start:
                cost = int(rao)
        return cost

    @staticmethod
    def _window_start(state: dict, block: int) -> int:
        interval = int(state["hyper"]["AdjustmentInterval"])
        if not interval:
            return int(state["start_block"])
        return block - (block - int(state["start_block"])) % interval

    def _registrations_in(self, state: dict, first: int, last: int) -> int:
        return sum(1 for r in state["registrations"] if first <= r["block"] <= last)

    def _settle(self, state: dict) -> None:
        """Apply the registrations by others whose block has come."""
        if "scheduled_registrations" not in state:
            return
        head = self._head(state)
        while state["scheduled_registrations"] and state["scheduled_registrations"][0]["block"] <= head:
            other = state["scheduled_registrations"].pop(0)
            self._register(state, other["hotkey"], other.get("coldkey", other["hotkey"]), int(other["block"]))

    def _register(self, state: dict, hotkey: str, coldkey: str, block: int, *, counted: bool = True) -> int:
        neuron = {
            "hotkey": hotkey,
            "coldkey": coldkey,
            "validator_permit": False,
            "stake": 0,
            "axon": None,
            "last_update": 0,
            "block_at_registration": block,
        }
        if counted:  # the owner's hotkey, registered with the subnet, takes no window slot
            state["registrations"].append({"block": block, "hotkey": hotkey})
        neurons = state["neurons"]
        if len(neurons) < int(state["hyper"]["MaxAllowedUids"]):
            neurons.append(neuron)
            return len(neurons) - 1
        # a full subnet: the lowest-staked neuron without a permit (oldest first) makes room
        candidates = [uid for uid, n in enumerate(neurons) if not n["validator_permit"]]
        uid = min(candidates, key=lambda u: (neurons[u]["stake"], neurons[u]["block_at_registration"], u))
        state["commitments"].pop(neurons[uid]["hotkey"], None)
        neurons[uid] = neuron
        return uid

    def _operator_query(self, state: dict, module: str, storage_function: str, params: list, block: int) -> Any:
        if module == "System" and storage_function == "Account":
            return {
                "nonce": state["nonces"].get(params[0], 0),
                "data": {"free": int(state["balances"].get(params[0], 0)), "reserved": 0, "frozen": 0},
            }
        if module != "SubtensorModule":
            return _NOTHING
        hyper = state["hyper"]
        if storage_function in ("NetworkLastLockCost", "SubnetLocked"):
            return int(state["network_cost"])
        if storage_function == "TotalNetworks":
            return 2 if state["subnet_exists"] else 1
        if not params or params[0] != state["netuid"]:
            return _NOTHING
        if not state["subnet_exists"]:
            return None
        if storage_function == "Burn":
            return self._burn(state, block)
        if storage_function == "LastAdjustmentBlock":
            return self._window_start(state, block)
        if storage_function == "RegistrationsThisInterval":
            return self._registrations_in(state, self._window_start(state, block), block)
        if storage_function == "RegistrationsThisBlock":
            return self._registrations_in(state, block, block)
        if storage_function == "SubnetworkN":
            return len(state["neurons"])
        if storage_function == "NetworksAdded":
            return True
        if storage_function == "SubnetOwner":
            return state["subnet_owner"]
        if storage_function in ("CollateralLockShare", "MinBurn"):
            return 0
        if storage_function == "MaxBurn":
            return 100_000 * RAO
        if storage_function in hyper:
            return hyper[storage_function]
        return _NOTHING

    def _debit(self, state: dict, account: str, rao: int) -> bool:
        if int(state["balances"].get(account, 0)) < rao:
            return False
        state["balances"][account] = int(state["balances"].get(account, 0)) - rao
        return True

    def _apply_operator(self, state: dict, call: ComposedCall, signer: str, block: int) -> Any:
        params = call.params
        if call.module == "Balances" and call.function in ("transfer_keep_alive", "transfer_allow_death"):
            dest = params["dest"]
            dest = dest.get("Id", dest) if isinstance(dest, dict) else dest
            if not self._debit(state, signer, int(params["value"])):
                return "InsufficientBalance"
            state["balances"][dest] = int(state["balances"].get(dest, 0)) + int(params["value"])
            return None
        if call.module != "SubtensorModule":
            return _NOTHING
        if call.function == "register_network":
            if state["subnet_exists"]:
                return "the test chain holds one subnet, which exists already"
            if not self._debit(state, signer, int(state["network_cost"])):
                return "NotEnoughBalanceToStake"
            state.update(subnet_exists=True, subnet_owner=signer, neurons=[])
            self._register(state, params["hotkey"], signer, block, counted=False)
            self._events.append(
                {
                    "event": {
                        "module_id": "SubtensorModule",
                        "event_id": "NetworkAdded",
                        "attributes": {"netuid": state["netuid"], "mechid": 0},
                    }
                }
            )
            return None
        if call.function not in ("burned_register", "start_call", "add_stake"):
            return _NOTHING
        if params.get("netuid") != state["netuid"] or not state["subnet_exists"]:
            return "SubnetNotExists"
        if call.function == "start_call":
            return None if signer == state["subnet_owner"] else "NotSubnetOwner"
        if call.function == "add_stake":
            uid = self._uid(state, params["hotkey"])
            if uid is None:
                return "HotKeyAccountNotExists"
            if not self._debit(state, signer, int(params["amount_staked"])):
                return "NotEnoughBalanceToStake"
            state["neurons"][uid]["stake"] += int(params["amount_staked"])
            state["neurons"][uid]["validator_permit"] = True
            return None
        if state["front_runs"]:  # someone else's registration lands first, in this very block
            other = state["front_runs"].pop(0)
            if self._uid(state, other["hotkey"]) is None:
                self._register(state, other["hotkey"], other.get("coldkey", other["hotkey"]), block)
        hyper = state["hyper"]
        if not hyper["NetworkRegistrationAllowed"]:
            return "SubNetRegistrationDisabled"
        if self._uid(state, params["hotkey"]) is not None:
            return "HotKeyAlreadyRegisteredInSubNet"
        if self._registrations_in(state, block, block) >= int(hyper["MaxRegistrationsPerBlock"]):
            return "TooManyRegistrationsThisBlock"
        window = self._registrations_in(state, self._window_start(state, block), block)
        if hyper["AdjustmentInterval"] and window >= 3 * int(hyper["TargetRegistrationsPerInterval"]):
            return "TooManyRegistrationsThisInterval"
        if not self._debit(state, signer, self._burn(state, block)):
            return "NotEnoughBalanceToStake"
        self._register(state, params["hotkey"], signer, block)
        return None

    # test helpers ----------------------------------------------------------------------------------------

    def extrinsics(self, function: str | None = None) -> list[dict]:
        return [x for x in self.state()["extrinsics"] if function is None or x["function"] == function]

    def weights_submitted(self) -> list[dict]:
        """The successful ``set_mechanism_weights`` extrinsics: ``{signer, dests, weights, version_key}``."""
        return [
            {
                "signer": x["signer"],
                "dests": x["params"]["dests"],
                "weights": x["params"]["weights"],
                "version_key": x["params"]["version_key"],
                "block": x["block"],
            }
            for x in self.extrinsics("set_mechanism_weights")
            if x["success"]
        ]
