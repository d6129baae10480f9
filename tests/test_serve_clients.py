"""The reasoning server against clients nobody here wrote and against a broken upstream.

LiteLLM's OpenAI provider (plain, streaming, async, tools, errors as LiteLLM's own exception
types) on the fake generators of tests/fakes.py; and `backend=openai` in front of
tests/servers.py's hostile `StubServer` (500s, hangs, dropped and stalled streams) and in front
of a port nothing listens on: each is a clear 502 naming the upstream problem, or an answer cut
at the deadline, within the configured timeouts, and the server stays up with no task left.
Fast: no vLLM, seconds per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import openai
import pytest

from serve import app as serve_app
from serve.state import ServerState, compose_serve
from tests.servers import StubServer, free_port
from tests.test_serve import (
    KEY,
    MODEL,
    USER,
    WEATHER,
    fake,
    make_state,
    running,
    tool_fake,
    trace,
)

# LiteLLM's own pydantic models warn on import and on every streamed chunk: its noise, not ours
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_:DeprecationWarning"),
]

# --- LiteLLM ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def litellm() -> Any:
    """LiteLLM, kept off the network: its model-cost map from the package, no telemetry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    module = pytest.importorskip("litellm")
    module.telemetry = False
    module.suppress_debug_info = True
    return module


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ServerState]]:
    state = make_state(api_key=KEY, allowed_searches=["best_of_n", "greedy"], max_n=16)
    with running(state) as url:
        yield url, state


def ask(url: str, **kw: Any) -> dict[str, Any]:
    """LiteLLM's arguments for the OpenAI provider pointed at our server."""
    return {
        "model": f"openai/best_of_n/{MODEL}",
        "api_base": url + "/v1",
        "api_key": KEY,
        "messages": USER,
        "num_retries": 0,
    } | kw


def test_litellm_completion_answers_with_usage_equal_to_the_ledger(
    litellm: Any, served: tuple[str, ServerState]
) -> None:
    url = served[0]
    reply = litellm.completion(**ask(url))
    assert "\\boxed{4}" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    ledger = trace(url, reply.id)["ledger"]  # the id LiteLLM hands back is the trace's
    assert reply.usage.completion_tokens == ledger["generated_tokens"] > 0
    assert reply.usage.prompt_tokens == ledger["prompt_tokens"] + ledger["verifier_tokens"]
    assert ledger["samples"] == 8  # best_of_n's default n: every sample is in the usage


