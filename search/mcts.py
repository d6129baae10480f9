"""Monte Carlo tree search over reasoning steps (docs/mcts.md): UCT or PUCT selection, expansion
by `width` sampled steps, the verifier as the value, mean-value backup, virtual loss so that
`in_flight` simulations of one problem decode together.

One simulation: select a path from the root to a leaf by the tree policy; if the leaf is open,
expand it (sample `width` next steps, one `expand` call) and value it (its verifier score
reduced by `step_reduction`, or that of its greedy rollout of `lookahead` steps); if it is a
finished chain, value it once and reuse that value; then add the value to every node of the
path (visits += 1, value_sum += v). Several simulations are selected per round, each path
carrying a virtual loss (a pending visit of value 0) while the round is in flight, so the next
selection of the round sees a lower mean there and goes elsewhere; the losses are removed at
backup. The statistics live in `_Tree` for one `run`; `ctx.tree` gets them as annotations.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Count, NonNegativeFloat
from reasoning.tree import ROOT
from reasoning.types import Chain, Problem
from search.aggregate import Selection, cluster_answers, reduce_step_scores
from search.conclude import outcome_of
from search.expand import StepSampling, expand, greedy_rollout, is_scored, score
from search.settings import InFlight, Lookahead, Stepwise, Width, settings


def uct(value_sum: float, visits: int, parent_visits: int, c: float) -> float:
    """UCT (Kocsis & Szepesvari 2006): Q + c * sqrt(ln N_parent / N); an unvisited child first."""
    if visits == 0:
        return math.inf
    return value_sum / visits + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)


def puct(value_sum: float, visits: int, parent_visits: int, prior: float, c: float) -> float:
    """PUCT (AlphaZero): Q + c * P * sqrt(N_parent) / (1 + N), with Q = 0 while unvisited."""
    q = value_sum / visits if visits else 0.0
    return q + c * prior * math.sqrt(parent_visits) / (1 + visits)


def step_priors(parent: Chain, kids: list[Chain]) -> list[float]:
    """The policy's probability of each sibling step, normalised over the siblings: exp of the
    mean sampled-token logprob of the step (a per-token geometric mean, so a long step is not
    penalised for its length as the product of its token probabilities would be). Uniform when
    any sibling has no logprobs."""
    if not kids:
        return []
    skip = len(parent.logprobs or ())
    raw: list[float] = []
    for kid in kids:
        own = (kid.logprobs or ())[skip:]
        if not own:
            return [1.0 / len(kids)] * len(kids)
        raw.append(math.exp(sum(own) / len(own)))
    total = sum(raw)
    return [r / total for r in raw]


@dataclass(eq=False)
class _Node:
    """One node of the working tree: the chain, its children, and its statistics."""

    chain: Chain
    parent: _Node | None = None
    prior: float = 1.0
    children: list[_Node] | None = None  # None: not expanded; []: expanded into nothing
    visits: int = 0
    value_sum: float = 0.0
    virtual: int = 0  # simulations of the current round whose path runs through this node
    value: float | None = None  # its own evaluation (kept: a finished chain is valued once)

    @property
    def id(self) -> str:
        return self.chain.id if self.chain.steps else ROOT

    @property
    def terminal(self) -> bool:
        return self.chain.finished

    @property
    def q(self) -> float:
        """The mean value of the simulations through this node (0 before the first)."""
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass
class _Tree:
    """The state of one MCTS run: the nodes (in creation order) and this round's pending leaves."""

    exploration: float
    prior: str
    root: _Node = field(default_factory=lambda: _Node(Chain()))
    nodes: list[_Node] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)  # ids (id()) of leaves waiting this round

    def __post_init__(self) -> None:
        self.nodes.append(self.root)

    def score_of(self, node: _Node) -> float:
        """The node's selection score as its parent sees it, counting virtual losses: each
        pending simulation is one more visit of value 0 on the child and on the parent."""
        assert node.parent is not None
        visits = node.visits + node.virtual
        parent = node.parent.visits + node.parent.virtual
        if self.prior == "policy":
            return puct(node.value_sum, visits, parent, node.prior, self.exploration)
        return uct(node.value_sum, visits, parent, self.exploration)

    def free(self, node: _Node) -> bool:
        """Whether a simulation can end below this node this round: a leaf not already pending
        (a finished chain always can, once valued), or a node with a free child."""
        if id(node) in self.pending:
            return False
        if node.children is None:
            return True
        return any(self.free(child) for child in node.children)

    def select(self) -> list[_Node] | None:
        """The path from the root to the leaf the tree policy picks (ties to the first child),
        or None when every leaf is pending or expanded into nothing."""
        node = self.root
        if not self.free(node):
            return None
        path = [node]
        while node.children is not None:
            free = [child for child in node.children if self.free(child)]
            scores = [self.score_of(child) for child in free]
            node = free[scores.index(max(scores))]
            path.append(node)
        return path

    def hold(self, path: list[_Node]) -> None:
        """Add a virtual loss along the path; an unvalued leaf becomes pending."""
        for node in path:
            node.virtual += 1
        leaf = path[-1]
        if not leaf.terminal or leaf.value is None:
            self.pending.add(id(leaf))

    def backup(self, path: list[_Node], value: float | None) -> None:
        """Remove the path's virtual loss; with a value, count the visit along the path."""
        for node in path:
            node.virtual -= 1
            if value is not None:
                node.visits += 1
                node.value_sum += value
        self.pending.discard(id(path[-1]))

    def grow(self, node: _Node, kids: list[Chain]) -> None:
        priors = step_priors(node.chain, kids)
        node.children = [_Node(k, node, p) for k, p in zip(kids, priors, strict=True)]
        self.nodes.extend(node.children)

    def most_visited_path(self) -> _Node:
        """From the root, the most visited child (ties to the first) until a finished chain or
        a node whose children were never visited."""
        node = self.root
        while node.children:
            visited = [c for c in node.children if c.visits > 0]
            if not visited:
                break
            counts = [c.visits for c in visited]
            node = visited[counts.index(max(counts))]
        return node

    def finished(self) -> list[_Node]:
        """The finished chains some simulation reached, in creation order."""
        return [n for n in self.nodes if n.terminal and n.visits > 0]


