"""The subnet's own small HTTP layer (bittensor 11 has no Axon/Dendrite/Synapse any more).

One question exists: "which model do you submit?". The validator asks it with a signed request; the miner
answers with a signed response. Both sides sign and verify with ``bittensor.http_auth`` (``btauth/1``:
hotkey, receiver, nanosecond nonce, sha256 of the body, sr25519 signature).

Request   ``POST /submission`` body ``{"query": "submission", "netuid": 20}``, signed by the validator's hotkey
          for the miner's hotkey (``X-Bittensor-Receiver``).
Response  ``200`` body ``{"model": "org/name@revision", "hotkey": <miner>, "netuid": 20[, "salt": <hex>]}``,
          signed by the miner's hotkey for the validator's hotkey with method ``RESPONSE`` and the same path,
          so a validator can tell the answer came from the hotkey it asked (not from whoever holds that IP).
          ``salt`` opens the miner's hashed on-chain commitment (:mod:`bitagent_plugins.subnet.commitment`).
Refusals  ``401`` unsigned, tampered, stale, replayed or wrongly addressed requests; ``403`` a hotkey that
          is not registered on the subnet (or, on netuid 20, holds no validator permit); ``400`` a body
          that is not the question; ``404``/``405`` anything else; ``411``/``413`` no or too big a body;
          ``408`` a request not read and answered within its deadline.

The same server answers the upstream subnet's ``POST /GetHFModelName`` synapse (:mod:`.legacy`).

Server    uvicorn (h11) on a socket we bind, in a daemon thread (:class:`ServerLimits`): at most
          ``max_connections`` open connections (a new one evicts the oldest that has not sent a request
          yet), a deadline from accept to a complete request head (slow-loris), headers capped by h11's
          ``max_incomplete_event_size``, a deadline for reading the body and answering, body caps per
          route, a listen backlog of 128, JSON bodies parsed only when shallow and small.
Client    ``httpx.AsyncClient``, 15 s per miner; answers are read raw and decompressed by us with the cap
          applied while streaming (a gzip bomb costs at most the cap).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from bitagent_plugins.subnet import legacy

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
#: JSON bodies nested deeper than this are refused before parsing
MAX_JSON_DEPTH = 32


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
    salt: str | None = None


def request_body(netuid: int) -> bytes:
    return json.dumps({"query": QUERY, "netuid": int(netuid)}, separators=(",", ":")).encode()


def _nonce_store() -> Any:
    from bittensor import http_auth

    return http_auth.InMemoryNonceStore(retention=max(60.0, 2 * (MAX_AGE_S + ALLOWED_SKEW_S)))


def hotkey_signer(wallet: Any) -> Any:
    """The hotkey keypair, read once (a ``Wallet`` re-reads its hotkey file on every ``.hotkey``)."""
    return wallet.hotkey if hasattr(wallet, "hotkey") else wallet


def json_depth_ok(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``data`` nests arrays/objects at most ``max_depth`` deep (strings skipped), without parsing."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def json_loads_bounded(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted bytes: ``ValueError`` for deep nesting instead of a ``RecursionError``."""
    if not json_depth_ok(data, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth}")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a log line: control and escape characters shown as ``\\xNN``, cut at ``limit``."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[: limit + 1])
    return out if len(text) <= limit else out[:limit] + "…"
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




@attrs.frozen
class ServerLimits:
    """What one client can hold on the miner's endpoint (see the module docstring)."""

    #: open connections; a new one beyond this evicts the oldest connection that has not sent a request head
    max_connections: int = 256
    #: seconds from accept (or from the last answer on a kept-alive connection) to a complete request head
    head_timeout_s: float = 5.0
    #: seconds to read a request's body and answer it
    request_timeout_s: float = 10.0
    #: seconds an idle kept-alive connection stays open
    keep_alive_s: float = 5.0
    #: bytes of request line + headers (h11's ``max_incomplete_event_size``)
    max_header_bytes: int = 16384
    backlog: int = 128


@attrs.define
class ServerStats:
    served: int = 0
    refused: int = 0
    evicted: int = 0
    head_timeouts: int = 0


