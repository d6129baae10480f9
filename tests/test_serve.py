"""The reasoning server through clients nobody here wrote (the openai SDK, httpx), on the fake
generators of tests/fakes.py: method per request, limits, keys, errors as the SDK's own
exception types, usage equal to the ledger, traces, metrics, streaming, deadlines, replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from omegaconf import OmegaConf

from reasoning.prompts import ThinkingFormat
from reasoning.settings import SettingsError
from reasoning.solver import Solved
from serve import app as serve_app
from serve.app import create_app
from serve.requests import header_settings, method_of
from serve.settings import ServerSettings
from serve.state import ServerState, compose_serve
from tests.fakes import ScriptedGenerator

KEY = "sk-test-key"
MODEL = "smollm2-135m"
ANSWERS = ["I add them. The answer is \\boxed{4}", "Hmm so \\boxed{4}", "maybe \\boxed{5}"]
USER = [{"role": "user", "content": "What is 2 + 2?"}]


def fake(**options: Any) -> ScriptedGenerator:
    """Greedy (temperature 0) writes the first answer; sampling cycles through all three, so
    eight samples vote 4."""
    turn = iter(range(10**9))

    def text(prompt: str, sampling: Any) -> str:
        return ANSWERS[0] if sampling.temperature == 0 else ANSWERS[next(turn) % len(ANSWERS)]

    return ScriptedGenerator(text, **options)


def make_state(
    overrides: Sequence[str] = (),
    generator: Any = None,
    **server: Any,
) -> ServerState:
    cfg = compose_serve(list(overrides))
    for key, value in server.items():
        OmegaConf.update(cfg, f"server.{key}", value, merge=False)
    return ServerState(cfg, generator=generator or fake(), overrides=overrides)


@contextlib.contextmanager
def running(state: ServerState, *, shared_loop: bool = False) -> Iterator[str]:
    """The app on uvicorn on a free 127.0.0.1 port; stopped on exit. In a thread of its own,
    or (`shared_loop`) on the process's shared loop (reasoning.loop), where the session's engine
    lives: an engine serves the loop that first used it, so a server on another loop would
    leave it bound to a loop that is gone for the tests after it."""
    config = uvicorn.Config(create_app(state), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    if shared_loop:
        from reasoning.loop import background_loop

        done = asyncio.run_coroutine_threadsafe(server.serve(), background_loop())
        alive = lambda: not done.done()  # noqa: E731
    else:
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        alive = thread.is_alive
    deadline = time.monotonic() + 20
    while not server.started:
        assert alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        if shared_loop:
            done.result(15)
        else:
            thread.join(15)
        assert not alive()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ServerState]]:
    state = make_state(
        api_key=KEY,
        allowed_searches=["best_of_n", "greedy", "beam"],
        max_n=16,
        max_tokens=1024,
        max_body_bytes=20_000,
    )
    with running(state) as url:
        yield url, state


@pytest.fixture
def client(served: tuple[str, ServerState]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0] + "/v1", api_key=KEY, max_retries=0)


def trace(url: str, rid: str) -> dict[str, Any]:
    got = httpx.get(f"{url}/v1/traces/{rid}", headers={"Authorization": f"Bearer {KEY}"})
    assert got.status_code == 200, got.text
    return got.json()


# --- answers and usage ---------------------------------------------------------------------


def test_chat_answers_with_the_vote_and_usage_equal_to_the_ledger(
    client: openai.OpenAI, served: tuple[str, ServerState]
) -> None:
    reply = client.chat.completions.create(model=f"best_of_n/{MODEL}", messages=USER)
    assert reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert "\\boxed{4}" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    extra = reply.model_extra or {}
    assert extra["search"] == "best_of_n" and extra["cut"] is False
    usage = reply.usage
    assert usage is not None
    ledger = trace(served[0], reply.id)["ledger"]
    assert usage.completion_tokens == ledger["generated_tokens"] > 0
    assert usage.prompt_tokens == ledger["prompt_tokens"] + ledger["verifier_tokens"] > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    breakdown = (usage.model_extra or {})["breakdown"]
    assert breakdown["samples"] == ledger["samples"] == 8  # best_of_n's default n
    assert breakdown["generator_calls"] == ledger["generator_calls"]
    assert set(breakdown) >= {"verifier_calls", "verifier_tokens", "cached_prompt_tokens",
                              "critical_path_tokens", "wall_s"}  # fmt: skip


def test_a_bare_model_name_runs_the_servers_default_search(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=USER)
    assert (reply.model_extra or {})["search"] == "best_of_n"


def test_completions_endpoint(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=f"greedy/{MODEL}", prompt="2 + 2 =", max_tokens=64)
    assert reply.object == "text_completion"
    assert "\\boxed{" in reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_method_by_extra_body_and_headers(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=USER, extra_body={"search": {"name": "best_of_n", "n": 3}}
    )
    assert (reply.usage.model_extra or {})["breakdown"]["samples"] == 3  # type: ignore[union-attr]
    reply = client.chat.completions.create(
        model=MODEL, messages=USER, extra_headers={"X-Reasoning-Search": "greedy"}
    )
    assert (reply.model_extra or {})["search"] == "greedy"
    assert (reply.usage.model_extra or {})["breakdown"]["samples"] == 1  # type: ignore[union-attr]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        extra_headers={"X-Reasoning-Settings": "search.n=2,budget.samples=2"},
    )
    assert (reply.usage.model_extra or {})["breakdown"]["samples"] == 2  # type: ignore[union-attr]


def test_openai_sampling_fields_reach_the_controller(served: tuple[str, ServerState]) -> None:
    state = served[1]
    method = method_of(
        {"model": MODEL, "max_tokens": 33, "temperature": 0.1},
        {},
        served=state.served,
        default_search="greedy",
        sampling_keys=state.sampling_keys,
    )
    plan = state.plan(method)
    assert plan.parts.search.max_tokens == 33  # type: ignore[attr-defined]
    assert "temperature" not in method.search_settings  # greedy has no temperature key


def test_n_choices_are_independent_searches(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=f"best_of_n/{MODEL}", messages=USER, n=2, extra_body={"search": {"n": 2}}
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert (reply.usage.model_extra or {})["breakdown"]["samples"] == 4  # type: ignore[union-attr]


def test_stop_strings_cut_the_content(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=f"greedy/{MODEL}", messages=USER, stop=["answer"])
    assert reply.choices[0].message.content == "I add them. The "
    assert reply.choices[0].finish_reason == "stop"


async def test_async_client_chat_and_completions(served: tuple[str, ServerState]) -> None:
    aclient = openai.AsyncOpenAI(base_url=served[0] + "/v1", api_key=KEY, max_retries=0)
    chat, text = await asyncio.gather(
        aclient.chat.completions.create(model=f"greedy/{MODEL}", messages=USER),
        aclient.completions.create(model=f"greedy/{MODEL}", prompt="2 + 2 ="),
    )
    assert "\\boxed{4}" in (chat.choices[0].message.content or "")
    assert "\\boxed{4}" in text.choices[0].text
    await aclient.close()


# --- streaming -----------------------------------------------------------------------------


def test_streaming_sends_status_then_the_answer_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=f"best_of_n/{MODEL}",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.id == chunks[0].id for c in chunks)
    statuses = [c for c in chunks if (c.model_extra or {}).get("reasoning_status")]
    assert statuses, "no reasoning_status chunk"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "\\boxed{4}" in content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].choices == []


def test_streamed_completions(client: openai.OpenAI) -> None:
    stream = client.completions.create(model=f"greedy/{MODEL}", prompt="2 + 2 =", stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert "\\boxed{4}" in text


class ListFeed:
    """A test feed with the agreed ProgressFeed surface (put, close, async iteration)."""

    def __init__(self, max_items: int = 1024) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: Any) -> None:
        self.queue.put_nowait(item)

    def close(self) -> None:
        self.queue.put_nowait(None)

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


class Item:
    def __init__(self, kind: str, text: str = "", **fields: Any) -> None:
        self.kind, self.text, self.fields = kind, text, fields


def test_a_progress_feed_streams_thinking_status_and_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the feed (interface 1): a search's tokens go out as reasoning deltas, its status
    items as reasoning_status chunks; a single path's tokens after thinking are the content."""
    from reasoning.solver import solve_problem

    monkeypatch.setattr(serve_app, "ProgressFeed", ListFeed)
    gen = ScriptedGenerator(["<think>two and two</think> so \\boxed{4}"])
    gen.thinking = ThinkingFormat()

    async def solve(problem: Any, parts: Any, *, seed: int = 0, feed: Any = None) -> Solved:
        try:
            if feed is not None:
                for piece in ["<think>two", " and two", "</think> so", " \\boxed{4}"]:
                    feed.put(Item("token", piece))
                feed.put(Item("status", step=1, chains_alive=1, generated_tokens=5))
            return await solve_problem(problem, parts, seed=seed)
        finally:
            if feed is not None:
                feed.close()

    state = make_state(generator=gen)
    state.solve = solve  # type: ignore[attr-defined]
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        for model, single in ((f"greedy/{MODEL}", True), (f"best_of_n/{MODEL}", False)):
            chunks = list(client.chat.completions.create(model=model, messages=USER, stream=True))
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            thought = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
            content = "".join(d.content or "" for d in deltas)
            status = [(c.model_extra or {}).get("reasoning_status") for c in chunks]
            assert {"step": 1, "chains_alive": 1, "generated_tokens": 5} in status
            assert content.strip() == "so \\boxed{4}"
            assert "two and two" in thought
            if single:  # the answer's tokens came as they were decoded, not once more
                assert [d.content for d in deltas if d.content] == [" so", " \\boxed{4}"]


