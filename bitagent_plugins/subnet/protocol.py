"""The subnet's own small HTTP layer (bittensor 11 has no Axon/Dendrite/Synapse any more).

One question exists: "which model do you submit?". The validator asks it with a signed request; the miner
answers with a signed response. Both sides sign and verify with ``bittensor.http_auth`` (``btauth/1``:
hotkey, receiver, nanosecond nonce, sha256 of the body, sr25519 signature).

Request   ``POST /submission`` body ``{"query": "submission", "netuid": 20}``, signed by the validator's hotkey
          for the miner's hotkey (``X-Bittensor-Receiver``).
Response  ``200`` body ``{"model": "org/name@revision", "hotkey": <miner>, "netuid": 20}``, signed by the
          miner's hotkey for the validator's hotkey with method ``RESPONSE`` and the same path, so a
          validator can tell the answer came from the hotkey it asked (not from whoever holds that IP).
Refusals  ``401`` unsigned, tampered, stale, replayed or wrongly addressed requests; ``403`` a hotkey that
          is not registered on the subnet (or, on netuid 20, holds no validator permit); ``400`` a body
          that is not the question; ``404``/``405`` anything else; ``413`` bodies over 4 KiB.

The miner's server is the stdlib ``ThreadingHTTPServer`` in a daemon thread (no framework: one route,
tiny bodies); the validator's client is ``httpx.AsyncClient`` with a 15 s timeout per miner.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

log = logging.getLogger("bitagent.subnet.protocol")

SUBMISSION_PATH = "/submission"
QUERY = "submission"
RESPONSE_METHOD = "RESPONSE"
MAX_REQUEST_BYTES = 4096
MAX_RESPONSE_BYTES = 16384
QUERY_TIMEOUT_S = 15.0
#: btauth freshness: a signed message older than this (seconds) is refused
MAX_AGE_S = 10.0
#: btauth forward clock drift tolerated (seconds)
ALLOWED_SKEW_S = 2.0


class Refused(Exception):
    """The caller may not ask (HTTP 403); the message is safe to send back."""


class QueryFailed(Exception):
    """A miner's endpoint gave no usable answer; ``reason`` says why (for logs and the state)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class SubmissionReply:
    hotkey: str
    model: str


def request_body(netuid: int) -> bytes:
    return json.dumps({"query": QUERY, "netuid": int(netuid)}, separators=(",", ":")).encode()


def _nonce_store() -> Any:
    from bittensor import http_auth

    return http_auth.InMemoryNonceStore(retention=max(60.0, 2 * (MAX_AGE_S + ALLOWED_SKEW_S)))


# --- the miner's side -------------------------------------------------------------------------------


