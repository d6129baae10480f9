"""Final-answer selection shared by every controller: majority, best-score, weighted vote, RPC.

Votes are grouped with the same equivalence judge the grader uses, so "1/2" and "0.5" count
as one answer in voting exactly when grading would call them equal. Step reductions and votes
are name tables: a config names one, an API user may pass their own function instead
(docs/best-of-n.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reasoning.logprobs import mean_logprob_score
from reasoning.types import AnswerJudge, Chain
from search.weibull import WeibullMixture, fit_weibull_mixture

StepReduction = Callable[[Sequence[float]], float]
# clusters (None: no answer) and per-candidate scores (None without a verifier) -> the index of
# the chosen candidate, which must have an answer
Vote = Callable[[Sequence["int | None"], "Sequence[float] | None"], int]

STEP_REDUCTIONS: dict[str, StepReduction] = {
    "last": lambda scores: float(scores[-1]),
    "min": lambda scores: float(min(scores)),
    "prod": lambda scores: float(math.prod(scores)),
    "mean": lambda scores: float(sum(scores) / len(scores)),
    # "model aggregation": the verifier scored the whole prefix as one step (see
    # scores_whole_prefix); the last score is that of the whole chain
    "model": lambda scores: float(scores[-1]),
}
WHOLE_PREFIX = "model"


def scores_whole_prefix(reduction: str | StepReduction) -> bool:
    """Whether the verifier should see each chain's whole prefix as a single step."""
    return isinstance(reduction, str) and reduction == WHOLE_PREFIX


def step_reduction(reduction: str | StepReduction) -> StepReduction:
    """The reduction named `reduction` (or `reduction` itself when it is a function)."""
    if callable(reduction):
        return reduction
    if reduction not in STEP_REDUCTIONS:
        raise ValueError(
            f"unknown step score reduction {reduction!r}; valid: {list(STEP_REDUCTIONS)}"
        )
    return STEP_REDUCTIONS[reduction]


def reduce_step_scores(scores: Sequence[float], reduction: str | StepReduction = "last") -> float:
    """One score for a chain from its per-step scores (0 when nothing was scored)."""
    reduce = step_reduction(reduction)
    if not scores:
        return 0.0
    return float(reduce(scores))


@dataclass
class Selection:
    """The chosen candidate and how the vote went."""

    index: int | None
    answer: str | None
    clusters: list[int | None]
    votes: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # method-specific, e.g. RPC pruning


async def cluster_answers(answers: Sequence[str | None], judge: AnswerJudge) -> list[int | None]:
    """Cluster id per answer (None when no answer); first-seen order defines the ids."""
    representatives: list[str] = []
    clusters: list[int | None] = []
    for answer in answers:
        if answer is None:
            clusters.append(None)
            continue
        found = None
        for i, rep in enumerate(representatives):
            if answer == rep or await judge.equivalent(answer, rep):
                found = i
                break
        if found is None:
            representatives.append(answer)
            found = len(representatives) - 1
        clusters.append(found)
    return clusters


class AnswerTally:
    """Cluster ids of the samples' answers, grown one sample at a time with the judge's
    equivalence, in the same order and by the same test as `search.aggregate.cluster_answers`,
    so an adaptive stop rule (adaptive_sc, deepconf) counts exactly the votes the final vote
    will count."""

    def __init__(self, judge: AnswerJudge) -> None:
        self.judge = judge
        self.representatives: list[str] = []
        self.clusters: list[int | None] = []

    async def add(self, text: str) -> int | None:
        answer = self.judge.extract(text)
        cluster: int | None = None
        if answer is not None:
            for i, rep in enumerate(self.representatives):
                if answer == rep or await self.judge.equivalent(answer, rep):
                    cluster = i
                    break
            else:
                self.representatives.append(answer)
                cluster = len(self.representatives) - 1
        self.clusters.append(cluster)
        return cluster

    async def over(self, texts: Sequence[str]) -> list[int | None]:
        """The clusters of `texts` (a prefix that only ever grows), judging only the new ones."""
        for text in texts[len(self.clusters) :]:
            await self.add(text)
        return self.clusters[: len(texts)]


def argmax_first(values: Sequence[float | None]) -> int:
    """Index of the largest value (None counts as -inf); ties go to the first, so runs repeat
    exactly."""
    scores = [-math.inf if v is None else v for v in values]
    best = 0
    for i, v in enumerate(scores):
        if v > scores[best]:
            best = i
    return best