def test_a_client_that_leaves_a_stream_cancels_its_search(
    served: tuple[str, ServerState],
) -> None:
    cancelled = threading.Event()
    state = make_state()

    async def solve(problem: Any, parts: Any, *, seed: int = 0) -> Solved:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not cancelled")

    state.solve = solve  # type: ignore[attr-defined]
    with running(state) as url:
        body = {"model": MODEL, "messages": USER, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as r:
            first = next(r.iter_lines())
            assert first.startswith("data: ")
        assert cancelled.wait(10), "the search went on after the client left"
        deadline = time.monotonic() + 5
        while (state.admission.in_flight or state.tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.admission.in_flight == 0 and not state.tasks


def test_a_client_that_leaves_a_plain_request_cancels_its_search() -> None:
    cancelled = threading.Event()
    state = make_state()

    async def solve(problem: Any, parts: Any, *, seed: int = 0) -> Solved:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not cancelled")

    state.solve = solve  # type: ignore[attr-defined]
    with running(state) as url:
        body = {"model": MODEL, "messages": USER}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=0.5)
        assert cancelled.wait(10), "the search went on after the client left"
        metrics = httpx.get(url + "/metrics").text
        assert "reasoning_client_disconnects_total 1.0" in metrics
        assert "reasoning_queue_wait_seconds_count 1.0" in metrics


# --- deadlines -------------------------------------------------------------------------------


def test_a_deadline_answers_with_what_the_search_has_marked_cut() -> None:
    gen = fake(delay_s=0.2)
    state = make_state(["search.batch_size=1"], generator=gen, max_wall_s=0.5)
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        started = time.monotonic()
        reply = client.chat.completions.create(model=MODEL, messages=USER)
        assert time.monotonic() - started < 3
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert (choice.model_extra or {})["cut"] is True and (reply.model_extra or {})["cut"] is True
    assert "\\boxed{4}" in (choice.message.content or "")
    samples = (reply.usage.model_extra or {})["breakdown"]["samples"]  # type: ignore[union-attr]
    assert 1 <= samples < 8


# --- errors as the SDK's exception types -----------------------------------------------------


def test_an_unknown_search_key_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"search\.bogus"):
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_body={"search": {"bogus": 1}}
        )
    with pytest.raises(openai.BadRequestError, match=r"search\.n must be"):
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_body={"search": {"n": "many"}}
        )
    with pytest.raises(openai.BadRequestError, match=r"budget\.wall_s"):
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_body={"budget": {"wall_s": -1}}
        )