class MetagraphAuthorizer:
    """Who may ask: hotkeys registered on the subnet; with ``require_permit`` only those holding a
    validator permit. Fed by the miner's periodic metagraph sync (:meth:`update`)."""

    def __init__(self, netuid: int, *, require_permit: bool) -> None:
        self.netuid = netuid
        self.require_permit = require_permit
        self._permits: dict[str, bool] = {}
        self._lock = threading.Lock()

    def update(self, permits: Mapping[str, bool]) -> None:
        with self._lock:
            self._permits = dict(permits)

    def __call__(self, hotkey: str) -> None:
        with self._lock:
            permit = self._permits.get(hotkey)
        if permit is None:
            raise Refused(f"hotkey {hotkey} is not registered on netuid {self.netuid}")
        if self.require_permit and not permit:
            raise Refused(f"hotkey {hotkey} holds no validator permit on netuid {self.netuid}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class SubmissionServer:
    """Answers the signed submission query for one miner hotkey. ``start()`` binds and serves in a thread."""

    def __init__(self, wallet: Any, submission: str, *, netuid: int, authorize: Callable[[str], None],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.wallet = wallet
        self.hotkey: str = wallet.hotkey.ss58_address
        self.netuid = int(netuid)
        self.authorize = authorize
        self.host = host
        self.port = port
        self._submission = submission
        self._nonces = _nonce_store()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.served = 0
        self.refused = 0

    @property
    def submission(self) -> str:
        return self._submission

    def set_submission(self, text: str) -> None:
        self._submission = text

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        server_cls = _Server6 if ":" in self.host else _Server
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = server_cls((self.host, self.port), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="bitagent-miner-http", daemon=True)
        self._thread.start()
        log.info("submission endpoint listening on %s:%d", *self.address)
        return self.address

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SubmissionServer:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    # one request ---------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """Status, extra headers and body for one request (the handler only does the I/O)."""
        from bittensor import http_auth

        if path.split("?", 1)[0] != SUBMISSION_PATH:
            return 404, {}, _error("not found")
        if method != "POST":
            return 405, {"Allow": "POST"}, _error("only POST")
        try:
            caller = http_auth.verify(headers, body, method=method, path=path, self_hotkey_ss58=self.hotkey,
                                      max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S, nonce_store=self._nonces)
        except http_auth.AuthError as exc:
            return 401, {}, _error(f"{type(exc).__name__}: {exc}")
        try:
            self.authorize(caller.hotkey_ss58)
        except Refused as exc:
            return 403, {}, _error(str(exc))
        try:
            query = json.loads(body)
        except ValueError:
            return 400, {}, _error("the body is not JSON")
        if not isinstance(query, dict) or query.get("query") != QUERY or query.get("netuid") != self.netuid:
            return 400, {}, _error(f"expected {request_body(self.netuid).decode()}")
        reply = json.dumps({"model": self._submission, "hotkey": self.hotkey, "netuid": self.netuid},
                           separators=(",", ":")).encode()
        signed = http_auth.sign(self.wallet, method=RESPONSE_METHOD, path=SUBMISSION_PATH, body=reply,
                                receiver_ss58=caller.hotkey_ss58)
        return 200, signed, reply


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    owner: SubmissionServer
    timeout = 10  # seconds per socket read: a slow client cannot hold a thread for long
    server_version = "bitagent-miner"
    sys_version = ""

    def _handle(self) -> None:
        server = self.owner
        body = b""
        status: int
        headers: dict
        if self.command == "POST":
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(411, {}, _error("Content-Length required"))
                return
            if int(length) > MAX_REQUEST_BYTES:
                self._reply(413, {}, _error(f"at most {MAX_REQUEST_BYTES} bytes"))
                return
            body = self.rfile.read(int(length))
        try:
            status, headers, payload = server.answer(self.command, self.path, dict(self.headers.items()), body)
        except Exception:  # noqa: BLE001 - one bad request must not kill the endpoint
            log.exception("the submission endpoint failed on a request")
            status, headers, payload = 500, {}, _error("internal error")
        self._reply(status, headers, payload)

    def _reply(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        if status == 200:
            self.owner.served += 1
        else:
            self.owner.refused += 1
            log.info("refused %s %s from %s: %d %s", self.command, self.path, self.client_address[0], status,
                     payload.decode(errors="replace")[:200])
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s - %s", self.client_address[0], format % args)


# --- the validator's side ------------------------------------------------------------------------------


def endpoint_url(axon: str, *, allow_private: bool = False) -> str:
    """``http://ip:port/submission`` for a published axon; refuses non-global addresses unless allowed.

    A miner could publish 127.0.0.1 or a LAN address to make validators send requests into their own
    network; only ``allow_private`` (tests, private networks) lets that through.
    """
    host, sep, port = axon.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise QueryFailed(f"bad endpoint {axon!r}")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise QueryFailed(f"bad endpoint address {host!r}") from None
    if not ip.is_global and not allow_private:
        raise QueryFailed(f"endpoint {axon} is not a public address")
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{shown}:{int(port)}{SUBMISSION_PATH}"


async def query_submission(client: Any, wallet: Any, *, hotkey: str, axon: str, netuid: int,
                           allow_private: bool = False, nonce_store: Any = None) -> SubmissionReply:
    """Ask one miner; raises :class:`QueryFailed` with the reason when there is no verified answer."""
    import httpx
    from bittensor import http_auth

    url = endpoint_url(axon, allow_private=allow_private)
    body = request_body(netuid)
    headers = http_auth.sign(wallet, method="POST", path=SUBMISSION_PATH, body=body, receiver_ss58=hotkey)
    headers["Content-Type"] = "application/json"
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            chunks = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise QueryFailed(f"the answer is over {MAX_RESPONSE_BYTES} bytes")
                chunks.append(chunk)
            payload = b"".join(chunks)
    except httpx.TimeoutException:
        raise QueryFailed("timed out") from None
    except httpx.HTTPError as exc:
        raise QueryFailed(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise QueryFailed(f"HTTP {response.status_code}: {payload[:200].decode(errors='replace')}")
    try:
        signer = http_auth.verify(dict(response.headers.items()), payload, method=RESPONSE_METHOD,
                                  path=SUBMISSION_PATH, self_hotkey_ss58=wallet.hotkey.ss58_address,
                                  max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S,
                                  nonce_store=nonce_store if nonce_store is not None else _nonce_store())
    except http_auth.AuthError as exc:
        raise QueryFailed(f"the answer is not signed by the miner: {type(exc).__name__}: {exc}") from None
    if signer.hotkey_ss58 != hotkey:
        raise QueryFailed(f"the answer is signed by {signer.hotkey_ss58}, not by {hotkey}")
    try:
        data = json.loads(payload)
    except ValueError:
        raise QueryFailed("the answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), str) or data.get("netuid") != netuid:
        raise QueryFailed("the answer has no model for this netuid")
    return SubmissionReply(hotkey=hotkey, model=data["model"])


async def query_submissions(wallet: Any, targets: Mapping[str, str], *, netuid: int,
                            timeout_s: float = QUERY_TIMEOUT_S, allow_private: bool = False,
                            concurrency: int = 32) -> dict[str, SubmissionReply | QueryFailed]:
    """Ask every ``{hotkey: "ip:port"}`` at once (at most ``concurrency`` in flight), ``timeout_s`` each."""
    import httpx

    limiter = asyncio.Semaphore(max(1, concurrency))
    nonces = _nonce_store()
    results: dict[str, SubmissionReply | QueryFailed] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(hotkey: str, axon: str) -> None:
            async with limiter:
                try:
                    results[hotkey] = await asyncio.wait_for(
                        query_submission(client, wallet, hotkey=hotkey, axon=axon, netuid=netuid,
                                         allow_private=allow_private, nonce_store=nonces), timeout_s)
                except TimeoutError:
                    results[hotkey] = QueryFailed("timed out")
                except QueryFailed as exc:
                    results[hotkey] = exc

        await asyncio.gather(*(one(h, a) for h, a in targets.items()))
    return results
