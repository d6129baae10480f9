"""DeepConf-style offline confidence voting (Fu et al. 2025, "Deep Think with Confidence",
arXiv 2508.15260; facebookresearch/deepconf): filter finished traces by their own token
confidence, then vote with confidence as the weight.

Majority voting gives every trace one vote, so many weak traces that agree on a wrong answer
outvote a few careful ones. DeepConf scores each trace from its top-k logprobs alone (no
verifier), keeps the most confident share `keep` of the answered traces, and sums confidence per
answer over the kept ones. The vote is offline: it reads finished traces only, so an online
controller (early stop on the running group confidence) can call the same functions later.

Token confidence c_t is `reasoning.logprobs.token_confidence` (-mean of the logprobs returned at
position t). A trace's confidence is one of (`MEASURES`):

- `lowest_group`: the lowest mean c_t over sliding windows of `window` tokens;
- `bottom`: the mean of the lowest `bottom_share` of those window means (DeepConf's bottom-10%);
- `tail`: the mean c_t over the last `window` tokens;
- `mean`: the mean c_t over the whole trace.

A trace shorter than `window` is one window: every measure is then its mean. A trace without
usable confidences scores 0. docs/best-of-n.md has the rules and where they differ from the
reference.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from reasoning.logprobs import token_confidences, window_min_mean
from reasoning.types import AnswerJudge, Chain
from search.aggregate import Selection, argmax_first, cluster_answers

Measure = Literal["lowest_group", "bottom", "tail", "mean"]
MEASURES: tuple[str, ...] = ("lowest_group", "bottom", "tail", "mean")


@dataclass(frozen=True)
class ConfidenceRule:
    """How traces are scored and filtered: DeepConf's offline defaults are the lowest group
    confidence over 2,048-token windows, keeping the top 10% ("DeepConf-low"; 0.9 is
    "DeepConf-high")."""

    measure: Measure = "lowest_group"
    window: int = 2048
    keep: float = 0.1
    bottom_share: float = 0.1

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"unknown confidence measure {self.measure!r}; valid: {MEASURES}")
        if self.window < 1:
            raise ValueError(f"confidence window must be >= 1, got {self.window}")
        if not 0 < self.keep <= 1 or not 0 < self.bottom_share <= 1:
            raise ValueError("keep and bottom_share must lie in (0, 1]")


def window_means(confidences: Sequence[float], window: int) -> list[float]:
    """Mean of every full sliding window of `window` values (one mean of all values when
    there are fewer; [] with none)."""
    if not confidences:
        return []
    if len(confidences) <= window:
        return [sum(confidences) / len(confidences)]
    total = sum(confidences[:window])
    means = [total / window]
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        means.append(total / window)
    return means


def trace_confidence(
    confidences: Sequence[float], rule: ConfidenceRule = ConfidenceRule()
) -> float:
    """One trace's confidence from its token confidences c_t, by `rule.measure` (0 with none)."""
    if not confidences:
        return 0.0
    if rule.measure == "mean":
        return sum(confidences) / len(confidences)
    if rule.measure == "tail":
        tail = confidences[-rule.window :]
        return sum(tail) / len(tail)
    if rule.measure == "lowest_group":
        lowest = window_min_mean(list(confidences), rule.window)
        return 0.0 if lowest is None else lowest
    means = sorted(window_means(confidences, rule.window))
    count = max(1, int(len(means) * rule.bottom_share))
    return sum(means[:count]) / count


def chain_confidence(chain: Chain, rule: ConfidenceRule = ConfidenceRule()) -> float:
    """`trace_confidence` of a chain's top-k logprobs: refuses a chain that has none, which
    means the backend ignored `search.top_logprobs`."""
    if chain.top_logprobs is None:
        raise ValueError(
            f"aggregate='confidence' needs each sample's top-k logprobs and chain {chain.id} has "
            "none: the backend returned none although search.top_logprobs asked for them; use a "
            "backend that returns logprobs (backend=vllm, or a vLLM server) or another "
            "search.aggregate"
        )
    return trace_confidence(token_confidences(chain.top_logprobs), rule)


def keep_threshold(confidences: Sequence[float], keep: float) -> float:
    """The confidence at or above which the most confident share `keep` lies: the
    100 (1 - keep) percentile with numpy's default linear interpolation, as the reference's
    `np.percentile(min_confs, 90)` for keep 0.1 ("DeepConf-low"; 0.9 gives the 10th, "-high").
    The percentile is rounded to 9 decimals so that keep 0.9 asks for exactly 10, not
    9.999999999999998."""
    if not confidences:
        raise ValueError("a confidence threshold needs at least one confidence")
    percentile = round(100 * (1 - keep), 9)
    return float(np.percentile(np.asarray(confidences, dtype=float), percentile))


