"""Overload of the miner's endpoint is answered, never a silent close (issue 23, item 3).

A burst of 1,000 valid requests on a busy server (benchmarks/miner_probe.py --burst 1000) found three ways a
valid request was closed without an answer: a connection evicted as "slow" while its bytes sat unread in the
busy server's socket; one evicted while its client (busy too) had not sent its body yet; one that waited out
its place unread and was dropped. Real sockets on 127.0.0.1, the real server.
"""

from __future__ import annotations

import socket
import time

import pytest
from bittensor import http_auth
from subnet_helpers import make_wallet

from bitagent_plugins.subnet.protocol import (
    MetagraphAuthorizer,
    ServerLimits,
    SubmissionServer,
    _unread_bytes,
    request_body,
)

MODEL = "acme/tool-caller@main"


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wallets")
    return {name: make_wallet(directory, name) for name in ("miner", "validator")}


def _server(wallets, limits: ServerLimits) -> SubmissionServer:
    authorizer = MetagraphAuthorizer(20, require_permit=True)
    authorizer.update({wallets["validator"].hotkey.ss58_address: True})
    return SubmissionServer(wallets["miner"], MODEL, netuid=20, authorize=authorizer, limits=limits)


def _signed_request(wallets, server: SubmissionServer) -> bytes:
    body = request_body(20)
    headers = http_auth.sign(
        wallets["validator"], method="POST", path="/submission", body=body, receiver_ss58=server.hotkey
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST /submission HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed (a reset after an answer keeps the answer)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


class _Transport:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock

    def get_extra_info(self, name: str):
        return self.sock if name == "socket" else None


def test_bytes_waiting_unread_in_a_socket_are_counted():
    left, right = socket.socketpair()
    try:
        assert _unread_bytes(_Transport(right)) == 0
        left.sendall(b"x" * 100)
        deadline = time.monotonic() + 5
        while _unread_bytes(_Transport(right)) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _unread_bytes(_Transport(right)) == 100
        right.recv(100)
        assert _unread_bytes(_Transport(right)) == 0
        assert _unread_bytes(_Transport(None)) == 0  # no socket: nothing can be told
    finally:
        left.close()
        right.close()


def test_a_connection_evicted_before_its_answer_gets_a_503_with_retry_after(wallets):
    # one slot, no overflow: a newcomer evicts the connection whose body has not come for 0.1 s
    limits = ServerLimits(
        max_connections=1, max_per_source=1, max_overflow=0, max_waiting=4, evict_body_after_s=0.1,
        head_timeout_s=30, body_timeout_s=30, request_timeout_s=30,
    )  # fmt: skip
    with _server(wallets, limits) as server:
        head = _signed_request(wallets, server).split(b"\r\n\r\n", 1)[0]
        slow = socket.create_connection(server.address, timeout=10)
        newcomer = None
        try:
            slow.sendall(head + b"\r\n\r\n")  # the head; its body is late (a busy client)
            time.sleep(0.5)
            newcomer = socket.create_connection(server.address, timeout=10)
            newcomer.sendall(_signed_request(wallets, server))
            evicted = _answer(slow)
            served = _answer(newcomer)
        finally:
            slow.close()
            if newcomer is not None:
                newcomer.close()
    assert evicted.startswith(b"HTTP/1.1 503 "), evicted[:300]
    assert b"\r\nretry-after: 1\r\n" in evicted.lower()
    assert served.startswith(b"HTTP/1.1 200 "), served[:300]
    assert server.stats.evicted == 1


def test_a_request_that_waited_out_its_place_is_answered_503_not_dropped(wallets):
    # the slot and the overflow place are held by silent connections that never become evictable here
    limits = ServerLimits(
        max_connections=1, max_per_source=1, max_overflow=1, max_waiting=2, overflow_wait_s=0.5,
        evict_silent_after_s=60, head_timeout_s=60,
    )  # fmt: skip
    with _server(wallets, limits) as server:
        holders = [socket.create_connection(server.address, timeout=10) for _ in range(2)]
        try:
            deadline = time.monotonic() + 10
            while len(server._protocol.live) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            waiting = socket.create_connection(server.address, timeout=10)
            waiting.sendall(_signed_request(wallets, server))  # sent at once: it waits unread in the socket
            answer = _answer(waiting)
            waiting.close()
        finally:
            for sock in holders:
                sock.close()
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:300]
    assert b"\r\nretry-after: 1\r\n" in answer.lower()
    assert server.stats.overloaded == 1


def test_an_evicted_client_that_sends_its_request_afterwards_still_reads_the_503(wallets):
    # a silent connection is evictable after 0.2 s; its (busy) client sends its request only after the eviction
    limits = ServerLimits(
        max_connections=1, max_per_source=1, max_overflow=0, max_waiting=4, evict_silent_after_s=0.2,
        head_timeout_s=30,
    )  # fmt: skip
    with _server(wallets, limits) as server:
        late = socket.create_connection(server.address, timeout=10)
        newcomer = None
        try:
            time.sleep(0.5)
            newcomer = socket.create_connection(server.address, timeout=10)
            newcomer.sendall(_signed_request(wallets, server))
            served = _answer(newcomer)
            time.sleep(0.2)  # the 503 is on its way to the late client, which sends its request now
            late.sendall(_signed_request(wallets, server))
            time.sleep(0.2)
            refused = _answer(late)
        finally:
            late.close()
            if newcomer is not None:
                newcomer.close()
    assert served.startswith(b"HTTP/1.1 200 "), served[:300]
    assert refused.startswith(b"HTTP/1.1 503 "), refused[:300]
    assert server.stats.evicted == 1
