"""The one solve path (reasoning/solver.py) and the two callers built on it: the API and the runner
(scripted generator, no engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from evals.grading import Grader
from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Problem
from reasoning.api import solve, solve_many
from reasoning.budget import Budget
from reasoning.solver import Solved, SolveParts, solve_problem
from search import BestOfN
from tests.fakes import ScriptedGenerator

PROBLEM = Problem("p0", "What is 2 + 2?", "4")


def _answer(prompt: str, sampling: object) -> str:
    return "so \\boxed{4}" if "2 + 2" in prompt else "so \\boxed{7}"


def test_solve_problem_returns_the_settled_outcome() -> None:
    parts = SolveParts(ScriptedGenerator(_answer), BestOfN(n=3), judge=Grader())
    solved = asyncio.run(solve_problem(PROBLEM, parts, seed=1))
    assert isinstance(solved, Solved) and solved.error is None
    assert solved.outcome is not None and solved.outcome.answer == "4"
    assert solved.ledger is solved.outcome.ledger and solved.ledger.samples == 3
    assert solved.context is not None and solved.context.seed == 1
    assert solved.outcome.details["events"] == []  # settled: its events are in its details
    assert solved.result() is solved.outcome


def test_a_failed_search_comes_back_with_what_it_spent() -> None:
    gen = ScriptedGenerator(_answer, fail_on=lambda prompt: True)
    parts = SolveParts(gen, BestOfN(n=2), judge=Grader(), budget=Budget(samples=10))
    solved = asyncio.run(solve_problem(PROBLEM, parts))
    assert isinstance(solved.error, ConnectionError) and solved.outcome is None
    assert solved.ledger is solved.context.ledger  # type: ignore[union-attr]
    assert solved.ledger.wall_s > 0  # ticked: the clock ran until the fault
    with pytest.raises(ConnectionError):
        solved.result()


def test_the_api_and_the_runner_solve_alike(tmp_path: Path) -> None:
    """The same parts and seed give the same answer and spend through both callers."""
    problems = [PROBLEM, Problem("p1", "What is 3 + 4?", "7")]
    outcomes = solve_many(
        problems,
        search=BestOfN(n=2),
        generator=ScriptedGenerator(_answer),
        verifier=None,
        judge=Grader(),
        seed=5,
    )
    runner = Runner(ScriptedGenerator(_answer), BestOfN(n=2), tmp_path, seed=5, progress=False)
    asyncio.run(runner.run(problems))
    records = {r["id"]: r for r in read_results(tmp_path / RESULTS)}
    for problem, outcome in zip(problems, outcomes, strict=True):
        record = records[problem.id]
        assert record["prediction"] == outcome.answer
        assert record["ledger"]["samples"] == outcome.ledger.samples == 2
        assert record["ledger"]["generated_tokens"] == outcome.ledger.generated_tokens


def test_the_api_raises_the_search_error() -> None:
    gen = ScriptedGenerator(_answer, fail_on=lambda prompt: True)
    with pytest.raises(ConnectionError):
        solve(PROBLEM, search=BestOfN(n=2), generator=gen, verifier=None, judge=Grader())


def test_the_solve_function_is_not_shadowed_by_the_solver_module() -> None:
    """`from reasoning import solve` is the API function even after the core's solve path is
    imported (a submodule named `solve` would replace the package attribute)."""
    import reasoning.solver  # noqa: F401
    from reasoning import solve

    assert callable(solve) and solve.__module__ == "reasoning.api"
