"""The signed HTTP layer: a real miner endpoint on 127.0.0.1, real ``bittensor.http_auth`` signatures.

Every refusal the issue names is sent as real bytes over a socket: unsigned, tampered, replayed, stale,
wrongly addressed, unregistered, no validator permit (netuid 20). The validator's client refuses answers
not signed by the miner it asked, oversized answers and endpoints on private addresses.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from bittensor import http_auth
from subnet_helpers import make_wallet

from bitagent_plugins.subnet import protocol
from bitagent_plugins.subnet.protocol import (
    MetagraphAuthorizer,
    QueryFailed,
    SubmissionServer,
    endpoint_url,
    query_submission,
    query_submissions,
    request_body,
)

MODEL = "acme/tool-caller@0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wallets")
    return {name: make_wallet(directory, name) for name in ("miner", "validator", "plain", "stranger", "other")}


def _hk(wallet) -> str:
    return wallet.hotkey.ss58_address


@pytest.fixture
def miner(wallets):
    """A miner endpoint on netuid 20: the validator holds a permit, ``plain`` is registered without one."""
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({_hk(wallets["validator"]): True, _hk(wallets["plain"]): False, _hk(wallets["miner"]): False})
    server = SubmissionServer(wallets["miner"], MODEL, netuid=20, authorize=authorizer, host="127.0.0.1", port=0)
    with server:
        yield server


def _post(server, body: bytes, headers: dict, path: str = "/submission", method: str = "POST") -> httpx.Response:
    host, port = server.address
    return httpx.request(method, f"http://{host}:{port}{path}", content=body, headers=headers, timeout=10)


def _signed(wallet, receiver: str, body: bytes, **kwargs) -> dict:
    return http_auth.sign(wallet, method="POST", path="/submission", body=body, receiver_ss58=receiver, **kwargs)


def test_a_permitted_validator_gets_the_submission_signed_by_the_miner(miner, wallets):
    body = request_body(20)
    response = _post(miner, body, _signed(wallets["validator"], miner.hotkey, body))
    assert response.status_code == 200
    assert response.json() == {"model": MODEL, "hotkey": miner.hotkey, "netuid": 20}
    signer = http_auth.verify(
        dict(response.headers),
        response.content,
        method="RESPONSE",
        path="/submission",
        self_hotkey_ss58=_hk(wallets["validator"]),
    )
    assert signer.hotkey_ss58 == miner.hotkey


def test_the_validator_client_reads_and_verifies_the_answer(miner, wallets):
    host, port = miner.address

    async def ask():
        return await query_submissions(
            wallets["validator"], {miner.hotkey: f"{host}:{port}"}, netuid=20, allow_private=True
        )

    replies = asyncio.run(ask())
    assert replies[miner.hotkey] == protocol.SubmissionReply(hotkey=miner.hotkey, model=MODEL)


def test_unsigned_requests_are_refused(miner):
    response = _post(miner, request_body(20), {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert "MalformedAuth" in response.json()["error"]


def test_tampered_requests_are_refused(miner, wallets):
    headers = _signed(wallets["validator"], miner.hotkey, request_body(20))
    response = _post(miner, request_body(21), headers)  # a body other than the one signed
    assert response.status_code == 401 and "BadSignature" in response.json()["error"]
    forged = dict(_signed(wallets["stranger"], miner.hotkey, request_body(20)))
    forged[http_auth.HEADER_HOTKEY] = _hk(wallets["validator"])  # claims to be the validator
    response = _post(miner, request_body(20), forged)
    assert response.status_code == 401 and "BadSignature" in response.json()["error"]


def test_replayed_requests_are_refused(miner, wallets):
    body = request_body(20)
    headers = _signed(wallets["validator"], miner.hotkey, body)
    assert _post(miner, body, headers).status_code == 200
    again = _post(miner, body, headers)
    assert again.status_code == 401 and "ReplayedRequest" in again.json()["error"]


def test_stale_and_future_requests_are_refused(miner, wallets):
    body = request_body(20)
    old = _signed(wallets["validator"], miner.hotkey, body, nonce_ns=time.time_ns() - 60 * 10**9)
    response = _post(miner, body, old)
    assert response.status_code == 401 and "StaleRequest" in response.json()["error"]
    future = _signed(wallets["validator"], miner.hotkey, body, nonce_ns=time.time_ns() + 60 * 10**9)
    assert _post(miner, body, future).status_code == 401


def test_requests_signed_for_another_miner_are_refused(miner, wallets):
    body = request_body(20)
    response = _post(miner, body, _signed(wallets["validator"], _hk(wallets["other"]), body))
    assert response.status_code == 401 and "WrongReceiver" in response.json()["error"]
    response = _post(miner, body, http_auth.sign(wallets["validator"], method="POST", path="/submission", body=body))
    assert response.status_code == 401 and "WrongReceiver" in response.json()["error"]


def test_unregistered_hotkeys_are_refused(miner, wallets):
    body = request_body(20)
    response = _post(miner, body, _signed(wallets["stranger"], miner.hotkey, body))
    assert response.status_code == 403 and "not registered" in response.json()["error"]


def test_on_netuid_20_a_validator_permit_is_required(miner, wallets):
    body = request_body(20)
    response = _post(miner, body, _signed(wallets["plain"], miner.hotkey, body))
    assert response.status_code == 403 and "no validator permit" in response.json()["error"]


def test_on_other_netuids_registration_is_enough(wallets):
    authorizer = MetagraphAuthorizer(7, require_permit=False)
    authorizer.update({_hk(wallets["plain"]): False})
    with SubmissionServer(wallets["miner"], MODEL, netuid=7, authorize=authorizer) as server:
        body = request_body(7)
        response = _post(server, body, _signed(wallets["plain"], server.hotkey, body))
        assert response.status_code == 200 and response.json()["model"] == MODEL
        body = request_body(20)  # the question for another subnet
        response = _post(server, body, _signed(wallets["plain"], server.hotkey, body))
        assert response.status_code == 400


def test_other_routes_methods_and_sizes_are_refused(miner, wallets):
    body = request_body(20)
    assert _post(miner, body, _signed(wallets["validator"], miner.hotkey, body), path="/other").status_code == 404
    assert _post(miner, b"", {}, method="GET").status_code == 405
    big = b"x" * (protocol.MAX_REQUEST_BYTES + 1)
    assert _post(miner, big, _signed(wallets["validator"], miner.hotkey, big)).status_code == 413
    junk = b"not json"
    response = _post(miner, junk, _signed(wallets["validator"], miner.hotkey, junk))
    assert response.status_code == 400
    host, port = miner.address
    with socket.create_connection((host, port), timeout=10) as sock:  # no Content-Length
        sock.sendall(b"POST /submission HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert b" 411 " in sock.recv(64)
    assert miner.served == 0 and miner.refused >= 5


def test_an_answer_signed_by_someone_else_is_refused(wallets):
    """An impostor at the miner's address (its own wallet) cannot answer for the miner's hotkey."""
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({_hk(wallets["validator"]): True})
    with SubmissionServer(wallets["stranger"], "evil/model", netuid=20, authorize=authorizer) as impostor:
        # the impostor would refuse a request addressed to the real miner; make it accept by signing for it
        host, port = impostor.address

        async def ask():
            async with httpx.AsyncClient(timeout=10) as client:
                return await query_submission(
                    client,
                    wallets["validator"],
                    hotkey=impostor.hotkey,
                    axon=f"{host}:{port}",
                    netuid=20,
                    allow_private=True,
                )

        reply = asyncio.run(ask())  # asked for the impostor's own hotkey: fine
        assert reply.model == "evil/model"

        async def ask_as_miner():
            # the validator believes this address is the miner's; the request is signed for the miner
            async with httpx.AsyncClient(timeout=10) as client:
                return await query_submission(
                    client,
                    wallets["validator"],
                    hotkey=_hk(wallets["miner"]),
                    axon=f"{host}:{port}",
                    netuid=20,
                    allow_private=True,
                )

        with pytest.raises(QueryFailed, match="HTTP 401"):
            asyncio.run(ask_as_miner())


def test_a_forged_answer_is_refused(wallets):
    """A server that answers without the miner's key (signs as itself) is not believed."""
    stranger = wallets["stranger"]
    validator_hk = _hk(wallets["validator"])

    class Forger(SubmissionServer):
        def answer(self, method, path, headers, body):
            reply = json.dumps({"model": "evil/model", "hotkey": _hk(wallets["miner"]), "netuid": 20}).encode()
            signed = http_auth.sign(
                stranger, method="RESPONSE", path="/submission", body=reply, receiver_ss58=validator_hk
            )
            return 200, signed, reply

    with Forger(stranger, "x/y", netuid=20, authorize=lambda hk: None) as forger:
        host, port = forger.address
        replies = asyncio.run(
            query_submissions(
                wallets["validator"], {_hk(wallets["miner"]): f"{host}:{port}"}, netuid=20, allow_private=True
            )
        )
    failure = replies[_hk(wallets["miner"])]
    assert isinstance(failure, QueryFailed) and "signed by" in failure.reason