def _cluster_weights(
    clusters: Sequence[int | None], scores: Sequence[float] | None
) -> tuple[list[float], list[int]]:
    """Per cluster: its summed weight (1 per member, or its score) and its first member."""
    n_clusters = max((c for c in clusters if c is not None), default=-1) + 1
    weight = [0.0] * n_clusters
    first = [len(clusters)] * n_clusters
    for i, c in enumerate(clusters):
        if c is None:
            continue
        weight[c] += 1.0 if scores is None else float(scores[i])
        first[c] = min(first[c], i)
    return weight, first


def majority_vote(clusters: Sequence[int | None], scores: Sequence[float] | None) -> int:
    """The most frequent answer (its first sample); ties to the answer seen first."""
    weight, first = _cluster_weights(clusters, None)
    return first[argmax_first(weight)]


def weighted_vote(clusters: Sequence[int | None], scores: Sequence[float] | None) -> int:
    """The answer with the largest summed verifier score (its first sample)."""
    weight, first = _cluster_weights(clusters, _needs(scores, "weighted"))
    return first[argmax_first(weight)]


def best_score_vote(clusters: Sequence[int | None], scores: Sequence[float] | None) -> int:
    """The single answered sample with the highest verifier score."""
    values = _needs(scores, "best_score")
    answered = [i for i, c in enumerate(clusters) if c is not None]
    return answered[argmax_first([values[i] for i in answered])]


def _needs(scores: Sequence[float] | None, method: str) -> Sequence[float]:
    if scores is None:
        raise ValueError(f"aggregate={method!r} needs verifier scores: set verifier=<name>")
    return scores


VOTES: dict[str, Vote] = {
    "majority": majority_vote,
    "best_score": best_score_vote,
    "weighted": weighted_vote,
}
AGGREGATES = (*VOTES, "rpc")  # rpc also needs the chains' texts and logprobs
VERIFIER_AGGREGATES = ("best_score", "weighted")  # the ones that need verifier scores


def needs_scores(method: str | Vote, has_verifier: bool) -> bool:
    """Whether the vote reads verifier scores: the named ones that need them, and a custom
    vote whenever a verifier is there to give them."""
    return method in VERIFIER_AGGREGATES if isinstance(method, str) else has_verifier


def select(
    answers: Sequence[str | None],
    clusters: Sequence[int | None],
    method: str | Vote = "majority",
    scores: Sequence[float] | None = None,
) -> Selection:
    """Pick one candidate. Candidates without an answer never win a vote."""
    if method == "rpc":
        raise ValueError("aggregate='rpc' needs the chains' texts and logprobs: use aggregate()")
    if isinstance(method, str):
        if method not in VOTES:
            raise ValueError(f"unknown aggregate {method!r}; valid: {list(AGGREGATES)}")
        if method in VERIFIER_AGGREGATES:
            _needs(scores, method)
        vote = VOTES[method]
    else:
        vote = method
    answered = [i for i, c in enumerate(clusters) if c is not None]
    if not answered:
        return Selection(None, None, list(clusters))
    index = vote(clusters, scores)
    if clusters[index] is None:
        raise ValueError(f"vote {method!r} chose candidate {index}, which has no answer")
    weight, first = _cluster_weights(clusters, None if method == "majority" else scores)
    votes = {str(answers[first[c]]): round(weight[c], 6) for c in range(len(weight))}
    return Selection(index, answers[index], list(clusters), votes)


async def aggregate(
    chains: Sequence[Chain],
    judge: AnswerJudge,
    method: str | Vote = "majority",
    step_reduction: str | StepReduction = "last",
) -> Selection:
    """Extract, cluster and select over finished chains in one call."""
    answers = [judge.extract(c.text) for c in chains]
    if method == "rpc":
        probabilities = [chain_probability(c) for c in chains]
        return await rpc_select(answers, [c.text for c in chains], probabilities, judge)
    clusters = await cluster_answers(answers, judge)
    scores = None
    if needs_scores(method, has_verifier=any(c.scores for c in chains)):
        scores = [reduce_step_scores(c.scores, step_reduction) for c in chains]
    return select(answers, clusters, method, scores)


# --- RPC: reasoning pruning + perplexity consistency (docs/best-of-n.md) ---------------------


