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
          ``408`` a body not received within its deadline (or a request not answered within its own);
          ``503`` with ``Retry-After`` when every connection slot holds a request being answered.
          Refusals are logged aggregated: one line per reason per ``log_window_s`` with counts and sources
          (:class:`RefusalLog`); a client that hangs up is counted as a disconnect.

The same server answers the upstream subnet's ``POST /GetHFModelName`` synapse (:mod:`.legacy`).

Server    uvicorn (h11) on a socket we bind, in a daemon thread (:class:`ServerLimits`): at most
          ``max_connections`` open connections and ``max_per_source`` per client address (a newcomer beyond
          either evicts the oldest connection still sending its body, else one with a partial head, one idle
          after an answer, one silent for 2 s; when none can go, the newcomer waits in an overflow pool and
          its request gets a slot within ``overflow_wait_s`` or a ``503``; when the overflow is full of
          connections too young to evict, it waits unread for a place, then its request is read and answered
          ``503``; an evicted connection not answered yet gets a ``503`` with Retry-After, and one whose bytes
          wait unread in its socket is never evicted: in a busy server it is the server that is slow), a
          deadline from accept to a complete request head (slow-loris), a short deadline for the body after the
          head (slow uploads), headers capped by h11's ``max_incomplete_event_size``, a deadline for answering,
          body caps per route, a listen backlog of 1,024, JSON bodies parsed only when shallow, small and finite.
Client    ``httpx.AsyncClient``, 15 s per miner; answers are read raw and decompressed by us with the cap
          applied while streaming (a gzip bomb costs at most the cap).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import math