def _guarded_protocol(limits: ServerLimits, stats: ServerStats) -> type:
    """uvicorn's h11 protocol with a connection cap and a request-head deadline (uvicorn has neither)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    live: OrderedDict[Any, None] = OrderedDict()     # every open connection, oldest first
    waiting: OrderedDict[Any, None] = OrderedDict()  # those without a request in flight, oldest first

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            live[self] = None
            while len(live) > limits.max_connections and waiting:
                oldest, _ = waiting.popitem(last=False)
                oldest._drop()
                stats.evicted += 1
            if len(live) > limits.max_connections:  # every connection has a request in flight
                stats.evicted += 1
                self._drop()
                return
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            waiting[self] = None
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(limits.head_timeout_s, self._head_expired)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self in waiting:
                stats.head_timeouts += 1
                self._drop()

        def _drop(self) -> None:
            live.pop(self, None)
            waiting.pop(self, None)
            self._stop_head_timer()
            self.transport.abort()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle and self.cycle is not None:  # a request head arrived
                waiting.pop(self, None)
                self._stop_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self in live:
                self._wait_for_head()

        def connection_lost(self, exc: Exception | None) -> None:
            live.pop(self, None)
            waiting.pop(self, None)
            self._stop_head_timer()
            super().connection_lost(exc)

    GuardedH11Protocol.live = live  # type: ignore[attr-defined]
    return GuardedH11Protocol


class _TooLarge(Exception):
    pass


class _App:
    """The ASGI application: two routes, bodies read with a cap, the whole request under a deadline."""

    def __init__(self, owner: SubmissionServer) -> None:
        self.owner = owner

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        owner = self.owner
        try:
            status, headers, payload = await asyncio.wait_for(self._respond(scope, receive),
                                                              owner.limits.request_timeout_s)
        except TimeoutError:
            status, headers, payload = 408, {}, _error("the request was not received in time")
        except Exception:  # noqa: BLE001 - one bad request must not kill the endpoint
            log.exception("the submission endpoint failed on a request")
            status, headers, payload = 500, {}, _error("internal error")
        owner._count(scope, status, payload)
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        out += [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()
                if str(k).lower() not in ("content-type", "content-length")]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    async def _respond(self, scope: dict, receive: Callable) -> tuple[int, Mapping[str, str], bytes]:
        owner = self.owner
        route = scope.get("path", "")
        if route not in (SUBMISSION_PATH, legacy.ROUTE):
            return 404, {}, _error("not found")
        if scope.get("method") != "POST":
            return 405, {"Allow": "POST"}, _error("only POST")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cap = MAX_REQUEST_BYTES if route == SUBMISSION_PATH else legacy.MAX_REQUEST_BYTES
        length = headers.get("content-length")
        if length is None:
            return 411, {}, _error("Content-Length required")
        if not length.isdigit() or int(length) > cap:
            return 413, {}, _error(f"at most {cap} bytes")
        try:
            body = await _read_body(receive, cap)
        except _TooLarge:
            return 413, {}, _error(f"at most {cap} bytes")
        if route == legacy.ROUTE:
            return owner.legacy.answer(headers, body)
        target = scope.get("raw_path", route.encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        return owner.answer("POST", target, headers, body)


async def _read_body(receive: Callable, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _TooLarge  # nobody to answer; any refusal will do
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class SubmissionServer:
    """Answers the signed submission query and the upstream ``GetHFModelName`` synapse for one miner hotkey.
    ``start()`` binds and serves in a thread."""

    def __init__(self, wallet: Any, submission: str, *, netuid: int, authorize: Callable[[str], None],
                 host: str = "127.0.0.1", port: int = 0, salt: str | None = None,
                 limits: ServerLimits = ServerLimits()) -> None:
        self.keypair = hotkey_signer(wallet)  # read once: answering must not touch the disk
        self.hotkey: str = self.keypair.ss58_address
        self.netuid = int(netuid)
        self.authorize = authorize
        self.host = host
        self.port = port
        self.limits = limits
        self.stats = ServerStats()
        self._submission = submission
        self._salt = salt
        self._nonces = _nonce_store()
        self.legacy = legacy.LegacyResponder(self.keypair, authorize=authorize, model=lambda: self._submission,
                                             salt=lambda: self._salt)
        self._server: Any = None
        self._protocol: Any = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    @property
    def connections(self) -> int:
        """Connections open now (at most ``limits.max_connections``)."""
        return len(self._protocol.live) if self._protocol is not None else 0

    @property
    def served(self) -> int:
        return self.stats.served

    @property
    def refused(self) -> int:
        return self.stats.refused

    @property
    def submission(self) -> str:
        return self._submission

    def set_submission(self, text: str, salt: str | None = None) -> None:
        self._submission = text
        self._salt = salt

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    def start(self) -> tuple[str, int]:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.limits.backlog)
        except OSError:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        limits = self.limits
        self._protocol = _guarded_protocol(limits, self.stats)
        config = uvicorn.Config(
            _App(self), http=self._protocol, ws="none", lifespan="off", loop="asyncio",
            interface="asgi3", access_log=False, log_config=None, log_level="warning", proxy_headers=False,
            server_header=False, date_header=False, backlog=limits.backlog, timeout_keep_alive=int(limits.keep_alive_s),
            h11_max_incomplete_event_size=limits.max_header_bytes, timeout_graceful_shutdown=2,
            # uvicorn answers 503 beyond this many connections or in-flight requests; our own cap (above) keeps
            # connections at max_connections, the margin covers evicted ones not yet closed
            limit_concurrency=limits.max_connections + 16)
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[sock]))
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                failure.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="bitagent-miner-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and not failure and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the submission endpoint did not start within 30 s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the submission endpoint did not start: {failure[0] if failure else 'exited'}")
        self._address = (str(host), int(port))
        log.info("submission endpoint listening on %s:%d", *self._address)
        return self._address

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._address = None

    def __enter__(self) -> SubmissionServer:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    def _count(self, scope: dict, status: int, payload: bytes) -> None:
        if status == 200:
            self.stats.served += 1
            return
        self.stats.refused += 1
        client = scope.get("client") or ("?", 0)
        path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
        log.info("refused %s %s from %s: %d %s", printable(str(scope.get("method", "")), 16), printable(path),
                 client[0], status, printable(payload.decode(errors="replace")))

    # one request ---------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """Status, extra headers and body for one signed-endpoint request (the server only does the I/O)."""
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
            query = json_loads_bounded(body)
        except ValueError:
            return 400, {}, _error("the body is not JSON")
        if not isinstance(query, dict) or query.get("query") != QUERY or query.get("netuid") != self.netuid:
            return 400, {}, _error(f"expected {request_body(self.netuid).decode()}")
        answer: dict[str, Any] = {"model": self._submission, "hotkey": self.hotkey, "netuid": self.netuid}
        if self._salt is not None:
            answer["salt"] = self._salt
        reply = json.dumps(answer, separators=(",", ":")).encode()
        signed = http_auth.sign(self.keypair, method=RESPONSE_METHOD, path=SUBMISSION_PATH, body=reply,
                                receiver_ss58=caller.hotkey_ss58)
        return 200, signed, reply


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


# --- the validator's side ------------------------------------------------------------------------------


def _checked_address(axon: str, *, allow_private: bool) -> tuple[str, int]:
    """``(shown host, port)`` for a published axon; refuses non-global addresses unless allowed.

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
    return (f"[{ip}]" if ip.version == 6 else str(ip)), int(port)


