"""HyPER: hypothesis path expansion and reduction (Qiu et al., arXiv 2602.06527).

A pool of paths is decoded in rounds of `round_tokens` tokens (docs/hyper.md). After
each round a controller reads cheap per-path statistics (tail and group confidence from the
top-k logprobs, length, the answer written so far and its agreement with the others) and the
phase phi = tokens spent / token budget, then EXPANDS (forks the most confident paths) early or
while the answers disagree, or REDUCES (aborts the least confident fraction rho(phi)) late or once
they agree. Refinement re-decodes one uncertain token inside its path (`refine=in_path`: the
path continues from its prefix plus the best alternative token, no path is added; `fork`: up to
`refine_siblings` sibling paths force the runner-up tokens), and the final answer is a length-
and confidence-weighted vote.

Reconstruction: the paper describes the components and links its code (github
ShengxuanQiu/HyPER), which is not retrievable here, so its thresholds and exact rules could not
be read. The rule above, rho(phi) = max_reduce_fraction * phi, the diversity measure and every
default here are ours, each a key. The paper's native refinement changes the MoE router for one
token inside a path, without resampling the path; stock vLLM cannot steer routing, so refinement
here forces the most likely other token at that position instead (an approximation that works on
dense models too).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from reasoning.answers import last_box_closed
from reasoning.budget import Budget
from reasoning.context import Context
from reasoning.logprobs import (
    ConfidenceTrail,
    tail_confidence,
    token_confidence,
    top_probability,
)
from reasoning.outcome import Outcome
from reasoning.settings import (
    Count,
    Fraction,
    NonNegativeCount,
    NonNegativeFloat,
    SettingsError,
    settings,
)
from reasoning.tree import NodeStatus
from reasoning.types import Chain, EventKind, FinishReason, Problem, Sampling, TokenPrompt
from search.aggregate import cluster_answers, select
from search.chunked import Chunk, ChunkSampling, chunk_finish, decode_chunks, fork_at, start_chain
from search.conclude import outcome_of
from search.settings import (
    AnswerCue,
    AnswerTokens,
    RoundTokens,
    Sampled,
    Samples,
    TopLogprobs,
    invalid,
)

ANSWER_CUE = "\n\nFinal answer: $\\boxed{"
"""Appended to a path still open at the end, so one short call makes it state an answer."""

# --- path statistics (the token-logprob ones live in reasoning/logprobs.py) -----------------


def answer_diversity(clusters: Sequence[int | None]) -> float | None:
    """1 - (largest answer cluster / answered paths): 0 when all agree; None under 2 answers."""
    answered = [c for c in clusters if c is not None]
    if len(answered) < 2:
        return None
    return 1.0 - max(answered.count(c) for c in set(answered)) / len(answered)


def agreement(clusters: Sequence[int | None], i: int) -> float | None:
    """Share of the other answered paths that gave path i's answer (None: i has none, or alone)."""
    others = [c for j, c in enumerate(clusters) if j != i and c is not None]
    if clusters[i] is None or not others:
        return None
    return others.count(clusters[i]) / len(others)


def expand_wanted(
    phase: float, diversity: float | None, explore_until: float, threshold: float
) -> bool:
    """Explore while early or while the answers disagree; otherwise exploit (reduce)."""
    return phase < explore_until or (diversity is not None and diversity > threshold)


def reduce_fraction(phase: float, max_fraction: float) -> float:
    """rho(phi): the share of open paths to abort, rising linearly from 0 to `max_fraction`."""
    return max_fraction * min(1.0, max(0.0, phase))


