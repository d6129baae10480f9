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
from collections.abc import Mapping, Sequence
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


async def _complete(
    ctx: Context, prompt: str, sampling: Sampling, *, new_samples: bool
) -> Completion:
    """One metered completion of `prompt`; `Completion.refusal()` when the budget refuses it."""
    (completion,) = await ctx.try_generate(sampling, prompt=prompt, new_samples=new_samples)
    return completion


@dataclass(frozen=True)
class Branch:
    """One thread to fork: its label, the whole prompt it continues, and where its text goes."""

    label: str
    prompt: str  # the shared context plus the thread's opening (or a view of it, in a round)
    opening: str = ""  # text the thread starts with (kept before its decoded text in the join)
    sampling: Sampling | None = None  # its own call settings (a round's); None: the fork's
    data: Mapping[str, Any] = field(default_factory=dict)  # facts for its tree node


@dataclass(frozen=True)
class Thread:
    """A finished thread: what it decoded, and its tree node (a parent of the join; None: the
    budget refused its call). `charged`: its tokens are already counted in its rollout's
    context (a round's), so the join does not count them again."""

    branch: Branch
    result: Decoded
    node: str | None
    completion: Completion
    charged: bool = False

    @property
    def label(self) -> str:
        return self.branch.label

    @property
    def text(self) -> str:
        return self.result.text

    @property
    def tokens(self) -> int:
        return self.result.tokens