def endpoint_url(axon: str, *, allow_private: bool = False, path: str = SUBMISSION_PATH) -> str:
    """``http://ip:port/submission`` for a published axon (see :func:`_checked_address`)."""
    host, port = _checked_address(axon, allow_private=allow_private)
    return f"http://{host}:{port}{path}"


_ENCODINGS = {"", "identity", "gzip", "x-gzip", "deflate"}


async def read_capped(response: Any, cap: int = MAX_RESPONSE_BYTES) -> bytes:
    """The body of a streamed ``httpx`` response, decompressed by us while streaming: at most ``cap`` bytes of
    compressed input and of output are ever held (never decompress-then-check)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise QueryFailed(f"unsupported content encoding {printable(encoding, 32)!r}")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding not in ("", "identity") else None
    out = bytearray()
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > cap:
            raise QueryFailed(f"the answer is over {cap} bytes")
        if inflater is None:
            out += chunk
            continue
        try:
            out += inflater.decompress(chunk, cap + 1 - len(out))
        except zlib.error as exc:
            raise QueryFailed(f"the answer does not decompress: {exc}") from None
        if len(out) > cap or inflater.unconsumed_tail:
            raise QueryFailed(f"the answer is over {cap} bytes decompressed")
    return bytes(out)


async def query_submission(client: Any, wallet: Any, *, hotkey: str, axon: str, netuid: int,
                           allow_private: bool = False, nonce_store: Any = None) -> SubmissionReply:
    """Ask one miner's signed endpoint; raises :class:`QueryFailed` with the reason when there is no verified
    answer. ``wallet`` is a wallet or its hotkey keypair."""
    import httpx
    from bittensor import http_auth

    keypair = hotkey_signer(wallet)
    url = endpoint_url(axon, allow_private=allow_private)
    body = request_body(netuid)
    headers = http_auth.sign(keypair, method="POST", path=SUBMISSION_PATH, body=body, receiver_ss58=hotkey)
    headers["Content-Type"] = "application/json"
    headers["Accept-Encoding"] = "identity"
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            payload = await read_capped(response)
    except httpx.TimeoutException:
        raise QueryFailed("timed out") from None
    except httpx.HTTPError as exc:
        raise QueryFailed(f"{type(exc).__name__}: {printable(str(exc))}") from None
    if response.status_code != 200:
        raise QueryFailed(f"HTTP {response.status_code}: {printable(payload[:200].decode(errors='replace'))}")
    try:
        signer = http_auth.verify(dict(response.headers.items()), payload, method=RESPONSE_METHOD,
                                  path=SUBMISSION_PATH, self_hotkey_ss58=keypair.ss58_address,
                                  max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S,
                                  nonce_store=nonce_store if nonce_store is not None else _nonce_store())
    except http_auth.AuthError as exc:
        raise QueryFailed(f"the answer is not signed by the miner: {type(exc).__name__}: {exc}") from None
    if signer.hotkey_ss58 != hotkey:
        raise QueryFailed(f"the answer is signed by {signer.hotkey_ss58}, not by {hotkey}")
    try:
        data = json_loads_bounded(payload)
    except ValueError:
        raise QueryFailed("the answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), str) or data.get("netuid") != netuid:
        raise QueryFailed("the answer has no model for this netuid")
    salt = data.get("salt")
    return SubmissionReply(hotkey=hotkey, model=data["model"], salt=salt if isinstance(salt, str) else None)


async def query_legacy(client: Any, wallet: Any, *, hotkey: str, axon: str, timeout_s: float = QUERY_TIMEOUT_S,
                       allow_private: bool = False, dendrite_uuid: str | None = None) -> legacy.LegacyReply:
    """Ask one miner the upstream ``GetHFModelName`` synapse, as a bittensor 10.5.0 Dendrite would."""
    import uuid

    import httpx

    keypair = hotkey_signer(wallet)
    host, port = _checked_address(axon, allow_private=allow_private)
    headers, body = legacy.build_request(keypair, miner_hotkey=hotkey, ip=host.strip("[]"), port=port,
                                         timeout_s=timeout_s, dendrite_uuid=dendrite_uuid or str(uuid.uuid1()))
    headers["Accept-Encoding"] = "identity"
    try:
        async with client.stream("POST", f"http://{host}:{port}{legacy.ROUTE}", content=body,
                                 headers=headers) as response:
            payload = await read_capped(response)
    except httpx.TimeoutException:
        raise QueryFailed("timed out") from None
    except httpx.HTTPError as exc:
        raise QueryFailed(f"{type(exc).__name__}: {printable(str(exc))}") from None
    try:
        return legacy.read_reply(response.status_code, response.headers, payload, miner_hotkey=hotkey,
                                 validator_hotkey=keypair.ss58_address)
    except ValueError as exc:
        raise QueryFailed(f"GetHFModelName: {printable(str(exc))}") from None


def _client(timeout_s: float, concurrency: int) -> Any:
    import httpx

    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
                             limits=httpx.Limits(max_connections=concurrency))


async def query_submissions(wallet: Any, targets: Mapping[str, str], *, netuid: int,
                            timeout_s: float = QUERY_TIMEOUT_S, allow_private: bool = False,
                            concurrency: int = 32) -> dict[str, SubmissionReply | QueryFailed]:
    """Ask every ``{hotkey: "ip:port"}``'s signed endpoint at once (at most ``concurrency`` in flight),
    ``timeout_s`` each."""
    keypair = hotkey_signer(wallet)
    limiter = asyncio.Semaphore(max(1, concurrency))
    nonces = _nonce_store()
    results: dict[str, SubmissionReply | QueryFailed] = {}
    async with _client(timeout_s, concurrency) as client:

        async def one(hotkey: str, axon: str) -> None:
            async with limiter:
                try:
                    results[hotkey] = await asyncio.wait_for(
                        query_submission(client, keypair, hotkey=hotkey, axon=axon, netuid=netuid,
                                         allow_private=allow_private, nonce_store=nonces), timeout_s)
                except TimeoutError:
                    results[hotkey] = QueryFailed("timed out")
                except QueryFailed as exc:
                    results[hotkey] = exc

        await asyncio.gather(*(one(h, a) for h, a in targets.items()))
    return results


@attrs.frozen
class Collected:
    """One hotkey's submission as found: the raw text (parsed later by ``vetting.parse_submission`` like every
    other), the channel it came from, and the block it counts from."""

    text: str
    #: ``commitment`` (plain text on chain), ``endpoint`` (our signed endpoint), ``legacy`` (``GetHFModelName``),
    #: suffixed ``+commitment`` when the answer opened a hashed on-chain commitment
    channel: str
    block: int


async def collect_submissions(wallet: Any, mg: Any, *, netuid: int, me: str | None = None,
                              timeout_s: float = QUERY_TIMEOUT_S, allow_private: bool = False,
                              concurrency: int = 32) -> tuple[dict[str, Collected], dict[str, str]]:
    """Every neuron's submission: ``({hotkey: Collected}, {hotkey: why none})``.

    A plain on-chain commitment is taken as it is. A hashed commitment (:mod:`.commitment`) is opened by the
    name and salt from the miner's signed endpoint, else from its ``GetHFModelName`` answer; a name that does
    not match the hash is refused. Without a commitment, the signed endpoint is asked, then the upstream
    synapse (upstream miners publish nothing on chain).
    """
    from bitagent_plugins.subnet import commitment as commitments

    keypair = hotkey_signer(wallet)
    found: dict[str, Collected] = {}
    missing: dict[str, str] = {}
    ask: dict[str, tuple[str, str | None, int]] = {}
    for n in mg.neurons:
        if n.hotkey == me:
            continue
        text = (n.commitment or "").strip()
        digest = commitments.parse(text) if text else None
        block = int(n.commitment_block or mg.block) if text else int(mg.block)
        if text and digest is None:
            found[n.hotkey] = Collected(text, "commitment", block)
        elif n.axon:
            ask[n.hotkey] = (n.axon, digest, block)
        elif digest is not None:
            missing[n.hotkey] = "a hashed commitment but no endpoint to reveal it"
    if not ask:
        return found, missing
    limiter = asyncio.Semaphore(max(1, concurrency))
    nonces = _nonce_store()
    async with _client(timeout_s, concurrency) as client:

        async def ask_channel(channel: str, hotkey: str, axon: str) -> Any:
            if channel == "endpoint":
                return await asyncio.wait_for(query_submission(
                    client, keypair, hotkey=hotkey, axon=axon, netuid=netuid, allow_private=allow_private,
                    nonce_store=nonces), timeout_s)
            return await asyncio.wait_for(query_legacy(
                client, keypair, hotkey=hotkey, axon=axon, timeout_s=timeout_s, allow_private=allow_private),
                timeout_s)

        async def one(hotkey: str, axon: str, digest: str | None, block: int) -> None:
            # both channels at once: a silent miner costs one timeout, not one per channel
            reasons = []
            async with limiter:
                asked = {asyncio.ensure_future(ask_channel(c, hotkey, axon)): c for c in ("endpoint", "legacy")}
                pending = set(asked)
                try:
                    while pending:
                        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        for task in sorted(done, key=lambda t: asked[t]):  # endpoint first when both are in
                            channel = asked[task]
                            try:
                                reply: Any = task.result()
                            except TimeoutError:
                                reasons.append(f"{channel}: timed out")
                                continue
                            except QueryFailed as exc:
                                reasons.append(f"{channel}: {exc.reason}")
                                continue
                            if digest is None:
                                found[hotkey] = Collected(reply.model, channel, block)
                                return
                            if commitments.opens(digest, reply.model, reply.salt):
                                found[hotkey] = Collected(reply.model, f"{channel}+commitment", block)
                                return
                            reasons.append(f"{channel}: the revealed name does not match the on-chain commitment")
                finally:
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
            missing[hotkey] = "; ".join(sorted(reasons))

        await asyncio.gather(*(one(h, *args) for h, args in ask.items()))
    return found, missing
