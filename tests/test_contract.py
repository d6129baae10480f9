"""The generation-result contract: finish reasons, refusals, metering and events (issue 18);
what the Context does with a generator that returns nothing, too much, or a broken sample
(issue 19)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.grading import Grader
from evals.runner import event_counts
from reasoning import Budget, BudgetExhausted, Context, Problem, Sampling
from reasoning.backends.openai_server import OpenAIGenerator
from reasoning.cache.codecs import completion_from_json as _completion_from_json
from reasoning.cache.codecs import delta_from_json as _delta_from_json
from reasoning.context import MAX_EMPTY_RESPONSES, BrokenSampleError, EmptyResponseError
from reasoning.types import Completion, EventKind, FinishReason, chain_finish
from search import BestOfN, Greedy
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


async def test_a_completion_is_counted_as_delivered_and_clipped_to_max_tokens() -> None:
    """It says 1 token: the 6 it delivered are metered; past max_tokens it is clipped (text,
    ids and tokens) and a `clipped` event says so (issue 19, point 4)."""
    ctx = Context(PROBLEM, _Overlong())
    (c,) = await ctx.generate(Sampling(max_tokens=10))
    assert c.tokens == 6 and ctx.ledger.generated_tokens == 6 and not ctx.events
    (c,) = await ctx.generate(Sampling(max_tokens=2))
    assert (c.text, c.tokens, c.token_ids) == ("one two", 2, (0, 1))
    assert c.finish_reason is FinishReason.LENGTH and ctx.ledger.generated_tokens == 8
    assert [dict(e) for e in ctx.events] == [
        {"event": "clipped", "reason": "over_max_tokens", "delivered": 6, "max_tokens": 2}
    ]
    assert event_counts(ctx.events) == {"clipped:over_max_tokens": 1}


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


# --- hostile generators (issue 19, points 3, 4 and 5) -------------------------------------


def _ctx(gen: Any, **kw: Any) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), **kw)


class _Empty(ScriptedGenerator):
    """Answers every call of `empty_on` (call numbers; all when None) with no sample at all."""

    def __init__(self, empty_on: set[int] | None = None, **kw: Any) -> None:
        super().__init__(["\\boxed{1}"], **kw)
        self.empty_on = empty_on
        self.n_calls = 0

    async def complete(self, prompt: Any, sampling: Sampling) -> list[Completion]:
        self.n_calls += 1
        if self.empty_on is None or self.n_calls in self.empty_on:
            return []
        return await super().complete(prompt, sampling)


@pytest.mark.parametrize("search", [BestOfN(n=4), BestOfN(n=4, batch_size=1), Greedy()])
async def test_a_server_that_returns_nothing_ends_the_problem_located(search: Any) -> None:
    """Empty `choices` for ever: before, best_of_n and greedy asked again for ever."""
    gen = _Empty()
    ctx = _ctx(gen)
    with pytest.raises(EmptyResponseError, match="problem p: generator scripted returned no "):
        await asyncio.wait_for(search.run(PROBLEM, ctx), 10)
    assert gen.n_calls == MAX_EMPTY_RESPONSES
    assert (ctx.ledger.generator_calls, ctx.ledger.samples) == (3, 3)  # a call and a sample each
    assert event_counts(ctx.events) == {"empty_response": 3}


async def test_empty_responses_count_toward_the_sample_budget() -> None:
    ctx = _ctx(_Empty(), budget=Budget(samples=2))
    outcome = await asyncio.wait_for(BestOfN(n=4).run(PROBLEM, ctx), 10)
    assert outcome.stopped_by == "samples" and outcome.chains == []
    assert ctx.ledger.samples == 2 and ctx.ledger.generator_calls == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6),
    batch=st.none() | st.integers(1, 3),
    empty_on=st.sets(st.integers(1, 12), max_size=8),
    samples=st.none() | st.integers(1, 8),
)
def test_property_a_controller_ends_whatever_calls_return_nothing(
    n: int, batch: int | None, empty_on: set[int], samples: int | None
) -> None:
    """Whichever calls come back empty: the search ends, each empty call is one call and one
    sample, the budget binds, and only MAX_EMPTY_RESPONSES in a row fail the problem."""
    gen = _Empty(empty_on)
    ctx = _ctx(gen, budget=Budget(samples=samples))
    in_a_row = any(all(k + i in empty_on for i in range(3)) for k in range(1, 13))
    try:
        outcome = asyncio.run(
            asyncio.wait_for(BestOfN(n=n, batch_size=batch).run(PROBLEM, ctx), 10)
        )
    except EmptyResponseError:
        assert in_a_row
    else:
        assert len(outcome.chains) == n or outcome.stopped_by == "samples"
    empties = len([k for k in range(1, gen.n_calls + 1) if k in empty_on])
    assert ctx.ledger.generator_calls == gen.n_calls <= n + 3 * (n + 1)
    assert ctx.ledger.samples == empties + len(ctx.tree)  # the tree holds every chain
    if samples is not None:
        assert ctx.ledger.samples <= samples


class _Liar(ScriptedGenerator):
    """Ignores max_tokens (delivers `factor` times as many words) and claims `claim` tokens;
    `ids`: with token ids or text only."""

    def __init__(self, factor: int, claim: int | None, **kw: Any) -> None:
        super().__init__(lambda p, s: " ".join(["w"] * 200) + " \\boxed{1}", **kw)
        self.factor, self.claim = factor, claim

    async def complete(self, prompt: Any, sampling: Sampling) -> list[Completion]:
        wide = replace(sampling, max_tokens=sampling.max_tokens * self.factor)
        out = await super().complete(prompt, wide)
        return [c if self.claim is None else replace(c, tokens=self.claim) for c in out]

    async def stream(self, prompt: Any, sampling: Sampling) -> Any:
        wide = replace(sampling, max_tokens=sampling.max_tokens * self.factor)
        async for delta in super().stream(prompt, wide):
            yield delta


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    factor=st.integers(1, 40),
    claim=st.sampled_from([None, 0, 1]),
    ids=st.booleans(),
    max_tokens=st.integers(1, 64),
    n=st.integers(1, 6),
    batch=st.none() | st.integers(1, 3),
    budget=st.none() | st.integers(1, 150),
    greedy=st.booleans(),
)
def test_property_a_server_over_max_tokens_is_clipped_and_the_budget_binds(
    factor: int,
    claim: int | None,
    ids: bool,
    max_tokens: int,
    n: int,
    batch: int | None,
    budget: int | None,
    greedy: bool,
) -> None:
    """Whatever a server delivers past max_tokens and whatever it claims: every sample holds
    at most max_tokens tokens (text included), each cut is a `clipped` event, and the ledger
    stays within one token per in-flight sample of the budget, as with an honest server.
    Before: best-of-N's ledger showed 4,104 tokens under a budget of 100, stopped_by null."""
    gen = _Liar(factor, claim, ids=ids)
    search = (
        Greedy(max_tokens=max_tokens)
        if greedy
        else BestOfN(n=n, max_tokens=max_tokens, batch_size=batch)
    )
    in_flight = 1 if greedy else (batch or n)
    ctx = _ctx(gen, budget=Budget(generated_tokens=budget))
    outcome = asyncio.run(search.run(PROBLEM, ctx))
    for chain in outcome.chains:
        assert chain.tokens <= max_tokens and len(chain.text.split()) <= max_tokens
    clipped = [e for e in ctx.events if e["event"] == "clipped"]
    assert all(e["delivered"] > e["max_tokens"] for e in clipped)
    if factor > 1:
        assert clipped  # 201 words never fit max_tokens <= 64
    if budget is not None:
        assert ctx.ledger.generated_tokens <= budget + in_flight - 1
        if len(outcome.chains) < getattr(search, "n", 1):
            assert outcome.stopped_by == "generated_tokens"


