"""Chunked decoding: chunks continue the exact token prefix, and only EOS or a stop finishes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from evals.grading import Grader
from reasoning import Budget, Context, Problem
from reasoning.tree import ROOT, NodeStatus
from reasoning.types import Chain, Completion, FinishReason, Sampling
from search.chunked import (
    Chunk,
    ChunkSampling,
    chunk_child,
    decode_chunks,
    fork_at,
    start_chain,
)
from tests.fakes import ScriptedGenerator, TokenRuleGenerator, always

PROBLEM = Problem("p", "What is 4 + 5?", "9")
TRACE = "we add 4 and 5 to get 9 so the answer is \\boxed{9}"  # 13 word-tokens

Script = Callable[[str, Sampling], str]
"""What follows the text generated so far (the whole rest of the sample)."""
Table = Callable[[str, str], dict[str, float]]
"""(text before the token, the token) -> {token text: logprob} of its top-k alternatives."""


def default_table(before: str, piece: str) -> dict[str, float]:
    """A confident token: the sampled one at -0.05, two unlikely alternatives."""
    return {piece: -0.05, " Z8": -4.0, " Z9": -5.0}


class TokenScript(TokenRuleGenerator):
    """A token-level scripted generator: continues `script` from the exact prompt ids it gets,
    one word-token at a time, and returns token ids, logprobs, top-k tables and their ids.

    `token_prompts` keeps every prompt as ids, so a test can check the exact prefix a call
    continued. The rest of the script ends at EOS; a stop string ends it earlier (the token
    it begins in is dropped, so the text stays the detokenized ids).
    """

    def __init__(self, script: Script, table: Table = default_table) -> None:
        super().__init__(
            [(always, lambda prompt, sampling: script(self.generated(prompt), sampling))],
            stop_cut="token",
            table=lambda before, piece: table(self.generated(before), piece),
        )
        self.script = script

    def generated(self, text: str) -> str:
        """What the prompt holds after the rendered question."""
        return text.split("\nA: ", 1)[1]


def follow(*traces: str, fallback: str = " so \\boxed{7}") -> Script:
    """Continue whichever trace the text so far is a prefix of (the first one for none yet)."""

    def script(before: str, sampling: Sampling) -> str:
        for trace in traces:
            if trace.startswith(before):
                return trace[len(before) :]
        return fallback

    return script


def context(gen: ScriptedGenerator, budget: Budget | None = None) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), budget=budget)


async def decode_all(ctx: Context, policy: ChunkSampling) -> list[Chunk]:
    """Chunks of one chain from the bare prompt until it finishes."""
    chain, chunks = start_chain(), []
    while not chain.finished:
        (chunk,) = await decode_chunks(ctx, [chain], policy)
        assert chunk.completion is not None
        chunks.append(chunk)
        chain = chunk.chain
    return chunks


async def test_a_trace_decoded_in_chunks_equals_it_decoded_whole() -> None:
    whole_gen, chunk_gen = TokenScript(follow(TRACE)), TokenScript(follow(TRACE))
    chunk_gen.vocabulary = whole_gen.vocabulary  # one tokenizer: ids compare across runs
    whole_ctx, chunk_ctx = context(whole_gen), context(chunk_gen)
    (whole,) = await decode_all(whole_ctx, ChunkSampling(round_tokens=100, top_logprobs=3))
    chunks = await decode_all(chunk_ctx, ChunkSampling(round_tokens=5, top_logprobs=3))
    a, b = whole.chain, chunks[-1].chain
    assert len(chunks) == 3 and len(a.token_ids or ()) == 13  # 5 + 5 + 3 tokens
    assert b.text == a.text == TRACE and b.token_ids == a.token_ids
    assert b.logprobs == a.logprobs and b.top_logprobs == a.top_logprobs
    assert b.tokens == a.tokens == 13 and b.delimiter == "" and len(b.steps) == 3
    assert b.finished and b.finish_reason is FinishReason.EOS
    # each call continued the exact ids: the rendered question, then what came before
    head = chunk_gen.tokenize(chunk_gen.render(PROBLEM))
    ids = a.token_ids or ()
    assert chunk_gen.token_prompts == [head, head + ids[:5], head + ids[:10]]
    # a continuation is not a new sample; the tokens match the whole decode
    assert chunk_ctx.ledger.samples == whole_ctx.ledger.samples == 1
    assert chunk_ctx.ledger.generated_tokens == 13 and chunk_ctx.ledger.generator_calls == 3
    # the chunks are a path in the tree
    path = chunk_ctx.tree.path(b.id)
    assert path == [ROOT, *(c.chain.id for c in chunks)]
    assert [chunk_ctx.tree.status(c.chain.id) for c in chunks] == [
        NodeStatus.EXPANDED,
        NodeStatus.EXPANDED,
        NodeStatus.FINISHED,
    ]
    assert [c.start for c in chunks] == [0, 5, 10]


async def test_a_length_finish_does_not_finish_but_eos_and_stop_do() -> None:
    gen = TokenScript(follow(TRACE))
    ctx = context(gen)
    (cut,) = await decode_chunks(ctx, [start_chain()], ChunkSampling(round_tokens=3))
    assert cut.completion is not None and cut.completion.finish_reason == "length"
    assert not cut.chain.finished and cut.chain.finish_reason is None
    (done,) = await decode_chunks(ctx, [cut.chain], ChunkSampling(round_tokens=50))
    assert done.chain.finished and done.chain.finish_reason is FinishReason.EOS
    stopped = TokenScript(follow("we add 4 STOP and more"))
    (stop,) = await decode_chunks(
        context(stopped), [start_chain()], ChunkSampling(round_tokens=50, stop=("STOP",))
    )
    assert stop.chain.finished and stop.chain.finish_reason is FinishReason.STOP
    assert stop.chain.text == "we add 4"
    # a finished chain is not decoded again
    (again,) = await decode_chunks(ctx, [done.chain], ChunkSampling())
    assert again.completion is None and again.chain is done.chain and len(gen.calls) == 2


@pytest.mark.parametrize(
    ("finish", "stop", "tokens", "reason"),
    [
        ("length", None, 4, None),
        ("stop", None, 4, FinishReason.EOS),
        ("stop", "\n\n", 4, FinishReason.STOP),
        ("abort", None, 4, FinishReason.ABORT),
        ("length", None, 0, FinishReason.EMPTY),  # no progress would loop forever
    ],
)
def test_chunk_finish_reasons(
    finish: str, stop: str | None, tokens: int, reason: FinishReason | None
) -> None:
    completion = Completion("x" * tokens, tokens, finish, stop=stop, token_ids=tuple(range(tokens)))
    kid = chunk_child(start_chain(), completion)
    assert kid.finish_reason == reason and kid.finished is (reason is not None)
    assert kid.token_ids == tuple(range(tokens)) and kid.delimiter == ""


def test_a_chunk_without_token_ids_is_an_error() -> None:
    with pytest.raises(ValueError, match="token ids"):
        chunk_child(start_chain(), Completion("a b", 2, "length"))


async def test_a_chain_without_token_ids_cannot_be_chunked() -> None:
    with pytest.raises(ValueError, match="start_chain"):
        await decode_chunks(context(TokenScript(follow(TRACE))), [Chain()], ChunkSampling())


async def test_chunks_of_several_chains_are_in_flight_together() -> None:
    gen = TokenScript(follow(TRACE))
    ctx = context(gen)
    chunks = await decode_chunks(ctx, [start_chain(), start_chain()], ChunkSampling(round_tokens=4))
    assert [c.chain.text for c in chunks] == ["we add 4 and"] * 2
    assert ctx.ledger.samples == 2 and ctx.ledger.generated_tokens == 8
    seeds = {s.seed for _, s in gen.calls}
    assert len(seeds) == 2  # each path draws its own seed


async def test_the_budget_refuses_a_chunk_and_the_chain_comes_back_unchanged() -> None:
    ctx = context(TokenScript(follow(TRACE)), Budget(generated_tokens=4))
    (first,) = await decode_chunks(ctx, [start_chain()], ChunkSampling(round_tokens=4))
    (second,) = await decode_chunks(ctx, [first.chain], ChunkSampling(round_tokens=4))
    assert second.completion is not None and second.completion.refused and not second.decoded
    assert second.chain is first.chain
    assert ctx.stopped_by == "generated_tokens" and ctx.ledger.generated_tokens == 4


def _ids(gen: ScriptedGenerator, pieces: Sequence[str]) -> tuple[int, ...]:
    return tuple(gen.tokenize(p)[0] for p in pieces)


async def test_fork_at_keeps_the_prefix_forces_a_token_and_continues_from_it() -> None:
    gen = TokenScript(follow(TRACE, fallback=" then \\boxed{7}"))
    ctx = context(gen)
    (chunk,) = await decode_chunks(
        ctx, [start_chain()], ChunkSampling(round_tokens=6, top_logprobs=3)
    )
    parent = chunk.chain
    forced = gen.tokenize(" Z8")[0]
    kid = fork_at(ctx, parent, 2, forced, logprob=-4.0)
    ids = parent.token_ids or ()
    assert kid.token_ids == ids[:2] + (forced,)
    assert kid.steps == ("we add Z8",) and kid.text == gen.detokenize(kid.token_ids)
    assert kid.logprobs == (*(parent.logprobs or ())[:2], -4.0)
    assert kid.top_logprobs == (parent.top_logprobs or ())[:3]  # same prefix, same table
    assert kid.tokens == 3 and kid.parent == parent.id and not kid.finished
    assert ctx.tree.parents(kid.id) == [parent.id]
    assert ctx.tree.node(kid.id)["forked_at"] == 2
    assert ctx.tree.node(kid.id)["forced_token"] == forced
    generated = ctx.ledger.generated_tokens
    assert generated == 6  # forcing a token generates nothing
    (cont,) = await decode_chunks(ctx, [kid], ChunkSampling(round_tokens=50), new_samples=[True])
    head = gen.tokenize(gen.render(PROBLEM))
    assert gen.token_prompts[-1] == head + ids[:2] + (forced,)
    assert cont.chain.text == "we add Z8 then \\boxed{7}" and cont.chain.finished
    assert ctx.ledger.samples == 2  # the fork was counted as a new sample, as asked
    unknown = fork_at(ctx, parent, 0, forced)
    assert unknown.logprobs is not None and math.isnan(unknown.logprobs[-1])
    for bad in (-1, 6):
        with pytest.raises(ValueError, match="cannot fork"):
            fork_at(ctx, parent, bad, forced)
