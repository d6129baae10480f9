"""`search.step_reduction=model`: the verifier scores each chain's whole prefix as one step,
for every controller that reads scores, with no silent fall-back to majority voting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evals.grading import Grader
from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Budget, Chain, Context, Problem
from reasoning.steps import collapse_steps, whole_prefix
from search import DVTS, AStar, Beam, BestOfN, ParticleFilter, ParticleGibbs
from search.conclude import conclude
from search.expand import is_scored, score
from tests.fakes import EOS, ScriptedGenerator

PROBLEM = Problem("p", "What is 4 + 5?", "9")


class PrefixVerifier:
    """Scores a chain by the number of steps its text had before it was collapsed, and records
    the step counts it was asked to score (1 per chain under model aggregation)."""

    name = "prefix"

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        self.seen += [len(c.steps) for c in chains]
        # the collapsed text keeps one line per original step
        return [[min(1.0, 0.2 * len(s.splitlines()))] * 1 for c in chains for s in c.steps[-1:]]


def three_steps(steps: tuple[str, ...], sampling: object, k: int) -> str:
    """Step 1 and 2 are plain; the third boxes 9."""
    if len(steps) >= 2:
        return "so the answer is \\boxed{9}" + EOS
    return f"step {len(steps) + 1} sample {k}"


def test_whole_prefix_is_one_step_with_the_logprobs_kept() -> None:
    chain = Chain(steps=("a", "b\n\nc", "d"), scores=(0.1, 0.2, 0.3), logprobs=(-0.5, -0.1))
    one = whole_prefix(chain)
    assert one.steps == collapse_steps(chain.steps) == ("a\nb\nc\nd",)
    assert one.scores == () and one.logprobs == chain.logprobs
    empty = Chain()
    assert whole_prefix(empty) is empty


async def test_score_fills_one_score_per_step_from_the_whole_prefix_score() -> None:
    verifier = PrefixVerifier()
    ctx = Context(PROBLEM, ScriptedGenerator(), verifier=verifier, judge=Grader())
    parent = Chain(steps=("a", "b"), scores=(0.3, 0.4))
    kid = parent.extend("c")  # inherits the parent's two scores
    whole = Chain(steps=("x", "y", "z", "w"))  # never scored: a whole best-of-N sample
    for c in (kid, whole):
        ctx.tree.add(c)
    kid, whole = await score(ctx, [kid, whole], "model")
    assert verifier.seen == [1, 1]
    assert kid.scores == (0.3, 0.4, pytest.approx(0.6))  # 3 lines -> 0.6, appended
    assert whole.scores == (pytest.approx(0.8),) * 4 and is_scored(whole)


async def test_a_verifier_that_skips_steps_is_an_error_not_a_quiet_majority_vote() -> None:
    class OneScore:
        name = "one-score"

        async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
            return [[0.5] for _ in chains]

    ctx = Context(PROBLEM, ScriptedGenerator(), verifier=OneScore(), judge=Grader())
    with pytest.raises(ValueError, match="1 scores for a chain of 2 steps.*problem p"):
        await ctx.score([Chain(steps=("a", "b"))])


SEARCHES = [
    BestOfN(n=3, aggregate="weighted", step_reduction="model"),
    BestOfN(n=3, aggregate="best_score", step_reduction="model"),
    Beam(n=4, width=2, max_steps=5, step_reduction="model"),
    Beam(n=4, width=2, max_steps=5, lookahead=1, step_reduction="model"),
    DVTS(n=4, width=2, max_steps=5, step_reduction="model"),
    AStar(width=2, max_steps=5, step_reduction="model"),
    ParticleFilter(n=3, max_steps=5, step_reduction="model"),
    ParticleGibbs(n=3, passes=2, max_steps=5, step_reduction="model"),
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: f"{s.name}-{id(s) % 97}")
def test_every_scoring_controller_runs_several_steps_under_model_aggregation(
    search: object,
) -> None:
    verifier = PrefixVerifier()
    if isinstance(search, BestOfN):
        gen = ScriptedGenerator(["the first step\n\nthe second step\n\nso \\boxed{9}"])
    else:
        gen = ScriptedGenerator(steps=three_steps)
    ctx = Context(PROBLEM, gen, verifier=verifier, judge=Grader())
    out = asyncio.run(search.run(PROBLEM, ctx))  # type: ignore[attr-defined]
    assert verifier.seen and set(verifier.seen) == {1}  # every call saw one step per chain
    assert out.answer == "9" and out.chain is not None and len(out.chain.steps) == 3
    assert is_scored(out.chain) and out.chain.scores[-1] == pytest.approx(0.6)
    assert "missing_scores" not in out.details
    assert not out.details.get("aggregate", "").startswith("majority")


async def test_missing_scores_are_recorded_and_counted(tmp_path: Path) -> None:
    # generation outlasts the wall-clock budget, which then refuses the verifier
    runner = Runner(
        ScriptedGenerator(["so \\boxed{9}", "so \\boxed{8}"], delay_s=0.3),
        BestOfN(n=2, aggregate="weighted", step_reduction="model"),
        tmp_path,
        verifier=PrefixVerifier(),
        budget=Budget(wall_s=0.2),
        progress=False,
    )
    summary = await runner.run([PROBLEM, Problem("q", "What is 1 + 1?", "2")])
    records = read_results(tmp_path / RESULTS)
    assert all(r["missing_scores"]["reason"] == "wall_s" for r in records)
    assert summary["missing_scores"] == 2


async def test_conclude_with_scores_in_hand_reports_nothing_missing() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator(), verifier=PrefixVerifier(), judge=Grader())
    chains = [
        Chain(steps=("\\boxed{9}",), scores=(0.9,)),
        Chain(steps=("\\boxed{8}",), scores=(0.1,)),
    ]
    for c in chains:
        ctx.tree.add(c)
    out = await conclude(ctx, chains, "best_score", "model")
    assert out.answer == "9" and "missing_scores" not in out.details
    assert ctx.ledger.verifier_calls == 0
