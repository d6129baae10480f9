"""Final-answer aggregation: majority, best-score, weighted vote, with the grader's equivalence."""

from __future__ import annotations

import math

import pytest

from evals.grading import Grader
from reasoning import Chain
from search.aggregate import (
    aggregate,
    argmax_first,
    cluster_answers,
    reduce_step_scores,
    select,
)


def test_reduce_step_scores() -> None:
    s = [0.9, 0.5, 0.8]
    assert reduce_step_scores(s, "last") == 0.8
    assert reduce_step_scores(s, "min") == 0.5
    assert reduce_step_scores(s, "prod") == pytest.approx(0.36)
    assert reduce_step_scores(s, "mean") == pytest.approx(2.2 / 3)
    assert reduce_step_scores([], "last") == 0.0
    with pytest.raises(ValueError, match="valid"):
        reduce_step_scores(s, "median")


def test_argmax_first_breaks_ties_to_the_first_and_ranks_none_last() -> None:
    assert argmax_first([0.2, 0.9, 0.9, 0.1]) == 1
    assert argmax_first([None, 0.3, None]) == 1  # an unscored candidate ranks below any score
    assert argmax_first([None, -math.inf]) == 0  # None is -inf: a tie, so the first
    assert argmax_first([None, None]) == 0


async def test_equivalent_answers_share_a_cluster() -> None:
    clusters = await cluster_answers(["\\frac{1}{2}", "0.5", "3", None, "1/2", "3.0"], Grader())
    assert clusters == [0, 0, 1, None, 0, 1]


def test_majority_picks_largest_cluster_first_seen_on_ties() -> None:
    answers = ["4", "5", "5", "4", None]
    sel = select(answers, [0, 1, 1, 0, None], "majority")
    assert sel.index == 0 and sel.answer == "4"  # tie 2-2: first seen wins
    sel = select(["4", "5", "5"], [0, 1, 1], "majority")
    assert sel.answer == "5" and sel.index == 1 and sel.votes == {"4": 1.0, "5": 2.0}


def test_best_score_and_weighted_can_disagree() -> None:
    answers = ["7", "8", "8", "8"]
    clusters = [0, 1, 1, 1]
    scores = [0.9, 0.4, 0.4, 0.4]
    assert select(answers, clusters, "best_score", scores).answer == "7"
    assert select(answers, clusters, "weighted", scores).answer == "8"  # 1.2 > 0.9
    assert select(answers, clusters, "majority").answer == "8"


def test_unanswered_candidates_never_win() -> None:
    sel = select([None, "3"], [None, 0], "best_score", [0.99, 0.1])
    assert sel.answer == "3" and sel.index == 1
    empty = select([None, None], [None, None], "majority")
    assert empty.index is None and empty.answer is None


def test_verifier_aggregates_need_scores() -> None:
    with pytest.raises(ValueError, match="verifier"):
        select(["1"], [0], "weighted")
    with pytest.raises(ValueError, match="valid"):
        select(["1"], [0], "plurality")


async def test_aggregate_over_chains_extracts_with_the_grader() -> None:
    chains = [
        Chain(steps=("so \\boxed{10}",), scores=(0.2,)),
        Chain(steps=("I get \\boxed{12}",), scores=(0.9,)),
        Chain(steps=("answer: \\boxed{10.0}",), scores=(0.3,)),
    ]
    judge = Grader()
    assert (await aggregate(chains, judge, "majority")).answer == "10"
    assert (await aggregate(chains, judge, "best_score")).answer == "12"
    assert (await aggregate(chains, judge, "weighted")).answer == "12"  # 0.9 > 0.5
