"""Adaptive self-consistency: draw samples a few at a time until a stop rule says the majority
will hold, then vote. See docs/adaptive-sc.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Count, Probability
from reasoning.types import Problem, Sampling
from search.aggregate import AnswerTally
from search.conclude import conclude
from search.sample_pool import Cut, Drawn, draw
from search.settings import InFlight, MaxTokens, Sampled, Samples, invalid, settings
from search.stop_rules import StopRule, beta_majority_probability, leader_counts, stop_rule

# each rule's own key: refused at a value of its own under another rule, so a recorded run never
# carries a setting that did not act
RULE_KEYS = {"beta_threshold": "beta", "window_size": "window", "agreement": "doubling"}


@settings
class AdaptiveSC(Sampled):
    """Self-consistency that samples until `stop` says the majority will hold (at most `n`
    samples, `in_flight` decoding at once, the rest aborted at the stop), then a majority vote."""

    name: ClassVar[str] = "adaptive_sc"
    aggregates: ClassVar[tuple[str, ...]] = ("majority",)

    n: Samples = 16
    max_tokens: MaxTokens = 512
    stop: Literal["beta", "window", "doubling"] = "beta"
    """the stop rule: beta (Adaptive-Consistency's Beta posterior), window (early-stopping SC: a
    window of samples agrees), doubling (its_hub: checks at 2, 4, 8, ... samples)"""
    beta_threshold: Probability = 0.95
    """stop=beta: stop once P(the leading answer is the majority) reaches this"""
    window_size: Count = 5
    """stop=window: samples per window (consecutive, non-overlapping); stop when one agrees"""
    agreement: Probability = 0.75
    """stop=doubling: stop at a checkpoint once the leader holds this share of the samples"""
    in_flight: InFlight = 4

    def check(self) -> None:
        if self.beta_threshold <= 0.5:
            raise invalid(
                "beta_threshold", self.beta_threshold, "must be > 0.5 (a tie already has P = 0.5)"
            )
        if self.agreement <= 0.5:
            raise invalid("agreement", self.agreement, "must be > 0.5 (a majority share)")
        if self.stop == "window" and self.window_size > self.n:
            raise invalid("window_size", self.window_size, f"must be <= search.n={self.n}")
        for key, rule in RULE_KEYS.items():  # a rule's key set under another rule would not act
            value = getattr(self, key)
            if rule != self.stop and value != _DEFAULTS[key]:
                raise invalid(
                    key, value, f"acts only with search.stop={rule} (search.stop={self.stop})"
                )

    @property
    def rule(self) -> StopRule:
        return stop_rule(
            self.stop,
            threshold=self.beta_threshold,
            window=self.window_size,
            agreement=self.agreement,
        )

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        judge = ctx.judge
        if judge is None:
            raise ValueError("the Context needs an answer judge to aggregate answers")
        tally = AnswerTally(judge)
        rule = self.rule
        n = self.n

        async def decide(prefix: Sequence[Drawn]) -> str | None:
            clusters = await tally.over([d.completion.text for d in prefix])
            if len(clusters) >= n:
                return None  # all n drawn: nothing left to save, no early stop
            return rule(clusters)

        sampling = Sampling(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens
        )
        drawn = await draw(ctx, sampling, max_n=n, in_flight=self.in_flight, decide=decide)
        kept = drawn.kept
        if drawn.stopped_after is not None:
            stop = drawn.reason
        elif ctx.stopped_by is not None:
            stop = f"budget: {ctx.stopped_by}"
        else:
            stop = f"n: all {n} samples drawn"
        outcome = await conclude(ctx, [d.chain for d in kept], "majority")
        if drawn.stopped_after is not None:  # the votes the rule saw when it fired
            v1, v2 = leader_counts(tally.clusters[: drawn.stopped_after])
            outcome.details["leader_votes"] = [v1, v2]
            if self.stop == "beta":
                outcome.details["p_majority"] = round(beta_majority_probability(v1, v2), 6)
        outcome.details.update(
            {
                "stop_rule": self.stop,
                "drawn": len(drawn.samples),
                "kept": len(kept),
                "aborted": drawn.aborted,
                "after_stop": sum(d.cut == Cut.AFTER_STOP for d in drawn.samples),
                "stopped_after": drawn.stopped_after,
                "stop": stop,
            }
        )
        return outcome


_DEFAULTS = {key: getattr(AdaptiveSC, key) for key in RULE_KEYS}
