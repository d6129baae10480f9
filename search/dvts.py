"""Diverse verifier tree search as in HF search-and-learn (docs/beam-and-dvts.md).

`n / width` independent subtrees, each greedy on its own: per iteration every live subtree
samples `width` next steps, the verifier scores them, and the subtree continues from the best
one. No subtree competes with another, which keeps the n completions diverse. A subtree stops
when its chosen step finishes the chain (EOS, empty, `\\boxed`, length, step cap). The output
is, per subtree, its last `width` candidates; the answer is chosen by `aggregate` over them.

All subtrees' samples of an iteration go out in ONE `expand` call, so the token budget bound
is the one of beam search: `B - 1 + n * max_step_tokens` (see search/beam.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Problem
from search.aggregate import argmax_first
from search.conclude import conclude
from search.expand import expand
from search.settings import settings
from search.step_search import StepSearch, budget_pool, score_with_lookahead


@dataclass
class _Subtree:
    tip: Chain  # the chain this subtree continues from
    candidates: list[Chain] = field(default_factory=list)  # its last `width` samples, scored
    live: bool = True


@settings
class DVTS(StepSearch):
    """n / width greedy subtrees, each taking its best of `width` step samples per iteration."""

    name: ClassVar[str] = "dvts"

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        policy = self.sampling
        subtrees = [_Subtree(Chain()) for _ in range(self.n // self.width)]
        pending: list[Chain] = []  # samples the budget left unscored
        done = 0
        for i in range(self.max_steps):
            live = [s for s in subtrees if s.live]
            if not live:
                break
            last = i == self.max_steps - 1
            groups = await expand(ctx, [s.tip for s in live], self.width, policy, last=last)
            kids = [k for g in groups for k in g]
            if not kids:
                break  # only the budget refuses every call
            done = i + 1
            kids, ranks = await score_with_lookahead(
                ctx, kids, 0 if last else self.lookahead, policy, self.step_reduction
            )
            if ctx.stopped_by is not None:
                pending = kids
                break
            start = 0
            for subtree, group in zip(live, groups, strict=True):
                mine, values = kids[start : start + len(group)], ranks[start : start + len(group)]
                start += len(group)
                if not mine:
                    subtree.live = False
                    continue
                best = argmax_first(values)
                subtree.candidates, subtree.tip = mine, mine[best]
                for j, c in enumerate(mine):
                    if not c.finished:
                        status = NodeStatus.SELECTED if j == best else NodeStatus.PRUNED
                        ctx.tree.mark(c.id, status, iteration=i)
                subtree.live = not subtree.tip.finished
        outputs = [c for s in subtrees for c in s.candidates]
        if ctx.stopped_by is not None:
            seen = outputs + pending
            chains = budget_pool(
                [c for c in seen if c.finished],
                [c for c in seen if not c.finished],
                self.aggregate,
                self.step_reduction,
                self.n,
            )
        else:
            chains = outputs
        outcome = await conclude(ctx, chains, self.aggregate, self.step_reduction)
        outcome.details.update(iterations=done, subtrees=len(subtrees))
        return outcome
