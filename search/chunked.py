"""Chunked decoding: grow chains by fixed token chunks from their exact token prefix.

Token-level controllers (HyPER, docs/hyper.md) decide between chunks, so a path is decoded k
tokens at a time and continued from the ids it generated, never from re-tokenized text: a trace
decoded in chunks is then the same token sequence a whole decode would give. Chunks continue
each other, so a chunked chain joins its steps with "" and a chunk that hit the token cap
(`length`) is not finished; only EOS or a stop string finishes one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from reasoning.context import Context
from reasoning.steps import top_logprob_values
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Completion, FinishReason, Sampling, TokenPrompt, chain_finish


@dataclass(frozen=True)
class ChunkSampling:
    """How one chunk is sampled: up to `round_tokens` tokens, with `top_logprobs` alternatives."""

    temperature: float = 0.8
    top_p: float = 1.0
    round_tokens: int = 256
    top_logprobs: int | None = None
    stop: tuple[str, ...] = ()  # vLLM matches these within one chunk only
    who: str = "chunked decoding"  # the controller, in the error of a backend without logprobs

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=max_tokens or self.round_tokens,
            stop=self.stop,
            n=1,
            logprobs=self.top_logprobs,
        )


@dataclass(frozen=True)
class Chunk:
    """One decoded chunk: the child chain, and the completion behind it (its top-k ids, which a
    Chain does not keep). `completion` is None for a chain that was already finished, and
    `Completion.refusal()` when the budget refused the call; `chain` is then the parent
    unchanged (`decoded` is False in both cases)."""

    parent: Chain
    chain: Chain
    completion: Completion | None

    @property
    def decoded(self) -> bool:
        """Whether a chunk was decoded (the chain was open and the budget allowed the call)."""
        return self.completion is not None and not self.completion.refused

    @property
    def start(self) -> int:
        """Position of the chunk's first token in the chain's token ids."""
        return len(self.parent.token_ids or ())


def start_chain() -> Chain:
    """An empty chunked chain: continues the bare prompt, steps join with no delimiter."""
    return Chain(delimiter="", token_ids=())


def chunk_finish(completion: Completion) -> FinishReason | None:
    """Why a chunk ended its chain; None when the chain goes on (the token cap, a clamp)."""
    return chain_finish(completion, goes_on=(FinishReason.LENGTH, FinishReason.BUDGET))


def check_logprobs(
    completion: Completion, wanted: int | None, who: str = "chunked decoding"
) -> None:
    """Refuse a completion that decoded tokens without the logprobs its call asked for
    (`wanted`: the call's `logprobs`; None asks for none): a backend that drops them would
    leave every confidence at 0 without a word, so the first response that shows it stops the
    search, naming what is missing."""
    if wanted is None or completion.tokens == 0 or completion.refused:
        return
    if wanted > 0:
        tables = completion.top_logprobs
        if tables is None or not any(tables):
            raise ValueError(
                f"{who} reads the top-{wanted} token logprobs (search.top_logprobs={wanted}) "
                "and the backend returned none: every path's confidence and vote weight would "
                "be 0. Use a backend that returns top logprobs (a vLLM server started with "
                f"--max-logprobs >= {wanted}, or backend=vllm)"
            )
    elif completion.logprobs is None:
        raise ValueError(
            f"{who} reads the sampled tokens' logprobs (search.top_logprobs=0) and the backend "
            "returned none. Use a backend that returns logprobs (a vLLM server, or backend=vllm)"
        )


def chunk_child(parent: Chain, completion: Completion) -> Chain:
    """The parent plus the completion as one chunk (no delimiter), with its ids and logprobs."""
    if completion.token_ids is None:
        raise ValueError(
            "chunked decoding needs the generated token ids, and this backend returned none: "
            "it continues from exact ids, never from re-tokenized text"
        )
    # a chunk with no progress ends the chain: continuing would loop
    reason = chain_finish(
        completion,
        goes_on=(FinishReason.LENGTH, FinishReason.BUDGET),
        empty=completion.tokens == 0,
    )
    return parent.extend(
        completion.text,
        tokens=completion.tokens,
        finished=reason is not None,
        finish_reason=reason,
        logprobs=completion.logprobs,
        top_logprobs=top_logprob_values(completion),
        token_ids=completion.token_ids,
    )


async def decode_chunks(
    ctx: Context,
    chains: Sequence[Chain],
    policy: ChunkSampling,
    *,
    new_samples: Sequence[bool] | None = None,
    max_tokens: int | None = None,
) -> list[Chunk]:
    """One chunk for each unfinished chain, all in flight together; children go to the tree.

    A finished chain comes back as it was with `completion=None`, one whose call the budget
    refused with `completion=Completion.refusal()` (see `Chunk.decoded`). `new_samples[i]`
    says whether chain i's call starts a new sample (the default: a chain with no tokens yet),
    so continuations are not counted as samples twice.
    """
    fresh = new_samples or [not c.token_ids for c in chains]

    async def one(chain: Chain, new: bool) -> Chunk:
        if chain.finished:
            return Chunk(chain, chain, None)
        if chain.token_ids is None:
            raise ValueError(f"chain {chain.id} has no token ids: start it with start_chain()")
        prompt = TokenPrompt(ctx.prompt_ids(chain))
        (completion,) = await ctx.try_generate(
            policy.sampling(max_tokens), prompt=prompt, new_samples=new
        )
        if completion.refused:
            return Chunk(chain, chain, completion)
        check_logprobs(completion, policy.top_logprobs, policy.who)
        kid = chunk_child(chain, completion)
        status = NodeStatus.FINISHED if kid.finished else NodeStatus.EXPANDED
        ctx.tree.add(kid, status, chunk_start=len(chain.token_ids))
        return Chunk(chain, kid, completion)

    chunks = await asyncio.gather(*(one(c, n) for c, n in zip(chains, fresh, strict=True)))
    ctx.exhausted()  # a clamped call may have spent the rest: record the limit it reached
    return list(chunks)


def fork_at(
    ctx: Context, chain: Chain, position: int, forced: int, *, logprob: float | None = None
) -> Chain:
    """A sibling of `chain` that keeps its first `position` tokens and then `forced`.

    The child's text is re-derived from its ids with `ctx.detokenize` and held as ONE step (the
    chunk boundaries before `position` are not kept). Its logprobs stay aligned with its ids:
    the forced token's entry is `logprob` (NaN when unknown, which confidence scores skip) and
    its top-k table is the parent's at `position` (same prefix, same distribution). The forced
    token was not sampled, so it adds no generated tokens to the ledger; `tokens` counts it as
    part of the chain's length.
    """
    ids = chain.token_ids
    if ids is None or not 0 <= position < len(ids):
        raise ValueError(f"cannot fork chain {chain.id} at token {position}")
    kept = ids[:position] + (forced,)
    logprobs = None
    if chain.logprobs is not None:
        logprobs = chain.logprobs[:position] + (math.nan if logprob is None else logprob,)
    top = chain.top_logprobs[: position + 1] if chain.top_logprobs is not None else None
    child = Chain(
        steps=(ctx.detokenize(kept),),
        tokens=len(kept),
        parent=chain.id,
        logprobs=logprobs,
        top_logprobs=top,
        delimiter="",
        token_ids=kept,
    )
    ctx.tree.add(child, NodeStatus.EXPANDED, forked_at=position, forced_token=forced)
    return child
