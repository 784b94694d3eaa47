"""The upstream subnet's wire protocol: the ``GetHFModelName`` synapse of bittensor's Axon/Dendrite (≤ 10.5.0).

Upstream validators ask every miner ``POST http://<axon ip>:<port>/GetHFModelName`` through a bittensor
Dendrite; upstream miners answer from an Axon. bittensor 11 ships neither, so both ends are written here on
bittensor 11's keypairs, byte-compatible with bittensor 10.5.0 (tested against it in a side virtualenv,
``tests/test_legacy_interop.py``).

Request (what a 10.5.0 Dendrite sends)
    body     ``synapse.model_dump()`` as JSON: ``name``, ``timeout``, ``total_size``, ``header_size``,
             ``dendrite`` and ``axon`` (TerminalInfo dicts), ``computed_body_hash`` (``""``) and
             ``hf_model_name`` (``null``)
    headers  ``name``, ``timeout``, ``bt_header_axon_{ip,port,hotkey}``,
             ``bt_header_dendrite_{ip,version,nonce,uuid,hotkey,signature}``, ``header_size``,
             ``total_size``, ``computed_body_hash`` (sha3-256 over the hashed fields' hashes: this synapse
             hashes none, so it is always ``sha3_256(b"")``)
    signature sr25519 by the validator's hotkey over ``"{nonce}.{validator}.{miner}.{uuid}.{body_hash}"``
             (``0x``-hex), ``nonce`` = ``time.time_ns()``
Checks (what a 10.5.0 Axon does, in its order; stricter where noted)
    unknown route 404; headers that do not parse 400; blacklist (registration, validator permit) 403;
    signature, nonce 401: per ``hotkey:uuid`` a nonce must exceed the last one seen; a first nonce must be
    newer than ``now - 4 s - timeout``. Stricter: the timeout counted is capped at ``MAX_TIMEOUT_S``, nonces
    from the future (beyond ``ALLOWED_SKEW_S``) are refused, the body must hash to the header's hash and be
    a small, shallow JSON object, and the nonce table is bounded.
Answer (200)
    body     the request's synapse with ``hf_model_name`` filled in and ``axon.status_code`` 200; ours adds
             ``bitagent_salt`` (the salt of a hashed commitment; pydantic ignores it upstream)
    headers  ``bt_header_axon_*`` (status, nonce, uuid, hotkey) and the Axon's signature over
             ``"{axon nonce}.{validator}.{miner}.{axon uuid}"``. A 10.5.0 Axon does not send that signature on
             a 200 (only on refusals), so our client checks it when present and accepts its absence.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

SYNAPSE = "GetHFModelName"
ROUTE = f"/{SYNAPSE}"
#: ``Synapse.body_hash`` of a synapse without ``required_hash_fields``
EMPTY_BODY_HASH = hashlib.sha3_256(b"").hexdigest()
#: bittensor 10.5.0's ``version_as_int``; the Axon applies nonce freshness to versions >= 7.2.0
VERSION = 10_005_000
_V_7_2_0 = 7_002_000
ALLOWED_DELTA_S = 4.0
MAX_TIMEOUT_S = 60.0
ALLOWED_SKEW_S = 2.0
MAX_REQUEST_BYTES = 16384
MAX_NONCE_KEYS = 10_000
SALT_FIELD = "bitagent_salt"
_TERMINAL_FIELDS = (
    "status_code",
    "status_message",
    "process_time",
    "ip",
    "port",
    "version",
    "nonce",
    "uuid",
    "hotkey",
    "signature",
)


class LegacyRefused(Exception):
    """A request the Axon would refuse: ``status`` is the HTTP code, the message is safe to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class LegacyReply:
    hotkey: str
    model: str
    salt: str | None = None
    #: whether the answer carried the Axon's signature (verified) — upstream Axons send none on a 200
    signed: bool = False


def _verify(ss58: str, message: str, signature: str) -> bool:
    """sr25519 ``signature`` (``0x``-hex, as bittensor sends it) of ``message`` by ``ss58``."""
    from bittensor.wallets import Keypair

    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        return bool(Keypair(ss58_address=ss58).verify(message.encode(), raw))
    except Exception:  # noqa: BLE001 - a malformed key or signature is simply not a valid signature
        return False


def _sign(keypair: Any, message: str) -> str:
    return "0x" + bytes(keypair.sign(message.encode())).hex()


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _int(value: str | None, what: str) -> int:
    if value is None or len(value) > 32 or not value.strip().lstrip("-").isdigit() or not value.isascii():
        raise LegacyRefused(400, f"bad {what}")
    return int(value)


