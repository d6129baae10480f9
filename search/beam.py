"""Step-level beam search as in HF search-and-learn (docs/beam-and-dvts.md).

Each iteration the surviving beams are duplicated cyclically to `n`, so each of the `n / width`
survivors gets `width` children; all `n` step samples go out in ONE `expand` call (in flight
together, batched by the engine); finished children join the answer pool; the open ones are
verifier-scored and the best `n / width` survive. The last allowed step writes to EOS.

Budget: the Context checks the ledger before each generator call, and all calls of one
iteration may pass that check before any is metered. With `Budget(generated_tokens=B)` the
guaranteed bound is therefore one iteration, not one call:
`ledger.generated_tokens <= B - 1 + n * max_step_tokens` (an iteration asks for at most `n`
samples; a lookahead level for at most `n` rollouts). When the calls complete one at a time
the Context's per-call clamp tightens this to `B + n - 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Problem
from search.conclude import conclude
from search.expand import expand
from search.step_search import StepSearch, budget_pool, cyclic_counts, rank, score_with_lookahead


@dataclass
class Beam(StepSearch):
    """Beam search: keep the `n / width` best open beams, each grown by `width` samples."""

    name: ClassVar[str] = "beam"

    filter_duplicates: bool = True  # drop open beams whose text repeats an earlier one

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        policy, keep = self.policy, self.n // self.width
        active: list[Chain] = [Chain()]  # n empty beams = one empty beam sampled n times
        finished: list[Chain] = []
        frontier: list[Chain] = []  # the latest open beams: the answer pool if nothing finished
        done = 0
        for i in range(self.max_steps):
            last = i == self.max_steps - 1
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
                ctx.tree.mark_pruned(chain.id, iteration=iteration, duplicate=True)
                continue
            seen.add(chain.text)
            unique.append((chain, value if value is not None else 0.0))
        order = sorted(range(len(unique)), key=lambda j: -unique[j][1])
        kept = set(order[:keep])
        survivors = []
        for j, (chain, _) in enumerate(unique):
            status = NodeStatus.SELECTED if j in kept else NodeStatus.PRUNED
            ctx.tree.mark(chain.id, status, iteration=iteration)
            if j in kept:
                survivors.append(chain)
        return survivors