def test_a_silent_endpoint_times_out(wallets):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []

    def accept():
        try:
            conn, _ = listener.accept()
            accepted.append(conn)  # holds the connection open, never answers
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        replies = asyncio.run(
            query_submissions(
                wallets["validator"], {"5Fake": f"127.0.0.1:{port}"}, netuid=20, timeout_s=0.5, allow_private=True
            )
        )
        assert isinstance(replies["5Fake"], QueryFailed) and replies["5Fake"].reason == "timed out"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_oversized_answers_are_refused(wallets):
    class Flood(SubmissionServer):
        def answer(self, method, path, headers, body):
            return 200, {}, b"x" * (protocol.MAX_RESPONSE_BYTES + 10)

    with Flood(wallets["miner"], "x/y", netuid=20, authorize=lambda hk: None) as flood:
        host, port = flood.address
        replies = asyncio.run(
            query_submissions(wallets["validator"], {flood.hotkey: f"{host}:{port}"}, netuid=20, allow_private=True)
        )
    assert "over" in replies[flood.hotkey].reason


def test_endpoints_on_private_addresses_are_not_contacted_by_default():
    for axon in ("127.0.0.1:8091", "10.0.0.2:8091", "192.168.1.4:80", "[::1]:8091", "169.254.169.254:80"):
        with pytest.raises(QueryFailed, match="not a public address"):
            endpoint_url(axon)
    assert endpoint_url("127.0.0.1:8091", allow_private=True) == "http://127.0.0.1:8091/submission"
    assert endpoint_url("8.8.8.8:8091") == "http://8.8.8.8:8091/submission"
    assert endpoint_url("[2001:4860::1]:80") == "http://[2001:4860::1]:80/submission"
    for bad in ("nohost", "1.2.3.4:0", "1.2.3.4:99999", "example.com:80", "1.2.3.4:x"):
        with pytest.raises(QueryFailed):
            endpoint_url(bad)