def at_or_above(confidence: float, threshold: float) -> bool:
    """`confidence >= threshold`, counting an ulp's difference as equal: the interpolated
    percentile of equal values can land an ulp above them."""
    return confidence >= threshold or math.isclose(confidence, threshold)


def kept_by_confidence(confidences: Sequence[float], keep: float) -> list[bool]:
    """Which traces are among the most confident share `keep`: those at or above
    `keep_threshold`, so ties at the threshold are all kept and at least one trace always is."""
    if not confidences:
        return []
    if keep >= 1:
        return [True] * len(confidences)
    threshold = keep_threshold(confidences, keep)
    return [at_or_above(c, threshold) for c in confidences]


class GroupWatch:
    """DeepConf online's per-trace rule, fed one token confidence at a time: the mean of the
    last `window` confidences, and whether it fell below `threshold`.

    As the reference's per-request processor (deepconf/processors.py), the rule acts only once
    a full window exists (a trace shorter than `window` is never ended here) and only on a
    strict `<`. The running sum is updated in O(1) per token."""

    def __init__(self, threshold: float, window: int) -> None:
        if window < 1:
            raise ValueError(f"confidence window must be >= 1, got {window}")
        self.threshold = threshold
        self.window = window
        self.values: deque[float] = deque()
        self.total = 0.0
        self.seen = 0  # token confidences fed so far

    def add(self, confidence: float) -> float | None:
        """Feed token `seen + 1`'s confidence; the window mean when it ends the trace, else None."""
        self.values.append(confidence)
        self.total += confidence
        self.seen += 1
        if len(self.values) > self.window:
            self.total -= self.values.popleft()
        if len(self.values) < self.window:
            return None
        mean = self.total / self.window
        return mean if mean < self.threshold else None


def confidence_vote(
    answers: Sequence[str | None],
    clusters: Sequence[int | None],
    confidences: Sequence[float],
    rule: ConfidenceRule = ConfidenceRule(),
) -> Selection:
    """Keep the most confident `rule.keep` of the answered traces, then the answer whose kept
    traces' confidences sum highest wins; its first kept trace is the chosen one.

    Ties go to the answer whose first kept trace came first. Traces without an answer neither
    vote nor count towards the share kept. If every kept weight is 0 (no usable logprobs), the
    kept traces are counted instead, and `details` says so.
    """
    answered = [i for i, c in enumerate(clusters) if c is not None]
    details: dict[str, Any] = {
        "confidence": {
            "measure": rule.measure,
            "window": rule.window,
            "keep": rule.keep,
            "confidences": [round(float(c), 6) for c in confidences],
            "kept": [],
            "weights": "confidence",
        }
    }
    if not answered:
        return Selection(None, None, list(clusters), details=details)
    mask = kept_by_confidence([confidences[i] for i in answered], rule.keep)
    kept = [i for i, k in zip(answered, mask, strict=True) if k]
    details["confidence"]["kept"] = kept
    weights = {i: float(confidences[i]) for i in kept}
    if not any(w > 0 for w in weights.values()):
        weights = dict.fromkeys(kept, 1.0)
        details["confidence"]["weights"] = "count (no trace had a positive confidence)"
    order: list[int] = []  # clusters in the order of their first kept trace
    first: dict[int, int] = {}
    total: dict[int, float] = {}
    for i in kept:
        c = clusters[i]
        assert c is not None
        if c not in first:
            first[c] = i
            order.append(c)
        total[c] = total.get(c, 0.0) + weights[i]
    best = order[argmax_first([total[c] for c in order])]
    index = first[best]
    votes = {str(answers[first[c]]): round(total[c], 6) for c in order}
    return Selection(index, answers[index], list(clusters), votes, details)


async def confidence_select(
    chains: Sequence[Chain], judge: AnswerJudge, rule: ConfidenceRule = ConfidenceRule()
) -> Selection:
    """Extract and cluster the chains' answers, score each chain, and vote (`confidence_vote`)."""
    answers = [judge.extract(c.text) for c in chains]
    clusters = await cluster_answers(answers, judge)
    confidences = [chain_confidence(c, rule) for c in chains]
    return confidence_vote(answers, clusters, confidences, rule)
