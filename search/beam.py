"""Step-level beam search as in HF search-and-learn (docs/beam-and-dvts.md).

Each iteration the surviving beams are duplicated cyclically to `n`, so each of the `n / width`
survivors gets `width` children; all `n` step samples go out in ONE `expand` call (in flight
together, batched by the engine); finished children join the answer pool; the open ones are
verifier-scored and the best `n / width` survive. The last allowed step writes to EOS.

Two choices where search-and-learn's code (`src/sal/search/beam_search.py`) does otherwise,
each a key whose other value is the reference's (the search-and-learn presets set it):

- `finished_order`: when more than `n` beams finish, which `n` are kept for the final vote.
  "score" (the default): the `n` best by reduced score. "finish": the first `n` to finish, in
  the order they finished (within an iteration, the reference's slot order: survivors repeated
  cyclically, so survivor j's c-th child has slot j + c * survivors), which is what
  search-and-learn does with its default `sort_completed: false`. Keeping the first finishers
  drops better-scored beams that happened to take longer.
- `lookahead_ranking`: with `lookahead > 0`, whether a candidate is ranked by its greedy
  rollout's score (true, the default) or by its own score (false). search-and-learn's beam
  search generates the rollouts but scores only the step, so its lookahead costs tokens and
  changes nothing; false reproduces that, rollouts included. Its DVTS does rank by the rollout,
  as ours does.

Budget: the Context checks the ledger before each generator call, and all calls of one
iteration may pass that check before any is metered. With `Budget(generated_tokens=B)` the
guaranteed bound is therefore one iteration, not one call:
`ledger.generated_tokens <= B - 1 + n * max_step_tokens` (an iteration asks for at most `n`
samples; a lookahead level for at most `n` rollouts). When the calls complete one at a time
the Context's per-call clamp tightens this to `B + n - 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Flag
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Problem
from search.conclude import conclude
from search.expand import expand
from search.settings import FilterDuplicates, settings
from search.step_search import StepSearch, budget_pool, cyclic_counts, rank, score_with_lookahead

FINISHED_ORDERS = ("score", "finish")


def slot_order(groups: Sequence[Sequence[Chain]]) -> list[int]:
    """Positions of the flattened children of `groups` (one group per surviving beam) in the
    reference's slot order: survivors repeated cyclically, so the c-th child of survivor j has
    slot j + c * len(groups)."""
    slots = [j + c * len(groups) for j, group in enumerate(groups) for c in range(len(group))]
    return sorted(range(len(slots)), key=slots.__getitem__)


@settings
class Beam(StepSearch):
    """Beam search: keep the `n / width` best open beams, each grown by `width` samples."""

    name: ClassVar[str] = "beam"

    filter_duplicates: FilterDuplicates = True
    finished_order: Literal["score", "finish"] = "score"
    """which n finished beams are kept: score (the n best) | finish (the n first, as SAL)"""
    lookahead_ranking: Flag = True
    """rank by the lookahead rollout's score (false: by the step's own, as SAL)"""

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        policy, keep = self.sampling, self.n // self.width
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
                ctx,
                kids,
                0 if last else self.lookahead,
                policy,
                self.step_reduction,
                self.lookahead_ranking,
            )
            order = slot_order(groups) if self.finished_order == "finish" else range(len(kids))
            finished.extend(kids[j] for j in order if kids[j].finished)
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
            # SAL: n completed beams (the best, or the first to finish), repeated cyclically
            # when fewer than n completed.
            if self.finished_order == "score":
                best = rank(finished, self.step_reduction)[: self.n]
            else:
                best = finished[: self.n]
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