def test_unknown_and_refused_controllers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown search 'nope'") as bad:
        client.chat.completions.create(model=f"nope/{MODEL}", messages=USER)
    assert bad.value.code == "unknown_search"
    with pytest.raises(openai.PermissionDeniedError, match="allowed_searches"):
        client.chat.completions.create(model=f"particle_filter/{MODEL}", messages=USER)
    with pytest.raises(openai.BadRequestError, match="needs a verifier"):
        client.chat.completions.create(model=f"beam/{MODEL}", messages=USER)
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-4o", messages=USER)


def test_operator_limits_are_400s_naming_the_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"server\.max_n=16"):
        client.chat.completions.create(model=MODEL, messages=USER, n=17)
    with pytest.raises(openai.BadRequestError, match=r"search\.n=32 .*server\.max_n=16"):
        client.chat.completions.create(model=MODEL, messages=USER, extra_body={"search": {"n": 32}})
    with pytest.raises(openai.BadRequestError, match=r"server\.max_tokens=1024"):
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5000)


def test_config_syntax_in_a_request_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="_target_"):
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_body={"search": {"_target_": "os.system"}}
        )
    with pytest.raises(openai.BadRequestError, match=r"\$\{"):
        client.chat.completions.create(
            model=MODEL,
            messages=USER,
            extra_body={"search": {"aggregate": "${oc.env:REASONING_API_KEY}"}},
        )