@pytest.mark.parametrize("ids", [True, False])
async def test_a_stream_over_max_tokens_is_clipped_and_ends(ids: bool) -> None:
    ctx = _ctx(_Liar(10, None, ids=ids), budget=Budget(generated_tokens=1000))
    deltas = [d async for d in ctx.stream(Sampling(max_tokens=5))]
    assert sum(d.tokens for d in deltas) == 5 == ctx.ledger.generated_tokens
    assert "".join(d.text for d in deltas).split() == ["w"] * 5
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert event_counts(ctx.events) == {"clipped:over_max_tokens": 1}


class _Aborting(ScriptedGenerator):
    """Ends every sample with finish `abort` that nobody asked for (a dropped stream)."""

    async def complete(self, prompt: Any, sampling: Sampling) -> list[Completion]:
        out = await super().complete(prompt, sampling)
        return [replace(c, finish_reason=FinishReason.ABORT, stop=None) for c in out]

    async def stream(self, prompt: Any, sampling: Sampling) -> Any:
        async for delta in super().stream(prompt, sampling):
            done = delta.finish_reason is not None
            yield replace(delta, finish_reason=FinishReason.ABORT) if done else delta


async def test_an_aborted_sample_is_an_error_not_a_finished_sample() -> None:
    """Before, finish `abort` came back as a finished sample and was graded (point 5)."""
    ctx = _ctx(_Aborting([TEXT]))
    with pytest.raises(BrokenSampleError, match="problem p: .*1 of 1 sample.*'abort'"):
        await BestOfN(n=1).run(PROBLEM, ctx)
    assert ctx.ledger.generated_tokens == 6 and ctx.ledger.samples == 1  # what it spent is kept
    ctx = _ctx(_Aborting([TEXT]))
    got: list[Any] = []
    with pytest.raises(BrokenSampleError, match="streamed sample with finish 'abort' after 6"):
        async for delta in ctx.stream(Sampling(max_tokens=100)):
            got.append(delta)
    assert len(got) == 5 and all(d.finish_reason is None for d in got)  # none looked finished
    assert ctx.ledger.generated_tokens == 6 and ctx.ledger.samples == 1  # all 6 delivered
