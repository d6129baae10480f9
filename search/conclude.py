"""Turning a controller's finished chains into an Outcome: one place for scoring and voting."""

from __future__ import annotations

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.types import Chain
from search.aggregate import Selection, StepReduction, Vote, aggregate, needs_scores
from search.expand import is_scored, score


async def conclude(
    ctx: Context,
    chains: list[Chain],
    method: str | Vote = "majority",
    step_reduction: str | StepReduction = "last",
) -> Outcome:
    """Score the chains if the vote needs it, vote, mark the winner in the tree.

    Method-specific facts of the vote (e.g. RPC's pruned paths under "rpc") join the details.
    A vote that needs scores but cannot get them all (the verifier budget or the wall clock ran
    out) becomes a majority vote, never silently: `details["missing_scores"]` says how many
    chains were unscored and why, and the runner records and counts it.
    """
    details: dict[str, object] = {"aggregate": method if isinstance(method, str) else "custom"}
    # A chain is scored when it has one score per step (a child inherits its parent's scores).
    unscored = [i for i, c in enumerate(chains) if not is_scored(c)]
    if needs_scores(method, ctx.verifier is not None) and unscored:
        fresh = await score(ctx, [chains[i] for i in unscored], step_reduction)
        missing = sum(1 for c in fresh if not is_scored(c))
        if missing:
            # No verifier budget left: an unweighted vote rather than no answer, said aloud.
            details["missing_scores"] = {
                "chains": missing,
                "of": len(chains),
                "reason": ctx.stopped_by or "the verifier returned no score",
                "vote": "majority instead of "
                + (method if isinstance(method, str) else "a custom vote"),
            }
            method = "majority"
            details["aggregate"] = "majority (scores missing)"
        else:
            chains = list(chains)
            for i, c in zip(unscored, fresh, strict=True):
                chains[i] = c
    if ctx.judge is None:
        raise ValueError("the Context needs an answer judge to aggregate answers")
    selection = await aggregate(chains, ctx.judge, method, step_reduction)
    return outcome_of(ctx, chains, selection, details)


def outcome_of(
    ctx: Context, chains: list[Chain], selection: Selection, details: dict[str, object]
) -> Outcome:
    """The Outcome of a choice already made: the winner marked `selected` in the tree, the
    vote's counts and facts joined to `details`.

    `conclude` ends here after its vote; a controller that chooses by a rule of its own (HyPER's
    weighted vote, MCTS's most visited child) builds a `Selection` and ends here too, so every
    Outcome is put together the same way (docs/adding-a-controller.md).
    """
    chosen = chains[selection.index] if selection.index is not None else None
    if chosen is not None:
        ctx.tree.mark_selected(chosen.id)
    details.setdefault("votes", selection.votes)
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
