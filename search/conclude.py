"""Turning a controller's finished chains into an Outcome: one place for scoring and voting."""

from __future__ import annotations

from reasoning.budget import BudgetExhausted
from reasoning.context import Context
from reasoning.types import Chain, Outcome
from search.aggregate import VERIFIER_AGGREGATES, aggregate


async def conclude(
    ctx: Context,
    chains: list[Chain],
    method: str = "majority",
    step_reduction: str = "last",
) -> Outcome:
    """Score the chains if the vote needs it, vote, mark the winner in the tree.

    Method-specific facts of the vote (e.g. RPC's pruned paths under "rpc") join the details.
    """
    details: dict[str, object] = {"aggregate": method}
    if method in VERIFIER_AGGREGATES and chains and not all(c.scores for c in chains):
        try:
            scores = await ctx.score(chains)
            chains = [c.with_scores(s) for c, s in zip(chains, scores, strict=True)]
            for c in chains:
                ctx.tree.graph.nodes[c.id]["scores"] = list(c.scores)
        except BudgetExhausted:
            # No budget left to score: fall back to an unweighted vote rather than no answer.
            method = "majority"
            details["aggregate"] = "majority (verifier budget reached)"
    if ctx.judge is None:
        raise ValueError("the Context needs an answer judge to aggregate answers")
    selection = await aggregate(chains, ctx.judge, method, step_reduction)
    chosen = chains[selection.index] if selection.index is not None else None
    if chosen is not None:
        ctx.tree.mark(chosen.id, "selected")
    details["votes"] = selection.votes
    details.update(selection.details)
    ctx.tick()
    return Outcome(
        answer=selection.answer,
        chain=chosen,
        chains=chains,
        ledger=ctx.ledger,
        tree=ctx.tree,
        stopped_by=ctx.stopped_by,
        details=details,
    )