def chain_probability(chain: Chain) -> float:
    """p = exp(mean sampled-token logprob): RPC's length-normalised path probability."""
    if chain.logprobs is None:
        # best_of_n refuses rpc without search.top_logprobs before it starts, so a chain that
        # gets here without logprobs almost always means the backend left them out
        raise ValueError(
            f"aggregate='rpc' needs each sample's token logprobs and chain {chain.id} has none: "
            "the backend returned none although search.top_logprobs asked for them; use a "
            "backend that returns logprobs (backend=vllm, or a vLLM server) or another "
            "search.aggregate (a controller that did not ask: set search.top_logprobs=0)"
        )
    return mean_logprob_score(chain.logprobs)


@dataclass
class RpcPruning:
    """Which paths reasoning pruning keeps, and why (for the outcome's details)."""

    keep: list[bool]
    mixture: WeibullMixture | None = None
    skipped: str | None = None  # why pruning was not applied, None when it was


def rpc_prune(probabilities: Sequence[float]) -> RpcPruning:
    """Drop path i iff its "low" posterior beats "high" and p_i < mean(p).

    "High" is the component with the larger mean. Skipped (all kept) when K < 4, std(p) < 1e-6
    or the fit fails: a mixture cannot be fitted meaningfully to so little spread.
    """
    p = np.asarray(probabilities, dtype=float)
    keep = [True] * len(p)
    if len(p) < 4:
        return RpcPruning(keep, skipped="fewer than 4 paths")
    if float(np.std(p)) < 1e-6:
        return RpcPruning(keep, skipped="constant path probabilities")
    mix = fit_weibull_mixture(p)
    if mix is None:
        return RpcPruning(keep, skipped="Weibull mixture fit failed")
    m1, m2 = mix.means()
    high = 0 if m1 > m2 else 1
    post = mix.posteriors(p)
    mean_p = float(np.mean(p))
    keep = [not (post[i, 1 - high] > post[i, high] and p[i] < mean_p) for i in range(len(p))]
    return RpcPruning(keep, mix)


async def rpc_select(
    answers: Sequence[str | None],
    texts: Sequence[str],
    probabilities: Sequence[float],
    judge: AnswerJudge,
) -> Selection:
    """Reasoning pruning, then perplexity consistency over the surviving paths.

    Cluster score = sum of p_i over the *distinct* completion texts of the cluster's survivors
    (identical texts count once: it estimates probability mass, not frequency). Argmax wins,
    ties to the cluster seen first among survivors; the chosen index is that first survivor.
    If pruning would leave no answered path, votes go over all paths instead of no answer.
    """
    pruning = rpc_prune(probabilities)
    clusters = await cluster_answers(answers, judge)
    keep = list(pruning.keep)
    skipped = pruning.skipped
    answered = [i for i, c in enumerate(clusters) if c is not None]
    if answered and not any(keep[i] for i in answered):
        keep = [True] * len(keep)
        skipped = "no answered path survived pruning; voted over all paths"
    details: dict[str, Any] = {
        "rpc": {
            "probabilities": [round(float(p), 6) for p in probabilities],
            "pruned": [i for i, k in enumerate(keep) if not k],
            "pruning_skipped": skipped,
            "mixture": asdict(pruning.mixture) if pruning.mixture is not None else None,
        }
    }
    if not answered:
        return Selection(None, None, list(clusters), details=details)
    n_clusters = max(c for c in clusters if c is not None) + 1
    score = [0.0] * n_clusters
    first_any = [len(clusters)] * n_clusters
    first_kept = [len(clusters)] * n_clusters
    seen: list[set[str]] = [set() for _ in range(n_clusters)]
    for i in answered:
        c = clusters[i]
        assert c is not None
        first_any[c] = min(first_any[c], i)
        if not keep[i]:
            continue
        first_kept[c] = min(first_kept[c], i)
        if texts[i] not in seen[c]:
            seen[c].add(texts[i])
            score[c] += float(probabilities[i])
    eligible = sorted(
        (c for c in range(n_clusters) if first_kept[c] < len(clusters)), key=lambda c: first_kept[c]
    )
    best = eligible[argmax_first([score[c] for c in eligible])]
    index = first_kept[best]
    votes = {str(answers[first_any[c]]): round(score[c], 6) for c in range(n_clusters)}
    return Selection(index, answers[index], list(clusters), votes, details)
