"""What beam search and DVTS share (HF search-and-learn; docs/beam-and-dvts.md): their
settings, ranking by reduced step score, lookahead scoring, and the answer pool when the
budget stops a search early.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from reasoning.context import Context
from reasoning.types import Chain
from search.aggregate import VERIFIER_AGGREGATES, StepReduction, Vote, reduce_step_scores
from search.expand import StepSampling, greedy_rollout, is_scored, score
from search.settings import (
    AggregateName,
    Lookahead,
    Samples,
    Stepwise,
    Width,
    invalid,
    settings,
)


def rank(chains: Sequence[Chain], reduction: str | StepReduction) -> list[Chain]:
    """Best reduced score first; stable, so ties keep their order (deterministic)."""
    return sorted(chains, key=lambda c: -reduce_step_scores(c.scores, reduction))


async def score_with_lookahead(
    ctx: Context,
    kids: list[Chain],
    lookahead: int,
    policy: StepSampling,
    reduction: str | StepReduction,
    rank_by_rollout: bool = True,
) -> tuple[list[Chain], list[float | None]]:
    """Score `kids`; with `lookahead` > 0 each open kid is ranked by a greedy (T=0) rollout of
    up to `lookahead` more steps, which is recorded in the tree as "lookahead" and dropped.

    Returns the kids with their own per-step scores (the rollout's, cut to the kid's depth)
    and the score each is ranked by (None when the budget left it unscored). Each rollout
    level is one `expand` call over all kids: levels depend on each other, kids do not.

    With `rank_by_rollout=False` the rollouts are still generated (and paid for), but the
    verifier scores the kids themselves and each is ranked by its own score, as
    search-and-learn's beam search does (it scores the step, not the step plus its lookahead).
    """
    tips = await greedy_rollout(ctx, kids, lookahead, policy)
    if not rank_by_rollout:
        own = await score(ctx, kids, reduction)
        return own, [reduce_step_scores(k.scores, reduction) if is_scored(k) else None for k in own]
    tips = await score(ctx, tips, reduction)
    out: list[Chain] = []
    ranks: list[float | None] = []
    for kid, tip in zip(kids, tips, strict=True):
        if not is_scored(tip):
            out.append(kid)
            ranks.append(None)
            continue
        value = reduce_step_scores(tip.scores, reduction)
        if tip.id == kid.id:
            kid = tip
        else:
            kid = kid.with_scores(tip.scores[: len(kid.steps)])
            ctx.tree.annotate(kid.id, scores=list(kid.scores), lookahead_score=value)
        out.append(kid)
        ranks.append(value)
    return out, ranks


def budget_pool(
    finished: Sequence[Chain],
    partial: Sequence[Chain],
    method: str | Vote,
    reduction: str | StepReduction,
    n: int,
) -> list[Chain]:
    """The best answers so far when the budget stopped the search: the finished chains if any,
    else the partial ones; the scored ones when the vote needs scores; best `n` by score.

    Unscored chains lose the scores they inherited, so `conclude` does not rank them by their
    parent's score (it tries to score them and, with no budget, falls back to majority).
    """
    pool = list(finished) or list(partial)
    if method in VERIFIER_AGGREGATES and any(is_scored(c) for c in pool):
        pool = [c for c in pool if is_scored(c)]
    pool = [c if is_scored(c) else c.with_scores(()) for c in pool]
    return rank(pool, reduction)[:n]


def cyclic_counts(active: int, n: int) -> list[int]:
    """Children per beam when `active` beams are repeated cyclically up to `n` (as SAL does)."""
    return [n // active + (1 if j < n % active else 0) for j in range(active)]


@settings
class StepSearch(Stepwise):
    """The knobs beam search and DVTS share (HF search-and-learn's recipe)."""

    aggregates: ClassVar[tuple[str, ...]] = ("best_score", "weighted", "majority")

    n: Samples = 8  # completions (and step samples per iteration); SAL uses 4..256
    width: Width = 4  # M: samples per expanded chain; n / M beams or subtrees
    lookahead: Lookahead = 0  # greedy extra steps used only to score a candidate
    aggregate: AggregateName = "best_score"  # final choice: best_score | weighted | majority

    def check(self) -> None:
        if self.n % self.width != 0:
            raise invalid("width", self.width, f"must divide search.n={self.n}")

    @property
    def verifier_use(self) -> str | None:
        return f"search={self.name} keeps the verifier's best steps at every step"
