"""The rule-based arithmetic step checker: a regression table of real-looking steps, bounds on
adversarial input, the Verifier contract, and one weighted best-of-N run on the real engine."""

from __future__ import annotations

import gc
import json
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.arith import generate_arith
from evals.grading import Grader
from reasoning import Chain, Context, Problem
from reasoning.loop import run_sync
from reasoning.types import StepScores, Verifier
from search import BestOfN
from verifiers import arith_checker
from verifiers.arith_checker import ArithStepChecker, Claim, StepVerdict

TABLE = Path(__file__).resolve().parent / "data" / "arith_steps.jsonl"
ROWS: list[dict[str, Any]] = [
    json.loads(line) for line in TABLE.read_text(encoding="utf-8").split("\n") if line.strip()
]
STEP_BUDGET_S = 0.050
NEUTRAL = 0.5


def _expected(row: dict[str, Any]) -> float:
    return NEUTRAL if row["expected"] == "neutral" else float(row["expected"])


def _timed_check(text: str) -> tuple[StepVerdict, float]:
    """One uncached check and its duration (the cache would hide the real cost).

    As in `timeit`, the garbage collector is paused while timing: a full collection of the
    test process's heap, which any allocation can trigger, is not the checker's cost.
    """
    arith_checker._cached_claims.cache_clear()
    checker = ArithStepChecker(neutral=NEUTRAL)
    gc.disable()
    try:
        start = time.perf_counter()
        verdict = checker.check_step(text)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return verdict, elapsed


def test_table_is_large_and_covers_every_verdict() -> None:
    assert len(ROWS) >= 60
    assert {row["expected"] for row in ROWS} == {0.0, 1.0, "neutral"}
    assert all(set(row) == {"step", "expected", "note"} for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[f"{i:03d}-{r['note'][:40]}" for i, r in enumerate(ROWS)])
def test_table_row(row: dict[str, Any]) -> None:
    verdict, elapsed = _timed_check(row["step"])
    assert verdict.score == _expected(row), (row["note"], verdict.claims)
    assert elapsed < STEP_BUDGET_S, f"{row['note']}: {elapsed * 1000:.1f} ms"
    if verdict.score == NEUTRAL:
        assert verdict.claims == ()
    else:
        assert verdict.claims and any(not c.ok for c in verdict.claims) == (verdict.score == 0.0)


# Too big for the table file: generated here.
HUGE = [
    "1" * 1_000_000 + " = 1",
    "(" * 10_000 + "1" + ")" * 10_000 + " = 1",
    "12 + 7 = 19 " * 100_000,
    "9^9^9^9 = 1 " * 300,
    "2^{64} \\times " * 250 + "1 = 1",
    " + ".join(f"\\frac{{1}}{{{p}}}" for p in range(2, 300))[:3990] + " = 1",
]


@pytest.mark.parametrize(
    "text", HUGE, ids=["1e6-digits", "10k-deep", "1.2MB", "towers", "2^64s", "fracs"]
)
def test_huge_inputs_are_bounded(text: str) -> None:
    verdict, elapsed = _timed_check(text)
    assert verdict.score in (0.0, NEUTRAL)
    assert elapsed < STEP_BUDGET_S, f"{elapsed * 1000:.1f} ms"


def test_even_an_unlimited_length_stays_bounded() -> None:
    # Past max_step_chars the depth and size limits still hold: no RecursionError, no blowup.
    checker = ArithStepChecker(max_step_chars=10**7)
    for text in ("(" * 50_000 + "1" + ")" * 50_000 + " = 1", "-" * 50_000 + "1 = 1"):
        assert checker.check_step(text).score == NEUTRAL


FRAGMENTS = [
    *"0123456789.,;:=+-*/^()[]{}$%!|_'\"x \n",
    *["007", "1,000", "{,}", "**", "==", "\\frac", "\\dfrac", "\\sqrt", "\\times", "\\cdot"],
    *["\\div", "\\boxed", "\\text", "\\left", "\\right", "\\%", "\\(", "\\)", "\\[", "\\]"],
    *["\\begin{align}", "\\end", "\\pi", "\\", "×", "÷", "−", "·", "≈", "Step", "of", "times"],
    *["9^9^9", "2^{64}", "10/3", "3.33", "- ", "\\quad", "\\$", "١"],
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join) | st.text(max_size=200))
def test_never_raises_on_arbitrary_text(text: str) -> None:
    # `_claims` is the unguarded core: a bug here must fail this test, not be swallowed.
    for claim in arith_checker._claims(text):
        assert isinstance(claim.left, Fraction) and isinstance(claim.right, Fraction)
        assert claim.ok == (claim.left == claim.right) or "." in claim.text
        assert claim.text in text
    assert ArithStepChecker().check_step(text).score in (0.0, 0.5, 1.0)


