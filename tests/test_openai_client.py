"""The OpenAI-compatible client against small HTTP/1.1 servers on 127.0.0.1 that this test scripts
(status codes, delays, dropped connections), so every retry rule is exercised on real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from bitagent_core.model import ChatRequest, Message, Task, Tool
from bitagent_core.toolkit.prompting import build_request
from bitagent_plugins.backends.local_server import PortReservation
from bitagent_plugins.backends.openai_client import (
    ClientError,
    OpenAIClient,
    RequestTimeout,
    ServerUnavailable,
    v1_url,
)

TASK = Task.from_json(
    {
        "id": "t1",
        "category": "single_call",
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }
        ],
        "expected_calls": [{"get_weather": {"city": ["Paris"]}}],
    }
)


def completion_body(text: str = '[get_weather(city="Paris")]', tool_calls: list | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }


class Reply:
    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        delay: float = 0.0,
        headers: dict | None = None,
        drop: bool = False,
        raw: bytes | None = None,
    ) -> None:
        self.status, self.body, self.delay, self.headers, self.drop, self.raw = status, body, delay, headers, drop, raw


class Stub:
    """A minimal keep-alive HTTP/1.1 server; ``handler(request) -> Reply`` decides each answer."""

    def __init__(self, handler: Callable[[dict], Reply]) -> None:
        self.handler = handler
        self.requests: list[dict] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> Stub:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    key, _, value = header.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = {
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "json": json.loads(body) if body else None,
                }
                self.requests.append(request)
                reply = self.handler(request)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if reply.drop:
                    return  # close without answering
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body or {}).encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in (reply.headers or {}).items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def run(coro):
    return asyncio.run(coro)


def ok(_request: dict) -> Reply:
    return Reply(body=completion_body())


async def limited(n: int, coroutines) -> list:
    """Run ``coroutines`` with at most ``n`` in flight, as the runner does (the one limit on the request path)."""
    gate = asyncio.Semaphore(n)

    async def one(coroutine):
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


def client_for(*urls: str, **kwargs: Any) -> OpenAIClient:
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("trust_env", False)
    return OpenAIClient(list(urls), **kwargs)


# ------------------------------------------------------------------------------------------ payloads


def test_prompt_format_request_and_the_task_is_never_mutated():
    before = json.dumps(TASK.to_json(), sort_keys=True)

    async def main():
        async with Stub(ok) as stub:
            client = client_for(stub.url, api_key="k-123")
            first = await client.chat(build_request(TASK, "prompt"), model="m")
            second = await client.chat(build_request(TASK, "prompt"), model="m")
            await client.aclose()
            return stub, first, second

    stub, first, second = run(main())
    sent = [r["json"] for r in stub.requests]
    assert sent[0] == sent[1]  # the k-th request is the first one, not one with k system prompts
    assert [m["role"] for m in sent[0]["messages"]] == ["system", "user"]
    assert sent[0]["messages"][0]["content"].count("Here is a list of functions") == 1
    assert "tools" not in sent[0] and sent[0]["temperature"] == 0.0 and sent[0]["max_tokens"] == 160
    assert sent[0]["model"] == "m" and sent[0]["stream"] is False
    assert stub.requests[0]["path"] == "/v1/chat/completions"
    assert stub.requests[0]["headers"]["authorization"] == "Bearer k-123"
    assert first.text == '[get_weather(city="Paris")]' and first.prompt_tokens == 11 and first.completion_tokens == 7
    assert first.latency_s > 0 and first.error is None
    assert json.dumps(TASK.to_json(), sort_keys=True) == before


def test_native_tools_request_and_tool_calls_answer():
    call = {"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    async def main():
        async with Stub(lambda r: Reply(body=completion_body("", [call]))) as stub:
            client = client_for(stub.url, extra_body={"repeat_penalty": 1.0})
            completion = await client.chat(build_request(TASK, "native"))
            await client.aclose()
            return stub, completion

    stub, completion = run(main())
    sent = stub.requests[0]["json"]
    assert sent["tools"] == [{"type": "function", "function": TASK.tools[0].to_json()}]
    assert sent["tool_choice"] == "auto" and sent["repeat_penalty"] == 1.0 and "model" not in sent
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert completion.tool_calls[0].name == "get_weather" and completion.tool_calls[0].arguments == {"city": "Paris"}


def test_base_urls_are_normalised():
    assert v1_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert v1_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert v1_url("https://h/proxy/") == "https://h/proxy/v1"
    with pytest.raises(ValueError):
        v1_url("127.0.0.1:8000")


# ------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_retried(status):
    answers = iter(
        [Reply(status, {"error": {"message": "busy"}}, headers={"Retry-After": "0"}), Reply(body=completion_body())]
    )

    async def main():
        async with Stub(lambda r: next(answers)) as stub:
            client = client_for(stub.url)
            completion = await client.chat(build_request(TASK))
            await client.aclose()
            return stub, client, completion

    stub, client, completion = run(main())
    assert completion.text and len(stub.requests) == 2
    assert client.stats()[0]["retries"] == 1


def test_a_client_error_is_not_retried():
    async def main():
        async with Stub(lambda r: Reply(400, {"error": {"message": "context length exceeded"}})) as stub:
            client = client_for(stub.url)
            with pytest.raises(ClientError) as info:
                await client.chat(build_request(TASK))
            await client.aclose()
            return stub, info.value

    stub, error = run(main())
    # not retried; sent once more only in the other prompt layout (the system prompt in the first user message)
    assert len(stub.requests) == 2 and error.status == 400
    assert [r["json"]["messages"][0]["role"] for r in stub.requests] == ["system", "user"]
    assert "context length exceeded" in str(error) and not isinstance(error, ServerUnavailable)
    assert error.fault == "unknown"


def test_a_template_that_rejects_a_system_message_gets_upstreams_layout_for_the_rest_of_the_run():
    def handler(request: dict) -> Reply:
        if request["json"]["messages"][0]["role"] == "system":  # what a Mistral v0.1 template does
            return Reply(400, {"error": {"message": "Conversation roles must alternate user/assistant/..."}})
        return Reply(200, completion_body())

    async def main():
        async with Stub(handler) as stub:
            client = client_for(stub.url)
            first = await client.chat(build_request(TASK))
            layout = client.prompt_layout
            second = await client.chat(build_request(TASK))
            await client.aclose()
            return stub, first, second, layout

    stub, first, second, layout = run(main())
    assert first.text == second.text == '[get_weather(city="Paris")]' and layout == "first-user"
    assert [r["json"]["messages"][0]["role"] for r in stub.requests] == ["system", "user", "user"]
    folded = stub.requests[1]["json"]["messages"]
    assert len(folded) == 1 and folded[0]["content"].startswith("You are an expert in composing functions")
    assert folded[0]["content"].endswith("\n\nWhat's the weather in Paris?")


def test_retries_give_up_after_the_limit():
    async def main():
        async with Stub(lambda r: Reply(500, {"detail": "kaput"})) as stub:
            client = client_for(stub.url, retries=2)
            with pytest.raises(ServerUnavailable, match="gave up after 3 attempts: HTTP 500 .*kaput"):
                await client.chat(build_request(TASK))
            await client.aclose()
            return stub

    assert len(run(main()).requests) == 3


def test_a_dropped_connection_is_retried():
    answers = iter([Reply(drop=True), Reply(body=completion_body())])

    async def main():
        async with Stub(lambda r: next(answers)) as stub:
            client = client_for(stub.url)
            completion = await client.chat(build_request(TASK))
            await client.aclose()
            return stub, completion

    stub, completion = run(main())
    assert completion.text and len(stub.requests) == 2


def test_connection_refused_is_retried_then_reported():
    with PortReservation() as port:  # bound, never listening: connections are refused

        async def main():
            client = client_for(f"http://127.0.0.1:{port.port}", retries=2)
            with pytest.raises(ServerUnavailable, match="gave up after 3 attempts: ConnectError"):
                await client.chat(build_request(TASK))
            await client.aclose()
            return client

        assert run(main()).stats()[0]["requests"] == 3


def test_a_dead_server_fails_at_once_instead_of_retrying():
    with PortReservation() as port:

        async def main():
            checks = []

            def endpoint_down(index: int) -> str | None:
                """Up when the first request is sent; its refusal makes the client ask again: dead."""
                checks.append(index)
                return None if len(checks) == 1 else "server 0 exited with code -9"

            client = client_for(f"http://127.0.0.1:{port.port}", retries=5, endpoint_down=endpoint_down)
            with pytest.raises(ServerUnavailable, match="exited with code -9"):
                await client.chat(build_request(TASK))
            with pytest.raises(ServerUnavailable, match="exited with code -9"):  # no attempt at all now
                await client.chat(build_request(TASK))
            await client.aclose()
            return client

        client = run(main())
        assert client.stats()[0]["requests"] == 1 and client.stats()[0]["retries"] == 0


def test_a_slow_answer_times_out_and_is_not_retried():
    async def main():
        async with Stub(lambda r: Reply(body=completion_body(), delay=3.0)) as stub:
            client = client_for(stub.url, timeout_s=0.3)
            with pytest.raises(RequestTimeout, match="within 0.3 s"):
                await client.chat(build_request(TASK))
            await client.aclose()
            return stub

    assert len(run(main()).requests) == 1


def test_non_json_and_choiceless_answers_are_errors():
    async def main():
        async with (
            Stub(lambda r: Reply(raw=b"<html>oops</html>")) as bad,
            Stub(lambda r: Reply(body={"x": 1})) as empty,
        ):
            for stub, pattern in ((bad, "non-JSON"), (empty, "without choices")):
                client = client_for(stub.url)
                with pytest.raises(ClientError, match=pattern):
                    await client.chat(build_request(TASK))
                await client.aclose()

    run(main())


# ------------------------------------------------------------------------------- pooling, spreading


def test_connections_are_pooled_and_follow_the_callers_limit():
    async def main():
        async with Stub(lambda r: Reply(body=completion_body(), delay=0.02)) as stub:
            client = client_for(stub.url)
            for _ in range(10):
                await client.chat(build_request(TASK))
            sequential = stub.connections
            await limited(4, [client.chat(build_request(TASK)) for _ in range(40)])
            await client.aclose()
            return sequential, stub.connections

    sequential, total = run(main())
    assert sequential == 1  # one kept-alive connection for ten requests
    assert total <= 1 + 4  # never more connections than requests in flight


@pytest.mark.slow
def test_requests_spread_over_endpoints_least_busy_first():
    async def main():
        async with (
            Stub(lambda r: Reply(body=completion_body(), delay=0.05)) as a,
            Stub(lambda r: Reply(body=completion_body(), delay=0.05)) as b,
        ):
            client = client_for(a.url, b.url)
            await asyncio.gather(*(client.chat(build_request(TASK)) for _ in range(8)))
            await client.aclose()
            even = (len(a.requests), len(b.requests))
        async with (
            Stub(lambda r: Reply(body=completion_body(), delay=1.0)) as slow,
            Stub(lambda r: Reply(body=completion_body())) as fast,
        ):
            client = client_for(slow.url, fast.url)
            await limited(2, [client.chat(build_request(TASK)) for _ in range(10)])
            await client.aclose()
            return even, (len(slow.requests), len(fast.requests))

    even, (slow, fast) = run(main())
    assert even == (4, 4)
    assert slow + fast == 10 and fast > slow  # the busy endpoint is passed over while it computes


def test_a_multi_turn_session_stays_on_one_endpoint():
    """Steps of one trajectory go to the endpoint that answered it last (its cached prefix), others spread."""

    async def main():
        async with (
            Stub(lambda r: Reply(body=completion_body(), delay=0.02)) as a,
            Stub(lambda r: Reply(body=completion_body(), delay=0.02)) as b,
        ):
            client = client_for(a.url, b.url)

            async def trajectory(name):
                for _ in range(4):
                    await client.chat(attrs.evolve(build_request(TASK), session=name))

            await asyncio.gather(*(trajectory(f"t{i}") for i in range(4)))
            await client.aclose()
            return len(a.requests), len(b.requests), dict(client._sessions)

    on_a, on_b, homes = run(main())
    assert on_a + on_b == 16 and on_a % 4 == 0 and on_b % 4 == 0  # each trajectory entirely on one endpoint
    assert on_a and on_b and set(homes) == {"t0", "t1", "t2", "t3"}


def test_a_refusing_endpoint_is_passed_over_for_a_working_one():
    with PortReservation() as dead:

        async def main():
            async with Stub(ok) as alive:
                client = client_for(f"http://127.0.0.1:{dead.port}", alive.url, backoff_s=0.5)
                results = await asyncio.gather(*(client.chat(build_request(TASK)) for _ in range(6)))
                await client.aclose()
                return results, client.stats()

        results, stats = run(main())
        assert all(r.text for r in results)
        assert stats[1]["requests"] >= 6 and stats[0]["failures"] >= 1


def test_the_request_object_is_only_read():
    request = ChatRequest(messages=(Message("user", "hi"),), tools=(Tool("f"),), native_tools=True)

    async def main():
        async with Stub(ok) as stub:
            client = client_for(stub.url)
            await client.chat(request, "m")
            await client.chat(request, "m")
            await client.aclose()
            return stub

    stub = run(main())
    assert stub.requests[0]["json"] == stub.requests[1]["json"]


def test_retry_after_is_honoured_up_to_the_cap_else_backoff_with_jitter():
    import email.utils
    import time

    import tenacity

    from bitagent_plugins.backends.openai_client import _Retryable, retry_after_seconds

    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("-1") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < retry_after_seconds(in_a_minute) <= 60
    client = client_for("http://127.0.0.1:9", backoff_s=1.0, max_backoff_s=8.0)

    def wait_after(error, attempt):
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        state.set_exception((type(error), error, None))
        return client._wait(state)

    endpoint = client.endpoints[0]
    assert wait_after(_Retryable("HTTP 503", endpoint, retry_after=2.0), 1) == 2.0
    assert wait_after(_Retryable("HTTP 503", endpoint, retry_after=600.0), 1) == 8.0
    waits = [wait_after(_Retryable("HTTP 503", endpoint), 3) for _ in range(50)]
    assert all(0 <= w <= 8.0 for w in waits) and len(set(waits)) > 1  # backoff, jittered
    run(client.aclose())


def test_tool_results_answer_the_native_calls_by_id():
    from bitagent_core.model import ToolCall
    from bitagent_plugins.backends.openai_format import to_openai_messages

    messages = to_openai_messages(
        (
            Message("user", "x"),
            Message("assistant", "", (ToolCall("a"), ToolCall("b"))),
            Message("tool", "1"),
            Message("tool", "2"),
            Message("assistant", "[f()]"),
            Message("tool", "3"),
        )
    )
    assert [m.get("tool_call_id") for m in messages] == [None, None, "call_0", "call_1", None, None]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_0", "call_1"]
