"""Our ``GetHFModelName`` end on real sockets: every refusal a bittensor 10.5.0 Axon makes (and the stricter ones
we add) sent as real bytes to our miner's endpoint on 127.0.0.1. The interop with the real old bittensor is in
``test_legacy_interop.py``; these need no side virtualenv."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from subnet_helpers import make_wallet

from bitagent_plugins.subnet import legacy
from bitagent_plugins.subnet.protocol import MetagraphAuthorizer, SubmissionServer

MODEL = "acme/tool-caller@main"


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wallets")
    return {name: make_wallet(directory, name) for name in ("miner", "validator", "plain", "other")}


def _hk(wallet) -> str:
    return wallet.hotkey.ss58_address


@pytest.fixture
def miner(wallets):
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({_hk(wallets["validator"]): True, _hk(wallets["plain"]): False})
    with SubmissionServer(wallets["miner"], MODEL, netuid=20, authorize=authorizer, salt="ab" * 16) as server:
        yield server


def _send(miner, headers: dict, body: bytes) -> httpx.Response:
    host, port = miner.address
    return httpx.post(f"http://{host}:{port}{legacy.ROUTE}", content=body, headers=headers, timeout=10)


def _request(wallets, miner, who="validator", uuid="u-1", **kwargs):
    return legacy.build_request(
        wallets[who].hotkey,
        miner_hotkey=kwargs.pop("miner_hotkey", miner.hotkey),
        ip="127.0.0.1",
        port=miner.address[1],
        timeout_s=kwargs.pop("timeout_s", 12.0),
        dendrite_uuid=uuid,
        **kwargs,
    )


def test_a_permitted_validator_gets_the_name_the_salt_and_an_axon_signature(miner, wallets):
    headers, body = _request(wallets, miner)
    response = _send(miner, headers, body)
    assert response.status_code == 200
    reply = legacy.read_reply(
        200, response.headers, response.content, miner_hotkey=miner.hotkey, validator_hotkey=_hk(wallets["validator"])
    )
    assert (reply.model, reply.salt, reply.signed) == (MODEL, "ab" * 16, True)
    data = response.json()
    assert data["axon"]["status_code"] == 200 and data["dendrite"]["hotkey"] == _hk(wallets["validator"])


def test_an_answer_signed_by_another_hotkey_is_refused(miner, wallets):
    headers, body = _request(wallets, miner)
    response = _send(miner, headers, body)
    with pytest.raises(ValueError, match="not the miner's"):
        legacy.read_reply(
            200,
            response.headers,
            response.content,
            miner_hotkey=_hk(wallets["other"]),
            validator_hotkey=_hk(wallets["validator"]),
        )


def test_blacklist_refusals_come_first(miner, wallets):
    headers, body = _request(wallets, miner, who="plain")
    response = _send(miner, headers, body)
    assert response.status_code == 403 and "no validator permit" in response.json()["message"]
    headers, body = _request(wallets, miner, who="other")
    assert _send(miner, headers, body).status_code == 403


def test_replayed_stale_future_and_forged_requests_are_refused(miner, wallets):
    headers, body = _request(wallets, miner, uuid="replay")
    assert _send(miner, headers, body).status_code == 200
    again = _send(miner, headers, body)
    assert again.status_code == 401 and "newer one was last processed" in again.json()["message"]

    def with_nonce(nonce_ns: int, uuid: str) -> dict:
        h, _ = _request(wallets, miner, uuid=uuid)
        validator = wallets["validator"].hotkey
        h["bt_header_dendrite_nonce"] = str(nonce_ns)
        h["bt_header_dendrite_signature"] = legacy._sign(
            validator, f"{nonce_ns}.{validator.ss58_address}.{miner.hotkey}.{uuid}.{legacy.EMPTY_BODY_HASH}"
        )
        return h

    stale = _send(miner, with_nonce(time.time_ns() - 120 * 10**9, "stale"), body)
    assert stale.status_code == 401 and "too old" in stale.json()["message"]
    # a huge timeout header does not widen the freshness window past MAX_TIMEOUT_S
    old = with_nonce(time.time_ns() - 300 * 10**9, "old")
    old["timeout"] = "1e9"
    assert _send(miner, old, body).status_code == 401
    future = _send(miner, with_nonce(time.time_ns() + 120 * 10**9, "future"), body)
    assert future.status_code == 401 and "future" in future.json()["message"]
    forged, _ = _request(wallets, miner, uuid="forged")
    forged["bt_header_dendrite_uuid"] = "other-uuid"  # signed for another uuid
    assert _send(miner, forged, body).status_code == 401
    for_other, _ = _request(wallets, miner, uuid="for-other", miner_hotkey=_hk(wallets["other"]))
    assert _send(miner, for_other, body).status_code == 401  # signed for another miner
    unsigned, _ = _request(wallets, miner, uuid="unsigned")
    del unsigned["bt_header_dendrite_signature"]
    assert _send(miner, unsigned, body).status_code == 401


def test_bodies_that_are_not_this_synapse_are_refused(miner, wallets):
    headers, _ = _request(wallets, miner, uuid="hash")
    headers["computed_body_hash"] = "00" * 32  # signed over, but not the hash of this synapse's body
    validator = wallets["validator"].hotkey
    nonce = headers["bt_header_dendrite_nonce"]
    headers["bt_header_dendrite_signature"] = legacy._sign(
        validator, f"{nonce}.{validator.ss58_address}.{miner.hotkey}.hash.{'00' * 32}"
    )
    assert _send(miner, headers, b"{}").status_code == 400
    for n, body in enumerate((b"[" * 4000 + b"]" * 4000, b"not json", b"[1, 2]")):
        headers, _ = _request(wallets, miner, uuid=f"body-{n}")
        response = _send(miner, headers, body)
        assert response.status_code in (400, 413), body[:20]
    headers, body = _request(wallets, miner, uuid="name")
    headers["name"] = "SetHFModelName"
    assert _send(miner, headers, body).status_code == 400
    assert miner.served == 0


def test_the_nonce_table_is_bounded(wallets, monkeypatch):
    monkeypatch.setattr(legacy, "MAX_NONCE_KEYS", 5)
    responder = legacy.LegacyResponder(wallets["miner"].hotkey, authorize=lambda hk: None, model=lambda: MODEL)
    for n in range(12):
        headers, body = legacy.build_request(
            wallets["validator"].hotkey,
            miner_hotkey=responder.hotkey,
            ip="127.0.0.1",
            port=1,
            timeout_s=12,
            dendrite_uuid=f"u{n}",
        )
        status, _headers, payload = responder.answer(headers, body)
        assert status == 200 and json.loads(payload)["hf_model_name"] == MODEL
    assert len(responder._nonces) == 5
