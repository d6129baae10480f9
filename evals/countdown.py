"""Countdown, the task of APR (Adaptive Parallel Reasoning): reach a target from a few numbers.

Each problem gives `numbers` integers and a target; the model writes one expression that uses
every number exactly once, with + - * / and parentheses, and equals the target. It is the
Stream-of-Search Countdown task that APR trains and evaluates on: a search problem with many
valid answers, so it is graded by checking the model's expression (`check_expression`), or
the solution path of an APR search trace (`check_path`), never by comparing it with the
reference solution; `CountdownJudge` makes votes count what grading counts.

The generator is offline and seeded like `evals.arith`. A problem is built forwards from a
random expression tree over the drawn numbers, so it always has a solution (the reference
answer), and every intermediate value of that tree is a positive integer (subtraction only when
the result stays positive, division only when exact), so a small model can follow it step by
step. The defaults follow Stream of Search: numbers from 1 to 99, targets from 10 to 100.

The checker parses with `ast` (nothing is ever evaluated by Python) and computes with
`fractions.Fraction`, so `7 / 2 * 2` is exactly 7. Only the final value must be the target: a
model's own route may pass through fractions or zero. A sign on its own (`-3 + 27`) is refused,
because negation is not one of the four operations.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from evals.arith import BinOp, Expr, render
from evals.extraction import clean_text, match_brace
from reasoning.types import Problem

TASK = "countdown"
MIN_NUMBERS, MAX_NUMBERS = 2, 6
MAX_EXPRESSION_CHARS = 1000  # longer "expressions" are refused unparsed: parsing stays cheap
_MAX_TRIES = 20000  # draws per problem before giving up (a too narrow target range)

# --- the generator ---------------------------------------------------------------------------


def _combine(rng: random.Random, a: tuple[int, Expr], b: tuple[int, Expr]) -> tuple[int, Expr]:
    """One random operation on two values whose result is a positive integer."""
    (x, ex), (y, ey) = a, b
    options: list[tuple[int, Expr]] = [(x + y, BinOp("+", ex, ey)), (x * y, BinOp("*", ex, ey))]
    if x > y:
        options.append((x - y, BinOp("-", ex, ey)))
    if x % y == 0:
        options.append((x // y, BinOp("/", ex, ey)))
    return rng.choice(options)


def _draw(rng: random.Random, count: int, max_number: int) -> tuple[list[int], int, Expr]:
    """Numbers in draw order (never in solution order: the question must not leak the tree),
    the value of a random tree over them, and the tree."""
    numbers = [rng.randint(1, max_number) for _ in range(count)]
    pool: list[tuple[int, Expr]] = [(v, v) for v in numbers]
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        merged = _combine(rng, pool[i], pool[j])
        pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [merged]
    value, expr = pool[0]
    return numbers, value, expr


def _question(numbers: list[int], target: int) -> str:
    return (
        f"Use the numbers {', '.join(map(str, numbers))} to make {target}. Use each number "
        "exactly once, and only +, -, *, / and parentheses. Give the final expression in "
        "\\boxed{}."
    )


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bound = f">= {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"countdown: {name} must be an integer {bound}, got {value!r}")


def generate_countdown(
    n: int = 30,
    numbers: int = 4,
    seed: int = 0,
    max_number: int = 99,
    min_target: int = 10,
    max_target: int = 100,
) -> list[Problem]:
    """`n` distinct problems of `numbers` numbers (1..`max_number`) and a target in
    [`min_target`, `max_target`], identical for identical arguments.

    Problems are drawn in sequence from one `random.Random` seeded from (`seed`, `numbers`), so
    `countdown-0004` is the same whatever `n` is. A draw whose value falls outside the target
    range, or that repeats an earlier problem's numbers and target, is drawn again.
    """
    _check_int("n", n, 0)
    _check_int("numbers", numbers, MIN_NUMBERS, MAX_NUMBERS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"countdown: seed must be an integer, got {seed!r}")
    _check_int("max_number", max_number, 1)
    _check_int("min_target", min_target, 1)
    _check_int("max_target", max_target, min_target)

    rng = random.Random(f"countdown:{seed}:{numbers}")
    seen: set[tuple[tuple[int, ...], int]] = set()
    problems: list[Problem] = []
    for i in range(n):
        for _ in range(_MAX_TRIES):
            drawn, target, expr = _draw(rng, numbers, max_number)
            key = (tuple(sorted(drawn)), target)
            if min_target <= target <= max_target and key not in seen:
                break
        else:
            raise ValueError(
                f"countdown: no new problem in {_MAX_TRIES} draws after {i}; lower n or widen "
                f"min_target..max_target ({min_target}..{max_target}) or max_number"
            )
        seen.add(key)
        problems.append(
            Problem(
                id=f"countdown-{i:04d}",
                question=_question(drawn, target),
                answer=render(expr),
                metadata={
                    "task": TASK,
                    "numbers": drawn,
                    "target": target,
                    "level": numbers,
                    "source": TASK,
                    "seed": seed,
                },
            )
        )
    return problems


# --- the checker -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CountdownVerdict:
    """Whether an expression solves a problem, and what is wrong with it when it does not."""

    correct: bool
    reason: str


class _Refused(ValueError):
    """The text is not an expression the checker reads; the message says why."""


_LATEX_SIZING_RE = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])")
_MATH_DELIMITER_RE = re.compile(r"\\[()\[\]]|\$")
_LATEX_SPACE_RE = re.compile(r"\\(?:[,;:! ]|q?quad(?![A-Za-z]))")
_LATEX_TIMES_RE = re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])")
_LATEX_DIV_RE = re.compile(r"\\div(?![A-Za-z])")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac(?![A-Za-z])")
_SYMBOLS = str.maketrans(
    {"×": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "∕": "/", "[": "(", "]": ")"}
)
_ALLOWED = frozenset("0123456789+-*/().= \t\r\n")
_INTEGER_RE = re.compile(r"\s*\d+\s*")
_OPERATIONS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
}


def _fracs(text: str) -> str:
    """`\\frac{a}{b}` as `((a)/(b))`, nested ones too."""
    out: list[str] = []
    i = 0
    while (m := _LATEX_FRAC_RE.search(text, i)) is not None:
        out.append(text[i : m.start()])
        j = m.end()
        parts: list[str] = []
        for _ in range(2):
            while j < len(text) and text[j].isspace():
                j += 1
            end = match_brace(text, j) if j < len(text) and text[j] == "{" else -1
            if end < 0:
                raise _Refused("\\frac needs two {} groups")
            parts.append(_fracs(text[j + 1 : end]))
            j = end + 1
        out.append(f"(({parts[0]})/({parts[1]}))")
        i = j
    out.append(text[i:])
    return "".join(out)


def _plain(text: str) -> str:
    """The LaTeX and unicode forms models write, as plain `+ - * / ( )` text."""
    text = clean_text(text)
    text = _LATEX_SIZING_RE.sub("", text)
    text = _MATH_DELIMITER_RE.sub("", text)
    text = _LATEX_SPACE_RE.sub(" ", text)
    text = _LATEX_TIMES_RE.sub("*", text)
    text = _LATEX_DIV_RE.sub("/", text)
    text = _fracs(text)
    return text.translate(_SYMBOLS).replace("{", "(").replace("}", ")")


def _split_claim(text: str) -> tuple[str, int | None]:
    """The expression and the value it claims: `E = 24` or `24 = E`; one `=` at most."""
    parts = text.split("=")
    if len(parts) == 1:
        return text, None
    if len(parts) == 2:
        left, right = parts
        if _INTEGER_RE.fullmatch(right):
            return left, int(right)
        if _INTEGER_RE.fullmatch(left):
            return right, int(left)
    raise _Refused("expected one expression, optionally with '= target'")


def _parse(text: str) -> ast.expr:
    if "^" in text:
        raise _Refused("uses ^; only + - * / are allowed")
    bad = next((c for c in text if c not in _ALLOWED), None)
    if bad is not None:
        raise _Refused(f"{bad!r} is not allowed")
    if not text.strip():
        raise _Refused("it is empty")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _Refused(f"cannot parse {text.strip()[:80]!r}") from None


def _literals(node: ast.expr, out: list[int]) -> None:
    """The integers of `node` in order; refuses anything but integers and the four operations."""
    if isinstance(node, ast.Constant):
        if type(node.value) is int:
            out.append(node.value)
            return
        raise _Refused(f"{node.value!r} is not a whole number")
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATIONS:
            symbol = {ast.Pow: "**", ast.FloorDiv: "//"}.get(type(node.op), type(node.op).__name__)
            raise _Refused(f"uses {symbol}; only + - * / are allowed")
        _literals(node.left, out)
        _literals(node.right, out)
        return
    if isinstance(node, ast.UnaryOp):
        raise _Refused("a sign on its own (like -3) is not allowed; only + - * / between numbers")
    if isinstance(node, ast.Call):
        raise _Refused("a number next to '(' is not multiplication; write *")
    raise _Refused(f"{type(node).__name__} is not allowed")


def _value(node: ast.expr) -> Fraction:
    """Exact value of a tree `_literals` accepted; ZeroDivisionError on division by zero."""
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp)
    left, right = _value(node.left), _value(node.right)
    op = _OPERATIONS[type(node.op)]
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left / right


def _times(k: int) -> str:
    return {1: "once", 2: "twice"}.get(k, f"{k} times")


def _number_problems(used: list[int], given: Iterable[int]) -> list[str]:
    have, want = Counter(used), Counter(given)
    problems = []
    for v in sorted(have):
        if v not in want:
            problems.append(f"uses {v} which is not available")
        elif have[v] > want[v]:
            problems.append(f"uses {v} {_times(have[v])} but it is given {_times(want[v])}")
    missing = sorted((want - have).elements())
    if missing:
        problems.append(f"does not use {', '.join(map(str, missing))}")
    return problems


def check_expression(expression: str, numbers: Iterable[int], target: int) -> CountdownVerdict:
    """Whether `expression` uses exactly the multiset `numbers` (each once, all of them: the
    Stream-of-Search rule APR uses) with + - * / and parentheses, and equals `target` exactly.

    Accepts `\\times`, `\\cdot`, `×`, `\\div`, `÷`, `\\frac{a}{b}`, `\\left(`/`\\right)`, `{}`
    and `[]` as grouping, `$` delimiters, and a trailing `= target` or leading `target =`.
    Never raises on odd input; the reason names the first thing wrong.
    """
    numbers = list(numbers)
    if len(expression) > MAX_EXPRESSION_CHARS:
        return CountdownVerdict(
            False, f"not an arithmetic expression: longer than {MAX_EXPRESSION_CHARS} characters"
        )
    try:
        text, claimed = _split_claim(_plain(expression))
        node = _parse(text)
        used: list[int] = []
        _literals(node, used)
    except (_Refused, RecursionError) as exc:
        why = str(exc) if isinstance(exc, _Refused) else "nested too deeply"
        return CountdownVerdict(False, f"not an arithmetic expression: {why}")
    problems = _number_problems(used, numbers)
    if problems:
        return CountdownVerdict(False, "; ".join(problems))
    try:
        value = _value(node)
    except ZeroDivisionError:
        return CountdownVerdict(False, "divides by zero")
    if value != target:
        return CountdownVerdict(False, f"evaluates to {value}, not {target}")
    if claimed is not None and claimed != target:
        return CountdownVerdict(False, f"states = {claimed}, but the target is {target}")
    return CountdownVerdict(True, f"uses each number once and equals {target}")


def countdown_spec(metadata: Mapping[str, Any]) -> tuple[list[int], int] | None:
    """(numbers, target) of a countdown problem's metadata; None when it is not one or they
    are malformed (a hand-written JSONL row, say)."""
    if metadata.get("task") != TASK:
        return None
    numbers, target = metadata.get("numbers"), metadata.get("target")
    ints = isinstance(numbers, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in numbers
    )
    if not ints or not numbers or isinstance(target, bool) or not isinstance(target, int):
        return None
    return list(numbers), target


# --- APR's search traces ---------------------------------------------------------------------
#
# A model trained on APR's format (Stream of Search traces) writes no expression: it searches,
# writes `Exploring Operation: 79-27=52, Resulting Numbers: [5, 50, 52]` lines and, when a state
# reaches the target, `52,52 equal: Goal Reached`; then it writes the path to that state again,
# ending in a second `Goal Reached`. APR's evaluator (Parallel-Reasoning/APR,
# src/eval/parallel_infernce_utils.py `get_search_result` and `check_solution`) takes the text
# after the second-to-last `Goal Reached` as the solution and replays its operations from the
# problem's numbers. `trace_solution` and `check_path` give the same verdicts on that format.

GOAL = "Goal Reached"
EXPLORING = "Exploring Operation:"
MAX_PATH_CHARS = 200_000  # longer "paths" are refused unread: replaying stays cheap
_OPERATION_RE = re.compile(
    r"Exploring Operation:\s*(\d+)([-+*/])(\d+)=(\d+),\s*Resulting Numbers:\s*\[(.*?)\]"
)


def trace_solution(text: str) -> str | None:
    """The solution path of an APR search trace: the text after its second-to-last
    `Goal Reached` (less the mark and the one character after it), or None with fewer than
    two marks. Every occurrence counts, a join's `<Goal Reached in Sub Search ...>` lines
    included, as in the reference."""
    last = text.rfind(GOAL)
    before = text.rfind(GOAL, 0, last) if last >= 0 else -1
    if before < 0:
        return None
    return text[before:].strip()[len(GOAL) + 1 :]


def is_path(answer: str) -> bool:
    """Whether an answer is an APR solution path (graded by `check_path`), not an expression."""
    return GOAL in answer or EXPLORING in answer


def _ints(raw: str) -> list[int] | None:
    parts = [p.strip() for p in raw.split(",")] if raw.strip() else []
    if not all(re.fullmatch(r"-?\d{1,100}", p) for p in parts):
        return None
    return [int(p) for p in parts]


def _apply(x: int, op: str, y: int) -> Fraction | None:
    """`x op y` exactly; None for a division by zero."""
    if op == "+":
        return Fraction(x + y)
    if op == "-":
        return Fraction(x - y)
    if op == "*":
        return Fraction(x * y)
    return None if y == 0 else Fraction(x, y)


def _listed(values: Iterable[int]) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


def check_path(solution: str, numbers: Iterable[int], target: int) -> CountdownVerdict:
    """APR's `check_solution` verdict on a solution path, with the reason when it is wrong.

    Line by line: every `Exploring Operation: a?b=c, Resulting Numbers: [...]` must take `a`
    and `b` from the numbers of the current state (once each), compute `c` exactly (`/` only
    when exact), and leave exactly the stated numbers (in any order), which become the state;
    the first line holding `Goal Reached` decides: right when the state is the target alone.
    Other lines (`Moving to Node`, `Current State`) are not read. No mark: wrong.
    """
    if len(solution) > MAX_PATH_CHARS:
        return CountdownVerdict(False, f"not a search path: longer than {MAX_PATH_CHARS} chars")
    state = list(numbers)
    step = 0
    for line in solution.splitlines():
        line = line.strip()
        m = _OPERATION_RE.search(line)
        if m is not None:
            step += 1
            x_raw, op, y_raw, z_raw, listed = m.groups()
            where = f"operation {step} ({x_raw}{op}{y_raw}={z_raw})"
            if max(len(x_raw), len(y_raw), len(z_raw)) > 100:
                return CountdownVerdict(False, f"{where}: a number of over 100 digits")
            x, y, z = int(x_raw), int(y_raw), int(z_raw)
            stated = _ints(listed)
            if stated is None:
                return CountdownVerdict(False, f"{where}: unreadable resulting numbers")
            left = list(state)
            for v in (x, y):
                if v not in left:
                    return CountdownVerdict(
                        False, f"{where}: {v} is not available in {_listed(state)}"
                    )
                left.remove(v)
            value = _apply(x, op, y)
            if value is None:
                return CountdownVerdict(False, f"{where}: divides by zero")
            if value != z:
                return CountdownVerdict(False, f"{where}: {x}{op}{y} is {value}, not {z}")
            left.append(z)
            if sorted(left) != sorted(stated):
                return CountdownVerdict(
                    False,
                    f"{where}: leaves {_listed(sorted(left))}, but the trace says "
                    f"{_listed(sorted(stated))}",
                )
            state = stated
        if GOAL in line:
            if state == [target]:
                return CountdownVerdict(True, f"the path's {step} operations reach {target}")
            return CountdownVerdict(
                False, f"'{GOAL}' with numbers {_listed(state)}, not the target {target}"
            )
    return CountdownVerdict(False, f"no '{GOAL}' line in the path")


def check_answer(answer: str, numbers: Iterable[int], target: int) -> CountdownVerdict:
    """The verdict on a Countdown answer: an APR solution path is replayed (`check_path`),
    anything else is checked as one expression (`check_expression`)."""
    if is_path(answer):
        return check_path(answer, numbers, target)
    return check_expression(answer, numbers, target)


# --- the problem-aware judge -----------------------------------------------------------------


class CountdownJudge:
    """An `AnswerJudge` bound to one Countdown problem, so votes count what grading counts.

    Extraction: an APR search trace gives its solution path (`trace_solution`), the answer the
    reference grades; any other text goes to the base judge (a boxed expression). Equivalence:
    two answers that solve this problem are one answer however they are written; an answer that
    does not is never equal to one that does; two that do not are compared by the base judge
    (paths: by their text).
    """

    def __init__(self, base: Any, numbers: Iterable[int], target: int) -> None:
        self.base = base
        self.numbers = tuple(numbers)
        self.target = target
        self.name = getattr(base, "name", type(base).__name__)

    def extract(self, text: str) -> str | None:
        path = trace_solution(text)
        return path if path is not None else self.base.extract(text)

    def solves(self, answer: str) -> bool:
        return check_answer(answer, self.numbers, self.target).correct

    async def equivalent(self, a: str | None, b: str | None) -> bool | None:
        if a is None or b is None:
            return False
        right_a, right_b = self.solves(a), self.solves(b)
        if right_a or right_b:
            return right_a and right_b
        if is_path(a) or is_path(b):
            return a.strip() == b.strip()
        return await self.base.equivalent(a, b)

    def __repr__(self) -> str:
        return f"CountdownJudge({self.base!r}, numbers={list(self.numbers)}, target={self.target})"
