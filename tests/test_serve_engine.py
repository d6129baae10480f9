"""`reason-serve`'s app on the real SmolLM2 engine (the session's one engine), through the
openai SDK: a streamed best-of-2 chat answers with progress, content, usage and a trace id."""

from __future__ import annotations

import httpx
import openai
import pytest

from serve.state import ServerState, compose_serve
from tests.test_serve import running

pytestmark = pytest.mark.engine


def test_the_engine_answers_a_streamed_chat_through_the_sdk(engine: object) -> None:
    state = ServerState(compose_serve([]), generator=engine)  # type: ignore[arg-type]
    with running(state, shared_loop=True) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="best_of_n/smollm2-135m",
            messages=[{"role": "user", "content": "What is 2 + 3?"}],
            max_tokens=32,
            extra_body={"search": {"n": 2}},
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        trace = httpx.get(f"{url}/v1/traces/{chunks[0].id}").json()
    assert chunks[0].id.startswith("chatcmpl-")
    progress = [
        c
        for c in chunks
        if (c.model_extra or {}).get("reasoning_status")
        or (c.choices and (c.choices[0].delta.model_extra or {}).get("reasoning_content"))
    ]
    assert progress, "no progress chunk before the answer"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 2 * 32
    assert usage.completion_tokens == trace["ledger"]["generated_tokens"]
    assert (usage.model_extra or {})["breakdown"]["samples"] == 2
    assert len(trace["chains"]) == 2
