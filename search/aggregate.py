"""Final-answer selection shared by every controller: majority, best-score, weighted vote.

Votes are grouped with the same equivalence judge the grader uses, so "1/2" and "0.5" count
as one answer in voting exactly when grading would call them equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from reasoning.types import AnswerJudge, Chain

AGGREGATES = ("majority", "best_score", "weighted")
STEP_REDUCTIONS = ("last", "min", "prod", "mean")


def reduce_step_scores(scores: Sequence[float], how: str = "last") -> float:
    """One score for a chain from its per-step scores (0 when nothing was scored)."""
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "prod":
        return float(math.prod(scores))
    if how == "mean":
        return float(sum(scores) / len(scores))
    raise ValueError(f"unknown step score reduction {how!r}; valid: {list(STEP_REDUCTIONS)}")


@dataclass
class Selection:
    """The chosen candidate and how the vote went."""

    index: int | None
    answer: str | None
    clusters: list[int | None]
    votes: dict[str, float] = field(default_factory=dict)


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


def _argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the first (deterministic tie-breaking)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def select(
    answers: Sequence[str | None],
    clusters: Sequence[int | None],
    method: str = "majority",
    scores: Sequence[float] | None = None,
) -> Selection:
    """Pick one candidate. Candidates without an answer never win a vote."""
    if method not in AGGREGATES:
        raise ValueError(f"unknown aggregate {method!r}; valid: {list(AGGREGATES)}")
    if method != "majority" and scores is None:
        raise ValueError(f"aggregate={method!r} needs verifier scores: set verifier=<name>")
    answered = [i for i, c in enumerate(clusters) if c is not None]
    if not answered:
        return Selection(None, None, list(clusters))
    n_clusters = max(c for c in clusters if c is not None) + 1
    weight = [0.0] * n_clusters
    first = [len(clusters)] * n_clusters
    for i in answered:
        c = clusters[i]
        assert c is not None
        weight[c] += 1.0 if method == "majority" else float(scores[i])  # type: ignore[index]
        first[c] = min(first[c], i)
    if method == "best_score":
        index = answered[_argmax_first([scores[i] for i in answered])]  # type: ignore[index]
    else:
        index = first[_argmax_first(weight)]
    votes = {str(answers[first[c]]): round(weight[c], 6) for c in range(n_clusters)}
    return Selection(index, answers[index], list(clusters), votes)


async def aggregate(
    chains: Sequence[Chain],
    judge: AnswerJudge,
    method: str = "majority",
    step_reduction: str = "last",
) -> Selection:
    """Extract, cluster and select over finished chains in one call."""
    answers = [judge.extract(c.text) for c in chains]
    clusters = await cluster_answers(answers, judge)
    scores = None
    if method != "majority":
        scores = [reduce_step_scores(c.scores, step_reduction) for c in chains]
    return select(answers, clusters, method, scores)
