"""DeepConf-style confidence voting (search/confidence_vote.py, `search.aggregate=confidence`).

Every number below is computed by hand from the definitions in docs/best-of-n.md: token
confidence c_t = -mean of the top-k logprobs, a trace's confidence from its c_t (lowest group,
bottom 10%, tail, mean), the (1 - keep) percentile as the filter, confidence-weighted majority.
"""

from __future__ import annotations

import pytest

from evals.grading import Grader
from reasoning import Chain, Context, Problem
from reasoning.loop import run_sync
from reasoning.settings import SettingsError
from search import BestOfN
from search.confidence_vote import (
    ConfidenceRule,
    chain_confidence,
    confidence_select,
    confidence_vote,
    kept_by_confidence,
    trace_confidence,
    window_means,
)
from tests.fakes import RuleGenerator, always, words

PROBLEM = Problem("c", "What is 3 + 5?", "8")
CONFS = [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("measure", "want"),
    [
        ("lowest_group", 1.5),  # windows of 2: 1.5 2.5 3.5 4.5
        ("bottom", 1.5),  # max(1, int(4 * 0.1)) = 1 window: the lowest
        ("tail", 4.5),  # the last 2 tokens
        ("mean", 3.0),
    ],
)
def test_trace_confidence_by_measure(measure: str, want: float) -> None:
    rule = ConfidenceRule(measure=measure, window=2)  # type: ignore[arg-type]
    assert trace_confidence(CONFS, rule) == pytest.approx(want)


def test_bottom_share_averages_the_lowest_windows() -> None:
    assert window_means(CONFS, 2) == [1.5, 2.5, 3.5, 4.5]
    # int(4 * 0.5) = 2 lowest windows: (1.5 + 2.5) / 2
    rule = ConfidenceRule(measure="bottom", window=2, bottom_share=0.5)
    assert trace_confidence(CONFS, rule) == pytest.approx(2.0)


@pytest.mark.parametrize("measure", ["lowest_group", "bottom", "tail", "mean"])
def test_a_trace_shorter_than_the_window_is_one_window(measure: str) -> None:
    rule = ConfidenceRule(measure=measure, window=3)  # type: ignore[arg-type]
    assert trace_confidence([2.0, 4.0], rule) == pytest.approx(3.0)
    assert trace_confidence([], rule) == 0.0