def test_malformed_bodies_are_400s(served: tuple[str, ServerState]) -> None:
    url, headers = served[0] + "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}
    cases = [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"model": MODEL}).encode(), "messages"),
        (json.dumps({"model": MODEL, "messages": [{"role": "robot"}]}).encode(), "role"),
        (json.dumps({"model": MODEL, "messages": USER, "n": 0}).encode(), "n must be"),
        (json.dumps({"model": 5, "messages": USER}).encode(), "model must be"),
        (json.dumps({"model": MODEL, "messages": USER, "stop": 3}).encode(), "stop must be"),
    ]
    for body, said in cases:
        got = httpx.post(url, content=body, headers=headers)
        assert got.status_code == 400, (body, got.text)
        error = got.json()["error"]
        assert said in error["message"] and error["type"] == "invalid_request_error"


def test_missing_or_wrong_key_is_401_everywhere_but_health(served: tuple[str, ServerState]) -> None:
    url = served[0]
    client = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert err.value.code == "invalid_api_key" and "wrong" not in err.value.message
    got = httpx.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": USER})
    assert got.status_code == 401 and got.json()["error"]["code"] == "missing_key"
    for path in ("/v1/models", "/metrics", "/v1/traces/x"):
        assert httpx.get(url + path).status_code == 401
        assert httpx.get(url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url + "/health").status_code == 200


def test_a_body_over_the_limit_is_413(client: openai.OpenAI) -> None:
    big = [{"role": "user", "content": "x" * 30_000}]
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=MODEL, messages=big)
    assert err.value.status_code == 413
    assert "max_body_bytes" in err.value.message


def test_a_failing_generator_is_a_clear_5xx_and_the_server_stays_up() -> None:
    state = make_state(generator=fake(fail_on=lambda prompt: True))
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError, match="generator failed") as err:
                client.chat.completions.create(model=MODEL, messages=USER)
            assert err.value.status_code == 502
        assert httpx.get(url + "/health").json()["in_flight"] == 0
        stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="generator failed"):
            list(stream)
    assert not state.tasks


def test_a_full_server_answers_429_with_retry_after() -> None:
    gen = fake(delay_s=0.5)
    state = make_state(generator=gen, max_in_flight=1, max_queue=1, retry_after_s=3)
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        results: list[Any] = []

        def call() -> None:
            try:
                results.append(
                    client.chat.completions.create(model=f"greedy/{MODEL}", messages=USER)
                )
            except Exception as exc:  # noqa: BLE001 - collected and checked below
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while state.admission.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model=f"greedy/{MODEL}", messages=USER)
        assert err.value.response.headers["retry-after"] == "3"
        for t in threads:
            t.join(10)
        assert len(results) == 2 and not [r for r in results if isinstance(r, Exception)]
        metrics = httpx.get(url + "/metrics").text
        assert 'reasoning_rejections_total{reason="server_busy"} 1.0' in metrics


