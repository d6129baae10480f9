"""Countdown (APR's task): the seeded generator, the exact expression checker, grading by it
in the Grader and the Runner, loading, and the leaderboard audit skipping it (no engine)."""

from __future__ import annotations

import ast
import json
import re
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from evals.countdown import (
    MAX_EXPRESSION_CHARS,
    CountdownJudge,
    check_answer,
    check_expression,
    check_path,
    generate_countdown,
    trace_solution,
)
from evals.datasets import DATASETS, load_problems
from evals.grading import Grader
from evals.leaderboard import build_leaderboard
from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Problem
from search import BestOfN
from tests.fakes import ScriptedGenerator
from tests.test_leaderboard import make_run

NUMBERS = [2, 3, 4, 6]
CLASSIC = [3, 3, 8, 8]  # 8 / (3 - 8 / 3) = 24, and only through a fraction


def _tree_value(node: ast.expr, intermediates: list[Fraction], literals: list[int]) -> Fraction:
    """An independent evaluation of a reference answer, noting every intermediate value."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        literals.append(node.value)
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp), ast.dump(node)
    a = _tree_value(node.left, intermediates, literals)
    b = _tree_value(node.right, intermediates, literals)
    ops = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}
    value = ops[type(node.op)] if type(node.op) in ops else a / b
    assert isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div)
    intermediates.append(value)
    return value


# --- the generator ---------------------------------------------------------------------------


def test_same_seed_same_problems_and_ids_stable_across_n() -> None:
    first = generate_countdown(25, seed=3)
    assert first == generate_countdown(25, seed=3)
    assert generate_countdown(7, seed=3) == first[:7]  # countdown-0004 does not depend on n
    assert [p.id for p in first[:3]] == ["countdown-0000", "countdown-0001", "countdown-0002"]


def test_different_seeds_and_sizes_give_different_problems() -> None:
    a = {p.question for p in generate_countdown(30, seed=0)}
    b = {p.question for p in generate_countdown(30, seed=1)}
    assert len(a & b) <= 1
    three = generate_countdown(5, numbers=3)
    assert all(len(p.metadata["numbers"]) == 3 and p.metadata["level"] == 3 for p in three)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 6])
def test_every_reference_solves_its_problem_through_positive_integers(count: int) -> None:
    problems = generate_countdown(60, numbers=count, seed=count)
    for p in problems:
        meta = p.metadata
        numbers, target = meta["numbers"], meta["target"]
        assert meta["task"] == "countdown" and meta["level"] == count
        assert len(numbers) == count and all(1 <= v <= 99 for v in numbers)
        assert 10 <= target <= 100
        assert p.answer is not None
        verdict = check_expression(p.answer, numbers, target)
        assert verdict.correct, (p.id, p.answer, verdict.reason)
        intermediates: list[Fraction] = []
        literals: list[int] = []
        value = _tree_value(ast.parse(p.answer, mode="eval").body, intermediates, literals)
        assert value == target and Counter(literals) == Counter(numbers)
        assert all(v > 0 and v.denominator == 1 for v in intermediates), (p.id, p.answer)
        # the question states the numbers, the target and the rules
        assert ", ".join(map(str, numbers)) in p.question and f"make {target}." in p.question
        assert "exactly once" in p.question and "\\boxed{}" in p.question


def test_no_duplicate_problems_and_a_too_small_space_is_an_error() -> None:
    problems = generate_countdown(300, numbers=3, seed=5)
    keys = [(tuple(sorted(p.metadata["numbers"])), p.metadata["target"]) for p in problems]
    assert len(set(keys)) == len(keys) == 300
    assert len({p.question for p in problems}) == 300
    # two numbers from 1..3 make only a handful of distinct problems
    with pytest.raises(ValueError, match="no new problem"):
        generate_countdown(50, numbers=2, max_number=3, min_target=1, max_target=10)


def test_the_target_range_and_number_range_are_kept() -> None:
    problems = generate_countdown(40, numbers=4, max_number=12, min_target=20, max_target=30)
    assert all(20 <= p.metadata["target"] <= 30 for p in problems)
    assert all(max(p.metadata["numbers"]) <= 12 for p in problems)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numbers": 1}, "numbers must be an integer >= 2 and <= 6, got 1"),
        ({"numbers": 7}, "numbers must be an integer >= 2 and <= 6, got 7"),
        ({"n": -1}, "n must be an integer >= 0"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"min_target": 50, "max_target": 40}, "max_target must be an integer >= 50"),
        ({"numbers": True}, "numbers must be an integer"),
    ],
)
def test_bad_generator_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_countdown(**kwargs)  # type: ignore[arg-type]


# --- the checker -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "6 * 4 * (3 - 2)",
        "6*4*(3-2)",
        "  6 *  4*( 3- 2 ) ",
        "6 / (3 - 2) * 4",
        "6 \\times 4 \\times (3 - 2)",
        "6 \\cdot 4 \\cdot (3 - 2)",
        "6 × 4 × (3 − 2)",
        "6 \\div (3 - 2) \\times 4",
        "6 ÷ (3 - 2) × 4",
        "\\frac{6}{3 - 2} \\times 4",
        "\\dfrac{6 \\times 4}{3 - 2}",
        "\\left(6 \\times 4\\right) \\times \\left(3 - 2\\right)",
        "{6 \\times 4} \\times {3 - 2}",
        "[6 * 4] * (3 - 2)",
        "$6 \\times 4 \\times (3 - 2)$",
        "6 * 4 * (3 - 2) = 24",
        "24 = 6 * 4 * (3 - 2)",
        "(3 - 2) * 4 * 6",
    ],
)
def test_the_checker_accepts_equivalent_forms(expression: str) -> None:
    verdict = check_expression(expression, NUMBERS, 24)
    assert verdict.correct, verdict.reason


@pytest.mark.parametrize("expression", ["8 / (3 - 8 / 3)", "\\frac{8}{3 - \\frac{8}{3}}"])
def test_the_checker_is_exact_through_fractions(expression: str) -> None:
    assert 8 / (3 - 8 / 3) != 24  # floating point would call the right answer wrong
    assert check_expression(expression, CLASSIC, 24).correct


@pytest.mark.parametrize(
    ("expression", "numbers", "reason"),
    [
        ("6 * 4 + 3 - 2", NUMBERS, "evaluates to 25, not 24"),
        ("6 * 4 / (3 + 2)", NUMBERS, "evaluates to 24/5, not 24"),
        ("6 * 6 - 4 * 3", NUMBERS, "uses 6 twice but it is given once; does not use 2"),
        ("6 * 4", NUMBERS, "does not use 2, 3"),
        ("(7 - 3) * 6 * (4 - 2) / 2", NUMBERS, "uses 7 which is not available"),
        ("6 / (2 - 2) * 3", [2, 2, 3, 6], "divides by zero"),
        ("6 * 4 * (3 - 2) = 25", NUMBERS, "states = 25, but the target is 24"),
        ("-(2 - 3) * 6 * 4", NUMBERS, "a sign on its own"),
        ("(6 - 4) ** 3 * 3", [6, 4, 3, 3], "uses \\*\\*; only \\+ - \\* / are allowed"),
        ("(6 - 4)^3 * 3", [6, 4, 3, 3], "uses \\^"),
        ("6 // 2 * 4 * 2", [6, 2, 4, 2], "uses //"),
        ("6 * 4.0 * (3 - 2)", NUMBERS, "4.0 is not a whole number"),
        ("6(4)(3 - 2)", NUMBERS, "not multiplication; write \\*"),
        ("I think the answer is 24", NUMBERS, "not an arithmetic expression: 'I' is not allowed"),
        ("__import__('os').system('true')", NUMBERS, "not an arithmetic expression"),
        ("().__class__", NUMBERS, "not an arithmetic expression"),
        ("6 * 4 = 24 = 24", NUMBERS, "expected one expression"),
        ("", NUMBERS, "not an arithmetic expression: it is empty"),
        ("6 * 4 * (3 - 2", NUMBERS, "cannot parse"),
        ("\\frac{6}", NUMBERS, "\\\\frac needs two \\{\\} groups"),
        ("24", NUMBERS, "uses 24 which is not available; does not use 2, 3, 4, 6"),
    ],
)
def test_the_checker_rejects_and_says_why(expression: str, numbers: list[int], reason: str) -> None:
    verdict = check_expression(expression, numbers, 24)
    assert not verdict.correct
    assert re.search(reason, verdict.reason), verdict.reason


def test_the_checker_never_evaluates_and_stays_cheap() -> None:
    huge = "9" * 5000 + " * 2"
    started = time.monotonic()
    verdict = check_expression(huge, NUMBERS, 24)
    assert not verdict.correct and f"longer than {MAX_EXPRESSION_CHARS}" in verdict.reason
    deep = "(" * 300 + "6" + ")" * 300 + " * 4 * (3 - 2)"
    assert not check_expression(deep, NUMBERS, 24).correct  # too deep for the parser: refused
    long_sum = " + ".join(["1"] * 200)
    assert check_expression(long_sum, [1] * 200, 200).correct
    assert time.monotonic() - started < 2.0


# --- grading ---------------------------------------------------------------------------------

PROBLEM = Problem(
    "countdown-x",
    "Use the numbers 2, 3, 4, 6 to make 24.",
    "6 * 4 * (3 - 2)",
    {"task": "countdown", "numbers": NUMBERS, "target": 24},
)


async def test_the_grader_uses_the_checker_for_countdown_problems() -> None:
    grader = Grader()
    other = await grader.grade("6 \\div (3 - 2) \\times 4", PROBLEM.answer, PROBLEM)
    assert other.correct is True and other.reason is None  # another valid expression is right
    cheat = await grader.grade("8 \\times 3", PROBLEM.answer, PROBLEM)
    assert cheat.correct is False and "uses 8 which is not available" in (cheat.reason or "")
    # without the problem, equivalence with the gold calls the right value right: the hook matters
    assert (await grader.grade("8 \\times 3", PROBLEM.answer)).correct is True
    missing = await grader.grade(None, PROBLEM.answer, PROBLEM)
    assert missing.correct is False and missing.reason == "no answer extracted"
    broken = Problem("b", "?", "1 + 2", {"task": "countdown", "numbers": "1 2", "target": 3})
    assert (await grader.grade("1 + 2", "1 + 2", broken)).correct is None
    plain = Problem("p", "What is 3 + 4?", "7", {"level": 1})
    assert (await grader.grade("7", "7", plain)).correct is True
    assert (await grader.grade("8", "7", plain)).correct is False


def _countdown_script(prompt: str, sampling: object) -> str:
    if "2, 3, 4, 6" in prompt:
        return "6 / (3 - 2) = 6, and 6 * 4 = 24, so \\boxed{6 / (3 - 2) \\times 4}"
    return "so \\boxed{8 \\times 3}"  # right value, wrong numbers


async def test_the_runner_grades_countdown_by_the_checker(tmp_path: Path) -> None:
    classic = Problem(
        "countdown-y",
        "Use the numbers 3, 3, 8, 8 to make 24.",
        "8 / (3 - 8 / 3)",
        {"task": "countdown", "numbers": CLASSIC, "target": 24},
    )
    runner = Runner(ScriptedGenerator(_countdown_script), BestOfN(n=2), tmp_path, progress=False)
    summary = await runner.run([PROBLEM, classic])
    records = {r["id"]: r for r in read_results(tmp_path / RESULTS)}
    assert records["countdown-x"]["correct"] is True
    assert records["countdown-y"]["correct"] is False
    assert "does not use 3, 8" in records["countdown-y"]["grade_reason"]
    assert summary["accuracy"] == pytest.approx(0.5)


# --- loading ---------------------------------------------------------------------------------


def test_countdown_through_load_problems(tmp_path: Path) -> None:
    assert "countdown" in DATASETS
    problems = load_problems(
        "countdown", data_dir=str(tmp_path), countdown={"n": 6, "numbers": 3, "seed": 2}
    )
    assert problems == generate_countdown(6, numbers=3, seed=2)
    assert len(load_problems("countdown")) == 30  # the generator's default n
    assert [p.id for p in load_problems("countdown", countdown={"n": 6}, limit=2)] == [
        "countdown-0000",
        "countdown-0001",
    ]
    assert len(load_problems("countdown", countdown={"n": 4}, levels=[4])) == 4
    with pytest.raises(ValueError, match=r"countdown: unknown options \['size'\]; valid: \["):
        load_problems("countdown", countdown={"size": 3})
    with pytest.raises(ValueError, match="countdown: numbers must be an integer"):
        load_problems("countdown", countdown={"numbers": 9})


def test_the_config_group_loads_its_options() -> None:
    from evals.experiment import load_from_config
    from reasoning.build import compose_config

    cfg = compose_config(["dataset=countdown", "dataset.countdown.n=3", "dataset.countdown.seed=4"])
    assert load_from_config(cfg) == generate_countdown(3, seed=4)
    assert len(load_from_config(compose_config(["dataset=countdown"]))) == 30
    bad = compose_config(["dataset=countdown", "+dataset.countdown.count=3"])
    with pytest.raises(ValueError, match=r"unknown options \['count'\]"):
        load_from_config(bad)


def test_a_countdown_jsonl_file_is_graded_by_the_checker_too(tmp_path: Path) -> None:
    path = tmp_path / "cd.jsonl"
    row = {"id": "a", "problem": "make 24", "answer": "6 * 4 * (3 - 2)", "task": "countdown"}
    path.write_text(json.dumps({**row, "numbers": NUMBERS, "target": 24}) + "\n")
    (problem,) = load_problems("mine", path=str(path))
    assert problem.metadata["task"] == "countdown" and problem.metadata["numbers"] == NUMBERS


# --- the leaderboard audit -------------------------------------------------------------------


def test_the_audit_skips_countdown_results_and_says_so(tmp_path: Path) -> None:
    # recorded right: a valid expression other than the gold (the gold here is make_run's "0"),
    # which plain math-verify would call wrong
    texts = ["so \\boxed{6 \\times 4 \\times (3 - 2)}", "so \\boxed{6 / (3 - 2) \\times 4}"]
    make_run(tmp_path / "cd", "r", [True, True], dataset="countdown", texts=texts)
    board = build_leaderboard([tmp_path / "cd"], tmp_path / "board", n_bootstrap=20)
    assert board.audit is not None and len(board.audit) == 0
    counts = board.audit_counts
    assert counts["disagree"] == 0 and counts["checked"] == 0 and counts["skipped"] == 2
    md = (tmp_path / "board" / "audit.md").read_text()
    assert "skipped 2 results" in md and "countdown" in md
    # the same results under a math dataset are disagreements: the skip is what prevents them
    make_run(tmp_path / "ar", "r", [True, True], dataset="arith", texts=texts)
    board = build_leaderboard([tmp_path / "ar"], tmp_path / "board2", n_bootstrap=20)
    assert board.audit_counts["disagree"] == 2 and board.audit_counts["skipped"] == 0


# --- APR's search traces: the path grader ------------------------------------------------------
# Hand-written in APR's trace format (Stream of Search lines); numbers 2, 3, 4, 6, target 24.

RIGHT_PATH = (
    "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 6], Operations: []\n"
    "Exploring Operation: 3-2=1, Resulting Numbers: [4, 6, 1]\n"
    "Generated Node #0,0: 24:[4, 6, 1] Operation: 3-2=1\n"
    "Moving to Node #0,0\nCurrent State: 24:[4, 6, 1], Operations: ['3-2=1']\n"
    "Exploring Operation: 6*4=24, Resulting Numbers: [1, 24]\n"
    "Exploring Operation: 24/1=24, Resulting Numbers: [24]\n"
    "24,24 equal: Goal Reached"
)


def _path(*operations: str, goal: str = "24,24 equal: Goal Reached") -> str:
    lines = [f"Exploring Operation: {op}, Resulting Numbers: [{nums}]" for op, nums in operations]
    return "\n".join(["Moving to Node #0", *lines, goal])


def test_a_right_path_replays_to_the_target() -> None:
    verdict = check_path(RIGHT_PATH, NUMBERS, 24)
    assert verdict.correct, verdict.reason
    assert check_answer(RIGHT_PATH, NUMBERS, 24).correct  # recognized as a path
    # the order of the resulting numbers is free, as in the reference
    assert check_path(
        _path(("6*4=24", "24, 2, 3"), ("3-2=1", "24, 1"), ("24*1=24", "24")), NUMBERS, 24
    ).correct
    # exact division is allowed; the first line with the mark decides, later lines are not read
    divided = _path(
        ("6/3=2", "2, 4, 2"), ("2+4=6", "2, 6"), ("6/2=3", "3"), goal="3,3 equal: Goal Reached"
    )
    assert check_path(
        divided + "\nExploring Operation: 9-9=0, Resulting Numbers: [0]", NUMBERS, 3
    ).correct


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (  # wrong arithmetic
            _path(("6*4=25", "2, 3, 25"), ("3-2=1", "25, 1"), ("25-1=24", "24")),
            r"operation 1 \(6\*4=25\): 6\*4 is 24, not 25",
        ),
        (  # a number that is not in the state
            _path(("6*4=24", "2, 3, 24"), ("8-7=1", "24, 1"), ("24*1=24", "24")),
            r"operation 2 \(8-7=1\): 8 is not available in \[2, 3, 24\]",
        ),
        (  # a number used twice: only one 2 is given
            _path(("2*2=4", "3, 4, 6, 4")),
            r"operation 1 \(2\*2=4\): 2 is not available in \[2, 3, 4, 6\]",
        ),
        (  # a number reused after it was consumed
            _path(("6*4=24", "2, 3, 24"), ("6-2=4", "3, 24, 4")),
            r"operation 2 \(6-2=4\): 6 is not available in \[2, 3, 24\]",
        ),
        (  # resulting numbers that do not follow
            _path(("6*4=24", "24, 1")),
            r"operation 1 \(6\*4=24\): leaves \[2, 3, 24\], but the trace says \[1, 24\]",
        ),
        (  # the target missed, though the model says it is reached
            _path(("6*4=24", "2, 3, 24"), ("3-2=1", "24, 1"), ("24-1=23", "23")),
            r"'Goal Reached' with numbers \[23\], not the target 24",
        ),
        (  # the goal declared with numbers left over
            _path(("6*4=24", "2, 3, 24")),
            r"'Goal Reached' with numbers \[2, 3, 24\], not the target 24",
        ),
        (  # inexact division
            _path(("6/4=1", "2, 3, 1")),
            r"operation 1 \(6/4=1\): 6/4 is 3/2, not 1",
        ),
        (_path(("6/0=0", "0"), goal=""), r"divides by zero"),
        (_path(("6*4=24", "2, 3, 24"), goal="no luck"), "no 'Goal Reached' line in the path"),
        (_path(("6*4=24", "2, 3, x")), "unreadable resulting numbers"),
    ],
)
def test_a_wrong_path_is_wrong_and_says_which_operation(path: str, reason: str) -> None:
    numbers = [6, 0, 2] if "6/0" in path else NUMBERS
    verdict = check_path(path, numbers, 24)
    assert not verdict.correct
    assert re.search(reason, verdict.reason), verdict.reason


def test_the_solution_of_a_trace_is_after_its_second_to_last_goal() -> None:
    search = "Exploring Operation: 2*3=6, Resulting Numbers: [4, 6, 6]\n6,24 unequal\n"
    found = "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n24,24 equal: Goal Reached\n"
    trace = search + found + RIGHT_PATH + "\n"
    assert trace_solution(trace) == RIGHT_PATH
    assert trace_solution(found) is None  # one mark: no replayed path
    assert trace_solution("so \\boxed{6 * 4 * (3 - 2)}") is None
    # every mark counts, a join's "<Goal Reached in Sub Search ...>" line too (the reference's
    # str.count): the path then starts inside that line
    joined = "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n" + RIGHT_PATH
    assert trace_solution(joined) == "in Sub Search 0 at level 1 at Node #0,0>\n" + RIGHT_PATH


def _reference_path(expression: str, numbers: list[int]) -> tuple[str, list[str]]:
    """An APR-format path that performs `expression`'s operations bottom-up from `numbers`
    (a generator's reference, whose intermediates are positive integers), and its op texts."""
    state, lines, ops = list(numbers), ["Moving to Node #0"], []

    def walk(node: ast.expr) -> int:
        if isinstance(node, ast.Constant):
            return int(node.value)
        assert isinstance(node, ast.BinOp)
        a, b = walk(node.left), walk(node.right)
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[symbol]
        state.remove(a)
        state.remove(b)
        state.append(value)
        ops.append(f"{a}{symbol}{b}={value}")
        lines.append(f"Exploring Operation: {ops[-1]}, Resulting Numbers: {state}")
        return value

    result = walk(ast.parse(expression, mode="eval").body)
    lines.append(f"{result},{result} equal: Goal Reached")
    return "\n".join(lines), ops


@pytest.mark.parametrize("count", [2, 4, 6])
def test_paths_of_the_reference_solutions_replay_and_any_broken_step_does_not(count: int) -> None:
    """The path grader agrees with the expression checker on every generated problem: the
    reference solution as a path is right; a wrong result in any one step is wrong."""
    for p in generate_countdown(40, numbers=count, seed=10 + count):
        numbers, target = p.metadata["numbers"], p.metadata["target"]
        path, ops = _reference_path(p.answer or "", numbers)
        verdict = check_path(path, numbers, target)
        assert verdict.correct, (p.id, path, verdict.reason)
        for i, op in enumerate(ops):
            broken = path.replace(f"Operation: {op},", f"Operation: {op}1,", 1)
            assert not check_path(broken, numbers, target).correct, (p.id, i, broken)


APR_TRACE = (
    "\nExploring Operation: 6*4=24, Resulting Numbers: [2, 3, 24]\n"
    "Generated Node #0,0: 24:[2, 3, 24] Operation: 6*4=24\n"
    "Exploring Operation: 3-2=1, Resulting Numbers: [24, 1]\n"
    "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n"
    "24,24 equal: Goal Reached\n" + RIGHT_PATH + "\n"
)


async def test_a_trained_apr_root_output_is_graded_by_its_path() -> None:
    judge = Grader().for_problem(PROBLEM)
    answer = judge.extract(APR_TRACE)
    assert answer == RIGHT_PATH  # the trace's path, not a boxed expression (there is none)
    grade = await Grader().grade(answer, PROBLEM.answer, PROBLEM)
    assert grade.correct is True and grade.reason is None
    wrong = APR_TRACE.replace("24/1=24, Resulting Numbers: [24]", "24/1=24, Resulting Numbers: [1]")
    bad = await Grader().grade(judge.extract(wrong), PROBLEM.answer, PROBLEM)
    assert bad.correct is False and "leaves [24], but the trace says [1]" in (bad.reason or "")


async def test_the_runner_scores_an_apr_trace_as_apr_does(tmp_path: Path) -> None:
    # what a trained APR model writes: no \boxed{}, a search trace ending in its replayed path
    runner = Runner(ScriptedGenerator([APR_TRACE]), BestOfN(n=1), tmp_path, progress=False)
    summary = await runner.run([PROBLEM])
    (record,) = read_results(tmp_path / RESULTS)
    assert record["correct"] is True, record.get("grade_reason")
    assert summary["accuracy"] == 1.0


# --- votes: every valid expression is one answer, never merged with a wrong one ---------------


async def test_the_countdown_judge_merges_valid_answers_only() -> None:
    judge = Grader().for_problem(PROBLEM)
    assert isinstance(judge, CountdownJudge)
    assert Grader().for_problem(Problem("p", "1 + 1?", "2")).__class__ is Grader
    assert await judge.equivalent("6 * 4 * (3 - 2)", "\\frac{6}{3 - 2} \\times 4") is True
    assert await judge.equivalent("6 * 4 * (3 - 2)", RIGHT_PATH) is True  # a path and a box
    assert await judge.equivalent("8 \\times 3", "6 * 4 * (3 - 2)") is False  # wrong numbers
    assert await judge.equivalent("6 * 4 * (3 - 2)", "8 \\times 3") is False
    assert await judge.equivalent("2 + 3 + 4 + 6", "2 + 3 + 4 + 6") is True  # the same wrong one
    assert await judge.equivalent(None, "6 * 4 * (3 - 2)") is False
    # without the problem, the value decides: the wrong numbers pass as the same answer
    assert await Grader().equivalent("8 \\times 3", "6 * 4 * (3 - 2)") is True


_VOTES = [
    "so \\boxed{8 \\times 3}",  # 24 with numbers that are not given
    "so \\boxed{2 + 3 + 4 + 6}",
    "so \\boxed{2 + 3 + 4 + 6}",
    "so \\boxed{6 \\times 4 \\times (3 - 2)}",
    "so \\boxed{\\frac{6}{3 - 2} \\times 4}",
    "so \\boxed{(3 - 2) \\times 4 \\times 6}",
]


async def test_best_of_n_majority_counts_valid_expressions_as_one_vote(tmp_path: Path) -> None:
    runner = Runner(ScriptedGenerator(_VOTES), BestOfN(n=6), tmp_path, progress=False)
    await runner.run([PROBLEM])
    (record,) = read_results(tmp_path / RESULTS)
    # three different valid expressions are one answer with 3 votes; "8 \times 3" (the same
    # value, the wrong numbers) is not among them, so it neither wins nor lends them its vote
    assert record["votes"] == {
        "8 \\times 3": 1.0,
        "2 + 3 + 4 + 6": 2.0,
        "6 \\times 4 \\times (3 - 2)": 3.0,
    }
    assert record["correct"] is True
