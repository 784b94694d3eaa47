"""A prompt longer than llama.cpp's context (a multi-turn trajectory's: the README's multi-turn command gave
"Requested tokens (9091) exceed context window of 4096"): without ``-B n_ctx`` the backend grows the context to fit
it; with ``-B n_ctx`` given, the error says which value fits."""

from __future__ import annotations

import asyncio

import pytest

from bitagent_core.model import ChatRequest, Message
from bitagent_plugins.backends.llama_cpp import LlamaCppBackend, context_size_for


def test_context_sizes_are_powers_of_two_from_4096():
    assert [context_size_for(n) for n in (1, 4096, 4097, 9251, 16384, 16385)] == [4096, 4096, 8192, 16384, 16384, 32768]


@pytest.mark.slow
def test_a_prompt_over_a_given_n_ctx_says_which_n_ctx_fits():
    async def main() -> str:
        backend = LlamaCppBackend(None, {"n_ctx": "1024", "n_threads": "2"})
        await backend.start()
        try:
            await backend.complete(ChatRequest(messages=(Message("user", "hello " * 1500),), max_tokens=8))
        except ValueError as exc:
            return str(exc)
        finally:
            await backend.close()
        return "no error"

    message = asyncio.run(main())
    assert "more than the context window of 1024" in message and "-B n_ctx=1024 was given" in message
    assert "give it -B n_ctx=4096" in message


@pytest.mark.slow
def test_a_prompt_over_the_default_context_grows_it():
    async def main() -> tuple[str, dict]:
        backend = LlamaCppBackend(None, {"n_threads": "2"})
        await backend.start()
        try:
            done = await backend.complete(
                ChatRequest(messages=(Message("user", "hi " * 4200 + "Say ok."),), max_tokens=4)
            )
            return done.text, backend.describe()
        finally:
            await backend.close()

    text, described = asyncio.run(main())
    assert isinstance(text, str) and described["options"]["n_ctx"] == 8192