@pytest.mark.slow
def test_a_miner_process_commits_once_serves_its_endpoint_and_answers_signed_queries(tmp_path, wallets):
    """``bitagent mine`` as a real process on the chain double: the commitment and the endpoint are published
    once (a restart finds them on chain and publishes nothing), and it answers a permitted validator only."""
    import socket as socket_module

    from chain_double import FileChain, new_chain
    from subnet_helpers import start_miner, stop, wait_for_file

    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=20,
        neurons=[
            {"hotkey": _hk(wallets["validator"]), "validator_permit": True},
            {"hotkey": _hk(wallets["miner"])},
            {"hotkey": _hk(wallets["plain"])},
        ],
    )
    wallet_dir = Path(wallets["miner"].path)
    with socket_module.socket() as probe:  # a free port, so the restart publishes the same address
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for attempt in range(2):
        proc, ready = start_miner(
            tmp_path,
            chain=chain_file,
            wallet_dir=wallet_dir,
            name="miner",
            model=MODEL,
            netuid=20,
            log_name=f"miner-{attempt}",
            extra=["--axon.port", str(port)],
        )
        try:
            assert wait_for_file(ready, proc) == f"127.0.0.1:{port}"
            ready.unlink()
            replies = asyncio.run(
                query_submissions(
                    wallets["validator"], {_hk(wallets["miner"]): f"127.0.0.1:{port}"}, netuid=20, allow_private=True
                )
            )
            assert replies[_hk(wallets["miner"])].model == MODEL
            refused = asyncio.run(
                query_submissions(
                    wallets["plain"], {_hk(wallets["miner"]): f"127.0.0.1:{port}"}, netuid=20, allow_private=True
                )
            )
            assert "403" in refused[_hk(wallets["miner"])].reason
            # the chain holds a salted hash, not the name; the validator opens it over the signed endpoint
            found, missing = asyncio.run(_collect(chain_file, wallets["validator"]))
            mg_commitment = (
                asyncio.run(_metagraph(chain_file, wallets["validator"])).by_hotkey(_hk(wallets["miner"])).commitment
            )
            assert mg_commitment.startswith("bitagent-sha256:") and "acme" not in mg_commitment
            assert found[_hk(wallets["miner"])].text == MODEL and not missing
            assert found[_hk(wallets["miner"])].channel == "endpoint+commitment"
        finally:
            stop(proc)
        assert proc.returncode == 0
    chain = FileChain(chain_file)
    assert [x["signer"] for x in chain.extrinsics("set_commitment")] == [_hk(wallets["miner"])]
    assert len(chain.extrinsics("serve_axon")) == 1
    assert chain.state()["neurons"][1]["axon"]["port"] == port