def test_litellm_streaming_joins_to_the_answer_with_usage(
    litellm: Any, served: tuple[str, ServerState]
) -> None:
    url = served[0]
    chunks = list(
        litellm.completion(**ask(url), stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "\\boxed{4}" in text and finishes[-1] == "stop"
    (usage,) = [u for c in chunks if (u := getattr(c, "usage", None)) is not None]
    ledger = trace(url, chunks[0].id)["ledger"]
    assert usage.completion_tokens == ledger["generated_tokens"] > 0
    assert usage.prompt_tokens == ledger["prompt_tokens"] + ledger["verifier_tokens"]


def test_litellm_acompletion(litellm: Any, served: tuple[str, ServerState]) -> None:
    url = served[0]

    async def both() -> list[Any]:
        return await asyncio.gather(
            litellm.acompletion(**ask(url, model=f"openai/greedy/{MODEL}")),
            litellm.acompletion(**ask(url, extra_body={"search": {"n": 3}})),
        )

    greedy, voted = asyncio.run(both())
    assert greedy.choices[0].message.content == "I add them. The answer is \\boxed{4}"
    assert trace(url, greedy.id)["search"] == "greedy"
    assert trace(url, voted.id)["ledger"]["samples"] == 3  # extra_body reached the search


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_tool_calls_come_back_as_tool_calls(litellm: Any, stream: bool) -> None:
    state = make_state(["search.n=5"], generator=tool_fake())
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with running(state) as url:
        reply = litellm.completion(
            **ask(url, api_key="none", messages=messages, tools=[WEATHER], seed=1, stream=stream)
        )
        if stream:
            chunks = list(reply)
            calls = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            calls = reply.choices[0].message.tool_calls or []
            finish = reply.choices[0].finish_reason
    (call,) = calls
    assert finish == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "C"}


def test_litellm_raises_its_own_exception_types(
    litellm: Any, served: tuple[str, ServerState]
) -> None:
    url = served[0]
    with pytest.raises(litellm.AuthenticationError, match="invalid API key") as err:
        litellm.completion(**ask(url, api_key="sk-wrong"))
    assert err.value.status_code == 401 and "sk-wrong" not in str(err.value)
    with pytest.raises(litellm.BadRequestError, match="search.bogus"):
        litellm.completion(**ask(url, extra_body={"search": {"bogus": 1}}))
    with pytest.raises(litellm.BadRequestError, match="server.max_n"):
        litellm.completion(**ask(url, extra_body={"search": {"n": 999}}))
    # LiteLLM's OpenAI provider maps a 403 to its generic APIError, the status kept
    with pytest.raises(litellm.APIError, match="server.allowed_searches") as denied:
        litellm.completion(**ask(url, model=f"openai/beam/{MODEL}"))
    assert denied.value.status_code == 403


# --- a broken upstream -----------------------------------------------------------------------

FAST = [  # small backend bounds, so that every fault ends in about a second
    "backend.served_model=stub",
    "backend.timeout_s=0.5",
    "backend.first_token_timeout_s=0.5",
    "backend.stall_timeout_s=0.5",
    "backend.deadline_s=3",
    "backend.max_retries=1",
    "backend.backoff_s=0.05",
]


def upstream_state(base_url: str, overrides: Sequence[str] = FAST) -> ServerState:
    """The server with `backend=openai` in front of `base_url` (no fake: the real backend)."""
    cfg_overrides = ["backend=openai", f"backend.base_urls=[{base_url}]", *overrides]
    return ServerState(compose_serve(cfg_overrides), overrides=cfg_overrides)


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer(max_requests=400, lifetime_s=120, hang_s=10) as handle:
        yield handle


@pytest.fixture(scope="module")
def healthy() -> Iterator[str]:
    """A second server, on a fake generator: a broken upstream of the first must not touch it."""
    with running(make_state()) as url:
        yield url


def assert_still_up(url: str, state: ServerState, healthy: str) -> None:
    """/health answers, a good request through the same server and one through the healthy
    server succeed, and no solve task is left behind."""
    assert httpx.get(url + "/health").json()["in_flight"] == 0
    good = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    reply = good.chat.completions.create(model=f"greedy/{MODEL}", messages=USER)
    assert reply.choices[0].message.content == "The answer is \\boxed{1}"  # the stub's answer
    other = openai.OpenAI(base_url=healthy + "/v1", api_key="none", max_retries=0)
    assert "\\boxed{4}" in (
        other.chat.completions.create(model=f"best_of_n/{MODEL}", messages=USER)
        .choices[0]
        .message.content
        or ""
    )
    deadline = time.monotonic() + 2
    while state.tasks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not state.tasks


@pytest.mark.parametrize(
    ("fault", "search", "stream", "named"),
    [
        ("FAIL500", "best_of_n", False, "Error code: 500"),
        ("FAIL500", "greedy", True, "Error code: 500"),
        ("HANG", "best_of_n", False, "backend.timeout_s=0.5 fired"),
        ("HANG", "best_of_n", True, "backend.timeout_s=0.5 fired"),
        ("SLOWSTART", "greedy", True, "backend.timeout_s=0.5 fired"),  # the stream's opening
        ("STALL", "greedy", True, "backend.stall_timeout_s=0.5 fired"),
        ("DROP", "greedy", True, "closed a stream after 3 tokens without finishing it"),
    ],
)
def test_a_broken_upstream_is_a_502_naming_it_and_the_server_stays_up(
    stub: StubServer, healthy: str, fault: str, search: str, stream: bool, named: str
) -> None:
    state = upstream_state(stub.base_url)
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=30)
        messages = [{"role": "user", "content": f"{fault}: what is 2 + 2?"}]
        started = time.monotonic()
        if stream:  # the headers are out: the error is the stream's last event, then [DONE]
            with pytest.raises(openai.APIError, match="the generator failed") as err:
                list(
                    client.chat.completions.create(
                        model=f"{search}/{MODEL}", messages=messages, stream=True
                    )
                )
            assert (err.value.code or "") == "upstream_error"
        else:
            with pytest.raises(openai.InternalServerError, match="the generator failed") as err:
                client.chat.completions.create(model=f"{search}/{MODEL}", messages=messages)
            assert err.value.status_code == 502
        assert time.monotonic() - started < 3.5  # two tries of 0.5 s and a backoff, not 10 s
        assert named in str(err.value) and stub.base_url in str(err.value)
        assert stub.count(fault) >= 1
        assert_still_up(url, state, healthy)


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_nobody_listens_on_is_a_502_and_the_server_stays_up(
    healthy: str, stream: bool
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    state = upstream_state(dead)
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=30)
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="no OpenAI-compatible server answered") as err:
            reply = client.chat.completions.create(
                model=f"best_of_n/{MODEL}", messages=USER, stream=stream
            )
            list(reply) if stream else None
        assert time.monotonic() - started < 3
        assert dead in str(err.value)
        if not stream:
            assert isinstance(err.value, openai.InternalServerError)
            assert err.value.status_code == 502
        assert httpx.get(url + "/health").status_code == 200
        counted = [
            line
            for line in httpx.get(url + "/metrics").text.splitlines()
            if line.startswith("reasoning_requests_total{") and 'status="502"' in line
        ]
        assert counted and counted[0].endswith(" 1.0")  # the failure is counted, once
        assert not state.tasks
    with running(make_state()) as url:  # the same process serves a healthy state after it
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=USER).choices


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("search", ["greedy", "best_of_n"])
def test_a_hanging_upstream_past_the_deadline_is_a_cut_answer_in_time(
    stub: StubServer,
    healthy: str,
    monkeypatch: pytest.MonkeyPatch,
    search: str,
    stream: bool,
) -> None:
    """Backend bounds longer than the request's deadline (budget.wall_s + the grace): the
    search is cancelled at the deadline and answers what it has, cut, once (a stream that
    followed progress until the deadline does not wait a second deadline for the answer)."""
    monkeypatch.setattr(serve_app, "DEADLINE_GRACE_S", 0.5)
    slow = [o for o in FAST if "timeout_s" not in o and "deadline_s" not in o]
    state = upstream_state(stub.base_url, [*slow, "backend.timeout_s=20", "backend.deadline_s=30"])
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=30)
        messages = [{"role": "user", "content": "HANG: what is 2 + 2?"}]
        kwargs: dict[str, Any] = dict(
            model=f"{search}/{MODEL}", messages=messages, extra_body={"budget": {"wall_s": 1.0}}
        )
        started = time.monotonic()
        if stream:
            chunks = list(client.chat.completions.create(**kwargs, stream=True))
            last = [c for c in chunks if c.choices][-1]
            finish, cut = last.choices[0].finish_reason, (last.model_extra or {}).get("cut")
        else:
            reply = client.chat.completions.create(**kwargs)
            finish, cut = reply.choices[0].finish_reason, (reply.model_extra or {})["cut"]
        took = time.monotonic() - started
        assert finish == "length" and cut is True
        assert 1.4 < took < 2.8  # the deadline is 1.5 s; twice it would be 3 s
        assert_still_up(url, state, healthy)


def test_litellm_a_full_server_is_its_rate_limit_error(litellm: Any) -> None:
    state = make_state(generator=fake(delay_s=0.5), max_in_flight=1, max_queue=1, retry_after_s=3)
    with running(state) as url:
        results: list[Any] = []
        threads = [
            threading.Thread(target=lambda: results.append(litellm.completion(**ask(url))))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while state.admission.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(litellm.RateLimitError) as err:
            litellm.completion(**ask(url, model=f"openai/greedy/{MODEL}"))
        assert err.value.status_code == 429
        for t in threads:
            t.join(10)
        assert len(results) == 2 and all(r.choices[0].message.content for r in results)


def test_litellm_a_down_upstream_is_its_bad_gateway_error(litellm: Any) -> None:
    """A 502 (not a 500) is what lets a gateway's client tell "the upstream is down" apart
    from "the search broke": LiteLLM raises its BadGatewayError."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with running(upstream_state(dead)) as url:
        with pytest.raises(litellm.BadGatewayError, match="no OpenAI-compatible server") as err:
            litellm.completion(**ask(url, api_key="none"))
        assert err.value.status_code == 502 and dead in str(err.value)
