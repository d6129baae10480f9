"""DeepConf (Fu et al. 2025, arXiv 2508.15260): traces voted by their own confidence, and
online, traces ended as soon as their confidence falls below what a warm-up set.

Offline: `n` traces, then the confidence vote of search/confidence_vote.py (the most confident
`confidence_keep` share votes, weighted by confidence), as best_of_n with aggregate=confidence.

Online: `warmup` traces run to the end; the threshold is their lowest group confidences'
percentile that keeps the top `confidence_keep` share (90th for 0.1, "DeepConf-low"). Each
later trace is watched as it decodes and ended at the first token where the mean of its last
`confidence_window` token confidences is below the threshold. Sampling stops when the leading
answer's confidence-weighted share reaches `consensus` or `n` traces have started. The traces at
or above the threshold vote, weighted by their confidence. See docs/deepconf.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.logprobs import token_confidence
from reasoning.outcome import Outcome
from reasoning.settings import Count, Probability
from reasoning.types import AnswerJudge, Chain, Delta, Problem, Sampling
from search.aggregate import AnswerTally, Selection, cluster_answers
from search.conclude import outcome_of
from search.confidence_vote import (
    ConfidenceRule,
    GroupWatch,
    at_or_above,
    chain_confidence,
    confidence_select,
    confidence_vote,
    keep_threshold,
)
from search.sample_pool import Draw, Drawn, Watch, draw
from search.settings import (
    ConfidenceKeep,
    ConfidenceMeasure,
    ConfidenceWindow,
    InFlight,
    MaxTokens,
    Sampled,
    Samples,
    TopLogprobs,
    invalid,
    settings,
)


@settings
class DeepConf(Sampled):
    """DeepConf: offline, the confidence vote over `n` traces; online, a warm-up sets a
    threshold, later traces end when their group confidence falls below it, and sampling stops
    at consensus."""

    name: ClassVar[str] = "deepconf"
    # the watched traces stream straight from the engine: a trimmer cannot act on them
    decodes_own_prompts: ClassVar[bool] = True

    mode: Literal["online", "offline"] = "online"
    """online: warm-up threshold, traces ended below it, stop at consensus; offline: n
    finished traces, then the confidence vote"""
    n: Samples = 512
    max_tokens: MaxTokens = 512
    top_logprobs: TopLogprobs = 20
    warmup: Count = 16
    """online: traces run to the end first; their confidences set the threshold"""
    confidence: ConfidenceMeasure = "lowest_group"
    confidence_window: ConfidenceWindow = 2048
    confidence_keep: ConfidenceKeep = 0.1
    consensus: Probability = 0.95
    """online: stop sampling once the leading answer holds this share of the
    confidence-weighted vote"""
    in_flight: InFlight = 16

    def check(self) -> None:
        if not self.top_logprobs:
            raise invalid(
                "top_logprobs",
                self.top_logprobs,
                "must be k > 0 for search=deepconf: token confidence averages the top-k "
                "logprobs (DeepConf uses k=20; set search.top_logprobs=20)",
            )
        if self.mode == "online" and self.confidence != "lowest_group":
            raise invalid(
                "confidence",
                self.confidence,
                "must be lowest_group with search.mode=online: the online rule ends a trace "
                "when one window's mean falls below the warm-up's lowest group confidences",
            )
        if self.mode == "online" and self.warmup > self.n:
            raise invalid("warmup", self.warmup, f"must be <= search.n ({self.n})")

    @property
    def confidence_rule(self) -> ConfidenceRule:
        """The offline vote's settings (search/confidence_vote.py)."""
        return ConfidenceRule(self.confidence, self.confidence_window, self.confidence_keep)

    @property
    def sampling(self) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            logprobs=self.top_logprobs,
        )

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        if ctx.judge is None:
            raise ValueError("the Context needs an answer judge to aggregate answers")
        if self.mode == "offline":
            got = await draw(ctx, self.sampling, max_n=self.n, in_flight=self.in_flight)
            chains = [d.chain for d in got.kept]
            selection = await confidence_select(chains, ctx.judge, self.confidence_rule)
            details = {"aggregate": "confidence", "mode": "offline"}
            return outcome_of(ctx, chains, selection, details)
        return await _Online(self, ctx, ctx.judge).run()