def top_indices(values: Sequence[float], count: int) -> list[int]:
    """The `count` largest (ties to the first), in rank order."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return order[: max(0, count)]


def bottom_indices(values: Sequence[float], count: int) -> list[int]:
    """The `count` smallest (ties: the later one goes first, so the first is kept)."""
    order = sorted(range(len(values)), key=lambda i: (values[i], -i))
    return order[: max(0, count)]


def path_weights(
    tails: Sequence[float], lengths: Sequence[int], answered: Sequence[bool], beta: float
) -> list[float]:
    """w_i = C_tail,i * (L_min / L_i)^beta over answered paths (L_min among them); 0 otherwise."""
    lens = [max(1, n) for n, a in zip(lengths, answered, strict=True) if a]
    if not lens:
        return [0.0] * len(tails)
    shortest = min(lens)
    return [
        t * (shortest / max(1, n)) ** beta if a else 0.0
        for t, n, a in zip(tails, lengths, answered, strict=True)
    ]


@dataclass(frozen=True)
class RefineSite:
    """A token to re-decode: its position in the chain's ids, its confidence, and the forced
    alternatives (id, logprob), most likely first."""

    position: int
    confidence: float
    alternatives: tuple[tuple[int, float], ...]


def refine_site(chunk: Chunk, threshold: float, k: int, siblings: int) -> RefineSite | None:
    """The lowest-confidence token of the chunk whose top-1 probability is below `threshold`,
    with the most likely tokens other than the sampled one (the 2nd and 3rd when the sampled
    token was the top-1). Positions whose ids and texts do not align are skipped."""
    c = chunk.completion
    if c is None or c.top_logprobs is None or c.top_token_ids is None or c.token_ids is None:
        return None
    best: RefineSite | None = None
    for j, (table, ids) in enumerate(zip(c.top_logprobs, c.top_token_ids, strict=False)):
        values = list(table.values())
        if len(values) != len(ids) or not values or top_probability(values) >= threshold:
            continue
        conf = token_confidence(values, k)
        if conf is None or (best is not None and conf >= best.confidence):
            continue
        ranked = sorted(zip(ids, values, strict=True), key=lambda iv: -iv[1])
        alternatives = tuple(iv for iv in ranked if iv[0] != c.token_ids[j])[:siblings]
        if alternatives:
            best = RefineSite(chunk.start + j, conf, alternatives)
    return best


# --- the controller ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Path:
    """One slot of the pool. `fresh`: its next call starts a new sample (a new path or fork)."""

    chain: Chain
    fresh: bool = True
    last: Chunk | None = None  # this round's chunk, for refinement
    # the chain before an in-path refinement, until the refined chain decodes a chunk of its own
    unrefined: Chain | None = None
    trail: ConfidenceTrail | None = None  # its token confidences, read once per token


@dataclass
class _Tally:
    expansions: int = 0  # rounds that forked paths
    forks: int = 0
    reductions: int = 0  # rounds that aborted paths
    aborted: int = 0
    refinements: int = 0  # refined tokens
    refined_paths: int = 0  # sibling paths added by refine=fork
    refined_in_place: int = 0  # paths rewritten in place by refine=in_path
    closed: int = 0  # open paths closed by the finisher
    rounds: int = 0


@settings
class HyPER(Sampled):
    """Dynamic expand/reduce over a pool of chunk-decoded paths; see the module docstring.

    Its phase is the share of `budget.generated_tokens` spent, so it needs that budget: the
    config validation refuses a run without it (`check_budget`), and `run` says so to API users.
    """

    name: ClassVar[str] = "hyper"
    decodes_own_prompts: ClassVar[bool] = True

    n: Samples = 8
    """initial pool of paths (within [min_paths, max_paths])"""
    max_paths: Count = 16
    """most paths in the pool at once"""
    min_paths: Count = 2
    """fewest open paths reduction leaves"""
    round_tokens: RoundTokens = 64
    top_logprobs: TopLogprobs = 20
    tail_window: Count = 256
    """tail confidence: mean token confidence over the last tail_window tokens of a path"""
    group_window: Count = 32
    """minimum group confidence: lowest mean over sliding windows of group_window tokens"""
    explore_until: Fraction = 0.3
    """expand while the phase is below it (or answers are diverse); else reduce"""
    diversity_threshold: Fraction = 0.25
    """expand while answer diversity is above it"""
    expand_top: NonNegativeCount = 2
    """forks per expansion: the expand_top most confident open paths"""
    max_reduce_fraction: Fraction = 0.5
    """reduction aborts max_reduce_fraction * phase of the open paths (< 1)"""
    confidence_entries: Literal["returned", "top_k"] = "returned"
    """token confidence averages every logprob entry the backend returned ("returned": the top
    k plus the sampled token when it is outside them, as DeepConf does) or the k largest
    ("top_k")"""
    refine: Literal["in_path", "fork"] = "in_path"
    """in_path: the path continues from its prefix plus the best other token at the refined
    position, no path added (the paper's exploitation); fork: refine_siblings new paths force
    the next most likely tokens there"""
    refine_threshold: Fraction = 0.4
    """top-1 probability under which a token may be refined"""
    refine_siblings: NonNegativeCount = 2
    """refine=fork: paths forked per refined token, forcing the next most likely tokens"""
    max_refinements: NonNegativeCount = 4
    """refined tokens per problem"""
    length_penalty: NonNegativeFloat = 1.0
    """beta in the vote weight: tail confidence * (shortest answered length / length)^beta"""
    answer_tokens: AnswerTokens = 32
    answer_cue: AnswerCue = ANSWER_CUE

    def check(self) -> None:
        if self.top_logprobs is None or self.top_logprobs < 2:
            raise invalid("top_logprobs", self.top_logprobs, "must be an integer >= 2 for hyper")
        if self.max_reduce_fraction >= 1.0:
            raise invalid("max_reduce_fraction", self.max_reduce_fraction, "must be < 1")
        if not self.min_paths <= self.n <= self.max_paths:
            span = f"[{self.min_paths}, {self.max_paths}]"
            raise invalid("n", self.n, f"must lie in [min_paths, max_paths] = {span}")

    def check_budget(self, budget: Budget) -> None:
        """Refuse a budget HyPER cannot run under (before any engine starts)."""
        tokens = budget.generated_tokens
        if tokens is None:
            raise SettingsError(
                "search=hyper needs budget.generated_tokens (its phase is the share of it "
                "spent): set budget.generated_tokens=N"
            )
        first = self.n * (self.round_tokens + self.answer_tokens)
        if tokens < first:
            raise SettingsError(
                f"budget.generated_tokens must afford one round and a forced answer for each "
                f"of search.n paths (n * (round_tokens + answer_tokens) = {first}) under "
                f"search=hyper, got {tokens!r}"
            )

    @property
    def sampling(self) -> ChunkSampling:
        return ChunkSampling(
            temperature=self.temperature,
            top_p=self.top_p,
            round_tokens=self.round_tokens,
            top_logprobs=self.top_logprobs,
            who="search=hyper",
        )

    # -- budget ------------------------------------------------------------------------------

    def _reserve(self) -> int:
        """Tokens kept back per open path for its forced answer."""
        return self.answer_tokens

    def _room(self, spent: int, budget: int, open_paths: int) -> int:
        """New paths the budget affords: each open path must still be able to decode one more
        round and be closed, so a fork is never born only to be cut off."""
        per_path = self.round_tokens + self._reserve()
        return max(0, (budget - spent) // per_path - open_paths)

    # -- one round ---------------------------------------------------------------------------

    def _answer(self, ctx: Context, chain: Chain) -> str | None:
        """Only a finished path, or one that closed a \\boxed{} answer, has answered."""
        if not (chain.finished or last_box_closed(chain.text)):
            return None
        assert ctx.judge is not None
        return ctx.judge.extract(chain.text)

    @property
    def _entries(self) -> int | None:
        """The k of `token_confidence`: None averages every entry returned (DeepConf)."""
        return self.top_logprobs if self.confidence_entries == "top_k" else None

    def _tail(self, chain: Chain) -> float:
        return tail_confidence(chain.top_logprobs or (), self.tail_window, self._entries)

    def _trail(self, path: _Path) -> ConfidenceTrail:
        """The path's confidences brought up to date: only its new tokens are read."""
        if path.trail is None:
            path.trail = ConfidenceTrail(self._entries, self.group_window)
        return path.trail.update(path.chain.top_logprobs or ())

    async def _stats(
        self, ctx: Context, pool: list[_Path]
    ) -> tuple[list[dict[str, Any]], list[int | None]]:
        answers = [self._answer(ctx, p.chain) for p in pool]
        assert ctx.judge is not None
        clusters = await cluster_answers(answers, ctx.judge)
        stats = []
        for i, p in enumerate(pool):
            trail = self._trail(p)
            stats.append(
                {
                    "tail_confidence": round(trail.tail(self.tail_window), 6),
                    "min_group_confidence": round(trail.lowest_window_mean(), 6),
                    "length": p.chain.tokens,
                    "answer": answers[i],
                    "agreement": agreement(clusters, i),
                }
            )
        return stats, clusters

    def _expand(self, ctx: Context, pool: list[_Path], room: int, at_round: int) -> int:
        open_ = [p for p in pool if not p.chain.finished]
        count = min(self.expand_top, len(open_), self.max_paths - len(pool), room)
        tails = [self._trail(p).tail(self.tail_window) for p in open_]
        for i in top_indices(tails, count):
            parent = open_[i].chain
            ctx.tree.mark(parent.id, NodeStatus.FORKED, forked_at_round=at_round)
            pool.append(_Path(parent))  # the same prefix; its next call draws a new seed
        return max(0, count)

    def _reduce(self, ctx: Context, pool: list[_Path], phase: float, at_round: int) -> int:
        open_ = [p for p in pool if not p.chain.finished]
        rho = reduce_fraction(phase, self.max_reduce_fraction)
        count = min(math.floor(rho * len(open_)), len(pool) - self.min_paths)
        tails = [self._trail(p).tail(self.tail_window) for p in open_]
        for i in bottom_indices(tails, count):
            victim = open_[i]
            ctx.tree.mark_pruned(
                victim.chain.id, aborted_at_round=at_round, tail_confidence=tails[i]
            )
            pool.remove(victim)  # identity: _Path compares by object
        return max(0, count)

    def _least_confident(
        self, paths: Sequence[_Path], alternatives: int
    ) -> tuple[RefineSite, _Path] | None:
        """The least confident refinable token among `paths`' chunks of this round, and its
        path (ties: the first path)."""
        sites = [
            (site, p)
            for p in paths
            if p.last is not None
            and (site := refine_site(p.last, self.refine_threshold, self._entries, alternatives))
        ]
        return min(sites, key=lambda sp: sp[0].confidence) if sites else None

    def _refine_fork(self, ctx: Context, pool: list[_Path], room: int, at_round: int) -> int:
        """refine=fork: siblings at the pool's least confident uncertain token of this round,
        each forcing one of the next most likely tokens (new paths, competing for max_paths and
        the budget). Returns the paths added."""
        capacity = min(self.refine_siblings, self.max_paths - len(pool), room)
        if capacity <= 0:
            return 0
        found = self._least_confident(pool, capacity)
        if found is None:
            return 0
        site, path = found
        parent = path.chain
        for forced, logprob in site.alternatives:
            kid = fork_at(ctx, parent, site.position, forced, logprob=logprob)
            ctx.tree.annotate(kid.id, refined_at_round=at_round)
            pool.append(_Path(kid))
        ctx.tree.mark(
            parent.id,
            NodeStatus.FORKED,
            refined_at=site.position,
            refined_confidence=round(site.confidence, 6),
        )
        return len(site.alternatives)

    def _refine_in_path(self, ctx: Context, pool: list[_Path], at_round: int) -> int:
        """refine=in_path: the open path holding the pool's least confident uncertain token of
        this round is replaced by itself up to that token plus the most likely other token, and
        continues from there next round: the same path (not a new sample), no path added. The
        tokens it had decoded after that position are dropped (they were spent). A path that
        expansion just copied is left alone (its copy continues the unrefined prefix). Returns
        the paths rewritten (0 or 1)."""
        held = [id(p.chain) for p in pool]
        candidates = [p for p in pool if not p.chain.finished and held.count(id(p.chain)) == 1]
        found = self._least_confident(candidates, 1)
        if found is None:
            return 0
        site, path = found
        ((forced, logprob),) = site.alternatives
        old = path.chain
        kid = fork_at(ctx, old, site.position, forced, logprob=logprob)
        ctx.tree.annotate(kid.id, refined_at_round=at_round, refined_in_path=True)
        ctx.tree.mark_pruned(
            old.id,
            refined_at=site.position,
            refined_confidence=round(site.confidence, 6),
            replaced_by=kid.id,
        )
        path.unrefined, path.chain, path.last = old, kid, None
        return 1

    # -- closing -----------------------------------------------------------------------------

    async def _close(self, ctx: Context, chain: Chain) -> Chain:
        """One short greedy call after the answer cue; the path as it was if the budget refuses."""
        cue = ctx.tokenize(self.answer_cue)
        prompt = TokenPrompt(ctx.prompt_ids(chain) + cue)
        sampling = Sampling(temperature=0.0, max_tokens=self.answer_tokens, n=1)
        (c,) = await ctx.try_generate(sampling, prompt=prompt, new_samples=False)
        if c.refused:
            return chain
        kid = chain.extend(
            self.answer_cue + c.text,
            tokens=c.tokens,
            finished=True,
            finish_reason=chunk_finish(c) or FinishReason.LENGTH,
            token_ids=None if c.token_ids is None else cue + c.token_ids,
        )
        ctx.tree.add(kid, NodeStatus.FINISHED, closed_by="finisher")
        return kid

    # -- the search --------------------------------------------------------------------------

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        if ctx.judge is None:
            raise ValueError("search=hyper needs an answer judge (it reads answers per round)")
        start = ctx.ledger.generated_tokens
        self.check_budget(ctx.budget)
        assert ctx.budget.generated_tokens is not None
        budget = ctx.budget.generated_tokens - start
        pool = [_Path(start_chain()) for _ in range(self.n)]
        tally = _Tally()
        stop = "finished"

        def spent() -> int:
            return ctx.ledger.generated_tokens - start

        while True:
            open_ = [p for p in pool if not p.chain.finished]
            if not open_:
                break
            if spent() + len(open_) * self._reserve() >= budget:
                stop = "generated_tokens"
                break
            if ctx.exhausted():
                stop = ctx.stopped_by or "budget"
                break
            for p in pool:
                p.last = None
            chunks = await decode_chunks(
                ctx, [p.chain for p in open_], self.sampling, new_samples=[p.fresh for p in open_]
            )
            for p, chunk in zip(open_, chunks, strict=True):
                if not chunk.decoded:
                    if p.fresh and not p.chain.token_ids:
                        pool.remove(p)  # refused before it began: no path to keep
                    continue
                p.chain, p.last, p.fresh, p.unrefined = chunk.chain, chunk, False, None
            if not any(c.decoded for c in chunks):
                stop = ctx.stopped_by or "budget"
                break
            tally.rounds += 1
            await self._control(ctx, pool, tally, spent(), budget)
        if stop == "finished" and ctx.stopped_by:
            stop = ctx.stopped_by
        pool = self._drop_unstarted(ctx, pool)
        # a path never decoded has nothing to close (and its call would break the bound)
        open_ = [p for p in pool if not p.chain.finished and p.chain.token_ids]
        if self.answer_tokens > 0 and open_:
            closed = await asyncio.gather(*(self._close(ctx, p.chain) for p in open_))
            for p, chain in zip(open_, closed, strict=True):
                tally.closed += chain is not p.chain
                p.chain = chain
        return await self._conclude(ctx, [p.chain for p in pool], tally, stop)

    def _drop_unstarted(self, ctx: Context, pool: list[_Path]) -> list[_Path]:
        """Forks the search stopped before they decoded anything of their own: a copy would vote
        twice for its parent's answer, and a refined sibling holds one forced token. A path
        refined in place that never decoded after it gets its unrefined chain back (it would end
        on the forced token)."""
        for p in pool:
            if p.unrefined is not None:
                ctx.tree.mark_pruned(p.chain.id, unstarted=True)
                ctx.tree.mark(p.unrefined.id, NodeStatus.EXPANDED, refinement_undone=True)
                p.chain, p.unrefined = p.unrefined, None
        kept = [p for p in pool if not p.fresh]
        shared = {p.chain.id for p in kept}
        for p in pool:
            if p.fresh and p.chain.id not in shared and p.chain.id in ctx.tree:
                ctx.tree.mark_pruned(p.chain.id, unstarted=True)
        return kept

    def _continues(self, ctx: Context, pool: list[_Path], spent: int, budget: int) -> bool:
        """Whether the loop will decode another round (its own stop test): a path refined in
        place must be able to go on from the forced token."""
        open_count = sum(not p.chain.finished for p in pool)
        return not ctx.exhausted() and spent + open_count * self._reserve() < budget

    async def _control(
        self, ctx: Context, pool: list[_Path], tally: _Tally, spent: int, budget: int
    ) -> None:
        """Statistics, the phase decision and refinement after one round."""
        at_round = tally.rounds
        stats, clusters = await self._stats(ctx, pool)
        for p, s in zip(pool, stats, strict=True):
            if p.chain.id in ctx.tree:
                ctx.tree.annotate(p.chain.id, round=at_round, **s)
        phase = min(1.0, spent / budget) if budget > 0 else 1.0
        diversity = answer_diversity(clusters)
        open_count = sum(not p.chain.finished for p in pool)
        forked = aborted = refined = in_place = 0
        rule = "reduce"
        if open_count:
            # nothing is forked once a Context limit is reached: the fork could never run
            room = 0 if ctx.exhausted() else self._room(spent, budget, open_count)
            if expand_wanted(phase, diversity, self.explore_until, self.diversity_threshold):
                rule = "expand"
                forked = self._expand(ctx, pool, room, at_round)
                room -= forked
            else:
                aborted = self._reduce(ctx, pool, phase, at_round)
            if tally.refinements < self.max_refinements:
                if self.refine == "fork":
                    refined = self._refine_fork(ctx, pool, room, at_round)
                elif self._continues(ctx, pool, spent, budget):
                    in_place = self._refine_in_path(ctx, pool, at_round)
        action = "expand" if forked else "reduce" if aborted else "hold"
        tally.expansions += bool(forked)
        tally.forks += forked
        tally.reductions += bool(aborted)
        tally.aborted += aborted
        tally.refinements += bool(refined) + in_place
        tally.refined_paths += refined
        tally.refined_in_place += in_place
        ctx.record(
            EventKind.HYPER,
            **{
                "round": at_round,
                "phase": round(phase, 4),
                "rule": rule,
                "action": action,
                "paths": len(pool),
                "open": sum(not p.chain.finished for p in pool),
                "answered": sum(c is not None for c in clusters),
                "diversity": None if diversity is None else round(diversity, 4),
                "forked": forked,
                "aborted": aborted,
                "refined": refined,
                "refined_in_place": in_place,
                "tokens": spent,
            },
        )

    async def _conclude(
        self, ctx: Context, chains: list[Chain], tally: _Tally, stop: str
    ) -> Outcome:
        """The length- and confidence-weighted vote over the answered paths of the pool."""
        answers = [self._answer(ctx, c) for c in chains]
        assert ctx.judge is not None
        clusters = await cluster_answers(answers, ctx.judge)
        tails = [self._tail(c) for c in chains]
        weights = path_weights(
            tails, [c.tokens for c in chains], [a is not None for a in answers], self.length_penalty
        )
        selection = select(answers, clusters, "weighted", weights)
        details: dict[str, Any] = {
            "aggregate": "hyper",
            "votes": selection.votes,  # per answer cluster: summed w_i
            "weights": [round(w, 6) for w in weights],
            "expansions": tally.expansions,
            "forks": tally.forks,
            "reductions": tally.reductions,
            "aborted": tally.aborted,
            "refine": self.refine,
            "refinements": tally.refinements,
            "refined_paths": tally.refined_paths,
            "refined_in_place": tally.refined_in_place,
            "closed_by_finisher": tally.closed,
            "rounds": tally.rounds,
            "stop": stop,
        }
        return outcome_of(ctx, chains, selection, details)
