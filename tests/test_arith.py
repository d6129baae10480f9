"""The built-in arithmetic set: deterministic, correct by independent recomputation, graded."""

from __future__ import annotations

import ast
import operator
import re
import statistics
from collections import Counter
from collections.abc import Callable

import pytest

from evals.arith import LEVELS, add, evaluate, generate_arith, mul, render, sub
from reasoning.types import Problem

_OPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def safe_eval(text: str) -> int:
    """An independent check of the generator: integers, + - * and parentheses, nothing else.

    It also fails on a negative intermediate result, which the generator promises never to have.
    """

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            value = _OPS[type(node.op)](walk(node.left), walk(node.right))
            assert value >= 0, f"negative intermediate in {text!r}"
            return value
        raise ValueError(f"unsupported syntax in {text!r}: {ast.dump(node)}")

    return walk(ast.parse(text, mode="eval"))


def _numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def _n_ops(expression: str) -> int:
    return len(re.findall(r"[-+*]", expression))


def _by_level(problems: list[Problem]) -> dict[int, list[Problem]]:
    out: dict[int, list[Problem]] = {}
    for p in problems:
        out.setdefault(p.metadata["level"], []).append(p)
    return out


@pytest.fixture(scope="module")
def big() -> dict[int, list[Problem]]:
    return _by_level(generate_arith(n=1000, levels=LEVELS, seed=3))


def test_safe_eval_rejects_anything_but_arithmetic() -> None:
    assert safe_eval("(2 + 3) * 4 - 1") == 19
    for bad in ("2 / 1", "__import__('os')", "2 ** 3", "x + 1"):
        with pytest.raises(ValueError):
            safe_eval(bad)


def test_deterministic_for_a_seed() -> None:
    assert generate_arith(n=30, levels=LEVELS, seed=7) == generate_arith(
        n=30, levels=LEVELS, seed=7
    )
    a = generate_arith(n=30, levels=LEVELS, seed=7)
    b = generate_arith(n=30, levels=LEVELS, seed=8)
    assert [p.question for p in a] != [p.question for p in b]
    assert all(p.metadata["seed"] == 7 for p in a)


def test_ids_are_stable_across_n_and_level_mixes() -> None:
    """An id names one problem: growing `n` or adding levels must not change it."""
    alone = generate_arith(n=6, levels=[3], seed=1)
    mixed = [p for p in generate_arith(n=40, levels=[1, 3, 5], seed=1) if p.metadata["level"] == 3]
    assert mixed[:6] == alone
    assert generate_arith(n=10, seed=1)[:4] == generate_arith(n=4, seed=1)


def test_round_robin_over_levels() -> None:
    problems = generate_arith(n=11, levels=[2, 4, 1], seed=0)
    assert [p.metadata["level"] for p in problems] == [2, 4, 1] * 3 + [2, 4]
    assert Counter(p.metadata["level"] for p in problems) == {2: 4, 4: 4, 1: 3}
    assert generate_arith(n=0) == []
    assert [p.metadata["level"] for p in generate_arith()] == [1] * 20


def test_ids_unique_and_well_formed(big: dict[int, list[Problem]]) -> None:
    problems = [p for level in big.values() for p in level]
    assert len({p.id for p in problems}) == len(problems)
    for level, items in big.items():
        assert [p.id for p in items] == [f"arith-L{level}-{i:04d}" for i in range(len(items))]


def test_answers_match_an_independent_evaluation(big: dict[int, list[Problem]]) -> None:
    for items in big.values():
        for p in items:
            assert isinstance(p.answer, str) and re.fullmatch(r"\d+", p.answer), p
            assert int(p.answer) == safe_eval(p.metadata["expression"]), p
            assert p.metadata["source"] == "arith"


def test_questions_state_the_expression(big: dict[int, list[Problem]]) -> None:
    for level in (1, 2, 3, 4):
        for p in big[level]:
            latex = p.metadata["expression"].replace("*", "\\times")
            assert p.question == f"What is {latex}?"
    for p in big[5]:
        # Every number the answer is computed from is printed in the word problem.
        missing = Counter(_numbers(p.metadata["expression"])) - Counter(_numbers(p.question))
        assert not missing, p


def test_level_shapes(big: dict[int, list[Problem]]) -> None:
    for p in big[1]:
        a, b = _numbers(p.metadata["expression"])
        assert p.metadata["expression"] == f"{a} + {b}" and 1 <= a <= 9 and 1 <= b <= 9
    for p in big[2]:
        assert _n_ops(p.metadata["expression"]) == 1
        assert all(10 <= x <= 99 for x in _numbers(p.metadata["expression"]))
    for p in big[3]:
        expression = p.metadata["expression"]
        assert _n_ops(expression) == 2 and "*" in expression and "(" not in expression
        factors = re.search(r"(\d+) \* (\d+)", expression)
        assert factors and all(int(x) <= 9 for x in factors.groups())
    for p in big[4]:
        assert _n_ops(p.metadata["expression"]) in (3, 4) and "(" in p.metadata["expression"]
    for p in big[5]:
        assert _n_ops(p.metadata["expression"]) >= 3
        assert not p.question.startswith("What is")


def test_level1_is_really_easy_and_not_repetitive() -> None:
    problems = generate_arith(n=40, levels=[1], seed=0)
    assert all(int(p.answer) <= 18 for p in problems)
    assert len({p.question for p in problems}) == 40


def test_word_problems_vary(big: dict[int, list[Problem]]) -> None:
    shapes = {re.sub(r"\d+", "#", p.question) for p in big[5]}
    first_words = {p.question.split()[0] for p in big[5]}
    assert len(shapes) >= 30
    assert len(first_words) >= 10  # several templates and names


def test_difficulty_grows_with_level(big: dict[int, list[Problem]]) -> None:
    def work(p: Problem) -> int:
        """Operations plus digits written: what a solver must read and combine."""
        expression = p.metadata["expression"]
        return _n_ops(expression) + sum(len(str(x)) for x in _numbers(expression))

    mean_work = [statistics.mean(work(p) for p in big[lv]) for lv in LEVELS]
    assert mean_work == sorted(mean_work) and len(set(mean_work)) == len(LEVELS), mean_work
    digits = {lv: statistics.mean(len(p.answer) for p in big[lv]) for lv in LEVELS}
    assert digits[1] < digits[2] < digits[4], digits
    assert digits[1] < digits[5], digits
    ops = [statistics.mean(_n_ops(p.metadata["expression"]) for p in big[lv]) for lv in LEVELS]
    assert ops == sorted(ops), ops


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": [0]}, "unknown levels"),
        ({"levels": [6]}, "unknown levels"),
        ({"levels": []}, "must not be empty"),
        ({"levels": [1, 1]}, "duplicate"),
        ({"n": -1}, "non-negative"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_arith(**kwargs)


def test_expression_tree_helpers() -> None:
    assert render(sub(10, sub(5, 2))) == "10 - (5 - 2)"
    assert render(mul(add(1, 2), 3)) == "(1 + 2) * 3"
    assert render(add(1, mul(2, 3)), times="\\times") == "1 + 2 \\times 3"
    assert render(sub(sub(9, 2), 3)) == "9 - 2 - 3"
    assert evaluate(mul(add(1, 2), sub(7, 3))) == 12
    with pytest.raises(ValueError):
        evaluate(sub(2, 5))