# --- models, traces, metrics --------------------------------------------------------------


def test_models_lists_every_allowed_search(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert names == {MODEL, f"best_of_n/{MODEL}", f"greedy/{MODEL}", f"beam/{MODEL}"}


def test_trace_json_and_page(client: openai.OpenAI, served: tuple[str, ServerState]) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=USER)
    data = trace(served[0], reply.id)
    assert data["id"] == reply.id and data["search"] == "best_of_n"
    assert len(data["chains"]) == 8 and data["prediction"] == "4"
    headers = {"Authorization": f"Bearer {KEY}"}
    for path in (f"/v1/traces/{reply.id}?format=html", f"/v1/traces/{reply.id}/view"):
        page = httpx.get(served[0] + path, headers=headers)
        assert page.status_code == 200 and page.text.lstrip().lower().startswith("<!doctype")
    missing = httpx.get(served[0] + "/v1/traces/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "trace_not_found"


def test_metrics_show_the_series(client: openai.OpenAI, served: tuple[str, ServerState]) -> None:
    client.chat.completions.create(model=f"greedy/{MODEL}", messages=USER)
    text = httpx.get(served[0] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for series in (
        'reasoning_requests_total{controller="greedy",endpoint="/v1/chat/completions",status="200"}',
        'reasoning_generated_tokens_total{controller="greedy"}',
        "reasoning_verifier_tokens_total",
        "reasoning_request_latency_seconds_bucket",
        "reasoning_searches_in_flight",
        "reasoning_queue_length",
        "reasoning_rejections_total",
        "reasoning_engine_running_requests",
    ):
        assert series in text, series


# --- replay ---------------------------------------------------------------------------------


def test_replay_answers_a_recorded_request_with_no_generator(tmp_path: Path) -> None:
    cache = tmp_path / "calls.sqlite"
    body = {"model": MODEL, "messages": USER, "seed": 7}

    def ask(state: ServerState) -> dict[str, Any]:
        with running(state) as url:
            got = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        assert got.status_code == 200, got.text
        return got.json()

    recorded = ask(make_state(["cache.mode=record", f"cache.path={cache}"]))
    refuse = fake(fail_on=lambda prompt: True)
    replayed = ask(make_state(["cache.mode=replay", f"cache.path={cache}"], generator=refuse))
    assert refuse.calls == []
    assert replayed["choices"][0]["message"] == recorded["choices"][0]["message"]
    assert replayed["usage"]["breakdown"]["cache_hits"] > 0


# --- settings and parsing -------------------------------------------------------------------


def test_server_settings_are_typed() -> None:
    with pytest.raises(SettingsError, match=r"server\.port must be an integer in 0 \.\. 65535"):
        ServerSettings(port=70000)
    with pytest.raises(SettingsError, match=r"server\.bogus is not"):
        ServerSettings(bogus=1)  # type: ignore[call-arg]
    assert ServerSettings().host == "127.0.0.1"


def test_settings_header_forms() -> None:
    assert header_settings('{"search": {"n": 4}}') == {"search": {"n": 4}}
    assert header_settings("search.n=4, budget.wall_s=2.5,search.aggregate=majority") == {
        "search": {"n": 4, "aggregate": "majority"},
        "budget": {"wall_s": 2.5},
    }
    with pytest.raises(Exception, match="must start with one of"):
        header_settings("n=4")


def test_the_environment_key_guards_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONING_API_KEY", "from-env")
    state = make_state()
    with running(state) as url:
        assert httpx.get(url + "/v1/models").status_code == 401
        ok = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200


def test_a_bad_server_key_fails_before_the_generator_is_built() -> None:
    cfg = compose_serve(["server.port=70000"])
    with pytest.raises(SettingsError, match=r"server\.port"):
        ServerState(cfg)  # the configured engine is never reached


def test_a_repeated_method_reuses_its_built_controller(served: tuple[str, ServerState]) -> None:
    state = served[1]
    ask = {"model": f"best_of_n/{MODEL}", "search": {"n": 5}}
    first = state.plan(method_of(ask, {}, served=state.served, default_search="best_of_n"))
    again = state.plan(method_of(ask, {}, served=state.served, default_search="best_of_n"))
    other = state.plan(
        method_of({**ask, "search": {"n": 6}}, {}, served=state.served, default_search="x")
    )
    assert first.parts.search is again.parts.search
    assert other.parts.search is not first.parts.search and other.parts.search.n == 6  # type: ignore[attr-defined]


def test_reason_serve_help_names_its_keys() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run(
        [sys.executable, "-m", "serve.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "reason-serve" in out.stdout and "max_in_flight" in out.stdout
    assert "search: adaptive_sc, astar, auto, beam, best_of_n" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "serve.cli", "server.port=70000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert "server.port must be an integer in 0 .. 65535, got 70000" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_thinking_models_thinking_is_reasoning_content() -> None:
    gen = ScriptedGenerator(["<think>two and two</think> so \\boxed{4}"])
    gen.thinking = ThinkingFormat()
    with running(make_state(generator=gen)) as url:
        got = httpx.post(
            url + "/v1/chat/completions", json={"model": f"greedy/{MODEL}", "messages": USER}
        )
    message = got.json()["choices"][0]["message"]
    assert message["reasoning_content"].strip() == message["reasoning"].strip() == "two and two"
    assert message["content"].strip() == "so \\boxed{4}"


# --- tools -----------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def tool_fake() -> ScriptedGenerator:
    """Five samples: three call the tool (the arguments' keys in different orders), two answer
    in prose."""
    calls = [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}'
        "</tool_call>",
        '<tool_call>{"arguments": {"unit": "C", "city": "Paris"}, "name": "get_weather"}'
        "</tool_call>",
        "It is sunny.",
    ]
    turn = iter(range(10**9))

    def text(prompt: str, sampling: Any) -> str:
        return calls[next(turn) % len(calls)]

    return ScriptedGenerator(text)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_win_the_vote_and_come_back_as_tool_calls(stream: bool) -> None:
    """The samples vote over normalised calls (3 against 2 answers), the call comes back as
    `tool_calls` (and survives streaming); without tools offered, no text is read as a call."""
    state = make_state(["search.n=5"], generator=tool_fake())
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with running(state) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        kwargs: dict[str, Any] = dict(
            model=f"best_of_n/{MODEL}", messages=messages, tools=[WEATHER], seed=1
        )
        if not stream:
            reply = client.chat.completions.create(**kwargs)
            choice = reply.choices[0]
            assert choice.finish_reason == "tool_calls"
            (call,) = choice.message.tool_calls or []
            name, arguments = call.function.name, call.function.arguments
        else:
            parts = list(client.chat.completions.create(**kwargs, stream=True))
            deltas = [c.choices[0].delta for c in parts if c.choices]
            (call,) = [t for d in deltas for t in (d.tool_calls or [])]
            assert call.function is not None
            name, arguments = call.function.name, call.function.arguments
            assert [c.choices[0].finish_reason for c in parts if c.choices][-1] == "tool_calls"
        assert name == "get_weather"
        assert json.loads(arguments or "") == {"city": "Paris", "unit": "C"}
        plain = client.chat.completions.create(model=f"best_of_n/{MODEL}", messages=messages)
        assert plain.choices[0].finish_reason == "stop"
        assert plain.choices[0].message.tool_calls in (None, [])


def test_a_bad_tool_schema_is_a_400_naming_it(client: openai.OpenAI) -> None:
    bad_tool = {"type": "function", "function": {"name": "no spaces allowed", "parameters": {}}}
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\]"):
        client.chat.completions.create(model=MODEL, messages=USER, tools=[bad_tool])