@dataclass
class Rollout:
    """One trajectory: the prompt head it continues and the text written so far, with the verbs
    that write it (`force`, `decode`, `fork`, `round`, `spawn`, `join`, `end`). Only these
    write the rollout's tree nodes.

    `chain` joins its segments with no delimiter (its `text` is exactly what follows `head`) and
    its id is the tree node of the last segment, so the next segment or fork hangs under it.
    `max_tokens` caps the tokens its context holds after the head (`search.max_tokens`):
    everything decoded into it, threads that write into it included; a spawned child has a
    context of its own, with its own cap.
    """

    ctx: Context
    head: str
    chain: Chain
    max_tokens: int
    label: str = "main"
    origin: str | None = None  # the tree node the first segment hangs under (a spawn), or root
    new_samples: bool = True  # the rollout's first call starts a sample (the budget's `samples`)
    policy: str = ""  # the strategy's name, on the rollout's events
    decoded_tokens: int = 0  # held by this rollout's context, threads writing into it included
    ended: FinishReason | None = None
    notes: list[str] = field(default_factory=list)
    _unjoined: int = 0  # tokens of rounds charged to the context but not yet in `chain`
    _round: list[str] = field(default_factory=list)  # the last round's tree nodes

    @classmethod
    def start(
        cls,
        ctx: Context,
        head: str,
        max_tokens: int,
        *,
        parent: str | None = None,
        label: str = "main",
        new_samples: bool = True,
        policy: str = "",
    ) -> Rollout:
        return cls(ctx, head, Chain(delimiter=""), max_tokens, label, parent, new_samples, policy)

    @property
    def text(self) -> str:
        return self.chain.text

    @property
    def prompt(self) -> str:
        return self.head + self.chain.text

    @property
    def left(self) -> int:
        """Tokens its context may still hold."""
        return self.max_tokens - self.decoded_tokens

    def _first_call(self) -> bool:
        """Whether the next call starts the rollout's sample (only its first call does)."""
        first, self.new_samples = self.new_samples, False
        return first

    def append(
        self,
        text: str,
        *,
        tokens: int = 0,
        status: NodeStatus = NodeStatus.EXPANDED,
        finish: FinishReason | None = None,
        **data: Any,
    ) -> Chain:
        """Add a segment the model wrote as a tree node under the last one (a stop string the
        engine left out: 0 tokens); returns the new chain."""
        kid = self.chain.extend(
            text, tokens=tokens, finished=finish is not None, finish_reason=finish
        )
        parents = [self.chain.id if self.chain.steps else self.origin or ROOT]
        self.ctx.tree.add(kid, status, parents=parents, generated=tokens, thread=self.label, **data)
        self.chain = kid
        self.decoded_tokens += tokens
        return kid

    def force(self, text: str, **data: Any) -> None:
        """Control text the model did not decode (a forced prefix, a tag the policy closes)."""
        if text:
            self.append(text, forced=True, **data)

    async def decode(
        self, sampling: Sampling, *, keep_stop: bool = True, opening: str = "", **data: Any
    ) -> Decoded:
        """Continue the rollout sequentially, within what its context has left; the segment
        (`opening`, text the call continues but the model did not write, then what it
        decoded) becomes one tree node. A refused call adds nothing."""
        if self.left <= 0:
            return Decoded("", 0, FinishReason.LENGTH)
        fitted = replace(sampling, max_tokens=min(sampling.max_tokens, self.left))
        completion = await _complete(
            self.ctx, self.prompt + opening, fitted, new_samples=self._first_call()
        )
        result = decoded(completion, keep_stop=keep_stop)
        if not result.refused:
            self.append(opening + result.text, tokens=result.tokens, **data)
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

    async def fork(
        self,
        branches: Sequence[Branch],
        sampling: Sampling,
        *,
        keep_stop: bool = True,
        split: bool = True,
    ) -> list[Thread]:
        """Run `branches` concurrently from the rollout's last node (marked FORKED); each is a
        tree node. Their text writes into this rollout's context, so with `split` each call is
        also capped at an equal share of what the context has left (the joined context then
        fits); without it each call may take all that is left, as a reference that caps every
        request by its own context does (ThreadWeaver), and the rollout ends once the joined
        context is full.

        Threads continue the rollout's sample, so they are not new samples, except the first
        thread of a rollout that forks before its first call (its sample starts there). The
        Context's reservations keep their summed tokens inside the budget however many run at
        once.
        """
        at = self.chain
        starts = self._first_call()
        if at.id in self.ctx.tree:
            self.ctx.tree.mark(at.id, NodeStatus.FORKED)
        self.ctx.record(EventKind.FORK, policy=self.policy, at=at.id, threads=len(branches))
        share = max(1, self.left // max(1, len(branches))) if split else max(1, self.left)
        capped = replace(sampling, max_tokens=min(sampling.max_tokens, share))

        async def one(branch: Branch, new_samples: bool) -> Thread:
            completion = await _complete(
                self.ctx, branch.prompt, branch.sampling or capped, new_samples=new_samples
            )
            result = decoded(completion, keep_stop=keep_stop)
            # the thread's node ends where its call ended (the rollout goes on after the join)
            kid = at.extend(
                branch.opening + result.text, tokens=result.tokens, finish_reason=result.finish
            )
            status = NodeStatus.EXPANDED if not result.truncated else NodeStatus.PRUNED
            self.ctx.tree.add(
                kid,
                status,
                parents=[at.id] if at.id in self.ctx.tree else None,
                generated=result.tokens,
                thread=branch.label,
                **branch.data,
            )
            return Thread(branch, result, kid.id, completion)

        firsts = [starts and i == 0 for i in range(len(branches))]
        return list(
            await asyncio.gather(*(one(b, f) for b, f in zip(branches, firsts, strict=True)))
        )

    async def round(self, branches: Sequence[Branch], *, keep_stop: bool = False) -> list[Thread]:
        """One round of threads that each see the others' progress (Hogwild's workers): every
        branch is one concurrent call with its own prompt (its view) and `sampling`; its tree
        node hangs under every node of the previous round (each view held all of them), or
        under the root. What they decode is in the shared context at once (charged now); a
        refused call gets no node. The join after the last round merges them."""
        first = self._first_call()
        after = self._round or [ROOT]

        async def one(branch: Branch, new_samples: bool) -> Completion:
            assert branch.sampling is not None  # a round's calls each carry their own cap
            return await _complete(
                self.ctx, branch.prompt, branch.sampling, new_samples=new_samples
            )

        replies = await asyncio.gather(*(one(b, first and i == 0) for i, b in enumerate(branches)))
        threads: list[Thread] = []
        for branch, completion in zip(branches, replies, strict=True):
            result = decoded(completion, keep_stop=keep_stop)
            node = None
            if not completion.refused:
                # the thread's call ends there (the rollout goes on in the next round)
                kid = Chain(
                    steps=(result.text,),
                    tokens=result.tokens,
                    finish_reason=result.finish,
                    delimiter="",
                )
                self.ctx.tree.add(
                    kid,
                    NodeStatus.EXPANDED,
                    parents=after,
                    generated=result.tokens,
                    thread=f"{self.label}/{branch.label}",
                    **branch.data,
                )
                node = kid.id
                self.decoded_tokens += result.tokens
                self._unjoined += result.tokens
            threads.append(Thread(branch, result, node, completion, charged=True))
        nodes = [t.node for t in threads if t.node is not None]
        if nodes:
            self._round = nodes
        return threads

    def spawn(self, heads: Sequence[tuple[str, str]], max_tokens: int) -> list[Rollout]:
        """Child rollouts from the rollout's last node (marked FORKED), each with a context of
        its own: `heads` are (label, prompt head) pairs, `max_tokens` each child's cap. The
        trajectory's first call starts its sample, whichever child makes it."""
        at = self.chain
        self.ctx.tree.mark(at.id, NodeStatus.FORKED)
        self.ctx.record(EventKind.FORK, policy=self.policy, at=at.id, threads=len(heads))
        first = self._first_call()
        return [
            Rollout.start(
                self.ctx,
                head,
                max(0, max_tokens),
                parent=at.id,
                label=label,
                new_samples=first and i == 0,
                policy=self.policy,
            )
            for i, (label, head) in enumerate(heads)
        ]

    def join(
        self,
        threads: Sequence[Thread | Rollout],
        text: str,
        *,
        keep: int | None = None,
        **data: Any,
    ) -> None:
        """Append `text` (the threads merged as the policy writes them) as one JOINED node whose
        parents are every thread's last node: the trajectory goes on only after the longest.

        Forked threads wrote into this context, so their tokens count against its cap here;
        spawned children (rollouts) used their own. `keep`: cut the text written so far to its
        first `keep` characters first (APR takes its calling block back out; the removed text
        is kept on the node)."""
        at = self.chain
        fields: dict[str, Any] = {"policy": self.policy, "threads": len(threads)}
        if at.id in self.ctx.tree:
            fields["at"] = at.id
        self.ctx.record(EventKind.JOIN, **fields)
        parents: list[str] = []
        tokens = self._unjoined
        for t in threads:
            if isinstance(t, Rollout):
                parents.append(t.chain.id if t.chain.steps else t.origin or ROOT)
                tokens += t.chain.tokens
            else:
                parents.append(t.node or at.id)
                if not t.charged:
                    tokens += t.tokens
                    self.decoded_tokens += t.tokens
        self._unjoined = 0
        base = at
        if keep is not None:
            data["removed"] = at.text[keep:]
            base = trimmed(at, keep)
        kid = base.extend(text, tokens=tokens)
        self.ctx.tree.add(
            kid,
            NodeStatus.JOINED,
            parents=list(dict.fromkeys(parents)) or None,
            generated=0,
            thread=self.label,
            **data,
        )
        self.chain = kid


def trimmed(chain: Chain, keep: int) -> Chain:
    """`chain` whose text is cut to its first `keep` characters (same id: not a tree node).

    A rollout's chain only grows, but APR's join takes the calling block back out of the
    parent's context; the joined node extends this cut chain, under the spawn node."""
    steps: list[str] = []
    used = 0
    for step in chain.steps:
        if used >= keep:
            break
        steps.append(step[: keep - used])
        used += len(steps[-1])
    return replace(chain, steps=tuple(s for s in steps if s), finished=False, finish_reason=None)


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