def test_agrees_with_the_arith_generator() -> None:
    # Independent ground truth: the generator computes answers on an expression tree.
    checker = ArithStepChecker()
    for problem in generate_arith(40, levels=(1, 2, 3, 4), seed=7):
        latex = problem.question.removeprefix("What is ").removesuffix("?")
        for expr in (latex, problem.metadata["expression"]):
            assert checker.check_step(f"So ${expr} = {problem.answer}$.").score == 1.0
            wrong = int(problem.answer or 0) + 1
            assert checker.check_step(f"So ${expr} = {wrong}$.").score == 0.0


def test_claims_carry_exact_values_and_the_quoted_text() -> None:
    verdict = ArithStepChecker().check_step("So $2 + 3 = 5 = 11/2$, and 0.1 + 0.2 = 0.3.")
    assert verdict == StepVerdict(
        0.0,
        (
            Claim("2 + 3 = 5", Fraction(5), Fraction(5), True),
            Claim("5 = 11/2", Fraction(5), Fraction(11, 2), False),
            Claim("0.1 + 0.2 = 0.3", Fraction(3, 10), Fraction(3, 10), True),
        ),
    )
    with pytest.raises(AttributeError):
        verdict.score = 1.0  # type: ignore[misc]


def test_neutral_and_length_limit_are_configurable() -> None:
    checker = ArithStepChecker(neutral=0.3, max_step_chars=20)
    assert checker.check_steps(["no claim here", "12 + 7 = 9", "so, finally: 12 + 7 = 9"]) == [
        0.3,
        0.0,
        0.3,  # longer than 20 characters: not read
    ]
    with pytest.raises(ValueError, match="neutral"):
        ArithStepChecker(neutral=1.5)
    with pytest.raises(ValueError, match="max_step_chars"):
        ArithStepChecker(max_step_chars=0)


def test_is_a_verifier() -> None:
    checker = ArithStepChecker()
    assert isinstance(checker, Verifier)
    assert checker.name == "arith"


def test_score_gives_one_value_per_step() -> None:
    problem = Problem("p", "What is 12 + 7?", "19")
    chains = [
        Chain(steps=("We add the numbers.", "12 + 7 = 19", "The answer is \\boxed{19}.")),
        Chain(steps=("12 + 7 = 9", "So 9 - 1 = 8 and 8 + 1 = 9.")),
        Chain(steps=("$3 \\times 4 = 12$",)),
        Chain(),
    ]
    scores = run_sync(ArithStepChecker(neutral=0.25).score(problem, chains))
    assert isinstance(scores, StepScores) and scores.tokens == 0 and not scores.cached
    assert scores == [[0.25, 1.0, 0.25], [0.0, 1.0], [1.0], []]


@pytest.mark.engine
def test_weighted_best_of_n_on_the_real_engine(engine) -> None:  # noqa: ANN001
    problem = generate_arith(1, levels=(2,), seed=3)[0]
    checker = ArithStepChecker()
    ctx = Context(problem, engine, verifier=checker, judge=Grader())
    out = run_sync(BestOfN(n=4, max_tokens=96, aggregate="weighted").run(problem, ctx))

    assert len(out.chains) == 4 and out.ledger.verifier_calls == 4
    for chain in out.chains:
        assert len(chain.scores) == len(chain.steps) >= 1
        assert set(chain.scores) <= {0.0, 0.5, 1.0}
        assert list(chain.scores) == checker.check_steps(chain.steps)
    votes = out.details["votes"]
    assert out.details["aggregate"] == "weighted"
    if out.answer is not None:  # the lenient extractor nearly always finds a number
        assert out.chain is not None and out.chain.scores
        assert votes[out.answer] == max(votes.values())