def test_chain_confidence_reads_the_top_k_logprobs() -> None:
    # c_t = -mean(top-k): -(-0.1 - 2.3) / 2 = 1.2 and -(-0.5 - 1.5) / 2 = 1.0
    chain = Chain(steps=("x",), top_logprobs=((-0.1, -2.3), (-0.5, -1.5)))
    assert chain_confidence(chain, ConfidenceRule("mean")) == pytest.approx(1.1)
    assert chain_confidence(chain, ConfidenceRule("lowest_group", window=1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="backend returned none"):
        chain_confidence(Chain(steps=("\\boxed{1}",)), ConfidenceRule())


def test_the_filter_keeps_the_top_share_by_percentile() -> None:
    confs = [float(c) for c in range(1, 11)]
    # 90th percentile of 1..10 = 9.1: only 10 is kept; 10th percentile = 1.9: all but 1
    assert kept_by_confidence(confs, 0.1) == [False] * 9 + [True]
    assert kept_by_confidence(confs, 0.9) == [False] + [True] * 9
    assert kept_by_confidence(confs, 1.0) == [True] * 10
    # ties at the threshold are all kept: the 90th percentile of 1 5 5 5 is 5
    assert kept_by_confidence([5.0, 5.0, 5.0, 1.0], 0.1) == [True, True, True, False]


def test_confident_minority_beats_the_majority() -> None:
    answers = ["1", "1", "1", "2", "2"]
    clusters = [0, 0, 0, 1, 1]
    confs = [1.0, 1.0, 1.0, 5.0, 5.0]
    # no filter: 1 sums 3, 2 sums 10
    sel = confidence_vote(answers, clusters, confs, ConfidenceRule(keep=1.0))
    assert (sel.index, sel.answer) == (3, "2")
    assert sel.votes == {"1": 3.0, "2": 10.0}
    # keep 0.4: the 60th percentile of 1 1 1 5 5 is 2.6, so only the two 5s vote
    sel = confidence_vote(answers, clusters, confs, ConfidenceRule(keep=0.4))
    assert sel.details["confidence"]["kept"] == [3, 4] and sel.votes == {"2": 10.0}


def test_filtering_changes_the_weighted_result() -> None:
    answers = ["1", "1", "1", "1", "2"]
    clusters = [0, 0, 0, 0, 1]
    confs = [2.0, 2.0, 2.0, 2.0, 5.0]
    # all vote: 1 sums 8 against 5; top 10% (90th percentile 3.8): only the 5 votes
    assert confidence_vote(answers, clusters, confs, ConfidenceRule(keep=1.0)).answer == "1"
    assert confidence_vote(answers, clusters, confs, ConfidenceRule(keep=0.1)).answer == "2"


def test_unanswered_traces_neither_vote_nor_count_in_the_share() -> None:
    answers = [None, "3", "4", None]
    clusters = [None, 0, 1, None]
    confs = [9.0, 1.0, 2.0, 9.0]  # the unanswered ones are the most confident
    sel = confidence_vote(answers, clusters, confs, ConfidenceRule(keep=0.5))
    # the 50th percentile of 1 2 is 1.5: only trace 2 is kept
    assert (sel.index, sel.answer) == (2, "4") and sel.details["confidence"]["kept"] == [2]
    none = confidence_vote([None], [None], [1.0], ConfidenceRule())
    assert none.index is None and none.answer is None


def test_ties_go_to_the_answer_whose_first_kept_trace_came_first() -> None:
    answers = ["5", "6", "5", "6"]
    sel = confidence_vote(answers, [0, 1, 0, 1], [1.0, 2.0, 2.0, 1.0], ConfidenceRule(keep=1.0))
    assert (sel.index, sel.answer) == (0, "5")
    # zero weights: the kept traces are counted instead, and said
    sel = confidence_vote(["5", "6", "6"], [0, 1, 1], [0.0, 0.0, 0.0], ConfidenceRule(keep=1.0))
    assert sel.answer == "6" and sel.details["confidence"]["weights"].startswith("count")


def test_confidence_select_clusters_equal_answers() -> None:
    peaked, flat = (-0.01, -8.0), (-0.7, -0.7)  # c_t = 4.005 and 0.7
    chains = [
        Chain(steps=("so \\boxed{1/2}",), top_logprobs=(flat,) * 3),
        Chain(steps=("so \\boxed{0.5}",), top_logprobs=(flat,) * 3),
        Chain(steps=("so \\boxed{3}",), top_logprobs=(peaked,) * 3),
    ]
    sel = run_sync(confidence_select(chains, Grader(), ConfidenceRule(keep=1.0)))
    # 1/2 and 0.5 are one answer: 1.4 against 4.005
    assert sel.clusters == [0, 0, 1] and sel.answer == "3"
    assert sel.votes == pytest.approx({"1/2": 1.4, "3": 4.005})


def _table(before: str, piece: str) -> dict[str, float]:
    """A sample that says "sure" is peaked (c_t = 4.005), one that says "maybe" flat (0.7)."""
    if "sure" in before + piece:
        return {piece: -0.01, "\u2400alt": -8.0}
    return {piece: -0.7, "\u2400alt": -0.7}


def test_best_of_n_votes_by_confidence() -> None:
    replies = ["maybe \\boxed{7}"] * 3 + ["sure \\boxed{8}"] * 2
    gen = RuleGenerator([(always, replies)], unit=words, template="{question}", table=_table)
    ctx = Context(PROBLEM, gen, judge=Grader())
    search = BestOfN(n=5, top_logprobs=2, aggregate="confidence", confidence_keep=0.1)
    assert search.verifier_use is None
    out = run_sync(search.run(PROBLEM, ctx))
    assert out.answer == "8" and out.details["aggregate"] == "confidence"
    assert out.details["confidence"]["kept"] == [3, 4]
    assert out.details["votes"] == pytest.approx({"8": 8.01})
    assert out.tree.graph.nodes[out.chain.id]["status"] == "selected"
    assert gen.calls[0][1].logprobs == 2
    # the same samples by majority: 7
    ctx = Context(PROBLEM, gen, judge=Grader())
    assert run_sync(BestOfN(n=5, top_logprobs=2).run(PROBLEM, ctx)).answer == "7"


@pytest.mark.parametrize("k", [None, 0])
def test_confidence_needs_top_k_logprobs(k: int | None) -> None:
    with pytest.raises(SettingsError, match=r"search\.top_logprobs must be k > 0"):
        BestOfN(aggregate="confidence", top_logprobs=k)


def test_confidence_is_a_best_of_n_vote_only() -> None:
    from search.beam import Beam

    with pytest.raises(SettingsError, match="search.aggregate"):
        Beam(aggregate="confidence")


@pytest.mark.parametrize(
    ("key", "value"),
    [("confidence", "median"), ("confidence_window", 0), ("confidence_keep", 0.0)],
)
def test_bad_confidence_settings_are_refused(key: str, value: object) -> None:
    with pytest.raises(SettingsError, match=f"search.{key}"):
        BestOfN(aggregate="confidence", top_logprobs=20, **{key: value})
