"""A*-decoding (Chatziveroglou 2025, arXiv 2505.13672; docs/astar.md): best-first search over
partial solutions, steered by the PRM.

Each frontier node is a partial solution (a Chain). Its priority is f = g + h (lower is better):
h = 1 - r, with r the node's step scores reduced by `step_reduction`, and g a path cost
accumulated from the root. The node with the smallest f is expanded into `width` sampled next
steps (one `expand` call), the children are scored in one `score` call and pushed; siblings stay
in the frontier, which is what lets the search back off a path whose PRM score drops.

Reconstructed choices [R] (the paper's exact g, k and budget rule are not public in detail;
these follow its proposal and are listed in docs/astar.md):
- r: the verifier's per-step scores reduced by `step_reduction` (default "last").
- g: `path_cost="risk"` adds c = cost_weight * (1 - r(child)) per step (accumulated risk,
  the default); "depth" adds cost_weight per step; "tokens" adds
  cost_weight * tokens(step) / token_ref. cost_weight = 0 is greedy best-first on the PRM.
- Ties in f go to the node pushed first (insertion order), not "deeper first".
- A finished child stays in the frontier with its f; it is accepted as a solution ("goal") only
  when it is the best node there, i.e. A*'s "first goal popped" rule. With
  `stop_on_first_complete` the first goal ends the search; otherwise goals are collected until
  the frontier empties or a cap hits, and `aggregate` votes over them.
- Nodes at depth max_steps - 1 are expanded with `last=True` (write to EOS, as SAL's final
  iteration) so that the step cap still leaves a complete solution.
- Children whose steps repeat a node already seen are dropped before scoring (status
  "pruned", `duplicate_of` in the tree) when `filter_duplicates` is on.
- When the search stops without a goal (budget, `max_expansions`) it returns the
  best answer so far: finished nodes of the frontier, else finished children left unscored,
  else the best-f partial as is (see `_Search.finish`); no greedy completion to EOS, since
  that would spend past the limit that stopped us.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Count, Flag, NonNegativeFloat, OptionalCount
from reasoning.tree import ROOT, NodeStatus
from reasoning.types import Chain, Problem
from search.aggregate import reduce_step_scores
from search.conclude import conclude
from search.expand import expand, is_scored, score
from search.settings import AggregateName, FilterDuplicates, Stepwise, Width, settings

PATH_COSTS = ("risk", "depth", "tokens")


@settings
class AStar(Stepwise):
    """A*-decoding over reasoning steps with a PRM heuristic h = 1 - r.

    `expansions_per_round`: how many best frontier nodes are popped and expanded together in one
    `expand` call. 1 is strict best-first (exact A*: every expansion sees all earlier scores);
    B > 1 keeps the engine busier and cuts sequential rounds (latency) at the price of expanding
    nodes strict A* might never reach, i.e. more tokens and PRM calls per solved problem.

    Spend bound: the budget is checked before each round or call, and a round's calls are in
    flight together, so the spend ends below the limit plus one round:
    limit + expansions_per_round * width * max_step_tokens (tests/test_astar.py checks it).
    With `stop_on_first_complete=False` the search runs until the frontier empties, so give it
    `max_expansions` or a budget.
    """

    name: ClassVar[str] = "astar"

    width: Width = 4  # k children sampled per expansion
    expansions_per_round: Count = 1
    """best frontier nodes popped and expanded together in one call (1: strict A*)"""
    max_expansions: OptionalCount = None
    """node expansions per problem, null: no cap (a search-shape cap, counted in expansions,
    not a budget: the budget group still meters tokens and calls)"""
    path_cost: Literal["risk", "depth", "tokens"] = "risk"
    """g increment per step: risk (1 - r) | depth (1) | tokens (step tokens / token_ref)"""
    cost_weight: NonNegativeFloat = 1.0
    """lambda in g; 0 = greedy best-first on the PRM"""
    token_ref: Count = 256
    """T_ref of path_cost=tokens"""
    stop_on_first_complete: Flag = True
    """stop at the first finished chain popped from the frontier"""
    aggregate: AggregateName = "best_score"  # best_score | weighted | majority
    filter_duplicates: FilterDuplicates = True

    @property
    def verifier_use(self) -> str | None:
        return "search=astar ranks its frontier by the verifier (h = 1 - score)"

    def step_cost(self, parent: Chain, kid: Chain, r: float) -> float:
        """The g increment of one step (see the module doc, [R])."""
        if self.path_cost == "risk":
            return self.cost_weight * (1.0 - r)
        if self.path_cost == "depth":
            return self.cost_weight
        return self.cost_weight * (kid.tokens - parent.tokens) / self.token_ref

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        search = _Search(self, ctx)
        stop = await search.loop()
        candidates = search.finish()
        outcome = await conclude(ctx, candidates, self.aggregate, self.step_reduction)
        outcome.details.update(
            expansions=search.expansions,
            goals=[(c.id, search.f[c.id]) for c in search.goals],
            rounds=search.rounds,
            stop=stop,
            frontier_left=len(search.frontier),
            duplicates=len(search.duplicates),
            generated_tokens=ctx.ledger.generated_tokens - search.start_tokens,
        )
        return outcome


class _Search:
    """The state of one A* run: the heap, g and f per node, and what left the frontier."""

    def __init__(self, astar: AStar, ctx: Context) -> None:
        self.astar, self.ctx = astar, ctx
        self.start_tokens = ctx.ledger.generated_tokens
        self.order = itertools.count()  # insertion order: the tie-break of equal f
        self.frontier: list[tuple[float, int, Chain]] = []
        root = Chain()
        self.g: dict[str, float] = {root.id: 0.0}
        self.f: dict[str, float] = {root.id: 0.0}
        self.push(root)
        self.seen = {root.steps: ROOT}  # steps -> the first node with them (dedupe)
        self.expansions: list[tuple[str, float]] = []  # (node id, f) in expansion order
        self.goals: list[Chain] = []  # finished chains accepted at the top of the frontier
        self.duplicates: list[Chain] = []
        self.unscored: list[Chain] = []  # children the budget left unscored
        self.rounds = 0

    def push(self, chain: Chain) -> None:
        heapq.heappush(self.frontier, (self.f[chain.id], next(self.order), chain))

    def capped(self) -> str | None:
        """The per-problem cap that is reached, if any (checked between rounds)."""
        astar = self.astar
        if astar.max_expansions is not None and len(self.expansions) >= astar.max_expansions:
            return "max_expansions"
        return None

    def select(self) -> tuple[list[Chain], bool]:
        """Pop this round's nodes, best f first; True when a goal wins the search.

        A finished node is a goal only once nothing unfinished is ahead of it: with early stop
        it waits in the frontier while this round expands better nodes, then is looked at again.
        """
        astar = self.astar
        quota = astar.expansions_per_round
        if astar.max_expansions is not None:
            quota = min(quota, astar.max_expansions - len(self.expansions))
        batch: list[Chain] = []
        while self.frontier and len(batch) < quota:
            top = self.frontier[0][2]
            if top.finished and astar.stop_on_first_complete and batch:
                break
            heapq.heappop(self.frontier)
            if not top.finished:
                batch.append(top)
                continue
            self.goals.append(top)
            if astar.stop_on_first_complete:
                return [], True
        return batch, False

    async def expand(self, nodes: list[Chain]) -> list[list[Chain]]:
        """One round's expansions, in flight together; nodes one step short of the cap write to
        EOS (`last=True`), the others stop at the step delimiter."""
        astar, ctx = self.astar, self.ctx
        policy = astar.sampling
        inner = [n for n in nodes if len(n.steps) + 1 < astar.max_steps]
        final = [n for n in nodes if len(n.steps) + 1 >= astar.max_steps]
        inner_kids, final_kids = await asyncio.gather(
            expand(ctx, inner, astar.width, policy),
            expand(ctx, final, astar.width, policy, last=True),
        )
        by_id = dict(zip([n.id for n in inner + final], inner_kids + final_kids, strict=True))
        return [by_id[n.id] for n in nodes]

    async def loop(self) -> str:
        """Expand until a goal wins, the frontier empties, or a cap or the budget stops us."""
        ctx, tree = self.ctx, self.ctx.tree
        while self.frontier:
            cap = self.capped()
            if cap is not None:
                return cap
            batch, won = self.select()
            if won:
                return "complete"
            if not batch:
                continue  # only goals were popped (stop_on_first_complete off)
            self.rounds += 1
            fresh: list[Chain] = []
            kids_of = await self.expand(batch)
            for node, kids in zip(batch, kids_of, strict=True):
                if not kids:  # the budget refused this expansion: the node stays in the frontier
                    self.push(node)
                    continue
                self.expansions.append((node.id if node.steps else ROOT, self.f[node.id]))
                if node.steps:
                    tree.mark(node.id, NodeStatus.EXPANDED)
                for kid in kids:
                    if self.astar.filter_duplicates and kid.steps in self.seen:
                        tree.mark_pruned(kid.id, duplicate_of=self.seen[kid.steps])
                        self.duplicates.append(kid)
                    else:
                        self.seen.setdefault(kid.steps, kid.id)
                        fresh.append(kid)
            parents = {node.id: node for node in batch}
            for kid in await score(ctx, fresh, self.astar.step_reduction):
                if is_scored(kid):
                    self.prioritise(parents[kid.parent or ""], kid)
                else:  # refused: it carries only its parent's scores, which must not rank it
                    self.unscored.append(kid.with_scores(()))
                    tree.annotate(kid.id, scores=[])
            # stop once the next expansion would be refused (or one already was)
            if ctx.exhausted() is not None or ctx.stopped_by is not None:
                return f"budget:{ctx.stopped_by}"
            if not any(kids_of):
                return "no_children"  # a generator that returned nothing: do not spin
        return "frontier_empty"

    def prioritise(self, parent: Chain, kid: Chain) -> None:
        """f = g + h with h = 1 - r; recorded on the tree node, then pushed."""
        astar = self.astar
        r = reduce_step_scores(kid.scores, astar.step_reduction)
        self.g[kid.id] = self.g[parent.id] + astar.step_cost(parent, kid, r)
        self.f[kid.id] = self.g[kid.id] + (1.0 - r)
        self.ctx.tree.annotate(kid.id, f=self.f[kid.id], g=self.g[kid.id], h=1.0 - r)
        self.push(kid)

    def finish(self) -> list[Chain]:
        """The chains the final vote sees; every node left unexpanded is marked "pruned".

        The goals, if any. Otherwise the first of these tiers holding an extractable answer
        (else the first non-empty one): the finished nodes in the frontier (best f first); the
        finished children the verifier never scored (a verifier budget or the wall clock can
        run out between a round's generation and its scoring); the best-f partial in the
        frontier; the unscored partial children.
        """
        ranked = [c for _, _, c in sorted(self.frontier, key=lambda e: e[:2]) if c.steps]
        candidates = self.goals
        if not candidates:
            tiers = [
                [c for c in ranked if c.finished],
                [c for c in self.unscored if c.finished],
                [c for c in ranked if not c.finished][:1],
                [c for c in self.unscored if not c.finished],
            ]
            judge = self.ctx.judge
            answered = [
                t
                for t in tiers
                if judge is not None and any(judge.extract(c.text) is not None for c in t)
            ]
            candidates = next(iter(answered + [t for t in tiers if t]), [])
        kept = {c.id for c in candidates}
        tree = self.ctx.tree
        for c in [*ranked, *self.unscored]:
            if c.id in kept and c.finished:
                tree.mark_finished(c.id)
            else:
                tree.mark_pruned(c.id)
        for c in self.goals:
            tree.mark_finished(c.id)
        return candidates
