"""One async client for every OpenAI-compatible server: sglang, vLLM, llama.cpp, routers, clusters.

* One pooled :class:`httpx.AsyncClient` for the whole run (connections are reused, not one per call).
* No limit of its own on requests in flight: the caller's is the one limit on the path (the runner's
  ``--concurrency``, which defaults to the backend's ``default_concurrency``). Each request goes to the least
  busy endpoint (ties in turn), so several base URLs (llama.cpp replicas, a few vLLM servers) share the load.
* Connection errors, dropped connections, 429 and 5xx are retried by tenacity, with exponential backoff and
  full jitter (``retries`` times; ``Retry-After`` honoured up to the backoff cap); other 4xx are not, and a
  timeout is not either (retrying a request the server is still computing doubles its load). ``endpoint_down``
  lets the owner of a managed server say "that process has exited": the request then fails at once
  instead of retrying against a dead port.
* Chat completions with the tools in the prompt (already in ``request.messages``) or as native
  ``tools=``. The request is only read: tasks and requests are frozen and never modified.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
import httpx
import tenacity

from bitagent_core import BackendError, ChatRequest, Completion
from bitagent_core import ServerUnavailable as EngineUnreachable
from bitagent_core.toolkit import fold_system_prompt
from bitagent_plugins.backends.openai_format import completion_from_openai, to_openai_messages

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class ClientError(BackendError):
    """A request failed for good; ``status`` is the HTTP status when there was one. Whose fault is unknown (an
    HTTP 400 may be the model's chat template or a request the server was not started for)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailable(ClientError, EngineUnreachable):
    """No endpoint could answer (connection refused, server exited, retries exhausted on 5xx): the validator's
    side (``fault`` validator)."""


class RequestTimeout(ClientError):
    """The server took longer than ``timeout_s`` while it was up: the model's answer was too slow."""

    fault = "model"
    retryable = False


class _Retryable(Exception):
    """One attempt failed in a way worth another: a connection error, 429 or 5xx."""

    def __init__(self, failure: str, endpoint: Endpoint, retry_after: float | None = None) -> None:
        super().__init__(failure)
        self.failure = failure
        self.endpoint = endpoint
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (seconds from now); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def v1_url(base_url: str) -> str:
    """``http://h:p``, ``http://h:p/`` or ``http://h:p/v1`` -> ``http://h:p/v1``."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a base URL must start with http:// or https://, got {base_url!r}")
    return url if url.endswith("/v1") else url + "/v1"


@attrs.define
class Endpoint:
    url: str  # ends in /v1
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    retries: int = 0
    down_until: float = 0.0


class OpenAIClient:
    def __init__(
        self,
        base_urls: Sequence[str] | str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        endpoint_down: Callable[[int], str | None] | None = None,
        trust_env: bool = True,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one base URL is needed")
        if retries < 0 or timeout_s <= 0:
            raise ValueError("retries must be >= 0 and timeout_s > 0")
        self.endpoints = [Endpoint(v1_url(u)) for u in urls]
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.endpoint_down = endpoint_down
        #: fields added to every chat request (e.g. llama.cpp's repeat_penalty)
        self.extra_body = dict(extra_body or {})
        self._turn = itertools.count()
        self._sessions: dict[str, int] = {}  # multi-turn session -> the endpoint that answered it last
        self._backoff = tenacity.wait_random_exponential(multiplier=backoff_s, max=max_backoff_s)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            headers=all_headers,
            trust_env=trust_env,
            # as many connections as the caller has requests in flight, all kept alive for reuse
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=30.0),
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s), pool=None),
        )
        self._closed = False
        #: where the system prompt goes: its own message, or (templates that reject it) the first user message
        self.prompt_layout: Literal["system", "first-user"] = "system"

    # ---- endpoint choice

    def _pick(self, session: str | None = None) -> int:
        """The least busy endpoint that is up (ties: in turn); all backing off: the one back soonest. A
        multi-turn ``session`` stays on the endpoint that answered it last while that one is up, so the
        server's cached prompt prefix is reused."""
        n = len(self.endpoints)
        home = self._sessions.get(session) if session is not None else None
        if (
            home is not None
            and self.endpoints[home].down_until <= time.monotonic()
            and not (self.endpoint_down is not None and self.endpoint_down(home))
        ):
            return home
        alive = [i for i in range(n) if not (self.endpoint_down is not None and self.endpoint_down(i))]
        if not alive:
            reasons = {self.endpoint_down(i) for i in range(n)} if self.endpoint_down is not None else set()
            raise ServerUnavailable("; ".join(sorted(r for r in reasons if r)) or "no endpoint is up")
        now = time.monotonic()
        ready = [i for i in alive if self.endpoints[i].down_until <= now]
        if not ready:
            return min(alive, key=lambda i: self.endpoints[i].down_until)
        start = next(self._turn) % n
        return min(ready, key=lambda i: (self.endpoints[i].in_flight, (i - start) % n))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After`` (capped), else backoff with jitter."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(self.max_backoff_s, error.retry_after)
        return self._backoff(state)

    @staticmethod
    def _count_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Retryable):
            error.endpoint.retries += 1

    # ---- requests

    async def request_json(
        self, method: str, path: str, payload: dict[str, Any] | None = None, session: str | None = None
    ) -> tuple[dict[str, Any], float]:
        """Send one request (retrying as described above); returns the JSON body and the latency of
        the attempt that answered."""
        if self._closed:
            raise ClientError("the client is closed")
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return await retrying(self._attempt, method, path, payload, session)
        except _Retryable as exc:
            attempts = retrying.statistics.get("attempt_number", self.retries + 1)
            raise ServerUnavailable(f"gave up after {attempts} attempts: {exc.failure}") from exc

    async def _attempt(
        self, method: str, path: str, payload: dict[str, Any] | None, session: str | None
    ) -> tuple[dict[str, Any], float]:
        index = self._pick(session)
        endpoint = self.endpoints[index]
        endpoint.in_flight += 1
        endpoint.requests += 1
        url = endpoint.url + path
        started = time.perf_counter()
        try:
            response = await self._http.request(method, url, json=payload)
        except _RETRY_ERRORS as exc:
            endpoint.failures += 1
            reason = self.endpoint_down(index) if self.endpoint_down else None
            if reason:
                raise ServerUnavailable(reason) from exc
            # passed over by _pick while the others are up, for about the time a retry would wait
            endpoint.down_until = time.monotonic() + min(self.max_backoff_s, self.backoff_s * 2**endpoint.failures)
            failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _Retryable(failure, endpoint) from exc
        except httpx.TimeoutException as exc:
            endpoint.failures += 1
            raise RequestTimeout(f"no answer from {url} within {self.timeout_s:g} s ({type(exc).__name__})") from exc
        finally:
            endpoint.in_flight -= 1
        latency = time.perf_counter() - started
        if response.status_code < 400:
            try:
                body = response.json()
            except ValueError:
                endpoint.failures += 1
                raise ClientError(
                    f"{url} answered HTTP {response.status_code} with non-JSON: {response.text[:300]!r}",
                    response.status_code,
                ) from None
            if not isinstance(body, dict):
                raise ClientError(f"{url} answered {type(body).__name__}, not a JSON object", response.status_code)
            if session is not None:
                if len(self._sessions) >= 10_000:
                    self._sessions.clear()
                self._sessions[session] = index
            return body, latency
        endpoint.failures += 1
        failure = f"HTTP {response.status_code} from {url}: {_error_detail(response)}"
        if response.status_code not in RETRY_STATUS and response.status_code < 500:
            raise ClientError(failure, response.status_code)
        raise _Retryable(failure, endpoint, retry_after_seconds(response.headers.get("retry-after")))

    def chat_payload(self, request: ChatRequest, model: str | None, *, fold_system: bool = False) -> dict[str, Any]:
        messages = fold_system_prompt(request.messages) if fold_system else request.messages
        payload: dict[str, Any] = {
            "messages": to_openai_messages(messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": False,
            **self.extra_body,
        }
        if model:
            payload["model"] = model
        if request.native_tools and request.tools:
            payload["tools"] = [tool.to_openai() for tool in request.tools]
            payload["tool_choice"] = "auto"
        return payload

    async def chat(self, request: ChatRequest, model: str | None = None) -> Completion:
        """One chat completion. Raises :class:`ClientError` (and subclasses) on failure.

        The system prompt goes as a ``system`` message; when the server refuses that request (HTTP 400: a chat
        template that rejects a system role), it is sent again in upstream's layout, the system prompt inside the
        first user message, and every later request of this client uses that layout (:attr:`prompt_layout`).
        Decided by trying rather than by reading the template: the server renders the template, so its answer is
        the one verdict that cannot be wrong, and a model whose template accepts a system role never pays for it."""
        has_system = bool(request.messages) and request.messages[0].role == "system"
        fold = has_system and self.prompt_layout == "first-user"
        try:
            body, latency = await self.request_json(
                "POST",
                "/chat/completions",
                self.chat_payload(request, model, fold_system=fold),
                session=request.session,
            )
        except ClientError as exc:
            if fold or not has_system or exc.status != 400:
                raise
            try:
                body, latency = await self.request_json(
                    "POST",
                    "/chat/completions",
                    self.chat_payload(request, model, fold_system=True),
                    session=request.session,
                )
            except ClientError:
                raise exc from None  # the layout was not the problem: the server's first answer says what was
            self.prompt_layout = "first-user"
        if not isinstance(body.get("choices"), list) or not body["choices"]:
            raise ClientError(f"a chat completion without choices: {json.dumps(body)[:300]}")
        return completion_from_openai(body, latency)

    async def models(self) -> list[str]:
        body, _ = await self.request_json("GET", "/models")
        return [str(m["id"]) for m in body.get("data") or [] if isinstance(m, dict) and "id" in m]

    def stats(self) -> list[dict[str, Any]]:
        return [
            {"url": e.url, "requests": e.requests, "failures": e.failures, "retries": e.retries} for e in self.endpoints
        ]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._http.aclose()


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", data["error"]))[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return json.dumps(data)[:300]