async def _metagraph(chain_file, wallet):
    from chain_double import FileChain

    from bitagent_plugins.subnet.chain import Chain

    async with Chain("local", 20, wallet=wallet, substrate=FileChain(chain_file)) as chain:
        return await chain.metagraph()


async def _collect(chain_file, wallet):
    mg = await _metagraph(chain_file, wallet)
    return await protocol.collect_submissions(wallet, mg, netuid=20, me=_hk(wallet), allow_private=True, timeout_s=10)


@pytest.mark.slow
def test_mine_refuses_a_bad_name_and_an_unregistered_hotkey(tmp_path, wallets):
    from chain_double import new_chain
    from subnet_helpers import start_miner

    chain_file = new_chain(tmp_path / "chain.json", netuid=20, neurons=[{"hotkey": _hk(wallets["validator"])}])
    wallet_dir = Path(wallets["miner"].path)
    proc, _ = start_miner(
        tmp_path,
        chain=chain_file,
        wallet_dir=wallet_dir,
        name="miner",
        model="../../etc/passwd",
        netuid=20,
        log_name="bad-name",
    )
    assert proc.wait(timeout=60) == 2
    assert "more than one '/'" in (tmp_path / "bad-name.log").read_text()
    proc, _ = start_miner(
        tmp_path, chain=chain_file, wallet_dir=wallet_dir, name="miner", model=MODEL, netuid=20, log_name="unregistered"
    )
    assert proc.wait(timeout=60) == 1
    assert "is not registered on netuid 20" in (tmp_path / "unregistered.log").read_text()


def test_collection_takes_plain_commitments_and_opens_hashed_ones_only_with_the_right_name(wallets):
    from bitagent_plugins.subnet import commitment
    from bitagent_plugins.subnet.chain import MetagraphView, Neuron

    salt = commitment.new_salt()
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({_hk(wallets["validator"]): True})
    assert commitment.parse("acme/x@main") is None and commitment.parse("bitagent-sha256:zz") == ""
    assert not commitment.opens(commitment.parse(commitment.make(MODEL, salt)), MODEL, "short")

    def neuron(uid, wallet, axon, text, block=None):
        return Neuron(
            uid=uid,
            hotkey=_hk(wallet),
            coldkey="5C",
            validator_permit=False,
            stake=0.0,
            axon=axon,
            commitment=text,
            commitment_block=block,
        )

    with (
        SubmissionServer(wallets["miner"], MODEL, netuid=20, authorize=authorizer, salt=salt) as miner,
        SubmissionServer(wallets["stranger"], "acme/other@main", netuid=20, authorize=authorizer, salt=salt) as liar,
    ):
        axon = "{}:{}".format(*miner.address)
        mg = MetagraphView(
            netuid=20,
            block=100,
            neurons=(
                neuron(0, wallets["validator"], None, None),
                neuron(1, wallets["miner"], axon, commitment.make(MODEL, salt), 40),  # opened by the endpoint
                neuron(2, wallets["plain"], None, "acme/plain@main", 30),  # plain text: as it is
                neuron(
                    3, wallets["stranger"], "{}:{}".format(*liar.address), commitment.make(MODEL, salt), 50
                ),  # reveals
                neuron(4, wallets["other"], None, commitment.make(MODEL, salt), 60),  # nobody to reveal it
            ),
        )
        found, missing = asyncio.run(
            protocol.collect_submissions(
                wallets["validator"], mg, netuid=20, me=_hk(wallets["validator"]), allow_private=True, timeout_s=10
            )
        )
    assert found == {
        _hk(wallets["miner"]): protocol.Collected(MODEL, "endpoint+commitment", 40),
        _hk(wallets["plain"]): protocol.Collected("acme/plain@main", "commitment", 30),
    }
    assert "no endpoint to reveal it" in missing[_hk(wallets["other"])]
    # a name other than the committed one is refused on both channels
    assert missing[_hk(wallets["stranger"])] == (
        "endpoint: the revealed name does not match the on-chain "
        "commitment; legacy: the revealed name does not match the "
        "on-chain commitment"
    )
