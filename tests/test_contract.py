"""The generation-result contract: finish reasons, refusals, metering and events (issue 18)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from evals.runner import event_counts
from reasoning import Budget, BudgetExhausted, Context, Problem, Sampling
from reasoning.backends.openai_server import OpenAIGenerator
from reasoning.cache.codecs import completion_from_json as _completion_from_json
from reasoning.cache.codecs import delta_from_json as _delta_from_json
from reasoning.types import Completion, EventKind, FinishReason, chain_finish
from tests.fakes import ScriptedGenerator

PROBLEM = Problem(id="p", question="q")
TEXT = "one two three four five six"  # six word-tokens, ends at EOS


def test_raw_reasons_become_the_enum() -> None:
    assert FinishReason.of("stop", None) is FinishReason.EOS
    assert FinishReason.of("stop", "\n\n") is FinishReason.STOP
    assert FinishReason.of("length") is FinishReason.LENGTH
    assert FinishReason.of("content_filter") is FinishReason.ABORT
    assert FinishReason.of(None) is FinishReason.ABORT
    assert Completion("x", 1, "stop").hit_eos
    assert not Completion("x", 1, "stop", stop="\n\n").hit_eos


def test_one_mapping_from_completion_to_chain_finish() -> None:
    eos, stop = Completion("a", 1, FinishReason.EOS), Completion("a", 1, "stop", stop="\n\n")
    length = Completion("a", 1, FinishReason.LENGTH)
    assert chain_finish(stop) is FinishReason.STOP  # a whole sample
    assert chain_finish(stop, goes_on=(FinishReason.STOP,)) is None  # a step goes on
    assert chain_finish(eos, goes_on=(FinishReason.STOP,), boxed=True) is FinishReason.EOS
    step = {"goes_on": (FinishReason.STOP,)}
    assert chain_finish(stop, **step, empty=True, boxed=True) is FinishReason.EMPTY
    assert chain_finish(stop, **step, boxed=True, last_step=True) is FinishReason.BOXED
    assert chain_finish(stop, **step, last_step=True) is FinishReason.MAX_STEPS
    assert chain_finish(length, goes_on=(FinishReason.LENGTH, FinishReason.BUDGET)) is None


def test_old_cache_files_replay_with_the_enum() -> None:
    old = {"text": "a", "tokens": 1, "finish_reason": "stop", "stop": None}
    assert _completion_from_json(old).finish_reason is FinishReason.EOS
    assert _completion_from_json(old | {"stop": "\n\n"}).finish_reason is FinishReason.STOP
    new = {"text": "a", "token_ids": [1], "finish_reason": "eos", "stop": None}
    assert _delta_from_json(new).finish_reason is FinishReason.EOS
    assert _delta_from_json(new | {"finish_reason": None}).finish_reason is None


async def test_a_generator_without_ids_is_metered_by_what_it_delivered() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator([TEXT], ids=False))
    (c,) = await ctx.generate(Sampling(max_tokens=100))
    assert c.tokens == 6 and ctx.ledger.generated_tokens == 6


async def test_a_stream_without_ids_is_metered_and_the_budget_binds() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator([TEXT], ids=False), budget=Budget(generated_tokens=8))
    deltas = [d async for d in ctx.stream(Sampling(max_tokens=100))]
    assert sum(d.tokens for d in deltas) == 6 and ctx.ledger.generated_tokens == 6
    deltas = [d async for d in ctx.stream(Sampling(max_tokens=100))]  # clamped to 2 tokens
    assert ctx.ledger.generated_tokens >= 8
    with pytest.raises(BudgetExhausted):
        [d async for d in ctx.stream(Sampling(max_tokens=100))]
    assert ctx.stopped_by == "generated_tokens"


class _Overlong(ScriptedGenerator):
    """Says it generated 1 token but delivers more ids than were asked for."""

    async def complete(self, prompt: Any, sampling: Sampling) -> list[Completion]:
        return [Completion(TEXT, 1, FinishReason.LENGTH, token_ids=tuple(range(6)))]


async def test_a_completion_longer_than_asked_is_counted_as_delivered() -> None:
    ctx = Context(PROBLEM, _Overlong())
    (c,) = await ctx.generate(Sampling(max_tokens=2))
    assert c.tokens == 6 and ctx.ledger.generated_tokens == 6


async def test_a_call_clamped_for_the_budget_ends_for_the_budget() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator([TEXT]), budget=Budget(generated_tokens=3))
    (c,) = await ctx.generate(Sampling(max_tokens=100))
    assert c.tokens == 3 and c.finish_reason is FinishReason.BUDGET
    (c,) = await ScriptedGenerator([TEXT]).complete("p", Sampling(max_tokens=3))
    assert c.finish_reason is FinishReason.LENGTH  # the generator's own cap stays LENGTH


async def test_a_refused_call_has_one_shape_and_names_the_limit() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator([TEXT]), budget=Budget(samples=1))
    await ctx.generate(Sampling(max_tokens=100))
    refused = await ctx.try_generate(Sampling(max_tokens=100, n=2))
    assert [c.refused for c in refused] == [True, True] and ctx.stopped_by == "samples"
    assert refused[0] == Completion.refusal() and refused[0].finish_reason is FinishReason.BUDGET
    assert not Completion("", 0, FinishReason.LENGTH).refused


def test_events_go_through_one_verb_and_are_read_only() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator())
    ctx.record(EventKind.FORK, policy="p", threads=2)
    ctx.record(EventKind.TRIM, reason="answer_reached")
    assert [dict(e) for e in ctx.events] == [
        {"event": "fork", "policy": "p", "threads": 2},
        {"event": "trim", "reason": "answer_reached"},
    ]
    with pytest.raises(TypeError):
        ctx.events[0]["event"] = "join"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.events.append({})  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        ctx.record("frobnicate")  # type: ignore[arg-type]
    assert event_counts(ctx.events) == {"fork": 1, "trim:answer_reached": 1}
    with pytest.raises(ValueError):
        event_counts([{"event": "frobnicate"}])


def _chunk(text: str, finish: str | None = None, total: int | None = None) -> Any:
    choice = SimpleNamespace(
        text=text, finish_reason=finish, logprobs=None, model_extra={}, index=0
    )
    usage = None if total is None else SimpleNamespace(prompt_tokens=3, completion_tokens=total)
    return SimpleNamespace(choices=[choice], usage=usage)


class _Response:
    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks

    def __aiter__(self) -> AsyncIterator[Any]:
        async def go() -> AsyncIterator[Any]:
            for c in self.chunks:
                yield c

        return go()

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("usage", [False, True])
async def test_the_openai_backend_counts_a_stream_without_ids(usage: bool) -> None:
    """A server that sends text only: its usage counts the tokens, else our tokenizer does."""
    gen = OpenAIGenerator("embedded:smollm2-135m", base_urls="http://127.0.0.1:9/v1")
    gen.served_model = "m"
    pieces = [" one", " two", " three"]
    chunks = [
        _chunk(p, "stop" if i == 2 else None, 5 * (i + 1) if usage else None)
        for i, p in enumerate(pieces)
    ]
    if usage:  # the whole sample's count after the last delta, as stream_options asks
        chunks.append(SimpleNamespace(choices=[], usage=SimpleNamespace(completion_tokens=20)))

    async def request(call: Any) -> _Response:
        return _Response(chunks)

    gen._request = request  # type: ignore[method-assign]
    ctx = Context(PROBLEM, gen)
    deltas = [d async for d in ctx.stream(Sampling(max_tokens=100))]
    assert deltas[-1].finish_reason is FinishReason.EOS
    expected = 20 if usage else 3 + 1  # one token a word, plus the EOS token it did not show
    assert sum(d.tokens for d in deltas) == expected == ctx.ledger.generated_tokens
    gen.close()