@settings
class MCTS(Stepwise):
    """Monte Carlo tree search over steps, valued by the verifier (UCT, or PUCT with the
    policy's step probabilities as priors)."""

    name: ClassVar[str] = "mcts"

    width: Width = 4
    simulations: Count = 16
    """select-expand-value-backup iterations per problem (a search-shape key, not a budget)"""
    exploration: NonNegativeFloat = 1.0
    """c: weight of the exploration term of UCT / PUCT (0: pure exploitation of the mean value)"""
    prior: Literal["none", "policy"] = "none"
    """none: UCT; policy: PUCT with each step's probability under the policy as its prior"""
    lookahead: Lookahead = 0
    final_answer: Literal["visits", "value"] = "visits"
    """visits: follow the most visited child from the root; value: best-valued finished chain"""
    in_flight: InFlight = 4

    @property
    def verifier_use(self) -> str | None:
        return "search=mcts values each new leaf by the verifier's step scores"

    @property
    def policy(self) -> StepSampling:
        """Step sampling; with PUCT, the sampled tokens' logprobs are asked for (the prior)."""
        sampling = self.sampling
        return replace(sampling, logprobs=0) if self.prior == "policy" else sampling

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        tree = _Tree(self.exploration, self.prior)
        done = rounds = virtual = widest = 0
        stop = "simulations"
        while done < self.simulations:
            if ctx.exhausted() is not None or ctx.stopped_by is not None:
                stop = f"budget:{ctx.stopped_by}"
                break
            paths: list[list[_Node]] = []
            while len(paths) < min(self.in_flight, self.simulations - done):
                path = tree.select()
                if path is None:
                    break  # every leaf is in flight (or expanded into nothing)
                tree.hold(path)
                paths.append(path)
            if not paths:
                stop = "no_open_leaf"
                break
            rounds += 1
            done += len(paths)
            virtual += sum(len(p) for p in paths)
            widest = max(widest, len(paths))
            await self._simulate(ctx, tree, paths)
        if stop == "simulations" and ctx.stopped_by is not None:
            stop = f"budget:{ctx.stopped_by}"
        for node in tree.nodes:
            ctx.tree.annotate(
                node.id,
                visits=node.visits,
                value=round(node.q, 6) if node.visits else None,
                **({"prior": round(node.prior, 6)} if self.prior == "policy" else {}),
            )
        details: dict[str, Any] = {
            "aggregate": f"mcts:{self.final_answer}",
            "simulations": done,
            "rounds": rounds,
            "virtual_losses": virtual,
            "max_in_flight": widest,
            "stop": stop,
            "root_visits": [c.visits for c in tree.root.children or []],
        }
        return await self._conclude(ctx, tree, details)

    async def _simulate(self, ctx: Context, tree: _Tree, paths: list[list[_Node]]) -> None:
        """Expand and value one round's leaves (all in flight together), then back up."""
        leaves = [p[-1] for p in paths]
        grow = [leaf for leaf in leaves if not leaf.terminal]
        value = [leaf for leaf in leaves if leaf.chain.steps and leaf.value is None]
        policy = self.policy
        inner = [n for n in grow if len(n.chain.steps) + 1 < self.max_steps]
        final = [n for n in grow if len(n.chain.steps) + 1 >= self.max_steps]
        inner_kids, final_kids, tips = await asyncio.gather(
            expand(ctx, [n.chain for n in inner], self.width, policy),
            expand(ctx, [n.chain for n in final], self.width, policy, last=True),
            greedy_rollout(ctx, [n.chain for n in value], self.lookahead, policy),
        )
        for node, kids in zip(inner + final, inner_kids + final_kids, strict=True):
            if kids or ctx.stopped_by is None:  # refused by the budget: still a leaf
                tree.grow(node, kids)
        for node, tip in zip(value, await score(ctx, tips, self.step_reduction), strict=True):
            if is_scored(tip):
                node.value = reduce_step_scores(tip.scores, self.step_reduction)
                if tip.id == node.chain.id:
                    node.chain = tip  # the scored chain: an answer carries its scores
                else:
                    ctx.tree.annotate(node.chain.id, lookahead_score=node.value)
        for path in paths:
            leaf = path[-1]
            if not leaf.chain.steps:  # the root: no step to value; its expansion counts
                tree.backup(path, 0.0 if leaf.children is not None else None)
            else:
                tree.backup(path, leaf.value)

    async def _conclude(self, ctx: Context, tree: _Tree, details: dict[str, Any]) -> Outcome:
        """The answer chain by `final_answer`, ended through `outcome_of`.

        visits: the most visited path from the root; when it ends before a finished chain (the
        simulations or the budget ran out), the most visited finished chain (ties: the higher
        mean value, then the first created). value: the finished chain with the highest mean
        value (ties: more visits, then the first created). Either way, with no finished chain
        reached, the end of the most visited path (a partial answer).
        """
        finished = tree.finished()
        walk = tree.most_visited_path()
        if self.final_answer == "visits" and walk.terminal:
            chosen: _Node | None = walk
        elif finished:
            keys = (
                [(n.visits, n.q) for n in finished]
                if self.final_answer == "visits"
                else [(n.q, n.visits) for n in finished]
            )
            chosen = finished[keys.index(max(keys))]
        else:
            chosen = walk if walk.chain.steps else None
        nodes = list(finished)
        if chosen is not None and chosen not in nodes:
            nodes.append(chosen)
        chains = [n.chain for n in nodes]
        if ctx.judge is None:
            raise ValueError("the Context needs an answer judge to read the answer")
        answers = [ctx.judge.extract(c.text) for c in chains]
        clusters = await cluster_answers(answers, ctx.judge)
        votes: dict[str, float] = {}
        for node, answer in zip(nodes, answers, strict=True):
            if answer is not None:
                votes[answer] = votes.get(answer, 0) + node.visits
        index = nodes.index(chosen) if chosen is not None else None
        answer = answers[index] if index is not None else None
        details["votes"] = votes  # visits per answer over the finished chains reached
        return outcome_of(ctx, chains, Selection(index, answer, clusters, votes), details)
