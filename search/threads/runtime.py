"""The machinery every thread policy shares: a rollout's text, forks into concurrent threads,
joins back, and the tree that records them (docs/threads.md).

A rollout is decoded as plain text (the completion API the reference implementations use): its
prompt is the rendered problem head plus everything written so far, so sibling threads share a
byte-identical prefix and the engine's prefix cache serves it. Every segment is a node of the
search tree carrying the tokens it decoded (`generated`), and a join is a node whose parents are
all the threads it merges, so the tree's longest path is the critical path the papers report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from reasoning.context import Context
from reasoning.tree import ROOT, NodeStatus
from reasoning.types import Chain, Completion, EventKind, FinishReason, Sampling, chain_finish


@dataclass(frozen=True)
class Decoded:
    """One call's result as a rollout sees it: the text to append (stop string put back when
    kept), the tokens decoded, and why it ended (BUDGET with nothing decoded: refused)."""

    text: str
    tokens: int
    finish: FinishReason
    stop: str | None = None

    @property
    def hit_eos(self) -> bool:
        return self.finish == FinishReason.EOS

    @property
    def refused(self) -> bool:
        return self.finish == FinishReason.BUDGET and self.tokens == 0 and not self.text

    @property
    def truncated(self) -> bool:
        """Cut by a token cap (its own or the budget's): the reference ends the rollout."""
        return self.finish in (FinishReason.LENGTH, FinishReason.BUDGET)


def decoded(completion: Completion, *, keep_stop: bool = True) -> Decoded:
    """`completion` as a rollout appends it (a refusal decodes nothing)."""
    text = completion.text
    if keep_stop and completion.stop is not None:
        text += completion.stop
    finish = chain_finish(completion)
    assert finish is not None  # a whole call always has a reason
    return Decoded(text, completion.tokens, finish, completion.stop)


async def call(ctx: Context, prompt: str, sampling: Sampling, *, new_sample: bool) -> Completion:
    """One metered completion of `prompt`; `Completion.refusal()` when the budget refuses it."""
    (completion,) = await ctx.try_generate(sampling, prompt=prompt, new_samples=new_sample)
    return completion


@dataclass
class Rollout:
    """One trajectory: the prompt head it continues and the text written so far.

    `chain` joins its segments with no delimiter (its `text` is exactly what follows `head`) and
    its id is the tree node of the last segment, so the next segment or fork hangs under it.
    `budget_tokens` caps the tokens decoded along this trajectory (threads included), as the
    reference caps a rollout by its context length.
    """

    ctx: Context
    head: str
    chain: Chain
    budget_tokens: int
    label: str = "main"
    origin: str | None = None  # the tree node the first segment hangs under (a spawn), or root
    new_sample: bool = True  # the rollout's first call starts a sample (the budget's `samples`)
    decoded_tokens: int = 0  # along this trajectory, threads included
    ended: FinishReason | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        ctx: Context,
        head: str,
        budget_tokens: int,
        *,
        parent: str | None = None,
        label: str = "main",
        new_sample: bool = True,
    ) -> Rollout:
        return cls(ctx, head, Chain(delimiter=""), budget_tokens, label, parent, new_sample)

    @property
    def text(self) -> str:
        return self.chain.text

    @property
    def prompt(self) -> str:
        return self.head + self.chain.text

    @property
    def left(self) -> int:
        return self.budget_tokens - self.decoded_tokens

    def append(
        self,
        text: str,
        *,
        tokens: int = 0,
        status: NodeStatus = NodeStatus.EXPANDED,
        parents: Sequence[str] | None = None,
        finish: FinishReason | None = None,
        **data: Any,
    ) -> Chain:
        """Add a segment (decoded, forced or joined) as a tree node; returns the new chain."""
        kid = self.chain.extend(
            text, tokens=tokens, finished=finish is not None, finish_reason=finish
        )
        if parents is None:
            parents = [self.chain.id if self.chain.steps else self.origin or ROOT]
        self.ctx.tree.add(kid, status, parents=parents, generated=tokens, thread=self.label, **data)
        self.chain = kid
        self.decoded_tokens += tokens
        return kid

    def force(self, text: str, **data: Any) -> None:
        """Control text the model did not decode (a forced prefix, a tag the policy closes)."""
        if text:
            self.append(text, forced=True, **data)

    async def decode(self, sampling: Sampling, *, keep_stop: bool = True, **data: Any) -> Decoded:
        """Continue the rollout sequentially; the segment becomes a tree node."""
        if self.left <= 0:
            return Decoded("", 0, FinishReason.LENGTH)
        fitted = replace(sampling, max_tokens=min(sampling.max_tokens, self.left))
        completion = await call(self.ctx, self.prompt, fitted, new_sample=self.new_sample)
        result = decoded(completion, keep_stop=keep_stop)
        self.new_sample = False
        if not result.refused:
            self.append(result.text, tokens=result.tokens, **data)
        return result

    def end(self, reason: FinishReason, note: str | None = None) -> None:
        """Close the rollout: its last node is finished (the trajectory ends there)."""
        if self.ended is None:
            self.ended = reason
            if note:
                self.notes.append(note)
            self.chain = replace(self.chain, finished=True, finish_reason=reason)
            if self.chain.id in self.ctx.tree:
                # a join or fork that ends the trajectory keeps its status (the trace shows it)
                status = self.ctx.tree.status(self.chain.id)
                if status in (NodeStatus.JOINED, NodeStatus.FORKED):
                    self.ctx.tree.annotate(self.chain.id, finished=True, finish_reason=reason)
                else:
                    self.ctx.tree.mark(self.chain.id, NodeStatus.FINISHED, finish_reason=reason)


