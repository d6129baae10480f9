"""The shared step-expansion engine: grow chains by one step, score the new steps, record them.

Every step-level controller (beam, DVTS, A*, particle filtering) calls this and nothing else to
talk to the generator and verifier through the Context. All expansions of one call are in
flight together, and every problem runs its own controller concurrently, so the engine batches
across problems; siblings share a byte-identical prompt prefix (the chain's rendered steps), so
the prefix cache serves it.

Canonical form: a step is stored without its delimiter; the stop string "\\n\\n" is excluded
from the generated text and re-inserted by the renderer when the chain is continued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reasoning.answers import mentions_box
from reasoning.budget import BudgetExhausted
from reasoning.context import Context
from reasoning.steps import top_logprob_values, whole_prefix
from reasoning.tree import NodeStatus
from reasoning.types import (
    STEP_DELIMITER,
    Chain,
    Completion,
    FinishReason,
    Sampling,
    chain_finish,
)
from search.aggregate import StepReduction, scores_whole_prefix


@dataclass(frozen=True)
class StepSampling:
    """How one step is sampled and when a chain counts as finished."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_step_tokens: int = 512
    max_steps: int = 40
    logprobs: int | None = None

    def sampling(self, n: int, *, last: bool = False) -> Sampling:
        """`last`: the final iteration writes to EOS (no step delimiter), as in SAL."""
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_step_tokens,
            stop=() if last else (STEP_DELIMITER,),
            n=n,
            logprobs=self.logprobs,
        )


def _fill(chain: Chain, whole: list[float]) -> list[float]:
    """Per-step scores from one whole-prefix score: kept where known, `whole` for the rest."""
    if not chain.steps:
        return []
    known = list(chain.scores[: len(chain.steps) - 1])
    return known + whole[-1:] * (len(chain.steps) - len(known))


def is_scored(chain: Chain) -> bool:
    """One verifier score per step. A child inherits its parent's scores until it is scored
    itself, so a non-empty `scores` alone does not mean the last step was scored."""
    return bool(chain.steps) and len(chain.scores) == len(chain.steps)


def child(parent: Chain, completion: Completion, policy: StepSampling) -> Chain:
    """The parent plus the completion as one step, with the reason it finished (if it did).

    A step that hit the step cap before `max_step_tokens` was cut by the budget (BUDGET): the
    Context says so when it clamped the call; a generator that clamps on its own is read the
    same way.
    """
    step = completion.text.strip("\n")
    if (
        completion.finish_reason == FinishReason.LENGTH
        and completion.tokens < policy.max_step_tokens
    ):
        completion = replace(completion, finish_reason=FinishReason.BUDGET)
    reason = chain_finish(
        completion,
        goes_on=(FinishReason.STOP,),  # the step delimiter
        empty=not step.strip(),
        boxed=mentions_box(step),
        last_step=len(parent.steps) + 1 >= policy.max_steps,
    )
    return parent.extend(
        step,
        tokens=completion.tokens,
        finished=reason is not None,
        finish_reason=reason,
        logprobs=completion.logprobs,
        top_logprobs=top_logprob_values(completion),
    )


async def expand(
    ctx: Context,
    chains: list[Chain],
    width: int | list[int],
    policy: StepSampling,
    *,
    last: bool = False,
) -> list[list[Chain]]:
    """`width` children of each chain (a list gives one width per chain), generated together.

    When the budget runs out mid-way, the expansions that were already granted are returned
    and the others come back empty; `ctx.stopped_by` says which limit was hit. A step the
    budget cut short (the Context clamped its call) is recorded in the tree as pruned and not
    returned: its parent, not a truncated fragment, stays the search's best at that point.
    """
    widths = width if isinstance(width, list) else [width] * len(chains)

    async def one(chain: Chain, n: int) -> list[Chain]:
        if n <= 0:
            return []
        completions = await ctx.try_generate(policy.sampling(n, last=last), chain=chain)
        kids = []
        # a refused call has no children: its group comes back empty
        for kid in (child(chain, c, policy) for c in completions if not c.refused):
            if kid.finish_reason == FinishReason.BUDGET:
                ctx.tree.add(kid, NodeStatus.PRUNED, cut_by_budget=True)
                continue
            ctx.tree.add(kid, NodeStatus.FINISHED if kid.finished else NodeStatus.EXPANDED)
            kids.append(kid)
        return kids

    groups = await asyncio.gather(*(one(c, n) for c, n in zip(chains, widths, strict=True)))
    ctx.exhausted()  # a clamped call may have spent the rest: record the limit it reached
    return list(groups)


async def score(
    ctx: Context, chains: list[Chain], step_reduction: str | StepReduction = "last"
) -> list[Chain]:
    """The chains with their verifier scores (one per step), recorded in the tree.

    With `step_reduction="model"` the verifier sees each chain's whole text as one step
    ("model aggregation"); its one score becomes the score of the chain's last step, and of
    any earlier steps no earlier call scored (a step's score is then that of the shortest
    scored prefix holding it), so every chain still has one score per step.

    With the verifier budget (or the wall clock) spent they come back unscored, and
    `ctx.stopped_by` is set; a spent token budget does not stop scoring.
    """
    if not chains:
        return []
    whole = scores_whole_prefix(step_reduction)
    try:
        all_scores = await ctx.score([whole_prefix(c) for c in chains] if whole else chains)
    except BudgetExhausted:
        return chains
    if whole:
        all_scores = [_fill(c, s) for c, s in zip(chains, all_scores, strict=True)]
    scored = [c.with_scores(s) for c, s in zip(chains, all_scores, strict=True)]
    for c in scored:
        ctx.tree.annotate(c.id, scores=list(c.scores))
    return scored


async def greedy_rollout(
    ctx: Context,
    chains: Sequence[Chain],
    steps: int,
    sampling: StepSampling,
    *,
    status: NodeStatus = NodeStatus.LOOKAHEAD,
) -> list[Chain]:
    """Each open chain continued by up to `steps` greedy (temperature 0) steps: its tip, or the
    chain itself when it is finished or the budget refused its next step.

    One `expand` call per level over every open chain, so all rollouts of a round are in flight
    together (levels depend on each other, chains do not). Each rollout step is a tree node of
    `status` (LOOKAHEAD: the step only informs a score and is not kept by the search). Beam
    search's and DVTS's lookahead use it, and so can a tree search's simulations.
    """
    tips = list(chains)
    greedy = replace(sampling, temperature=0.0)
    for _ in range(steps):
        open_ = [j for j, tip in enumerate(tips) if not tip.finished]
        if not open_:
            break
        grown = await expand(ctx, [tips[j] for j in open_], 1, greedy)
        for j, more in zip(open_, grown, strict=True):
            if more:
                tips[j] = more[0]
                ctx.tree.mark(more[0].id, status)
    return tips
