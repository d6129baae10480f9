"""Step-level beam search as in HF search-and-learn (ALGORITHMS.md 3.1).

Each iteration the surviving beams are duplicated cyclically to `n`, so each of the `n / width`
survivors gets `width` children; all `n` step samples go out in ONE `expand` call (in flight
together, batched by the engine); finished children join the answer pool; the open ones are
verifier-scored and the best `n / width` survive. The last iteration writes to EOS.

Budget: the Context checks the ledger before each generator call, and all calls of one
iteration may pass that check before any is metered. With `Budget(generated_tokens=B)` the
guaranteed bound is therefore one iteration, not one call:
`ledger.generated_tokens <= B - 1 + n * max_step_tokens` (an iteration asks for at most `n`
samples; a lookahead level for at most `n` rollouts). When the calls complete one at a time
the Context's per-call clamp tightens this to `B + n - 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from reasoning.context import Context
from reasoning.types import Chain, Outcome, Problem
from search.aggregate import STEP_REDUCTIONS, VERIFIER_AGGREGATES, reduce_step_scores
from search.conclude import conclude
from search.expand import StepPolicy, expand, is_scored, score

STEP_AGGREGATES = ("best_score", "weighted", "majority")


def rank(chains: Sequence[Chain], how: str) -> list[Chain]:
    """Best reduced score first; stable, so ties keep their order (deterministic)."""
    return sorted(chains, key=lambda c: -reduce_step_scores(c.scores, how))


async def score_with_lookahead(
    ctx: Context, kids: list[Chain], lookahead: int, policy: StepPolicy, how: str
) -> tuple[list[Chain], list[float | None]]:
    """Score `kids`; with `lookahead` > 0 each open kid is ranked by a greedy (T=0) rollout of
    up to `lookahead` more steps, which is recorded in the tree as "lookahead" and dropped.

    Returns the kids with their own per-step scores (the rollout's, cut to the kid's depth)
    and the score each is ranked by (None when the budget left it unscored). Each rollout
    level is one `expand` call over all kids: levels depend on each other, kids do not.
    """
    tips = list(kids)
    greedy = replace(policy, temperature=0.0)
    for _ in range(lookahead):
        open_ = [j for j, tip in enumerate(tips) if not tip.finished]
        if not open_:
            break
        grown = await expand(ctx, [tips[j] for j in open_], 1, greedy)
        for j, more in zip(open_, grown, strict=True):
            if more:
                tips[j] = more[0]
                ctx.tree.mark(more[0].id, "lookahead")
    tips = await score(ctx, tips)
    out: list[Chain] = []
    ranks: list[float | None] = []
    for kid, tip in zip(kids, tips, strict=True):
        if not is_scored(tip):
            out.append(kid)
            ranks.append(None)
            continue
        value = reduce_step_scores(tip.scores, how)
        if tip.id == kid.id:
            kid = tip
        else:
            kid = kid.with_scores(tip.scores[: len(kid.steps)])
            ctx.tree.graph.nodes[kid.id].update(scores=list(kid.scores), lookahead_score=value)
        out.append(kid)
        ranks.append(value)
    return out, ranks


def budget_pool(
    finished: Sequence[Chain], partial: Sequence[Chain], method: str, how: str, n: int
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
    return rank(pool, how)[:n]


def cyclic_counts(active: int, n: int) -> list[int]:
    """Children per beam when `active` beams are repeated cyclically up to `n` (as SAL does)."""
    return [n // active + (1 if j < n % active else 0) for j in range(active)]


@dataclass
class StepSearch:
    """The knobs beam search and DVTS share, validated with errors naming `search.<field>`."""

    n: int = 8  # completions (and step samples per iteration); SAL uses 4..256
    width: int = 4  # M: samples per expanded chain; n / M beams or subtrees
    iterations: int = 40  # step limit; the last iteration generates to EOS
    lookahead: int = 0  # greedy extra steps used only to score a candidate
    step_reduction: str = "last"  # per-step scores -> one score: last | min | prod | mean
    temperature: float = 0.8
    top_p: float = 1.0
    max_step_tokens: int = 512
    aggregate: str = "best_score"  # final choice: best_score | weighted | majority

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"search.n must be >= 1, got {self.n}")
        if self.width < 1 or self.n % self.width != 0:
            raise ValueError(
                f"search.width must be >= 1 and divide search.n={self.n}, got {self.width}"
            )
        if self.iterations < 1:
            raise ValueError(f"search.iterations must be >= 1, got {self.iterations}")
        if self.lookahead < 0:
            raise ValueError(f"search.lookahead must be >= 0, got {self.lookahead}")
        if self.temperature < 0:
            raise ValueError(f"search.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"search.top_p must be in (0, 1], got {self.top_p}")
        if self.max_step_tokens < 1:
            raise ValueError(f"search.max_step_tokens must be >= 1, got {self.max_step_tokens}")
        if self.step_reduction not in STEP_REDUCTIONS:
            raise ValueError(
                f"search.step_reduction={self.step_reduction!r}; valid: {list(STEP_REDUCTIONS)}"
            )
        if self.aggregate not in STEP_AGGREGATES:
            raise ValueError(f"search.aggregate={self.aggregate!r}; valid: {list(STEP_AGGREGATES)}")

    @property
    def needs_verifier(self) -> bool:
        return True  # verifier scores steer the search itself, whatever the final vote

    def policy(self) -> StepPolicy:
        return StepPolicy(
            temperature=self.temperature,
            top_p=self.top_p,
            max_step_tokens=self.max_step_tokens,
            max_steps=self.iterations,
        )


@dataclass
class Beam(StepSearch):
    """Beam search: keep the `n / width` best open beams, each grown by `width` samples."""

    filter_duplicates: bool = True  # drop open beams whose text repeats an earlier one

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        policy, keep = self.policy(), self.n // self.width
        active: list[Chain] = [Chain()]  # n empty beams = one empty beam sampled n times
        finished: list[Chain] = []
        frontier: list[Chain] = []  # the latest open beams: the answer pool if nothing finished
        done = 0
        for i in range(self.iterations):
            last = i == self.iterations - 1
            groups = await expand(
                ctx, active, cyclic_counts(len(active), self.n), policy, last=last
            )
            kids = [k for g in groups for k in g]
            if not kids:
                break  # only the budget refuses every call
            done = i + 1
            kids, ranks = await score_with_lookahead(
                ctx, kids, 0 if last else self.lookahead, policy, self.step_reduction
            )
            finished.extend(k for k in kids if k.finished)
            open_ = [(k, r) for k, r in zip(kids, ranks, strict=True) if not k.finished]
            if ctx.stopped_by is not None:
                if not frontier:
                    frontier = [k for k, _ in open_]
                break
            frontier = [k for k, _ in open_]
            active = self._select(ctx, open_, keep, i)
            if not active:
                break
        if ctx.stopped_by is not None or not finished:
            chains = budget_pool(finished, frontier, self.aggregate, self.step_reduction, self.n)
        else:
            # SAL: the n best completed beams, repeated cyclically when fewer than n completed.
            best = rank(finished, self.step_reduction)[: self.n]
            chains = [best[j % len(best)] for j in range(self.n)]
        outcome = await conclude(ctx, chains, self.aggregate, self.step_reduction)
        outcome.details.update(iterations=done, finished=len(finished))
        return outcome

    def _select(
        self, ctx: Context, scored: list[tuple[Chain, float | None]], keep: int, iteration: int
    ) -> list[Chain]:
        """The `keep` best open beams (ties to the earlier), in their original order."""
        unique: list[tuple[Chain, float]] = []
        seen: set[str] = set()
        for chain, value in scored:
            if self.filter_duplicates and chain.text in seen:
                ctx.tree.mark(chain.id, "pruned", iteration=iteration, duplicate=True)
                continue
            seen.add(chain.text)
            unique.append((chain, value if value is not None else 0.0))
        order = sorted(range(len(unique)), key=lambda j: -unique[j][1])
        kept = set(order[:keep])
        survivors = []
        for j, (chain, _) in enumerate(unique):
            ctx.tree.mark(chain.id, "selected" if j in kept else "pruned", iteration=iteration)
            if j in kept:
                survivors.append(chain)
        return survivors