@dataclass(frozen=True)
class Branch:
    """One thread to fork: its label, the whole prompt it continues, and where its text goes."""

    label: str
    prompt: str  # the shared context plus the thread's opening (or an isolated child context)
    opening: str = ""  # text the thread starts with (kept before its decoded text in the join)


@dataclass(frozen=True)
class Thread:
    """A finished thread: what it decoded, and its tree node (a parent of the join)."""

    branch: Branch
    result: Decoded
    node: str

    @property
    def label(self) -> str:
        return self.branch.label

    @property
    def text(self) -> str:
        return self.result.text


async def fork(
    ctx: Context,
    at: Chain,
    branches: Sequence[Branch],
    sampling: Sampling,
    *,
    keep_stop: bool = True,
    policy: str,
    rollout: Rollout | None = None,
) -> list[Thread]:
    """Run `branches` concurrently from the node `at` (marked FORKED); each is a tree node.

    Threads continue their rollout's sample, so they are not new samples, except the first
    thread of a `rollout` that forks before its first call (its sample starts there). The
    Context's reservations keep their summed tokens inside the budget however many run at once.
    """
    starts = rollout is not None and rollout.new_sample
    if rollout is not None:
        rollout.new_sample = False
    if at.id in ctx.tree:
        ctx.tree.mark(at.id, NodeStatus.FORKED)
    ctx.record(EventKind.FORK, policy=policy, at=at.id, threads=len(branches))

    async def one(branch: Branch, new_sample: bool) -> Thread:
        completion = await call(ctx, branch.prompt, sampling, new_sample=new_sample)
        result = decoded(completion, keep_stop=keep_stop)
        # the thread's node ends where its call ended (the rollout goes on after the join)
        kid = at.extend(
            branch.opening + result.text, tokens=result.tokens, finish_reason=result.finish
        )
        status = NodeStatus.EXPANDED if not result.truncated else NodeStatus.PRUNED
        ctx.tree.add(
            kid,
            status,
            parents=[at.id] if at.id in ctx.tree else None,
            generated=result.tokens,
            thread=branch.label,
        )
        return Thread(branch, result, kid.id)

    firsts = [starts and i == 0 for i in range(len(branches))]
    return list(await asyncio.gather(*(one(b, f) for b, f in zip(branches, firsts, strict=True))))


def join(
    rollout: Rollout, threads: Sequence[Thread], text: str, *, policy: str, **data: Any
) -> None:
    """Append `text` (the threads merged as the policy writes them) as one JOINED node whose
    parents are every thread: the trajectory goes on only after the longest one."""
    rollout.ctx.record(EventKind.JOIN, policy=policy, threads=len(threads), at=rollout.chain.id)
    rollout.decoded_tokens += sum(t.result.tokens for t in threads)
    kid = rollout.chain.extend(text, tokens=sum(t.result.tokens for t in threads))
    rollout.ctx.tree.add(
        kid,
        NodeStatus.JOINED,
        parents=[t.node for t in threads] or None,
        generated=0,
        thread=rollout.label,
        **data,
    )
    rollout.chain = kid


@dataclass(frozen=True)
class RolloutResult:
    """What one rollout of a strategy gives the controller: its final chain (in the tree, its
    text the whole answer after the prompt) and facts for the trace."""

    chain: Chain
    details: dict[str, Any] = field(default_factory=dict)


class ThreadStrategy(Protocol):
    """One way of forking and joining (`search/strategy=NAME`); its settings are the
    `@settings` fields, configured under `search.strategy`."""

    name: ClassVar[str]

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        """One whole trajectory. `sampling` carries temperature, top_p and, as `max_tokens`,
        the tokens the trajectory's text may hold (threads included); `label` names it."""
        ...


def continuation(base: Sampling, max_tokens: int, stop: tuple[str, ...] = ()) -> Sampling:
    """One call of a rollout: the rollout's temperature and nucleus, its own cap and stops."""
    return Sampling(
        temperature=base.temperature,
        top_p=base.top_p,
        max_tokens=max(1, max_tokens),
        stop=stop,
        seed=base.seed,
    )