class _Online:
    """One problem's online run: the warm-up, the watched draw and the vote."""

    def __init__(self, search: DeepConf, ctx: Context, judge: AnswerJudge) -> None:
        self.search = search
        self.ctx = ctx
        self.judge = judge
        self.rule = search.confidence_rule
        self.threshold = 0.0
        self.cuts: dict[int, dict[str, Any]] = {}  # sample index -> where its watch ended it
        self.scored: dict[int, tuple[str | None, float]] = {}  # sample index -> answer, conf
        # answers grouped by the judge's equivalence, as the final vote groups them
        self.answers = AnswerTally(judge)
        self.cluster: dict[int, int | None] = {}  # sample index -> answer cluster

    def _score(self, d: Drawn) -> tuple[str | None, float]:
        if d.index not in self.scored:
            self.scored[d.index] = (
                self.judge.extract(d.chain.text),
                chain_confidence(d.chain, self.rule),
            )
        return self.scored[d.index]

    def _watch(self, index: int) -> Watch:
        group = GroupWatch(self.threshold, self.search.confidence_window)
        at = 0  # tokens delivered so far

        def on(delta: Delta) -> str | None:
            nonlocal at
            for top in delta.top_logprobs or ():
                at += 1
                c = token_confidence(list(top.values()))
                if c is None:
                    continue
                mean = group.add(c)
                if mean is not None:
                    self.cuts[index] = {"sample": index, "token": at, "group": round(mean, 6)}
                    return (
                        f"group confidence {mean:.4f} < threshold {self.threshold:.4f} "
                        f"at token {at}"
                    )
            return None

        return on

    def _consensus(self, tally: dict[int, float]) -> float:
        """The leading answer's share of the confidence-weighted tally (0 when empty)."""
        total = sum(tally.values())
        return max(tally.values()) / total if total > 0 else 0.0

    async def _cluster(self, d: Drawn) -> int | None:
        if d.index not in self.cluster:
            self.cluster[d.index] = await self.answers.add(d.chain.text)
        return self.cluster[d.index]

    async def _tally(self, drawn: Sequence[Drawn], warm: Sequence[Drawn]) -> dict[int, float]:
        """Every answered warm-up trace (the paper's initial set) and every later trace that
        finished at or above the threshold, each weighted by its confidence. Answers are
        grouped by the judge's equivalence, as the final vote groups them (the reference keys
        its vote by the extracted text)."""
        tally: dict[int, float] = {}
        for d in warm:
            cluster = await self._cluster(d)
            if cluster is not None:
                tally[cluster] = tally.get(cluster, 0.0) + self._score(d)[1]
        for d in drawn:
            if not d.kept:
                continue
            conf = self._score(d)[1]
            cluster = await self._cluster(d)
            if cluster is not None and at_or_above(conf, self.threshold):
                tally[cluster] = tally.get(cluster, 0.0) + conf
        return tally

    async def run(self) -> Outcome:
        search, ctx = self.search, self.ctx
        first = min(search.warmup, search.n)
        warm = await draw(ctx, search.sampling, max_n=first, in_flight=first)
        warm_kept = warm.kept
        details: dict[str, Any] = {"aggregate": "confidence", "mode": "online"}
        if not warm_kept:
            selection = Selection(None, None, [])
            return outcome_of(ctx, [], selection, details)
        warm_conf = [self._score(d)[1] for d in warm_kept]
        self.threshold = keep_threshold(warm_conf, search.confidence_keep)
        start = self._consensus(await self._tally([], warm_kept))
        details.update(
            threshold=round(self.threshold, 6),
            warmup_confidences=[round(c, 6) for c in warm_conf],
            warmup_consensus=round(start, 6),
        )
        later: Draw | None = None
        if first < search.n and ctx.stopped_by is None and start < search.consensus:

            async def decide(prefix: Sequence[Drawn]) -> str | None:
                share = self._consensus(await self._tally(prefix, warm_kept))
                if share >= search.consensus:
                    return f"consensus {share:.4f} >= {search.consensus}"
                return None

            later = await draw(
                ctx,
                search.sampling,
                max_n=search.n - first,
                in_flight=search.in_flight,
                watch=self._watch,
                decide=decide,
                first_index=first,
            )
        kept = list(warm_kept) + (later.kept if later is not None else [])
        final = self._consensus(await self._tally(later.kept if later else [], warm_kept))
        details.update(
            traces=len(warm.samples) + (len(later.samples) if later else 0),
            cut=[self.cuts[i] for i in sorted(self.cuts)],
            stopped_after=None if later is None else later.stopped_after,
            stop_reason=None if later is None else later.reason,
            consensus=round(final, 6),
        )
        return outcome_of(ctx, *await self._vote(kept), details)

    async def _vote(self, kept: Sequence[Drawn]) -> tuple[list[Chain], Selection]:
        """The reference's final vote: the traces at or above the threshold, weighted by their
        confidence (the vote's share filter is the threshold itself, so keep is 1 here)."""
        chains = [d.chain for d in kept]
        answers = [self._score(d)[0] for d in kept]
        confs = [self._score(d)[1] for d in kept]
        clusters = await cluster_answers(answers, self.judge)
        voting = [
            c if at_or_above(conf, self.threshold) else None
            for c, conf in zip(clusters, confs, strict=True)
        ]
        rule = ConfidenceRule(self.rule.measure, self.rule.window, 1.0, self.rule.bottom_share)
        selection = confidence_vote(answers, voting, confs, rule)
        for d, conf, c in zip(kept, confs, voting, strict=True):
            self.ctx.tree.annotate(d.chain.id, confidence=round(conf, 6), voted=c is not None)
        info = selection.details.get("confidence", {})
        info["keep"] = self.search.confidence_keep
        info["threshold"] = round(self.threshold, 6)
        return chains, selection