import re
import socket
import struct
import termios
import threading
import time
import zlib
from collections import Counter, OrderedDict
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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range: {printable(text, 40)}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_loads_bounded(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted bytes: ``ValueError`` for deep nesting (instead of a ``RecursionError``) and
    for non-finite numbers (``NaN``, ``Infinity``, ``1e999``: Python's parser accepts them)."""
    if not json_depth_ok(data, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth}")
    try:
        return json.loads(data, parse_float=_finite, parse_constant=_no_constant)
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

    #: open connections; a newcomer beyond this evicts the oldest connection without a request being answered
    max_connections: int = 256
    #: open connections from one client address (the same eviction within that address)
    max_per_source: int = 64
    #: connections beyond the cap while no slot can be freed: each is answered 503 once its head is read;
    #: beyond these the oldest of them not answering is evicted, else the newcomer waits. Each lives
    #: for milliseconds (a valid client sends its request at once); accepting stops for a second when the
    #: process runs out of file descriptors (asyncio), so a burst waits in the backlog rather than failing
    max_overflow: int = 512
    #: newcomers beyond the overflow while none of it can be evicted yet: unread, each waits up to
    #: ``overflow_wait_s`` for a place (oldest first), then its request is read and answered 503 (one that sends
    #: no request head within another ``overflow_wait_s`` is dropped); beyond these a newcomer is dropped
    max_waiting: int = 512
    #: which connection a newcomer evicts, first to last (the oldest of the first kind there is): one whose
    #: body has been coming for ``evict_body_after_s`` (a validator sends its body with its head); one that
    #: sent part of a head ``evict_after_s`` ago; one idle after an answer; one that has sent nothing for
    #: ``evict_silent_after_s`` (its bytes may still be unread in a busy server: a burst of valid requests
    #: beyond the cap is answered 503, never silently closed). None of these: the newcomer waits in overflow.
    evict_body_after_s: float = 0.1
    evict_after_s: float = 0.5
    evict_silent_after_s: float = 2.0
    #: seconds a request over the cap waits for a slot to free before it is answered 503
    overflow_wait_s: float = 1.0
    #: seconds a connection refused with a raw 503 (evicted, or beyond every place) is still read and its bytes
    #: dropped after our side ended, so that its client reads the answer rather than a reset
    linger_s: float = 2.0
    #: seconds from accept (or from the last answer on a kept-alive connection) to a complete request head
    head_timeout_s: float = 5.0
    #: seconds from the request head to the whole body (a validator sends it at once: < 4 KB)
    body_timeout_s: float = 2.0
    #: seconds to read a request's body and answer it
    request_timeout_s: float = 10.0
    #: seconds an idle kept-alive connection stays open
    keep_alive_s: float = 5.0
    #: bytes of request line + headers (h11's ``max_incomplete_event_size``)
    max_header_bytes: int = 16384
    #: connections the kernel holds until they are accepted: a burst of 1,000 valid requests overflowed 128 on a busy
    #: server (SYNs dropped, retried after 1, 3, 7, 15 s: some timed out, some went stale); the kernel caps it at
    #: ``net.core.somaxconn`` (4096 by default)
    backlog: int = 1024
    #: seconds over which refusals are counted before their one line per reason is logged
    log_window_s: float = 60.0
    #: what a ``503`` tells the client to wait (seconds)
    retry_after_s: int = 1


@attrs.define
class ServerStats:
    served: int = 0
    refused: int = 0
    evicted: int = 0
    head_timeouts: int = 0
    overloaded: int = 0
    disconnects: int = 0


_KEYLIKE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{40,}|0x[0-9a-fA-F]+|[0-9a-fA-F]{32,}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: distinct reasons kept per window (a flood of ever-new reasons cannot grow the table)
MAX_REASONS = 64


class RefusalLog:
    """Refusals counted per reason and source, logged as one line per reason per window (not one line per
    request: a flood of forged requests must not fill the operator's disk)."""

    def __init__(self, logger: logging.Logger, window_s: float) -> None:
        self.logger = logger
        self.window_s = window_s
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._counts: dict[str, Counter[str]] = {}

    @staticmethod
    def reason(status: int | str, text: str) -> str:
        """``text`` with keys, hashes and numbers generalised, so one reason is one line."""
        text = _NUMBER.sub("N", _KEYLIKE.sub("<key>", text))
        return f"{status} {printable(text, 120)}"

    def record(self, status: int | str, text: str, source: str | None) -> None:
        key = self.reason(status, text)
        with self._lock:
            due = time.monotonic() - self._started >= self.window_s
            counts = self._counts.get(key)
            if counts is None:
                if len(self._counts) >= MAX_REASONS:
                    key = f"{status} (other reasons)"
                counts = self._counts.setdefault(key, Counter())
            counts[printable(source or "unknown source", 64)] += 1
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            elapsed = time.monotonic() - self._started
            self._started = time.monotonic()
        for key, sources in counts.items():
            top = ", ".join(f"{source} ×{n:,}" for source, n in sources.most_common(5))
            more = f" and {len(sources) - 5:,} more" if len(sources) > 5 else ""
            self.logger.info(
                "refused %s request%s in %.0f s: %s (from %s%s)",
                f"{sum(sources.values()):,}",
                "" if sum(sources.values()) == 1 else "s",
                elapsed,
                key,
                top,
                more,
            )


class _SourceLogger(logging.LoggerAdapter):
    """uvicorn's per-connection logger: its refusals ("Invalid HTTP request received.") are counted with
    the source by the :class:`RefusalLog`, anything else it says carries the source."""

    def __init__(self, logger: logging.Logger, refusals: RefusalLog, source: str | None) -> None:
        super().__init__(logger, {})
        self.refusals = refusals
        self.source = source

    @property
    def level(self) -> int:
        return self.logger.level

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        if msg in ("Invalid HTTP request received.", "Exceeded concurrency limit."):
            self.refusals.record(400 if str(msg).startswith("Invalid") else 503, str(msg), self.source)
            return
        super().warning(msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{msg} (client {printable(self.source or '?', 64)})", kwargs


def _guarded_protocol(limits: ServerLimits, stats: ServerStats, refusals: RefusalLog) -> type:
    """uvicorn's h11 protocol with connection caps (total, per source), a request-head deadline and eviction
    of the oldest connection not being answered (uvicorn has none of these)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    live: OrderedDict[Any, None] = OrderedDict()  # connections holding a slot, oldest first
    per_source: Counter[str] = Counter()
    overflow: OrderedDict[Any, None] = OrderedDict()  # over the cap, to be answered 503, oldest first

    waiting: OrderedDict[Any, None] = OrderedDict()  # over every cap, unread, oldest first
    refusing: set[Any] = set()  # waited out their place: their request is read to be answered 503
    lingering: set[Any] = set()  # answered a raw 503, our side ended: read and dropped until they close
    overloaded = _overloaded_answer(limits.retry_after_s)
    ticking: list[asyncio.TimerHandle] = []  # the pending ``_admit_waiting`` call, if any

    def _admit_waiting(loop: asyncio.AbstractEventLoop) -> None:
        """Waiting connections, oldest first, get a place as one frees; after ``overflow_wait_s`` their request
        is read and answered 503 (``_refuse_request``)."""
        ticking.clear()
        now = loop.time()
        for conn in list(waiting):
            if conn.transport.is_closing():
                waiting.pop(conn)
            elif conn._admit():
                waiting.pop(conn)
                conn.transport.resume_reading()
            elif conn._since <= now - limits.overflow_wait_s:
                waiting.pop(conn)
                conn._refuse_request()
        if waiting:
            ticking.append(loop.call_later(limits.evict_body_after_s / 2, _admit_waiting, loop))

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        #: ``head`` (no request head yet, or idle between requests), ``body`` (head read, body coming),
        #: ``busy`` (a whole request being answered): only ``busy`` ones are never evicted
        _phase = "head"
        _source = ""
        _overflow = False
        #: when the current phase began; whether part of a head came; whether idle after an answer
        _since = 0.0
        _partial = False
        _answered = False
        #: waited out its place: its request is answered 503 as soon as its head is read
        _refusing = False
        #: answered a raw 503 and ended our side: what comes is dropped
        _lingering = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._source = str(self.client[0]) if self.client else ""
            self.logger = _SourceLogger(self.logger, refusals, self._source or None)  # type: ignore[assignment]
            if self._admit():
                return
            if len(waiting) + len(refusing) >= limits.max_waiting:
                self._refuse_waiting()
                return
            # every place is young: wait unread (a burst of reconnecting slow uploads fills them all at once,
            # and they become evictable within ``evict_body_after_s``) rather than close a valid newcomer
            self.transport.pause_reading()
            self._since = self.loop.time()
            waiting[self] = None
            if not ticking:
                ticking.append(self.loop.call_later(limits.evict_body_after_s / 2, _admit_waiting, self.loop))

        def _admit(self) -> bool:
            """A slot, else a place in overflow (evicting if needed): False when neither can be had now."""
            if not self._take_slot():
                if len(overflow) >= limits.max_overflow and not self._evict_one(overflow, same_source=False):
                    return False
                self._overflow = True  # a slot is tried again when its head arrives, else it is answered 503
                overflow[self] = None
            self._wait_for_head()
            return True

        def _refuse_waiting(self) -> None:
            stats.overloaded += 1
            refusals.record(503, "every connection slot and overflow place is in use", self._source)
            self._refuse()

        def _refuse(self) -> None:
            """Answer ``503`` with Retry-After, raw (its request may not have come yet, or only in part), then
            close gently: our side ends, what the client still sends is read and dropped until it closes or
            ``linger_s`` passes. Closing at once on bytes still coming resets the connection, and the reset
            can reach the client before it reads the answer (a silent close, seen from there)."""
            self._release()
            self._stop_head_timer()
            if len(lingering) >= limits.max_waiting:  # a flood beyond every place: no fd is kept for it
                self.transport.abort()
                return
            lingering.add(self)
            self._lingering = True
            self.transport.write(overloaded)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.resume_reading()
            self._head_timer = self.loop.call_later(limits.linger_s, self.transport.abort)

        def _refuse_request(self) -> None:
            """No place came within ``overflow_wait_s``: read the request head (its bytes may be waiting unread
            in a busy server) and answer it 503 with Retry-After, not a silent close; a head that does not come
            within another ``overflow_wait_s`` is dropped."""
            self._refusing = True
            refusing.add(self)
            self._phase, self._since, self._partial = "head", self.loop.time(), False
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(limits.overflow_wait_s, self._head_expired)
            self.transport.resume_reading()

        def _promote(self) -> bool:
            """An overflow connection whose request came: a slot now, if one can be freed."""
            if not self._overflow:
                return True
            if self.transport.is_closing():
                return False
            overflow.pop(self, None)
            self._overflow = not self._take_slot()
            if self._overflow:
                overflow[self] = None
            return not self._overflow

        def _take_slot(self) -> bool:
            """A slot in ``live`` for this connection, evicting another if needed; False when none can be freed."""
            if per_source[self._source] >= limits.max_per_source and not self._evict_one(live, same_source=True):
                return False
            while len(live) >= limits.max_connections:
                if not self._evict_one(live, same_source=False):
                    return False
            live[self] = None
            per_source[self._source] += 1
            return True

        def _rank(self, now: float) -> int:
            """How evictable this connection is: 0 first, 4 never (see ``ServerLimits.evict_body_after_s``).
            One whose bytes wait unread in its socket is never: this busy server is the slow one, not it."""
            rank = self._time_rank(now)
            return 4 if rank < 4 and _unread_bytes(self.transport) else rank

        def _time_rank(self, now: float) -> int:
            if self._phase == "body":
                return 0 if self._since <= now - limits.evict_body_after_s else 4
            if self._phase != "head":
                return 4
            if self._partial:
                return 1 if self._since <= now - limits.evict_after_s else 4
            if self._answered:
                return 2
            return 3 if self._since <= now - limits.evict_silent_after_s else 4

        def _evict_one(self, pool: OrderedDict[Any, None], *, same_source: bool) -> bool:
            """Close the most evictable connection of ``pool`` (the oldest of its kind); never one being
            answered."""
            now = self.loop.time()
            victim, best = None, 4
            for other in pool:
                if other is self or (same_source and other._source != self._source):
                    continue
                rank = other._rank(now)
                if rank < best:
                    victim, best = other, rank
                    if rank == 0:
                        break
            if victim is None:
                return False
            stats.evicted += 1
            if victim._phase == "body" and victim.cycle is not None:
                victim.cycle.scope["bitagent.evicted"] = True
            victim._evicted()
            return True

        def _release(self) -> None:
            waiting.pop(self, None)
            refusing.discard(self)
            lingering.discard(self)
            if self in live:
                del live[self]
                per_source[self._source] -= 1
                if per_source[self._source] <= 0:
                    del per_source[self._source]
            overflow.pop(self, None)

        def _wait_for_head(self, *, answered: bool = False) -> None:
            self._phase, self._since, self._partial, self._answered = "head", self.loop.time(), False, answered
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(limits.head_timeout_s, self._head_expired)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self._phase == "head" and self._refusing:
                self._refuse_waiting()
            elif self._phase == "head":
                stats.head_timeouts += 1
                self._drop()

        def _evicted(self) -> None:
            """Close this connection for a newcomer. One that has not been answered gets a ``503`` with
            Retry-After (``_refuse``): a slow client is told to come back, not cut off silently (a busy
            client's valid request may still be on its way)."""
            if self._answered and not self._partial:
                self._drop()
            else:
                self._refuse()

        def _drop(self) -> None:
            self._release()
            self._stop_head_timer()
            if self._answered and not self._partial:
                self.transport.close()  # its answer may still be unread: a reset would discard it
            else:
                self.transport.abort()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle and self.cycle is not None:  # a request head arrived
                self._stop_head_timer()
                scope: dict[str, Any] = self.cycle.scope  # type: ignore[assignment]
                if self._refusing:
                    scope["bitagent.take_slot"] = _no_slot
                elif self._overflow:  # by now the others' heads are read too: slow uploads can be told apart
                    scope["bitagent.take_slot"] = self._promote
            if self.cycle is not None and self._phase != "busy" and self.conn.their_state is not h11.IDLE:
                if not self.cycle.more_body:
                    self._phase = "busy"
                elif self._phase == "head":
                    self._phase, self._since = "body", self.loop.time()

        def data_received(self, data: bytes) -> None:
            if self._lingering:  # answered already: dropped
                return
            if self._phase == "head":
                self._partial, self._answered = True, False
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self in live or self in overflow):
                self._wait_for_head(answered=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self._release()
            self._stop_head_timer()
            super().connection_lost(exc)

    GuardedH11Protocol.live = live  # type: ignore[attr-defined]
    GuardedH11Protocol.refusing = refusing  # type: ignore[attr-defined]
    GuardedH11Protocol.waiting = waiting  # type: ignore[attr-defined]
    return GuardedH11Protocol


def _overloaded_answer(retry_after_s: int) -> bytes:
    """The answer of a connection evicted before it was answered, written raw (its request may not have come
    yet): ``503`` with Retry-After."""
    body = _error("every connection slot is in use: retry shortly")
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        + f"retry-after: {retry_after_s}\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _no_slot() -> bool:
    return False


def _unread_bytes(transport: Any) -> int:
    """Bytes received on ``transport``'s socket and not read yet (0 when it cannot be told)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class _App:
    """The ASGI application: two routes, bodies read with a cap and a deadline, the whole request under a
    deadline."""

    def __init__(self, owner: SubmissionServer) -> None:
        self.owner = owner

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        owner = self.owner
        headers: Mapping[str, str] = {}
        take_slot = scope.get("bitagent.take_slot")
        wait_s = 0.0 if take_slot is _no_slot else owner.limits.overflow_wait_s
        if take_slot is not None and not await _wait_for_slot(take_slot, wait_s):
            owner.stats.overloaded += 1
            await _drain_body(receive, owner.limits.body_timeout_s)  # closing on unread bytes would reset the answer
            status, payload = 503, _error("every connection slot is answering: retry shortly")
            headers = {"Retry-After": str(owner.limits.retry_after_s), "Connection": "close"}
        else:
            try:
                status, headers, payload = await asyncio.wait_for(
                    self._respond(scope, receive), owner.limits.request_timeout_s
                )
            except TimeoutError:
                status, headers, payload = 408, {}, _error("the request was not answered in time")
            except _Disconnected:
                owner.stats.disconnects += 1
                why = (
                    "evicted while sending its body"
                    if scope.get("bitagent.evicted")
                    else "the client hung up before its body was complete"
                )
                owner.refusals.record("disconnect", why, _source(scope))
                return
            except Exception:  # noqa: BLE001 - one bad request must not kill the endpoint
                log.exception("the submission endpoint failed on a request")
                status, headers, payload = 500, {}, _error("internal error")
        owner._count(scope, status, payload)
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        out += [
            (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in headers.items()
            if str(k).lower() not in ("content-type", "content-length")
        ]
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
        if not (length.isascii() and length.isdigit()) or int(length) > cap:
            return 413, {}, _error(f"at most {cap} bytes")
        try:
            body = await asyncio.wait_for(_read_body(receive, cap), owner.limits.body_timeout_s)
        except _TooLarge:
            return 413, {}, _error(f"at most {cap} bytes")
        except TimeoutError:
            return (
                408,
                {"Connection": "close"},
                _error(f"the body was not received within {owner.limits.body_timeout_s:g} s"),
            )
        if route == legacy.ROUTE:
            return owner.legacy.answer(headers, body)
        target = scope.get("raw_path", route.encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        return owner.answer("POST", target, headers, body)


def _source(scope: dict) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def _wait_for_slot(take_slot: Callable[[], bool], wait_s: float) -> bool:
    """Whether a request that came over the cap got a slot within ``wait_s`` (slow uploads ahead of it become
    evictable within ``evict_body_after_s``)."""
    deadline = time.monotonic() + wait_s
    while not take_slot():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _drain_body(receive: Callable, timeout_s: float) -> None:
    """Read and drop a request's body (capped, within ``timeout_s``) before it is refused."""
    with contextlib.suppress(_TooLarge, _Disconnected, TimeoutError):
        await asyncio.wait_for(_read_body(receive, max(MAX_REQUEST_BYTES, legacy.MAX_REQUEST_BYTES)), timeout_s)


async def _read_body(receive: Callable, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
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

    def __init__(
        self,
        wallet: Any,
        submission: str,
        *,
        netuid: int,
        authorize: Callable[[str], None],
        host: str = "127.0.0.1",
        port: int = 0,
        salt: str | None = None,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.keypair = hotkey_signer(wallet)  # read once: answering must not touch the disk
        self.hotkey: str = self.keypair.ss58_address
        self.netuid = int(netuid)
        self.authorize = authorize
        self.host = host
        self.port = port
        self.limits = limits
        self.stats = ServerStats()
        self.refusals = RefusalLog(log, limits.log_window_s)
        self._submission = submission
        self._salt = salt
        self._nonces = _nonce_store()
        self.legacy = legacy.LegacyResponder(
            self.keypair, authorize=authorize, model=lambda: self._submission, salt=lambda: self._salt
        )
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
        self._protocol = _guarded_protocol(limits, self.stats, self.refusals)
        config = uvicorn.Config(
            _App(self),
            http=self._protocol,
            ws="none",
            lifespan="off",
            loop="asyncio",
            interface="asgi3",
            access_log=False,
            log_config=None,
            log_level="warning",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            backlog=limits.backlog,
            timeout_keep_alive=int(limits.keep_alive_s),
            h11_max_incomplete_event_size=limits.max_header_bytes,
            timeout_graceful_shutdown=2,
            # uvicorn answers 503 beyond this many connections or in-flight requests; our own caps (above) keep
            # connections at max_connections + max_overflow + max_waiting, the margin covers evicted ones
            # not yet closed
            limit_concurrency=limits.max_connections + limits.max_overflow + limits.max_waiting + 64,
        )
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        async def serve_and_log(server: Any) -> None:
            async def log_refusals() -> None:
                while True:
                    await asyncio.sleep(limits.log_window_s)
                    self.refusals.flush()

            logger = asyncio.create_task(log_refusals())
            try:
                await server.serve(sockets=[sock])
            finally:
                logger.cancel()

        def serve() -> None:
            try:
                asyncio.run(serve_and_log(self._server))
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
        self.refusals.flush()

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
        path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
        try:
            error = json.loads(payload)
            text = str(error.get("error") or error.get("message") or "") if isinstance(error, dict) else ""
        except ValueError:
            text = payload.decode(errors="replace")
        self.refusals.record(
            status, f"{printable(str(scope.get('method', '')), 16)} {printable(path, 40)}: {text}", _source(scope)
        )

    # one request ---------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """Status, extra headers and body for one signed-endpoint request (the server only does the I/O)."""
        from bittensor import http_auth

        if path.split("?", 1)[0] != SUBMISSION_PATH:
            return 404, {}, _error("not found")
        if method != "POST":
            return 405, {"Allow": "POST"}, _error("only POST")
        try:
            caller = http_auth.verify(
                headers,
                body,
                method=method,
                path=path,
                self_hotkey_ss58=self.hotkey,
                max_age=MAX_AGE_S,
                allowed_skew=ALLOWED_SKEW_S,
                nonce_store=self._nonces,
            )
        except http_auth.AuthError as exc:
            return 401, {}, _error(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - headers no parser expected are refused, not a 500
            return 401, {}, _error(f"malformed authentication headers ({type(exc).__name__})")
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
        signed = http_auth.sign(
            self.keypair, method=RESPONSE_METHOD, path=SUBMISSION_PATH, body=reply, receiver_ss58=caller.hotkey_ss58
        )
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


async def query_submission(
    client: Any,
    wallet: Any,
    *,
    hotkey: str,
    axon: str,
    netuid: int,
    allow_private: bool = False,
    nonce_store: Any = None,
) -> SubmissionReply:
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
        signer = http_auth.verify(
            dict(response.headers.items()),
            payload,
            method=RESPONSE_METHOD,
            path=SUBMISSION_PATH,
            self_hotkey_ss58=keypair.ss58_address,
            max_age=MAX_AGE_S,
            allowed_skew=ALLOWED_SKEW_S,
            nonce_store=nonce_store if nonce_store is not None else _nonce_store(),
        )
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


async def query_legacy(
    client: Any,
    wallet: Any,
    *,
    hotkey: str,
    axon: str,
    timeout_s: float = QUERY_TIMEOUT_S,
    allow_private: bool = False,
    dendrite_uuid: str | None = None,
) -> legacy.LegacyReply:
    """Ask one miner the upstream ``GetHFModelName`` synapse, as a bittensor 10.5.0 Dendrite would."""
    import uuid

    import httpx

    keypair = hotkey_signer(wallet)
    host, port = _checked_address(axon, allow_private=allow_private)
    headers, body = legacy.build_request(
        keypair,
        miner_hotkey=hotkey,
        ip=host.strip("[]"),
        port=port,
        timeout_s=timeout_s,
        dendrite_uuid=dendrite_uuid or str(uuid.uuid1()),
    )
    headers["Accept-Encoding"] = "identity"
    try:
        async with client.stream(
            "POST", f"http://{host}:{port}{legacy.ROUTE}", content=body, headers=headers
        ) as response:
            payload = await read_capped(response)
    except httpx.TimeoutException:
        raise QueryFailed("timed out") from None
    except httpx.HTTPError as exc:
        raise QueryFailed(f"{type(exc).__name__}: {printable(str(exc))}") from None
    try:
        return legacy.read_reply(
            response.status_code, response.headers, payload, miner_hotkey=hotkey, validator_hotkey=keypair.ss58_address
        )
    except ValueError as exc:
        raise QueryFailed(f"GetHFModelName: {printable(str(exc))}") from None


def _client(timeout_s: float, concurrency: int) -> Any:
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=concurrency),
    )


async def query_submissions(
    wallet: Any,
    targets: Mapping[str, str],
    *,
    netuid: int,
    timeout_s: float = QUERY_TIMEOUT_S,
    allow_private: bool = False,
    concurrency: int = 32,
) -> dict[str, SubmissionReply | QueryFailed]:
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
                        query_submission(
                            client,
                            keypair,
                            hotkey=hotkey,
                            axon=axon,
                            netuid=netuid,
                            allow_private=allow_private,
                            nonce_store=nonces,
                        ),
                        timeout_s,
                    )
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


async def collect_submissions(
    wallet: Any,
    mg: Any,
    *,
    netuid: int,
    me: str | None = None,
    timeout_s: float = QUERY_TIMEOUT_S,
    allow_private: bool = False,
    concurrency: int = 32,
) -> tuple[dict[str, Collected], dict[str, str]]:
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
                return await asyncio.wait_for(
                    query_submission(
                        client,
                        keypair,
                        hotkey=hotkey,
                        axon=axon,
                        netuid=netuid,
                        allow_private=allow_private,
                        nonce_store=nonces,
                    ),
                    timeout_s,
                )
            return await asyncio.wait_for(
                query_legacy(
                    client, keypair, hotkey=hotkey, axon=axon, timeout_s=timeout_s, allow_private=allow_private
                ),
                timeout_s,
            )

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
