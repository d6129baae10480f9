"""The widened generation interface through the Context, on scripted generators: metering of
streams and side prompts, budgets, thinking formats, and record/replay of streams."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from reasoning.budget import Budget, BudgetExhausted
from reasoning.cache import CachedGenerator, CacheMiss, CallCache
from reasoning.context import Context
from reasoning.prompts import ThinkingFormat
from reasoning.types import Chain, FinishReason, Problem, Sampling, TokenPrompt
from tests.fakes import ScriptedGenerator

PROBLEM = Problem("p", "What is 2 + 2?", "4")
TEXT = "one two three four five six seven eight nine ten"


async def _take(ctx: Context, k: int, **kwargs: object) -> list[str]:
    """Stream one sample and leave after k deltas."""
    got: list[str] = []
    stream = ctx.stream(Sampling(max_tokens=100), **kwargs)  # type: ignore[arg-type]
    async with contextlib.aclosing(stream):
        async for delta in stream:
            got.append(delta.text)
            if len(got) == k:
                break
    return got


async def test_an_aborted_stream_meters_exactly_the_delivered_tokens() -> None:
    gen = ScriptedGenerator([TEXT])
    ctx = Context(PROBLEM, gen)
    got = await _take(ctx, 4)
    assert got == ["one", " two", " three", " four"]
    assert gen.aborted == 1
    led = ctx.ledger
    assert (led.generated_tokens, led.generator_calls, led.samples) == (4, 1, 1)
    assert ctx._reserved_tokens == 0 and ctx._reserved_samples == 0  # handed back


async def test_a_whole_stream_meters_like_a_completion() -> None:
    gen = ScriptedGenerator([TEXT])
    ctx = Context(PROBLEM, gen)
    deltas = [d async for d in ctx.stream(Sampling(max_tokens=100))]
    assert "".join(d.text for d in deltas) == TEXT
    assert deltas[-1].finish_reason == FinishReason.EOS and all(
        d.finish_reason is None for d in deltas[:-1]
    )
    (whole,) = await ctx.generate(Sampling(max_tokens=100))
    assert ctx.ledger.generated_tokens == 2 * whole.tokens == 20
    assert sum(len(d.token_ids) for d in deltas) == len(whole.token_ids or ())


async def test_a_stream_is_one_sample() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator([TEXT]))
    with pytest.raises(ValueError, match="n=3"):
        async for _ in ctx.stream(Sampling(n=3)):
            pass


async def test_explicit_prompts_are_metered_but_are_not_new_samples() -> None:
    gen = ScriptedGenerator(lambda prompt, sampling: "yes" if "assistant:" in prompt else TEXT)
    ctx = Context(PROBLEM, gen, budget=Budget(samples=1))
    (first,) = await ctx.generate(Sampling(max_tokens=3))
    assert ctx.ledger.samples == 1
    # the samples limit is reached, yet the sample can still be continued and probed
    ids = ctx.prompt_ids() + (first.token_ids or ())
    (more,) = await ctx.generate(Sampling(max_tokens=2), prompt=TokenPrompt(ids))
    (probe,) = await ctx.generate(
        Sampling(max_tokens=1), prompt=[{"role": "user", "content": "Done?"}]
    )
    assert probe.text == "yes" and gen.calls[-1][0] == "user: Done?\nassistant: "
    assert gen.calls[1][0] == gen.render(PROBLEM) + "one two three"  # the exact ids, decoded
    led = ctx.ledger
    assert (led.samples, led.generator_calls, led.generated_tokens) == (1, 3, 3 + 2 + 1)
    with pytest.raises(BudgetExhausted):  # a new sample is refused
        await ctx.generate(Sampling(max_tokens=3))


async def test_a_chunked_chain_continues_from_its_token_ids() -> None:
    gen = ScriptedGenerator([TEXT])
    ctx = Context(PROBLEM, gen)
    ids = gen.tokenize("one two")
    chain = Chain(steps=("one", " two"), delimiter="", token_ids=ids)
    assert chain.text == "one two"
    assert ctx.prompt_ids(chain) == gen.tokenize(gen.render(PROBLEM)) + ids
    await ctx.generate(Sampling(max_tokens=1), chain)
    assert gen.calls[-1][0] == gen.render(PROBLEM) + "one two"  # no delimiter inserted
    child = chain.extend(" three", token_ids=gen.tokenize(" three"))
    assert child.delimiter == "" and child.text == "one two three"
    assert child.token_ids == gen.tokenize("one two three")


def test_thinking_formats_from_config_and_where_a_text_is() -> None:
    assert ThinkingFormat.of(None) is None
    think = ThinkingFormat.of({"open": "<think>", "close": "</think>", "forced": True})
    assert think is not None and think.forced
    assert think.is_open("prompt<think>\nhmm") and not think.is_open("<think>a</think>b")
    assert not think.is_open("no block at all")
    with pytest.raises(ValueError, match="model.thinking has unknown key"):
        ThinkingFormat.of({"start": "<think>"})
    with pytest.raises(ValueError, match="non-empty"):
        ThinkingFormat.of({"open": ""})


async def test_a_generator_that_cannot_stream_says_what_to_use() -> None:
    class Plain:
        name = "plain"

        def render(self, problem: Problem, chain: Chain | None = None) -> str:
            return "x"

        async def complete(self, prompt: object, sampling: Sampling) -> list[object]:
            return []

    ctx = Context(PROBLEM, Plain())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="vllm or openai backend"):
        ctx.tokenize("x")


# -- record / replay of streams ---------------------------------------------------------------


async def test_a_recorded_stream_replays_delta_by_delta_without_the_engine(tmp_path: Path) -> None:
    inner = ScriptedGenerator([TEXT])
    with CallCache(tmp_path / "c.sqlite") as cache:
        recorder = CachedGenerator(inner, cache, "record", name="g")
        prompt = TokenPrompt(inner.tokenize("Q: x\nA: "))
        recorded = [d async for d in recorder.stream(prompt, Sampling(max_tokens=100))]
        player = CachedGenerator(ScriptedGenerator(["other"]), cache, "replay", name="g")
        replayed = [d async for d in player.stream(prompt, Sampling(max_tokens=100))]
        assert [(d.text, d.token_ids) for d in replayed] == [
            (d.text, d.token_ids) for d in recorded
        ]
        assert all(d.cached for d in replayed) and replayed[-1].finish_reason == FinishReason.EOS
        assert len(inner.streams) == 1
        with pytest.raises(CacheMiss, match="no stream"):
            async for _ in player.stream(prompt, Sampling(max_tokens=99)):
                pass


async def test_an_aborted_recording_replays_up_to_its_abort_and_no_further(
    tmp_path: Path,
) -> None:
    inner = ScriptedGenerator([TEXT])
    with CallCache(tmp_path / "c.sqlite") as cache:
        ctx = Context(PROBLEM, CachedGenerator(inner, cache, "record", name="g"))
        assert await _take(ctx, 3) == ["one", " two", " three"]
        replay = Context(PROBLEM, CachedGenerator(inner, cache, "replay", name="g"))
        assert await _take(replay, 3) == ["one", " two", " three"]  # the same run: a hit
        assert replay.ledger.cache_hits == 1 and replay.ledger.generated_tokens == 3
        with pytest.raises(CacheMiss, match="only up to an abort after 3 deltas"):
            await _take(Context(PROBLEM, CachedGenerator(inner, cache, "replay", name="g")), 5)
        # auto mode does not trust the incomplete recording: it streams live, keeps the longer
        auto = Context(PROBLEM, CachedGenerator(inner, cache, "auto", name="g"))
        assert len(await _take(auto, 6)) == 6
        assert len(inner.streams) == 2 and auto.ledger.cache_hits == 0
        again = Context(PROBLEM, CachedGenerator(inner, cache, "replay", name="g"))
        assert len(await _take(again, 6)) == 6