def _float(value: str | None, what: str) -> float:
    """A finite number from a header (``nan``/``inf`` refused: they broke the nonce arithmetic, HTTP 500)."""
    if not value:
        return 0.0
    try:
        number = float(value) if len(value) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise LegacyRefused(400, f"bad {what}")
    return number


# --- the miner's side ---------------------------------------------------------------------------------


class LegacyResponder:
    """Answers ``GetHFModelName`` for one miner hotkey as a bittensor 10.5.0 Axon would."""

    def __init__(
        self,
        keypair: Any,
        *,
        authorize: Callable[[str], None],
        model: Callable[[], str],
        salt: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.keypair = keypair
        self.hotkey: str = keypair.ss58_address
        self.authorize = authorize
        self.model = model
        self.salt = salt
        self.uuid = str(uuid.uuid1())
        self._nonces: OrderedDict[str, int] = OrderedDict()

    def answer(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        started = time.time()
        h = _lower(headers)
        try:
            caller, request = self._check(h, body)
        except LegacyRefused as exc:
            return (
                exc.status,
                self._axon_headers(h.get("bt_header_dendrite_hotkey", ""), exc.status, exc.message),
                json.dumps({"message": exc.message}).encode(),
            )
        request["hf_model_name"] = self.model()
        salt = self.salt()
        if salt is not None:
            request[SALT_FIELD] = salt
        axon = self._axon_terminal(caller, 200, "Success")
        axon["process_time"] = time.time() - started
        request["axon"] = axon
        out = self._axon_headers(caller, 200, "Success", terminal=axon)
        out["Content-Type"] = "application/json"
        return 200, out, json.dumps(request).encode()

    def _check(self, h: dict[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        if h.get("name", SYNAPSE) != SYNAPSE:
            raise LegacyRefused(400, "the synapse name does not match the route")
        caller = h.get("bt_header_dendrite_hotkey")
        if not caller or len(caller) > 64:
            raise LegacyRefused(400, "no dendrite hotkey")
        # blacklist first, as the Axon does (no signature work for strangers)
        from bitagent_plugins.subnet.protocol import Refused

        try:
            self.authorize(caller)
        except Refused as exc:
            raise LegacyRefused(403, str(exc)) from None
        nonce = _int(h.get("bt_header_dendrite_nonce"), "nonce")
        version = _int(h.get("bt_header_dendrite_version"), "version") if h.get("bt_header_dendrite_version") else None
        uid = h.get("bt_header_dendrite_uuid", "")
        signature = h.get("bt_header_dendrite_signature", "")
        body_hash = h.get("computed_body_hash", "")
        timeout = min(max(_float(h.get("timeout"), "timeout"), 0.0), MAX_TIMEOUT_S)
        if len(uid) > 64 or len(signature) > 200:
            raise LegacyRefused(400, "oversized dendrite headers")
        key = f"{caller}:{uid}"
        now = time.time_ns()
        last = self._nonces.get(key)
        if (
            version is not None
            and version >= _V_7_2_0
            and last is None
            and nonce <= now - int((ALLOWED_DELTA_S + timeout) * 1e9)
        ):
            raise LegacyRefused(401, "Nonce is too old")
        if nonce > now + int(ALLOWED_SKEW_S * 1e9):
            raise LegacyRefused(401, "Nonce is in the future")
        if last is not None and nonce <= last:
            raise LegacyRefused(401, "Nonce is too old, a newer one was last processed")
        if not signature:
            raise LegacyRefused(401, "Missing Signature")
        message = f"{nonce}.{caller}.{self.hotkey}.{uid}.{body_hash}"
        if not _verify(caller, message, signature):
            raise LegacyRefused(401, "Signature mismatch")
        # the Axon's body-integrity check: the body must rebuild the synapse and hash to the header's hash
        if body_hash != EMPTY_BODY_HASH:
            raise LegacyRefused(400, "body hash mismatch")
        request = _parse_body(body)
        self._nonces[key] = nonce
        self._nonces.move_to_end(key)
        while len(self._nonces) > MAX_NONCE_KEYS:
            self._nonces.popitem(last=False)
        return caller, request

    def _axon_terminal(self, caller: str, status: int, message: str) -> dict[str, Any]:
        nonce = time.time_ns()
        return {
            "status_code": status,
            "status_message": message,
            "process_time": None,
            "ip": None,
            "port": None,
            "version": VERSION,
            "nonce": nonce,
            "uuid": self.uuid,
            "hotkey": self.hotkey,
            "signature": _sign(self.keypair, f"{nonce}.{caller}.{self.hotkey}.{self.uuid}"),
        }

    def _axon_headers(
        self, caller: str, status: int, message: str, *, terminal: dict[str, Any] | None = None
    ) -> dict[str, str]:
        from bitagent_plugins.subnet.protocol import printable

        axon = terminal or self._axon_terminal(caller, status, message)
        # header values: printable latin-1 only (the caller's hotkey can appear in a refusal's message)
        out = {
            f"bt_header_axon_{k}": printable(str(v)).encode("latin-1", "replace").decode("latin-1")
            for k, v in axon.items()
            if v is not None
        }
        out["name"] = SYNAPSE
        out["computed_body_hash"] = EMPTY_BODY_HASH
        return out


def _parse_body(body: bytes) -> dict[str, Any]:
    from bitagent_plugins.subnet.protocol import json_loads_bounded

    try:
        data = json_loads_bounded(body)
    except ValueError as exc:
        raise LegacyRefused(400, f"the body is not a synapse: {exc}") from None
    if not isinstance(data, dict):
        raise LegacyRefused(400, "the body is not a synapse")
    clean: dict[str, Any] = {}
    for key in ("name", "timeout", "total_size", "header_size", "computed_body_hash"):
        value = data.get(key)
        if value is None or isinstance(value, str | int | float):
            clean[key] = value
    for key in ("dendrite", "axon"):
        value = data.get(key)
        if isinstance(value, dict):
            clean[key] = {
                k: value.get(k)
                for k in _TERMINAL_FIELDS
                if value.get(k) is None or isinstance(value.get(k), str | int | float)
            }
    clean["name"] = SYNAPSE
    clean["hf_model_name"] = None
    return clean


# --- the validator's side --------------------------------------------------------------------------------


def build_request(
    keypair: Any,
    *,
    miner_hotkey: str,
    ip: str,
    port: int,
    timeout_s: float,
    dendrite_uuid: str,
    dendrite_ip: str = "0.0.0.0",
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a ``GetHFModelName`` query, as ``Dendrite.call`` builds them."""
    nonce = time.time_ns()
    dendrite = {
        "status_code": None,
        "status_message": None,
        "process_time": None,
        "ip": dendrite_ip,
        "port": None,
        "version": VERSION,
        "nonce": nonce,
        "uuid": dendrite_uuid,
        "hotkey": keypair.ss58_address,
        "signature": None,
    }
    dendrite["signature"] = _sign(
        keypair, f"{nonce}.{keypair.ss58_address}.{miner_hotkey}.{dendrite_uuid}.{EMPTY_BODY_HASH}"
    )
    axon = {k: None for k in _TERMINAL_FIELDS} | {"ip": ip, "port": port, "hotkey": miner_hotkey}
    synapse: dict[str, Any] = {
        "name": SYNAPSE,
        "timeout": float(timeout_s),
        "total_size": 0,
        "header_size": 0,
        "dendrite": dendrite,
        "axon": axon,
        "computed_body_hash": "",
        "hf_model_name": None,
    }
    body = json.dumps(synapse).encode()
    headers = {"name": SYNAPSE, "timeout": str(float(timeout_s))}
    headers |= {f"bt_header_axon_{k}": str(v) for k, v in axon.items() if v is not None}
    headers |= {f"bt_header_dendrite_{k}": str(v) for k, v in dendrite.items() if v is not None}
    headers |= {
        "header_size": "0",
        "total_size": str(len(body)),
        "computed_body_hash": EMPTY_BODY_HASH,
        "Content-Type": "application/json",
    }
    return headers, body


def read_reply(
    status: int, headers: Mapping[str, str], payload: bytes, *, miner_hotkey: str, validator_hotkey: str
) -> LegacyReply:
    """The miner's model name from a ``GetHFModelName`` answer; raises ``ValueError`` with the reason."""
    from bitagent_plugins.subnet.protocol import json_loads_bounded

    if status != 200:
        message = ""
        try:
            data = json_loads_bounded(payload)
            message = str(data.get("message", ""))[:200] if isinstance(data, dict) else ""
        except ValueError:
            pass
        raise ValueError(f"HTTP {status}{': ' + message if message else ''}")
    data = json_loads_bounded(payload)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a synapse")
    h = _lower(headers)
    signed = False
    signature = h.get("bt_header_axon_signature")
    if signature:
        message = (
            f"{h.get('bt_header_axon_nonce', '')}.{validator_hotkey}.{h.get('bt_header_axon_hotkey', '')}."
            f"{h.get('bt_header_axon_uuid', '')}"
        )
        if h.get("bt_header_axon_hotkey") != miner_hotkey or not _verify(miner_hotkey, message, signature):
            raise ValueError("the answer carries an Axon signature that is not the miner's")
        signed = True
    model = data.get("hf_model_name")
    if not isinstance(model, str) or not model.strip():
        raise ValueError("no hf_model_name in the answer")
    salt = data.get(SALT_FIELD)
    return LegacyReply(
        hotkey=miner_hotkey, model=model.strip(), salt=salt if isinstance(salt, str) else None, signed=signed
    )
