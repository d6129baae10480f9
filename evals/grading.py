"""Equivalence grading for math benchmarks (MATH500, AIME, AMC): the grader itself.

One function decides equivalence for both voting clusters and final grading, so a vote can never
be counted as "the same answer" by one rule and graded by another.

The cascade is cheap first: two bare answers (`3/4`, `x \\geq 5`, not prose) are normalised and
compared as strings and plain numbers in-process (`evals.normalization`). Texts that hold an answer
(`so $y \\le 4$ holds`, a whole solution with boxes) and what the fast path cannot decide go to a
sandboxed worker process (`evals.verify_workers`), where math-verify extracts and compares.
Decided results are cached here. Workers are spawned without the caller's `__main__`, so scripts
and notebooks grade without an `if __name__ == "__main__":` guard.

Cost is bounded: only short inputs (`LOCAL_MAX_CHARS`) are graded in the caller's thread, in
linear time; longer ones go straight to a worker, under its deadline, so an absurd prediction
never blocks the event loop that drives generation. A verdict is True, False, or None with a
reason (`grade_answer`): timed out, too long to grade, malformed gold. A malformed prediction
(`3+`, `1+__import__('os')`) is never equal to anything but itself, and a box that holds prose
(`\\boxed{3 then we would need more steps}`) is no answer: extraction finds none in its text, and
a text graded whole is wrong with that reason.

Tasks with many right answers are not graded by equivalence to the gold: `Grader.grade` sends a
problem whose metadata says `task: countdown` to the exact expression checker of
`evals.countdown`, where any expression that reaches the target with the given numbers is right.
"""

from __future__ import annotations

import functools
import importlib.metadata
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evals.countdown import TASK as COUNTDOWN
from evals.countdown import CountdownJudge, check_answer, countdown_spec
from evals.extraction import clean_text, extract_answer, extract_answer_with_rule, is_bare_answer
from evals.normalization import fast_path, normalize_answer
from evals.verify_workers import (
    OUTER_GRACE_S,
    mv_worker,
    run_guarded,
    run_guarded_async,
    shutdown,
    timed_out,
)

if TYPE_CHECKING:
    from reasoning.types import Problem

GRADER_NAME = "reasoning-grader"
# 2: texts graded by their answer, boxes joined, decimal commas.
# 3: malformed answers never equal, unicode minus signs and zero-width characters, bounded cost.
# 4: a box that holds prose (`\boxed{3 then we would need more steps}`) is no answer.
# 5: inequalities against intervals, function arguments renamed, repeating decimals and
#    `\approx`, rounded percentages, a stray trailing backslash, a tuple boxed in parts.
# 6: `2,3` is a list against `2 or 3` (no decimal comma), a function's rule against a bare
#    expression (`f(y) = y^2` vs `x^2`), a `\pm` inside a fraction as its two values.
GRADER_VERSION = "6"
# Longer inputs skip the in-process fast path (and the cache) and go straight to a worker.
LOCAL_MAX_CHARS = 4096

__all__ = [
    "GRADER_NAME",
    "GRADER_VERSION",
    "Grade",
    "Grader",
    "extract_answer",
    "extract_answer_with_rule",
    "grade_answer",
    "grade_answer_async",
    "grader_info",
    "is_equivalent",
    "is_equivalent_async",
    "normalize_answer",
    "shutdown",
]


def grader_info() -> dict[str, str]:
    """Identify the grader in run records, so scores from different graders are never mixed."""
    return {"name": GRADER_NAME, "version": GRADER_VERSION, "math_verify": _math_verify_version()}


@functools.cache
def _math_verify_version() -> str:
    """Read once: parsing the package's metadata cost a millisecond per graded problem."""
    try:
        return importlib.metadata.version("math-verify")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------

_CACHE_SIZE = 65536
_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_get(key: tuple[str, str]) -> bool | None:
    with _cache_lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
        return value


def _cache_put(key: tuple[str, str], value: bool) -> None:
    """Only decided results are cached: a timeout may succeed on a less loaded machine."""
    with _cache_lock:
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _short(prediction: str, gold: str) -> bool:
    return len(prediction) <= LOCAL_MAX_CHARS and len(gold) <= LOCAL_MAX_CHARS


def _local(prediction: str | None, gold: str) -> bool | None:
    """The verdict without a worker: cached, or two short bare answers the fast path decides.
    None sends the pair to a worker (texts, undecided pairs, anything over `LOCAL_MAX_CHARS`)."""
    if not prediction or prediction.isspace():
        return False
    if not _short(prediction, gold):
        return None
    cached = _cache_get((prediction, gold))
    if cached is not None:
        return cached
    pred, ref = clean_text(prediction), clean_text(gold)
    if not (is_bare_answer(pred) and is_bare_answer(ref)):
        return None
    decided, _ = fast_path(pred, ref)
    if decided is not None:
        _cache_put((prediction, gold), decided)
    return decided


def _settle(
    result: tuple[bool | None, str | None] | None, prediction: str, gold: str, timeout_s: float
) -> Grade:
    """A worker's answer as a Grade (None: the outer guard stopped it); decided ones cached,
    except a verdict that carries its reason (a box of prose), which the cache could not
    give back."""
    if result is None:
        return Grade(None, timed_out(timeout_s))
    verdict, reason = result
    if verdict is not None and reason is None and _short(prediction, gold):
        _cache_put((prediction, gold), verdict)
    return Grade(verdict, reason)


def grade_answer(prediction: str | None, gold: str, timeout_s: float = 5.0) -> Grade:
    """`is_equivalent` with the reason when there is no verdict (`Grade.reason`): timed out,
    too long to grade, malformed gold answer. Never raises on odd input."""
    decided = _local(prediction, gold)
    if decided is not None or prediction is None:
        return Grade(bool(decided))
    result = run_guarded(mv_worker, (prediction, gold, timeout_s), timeout_s + OUTER_GRACE_S)
    return _settle(result, prediction, gold, timeout_s)


async def grade_answer_async(prediction: str | None, gold: str, timeout_s: float = 5.0) -> Grade:
    """`grade_answer` for event loops: only short inputs are looked at in the loop's thread; the
    rest, and all sympy work, runs in a worker."""
    decided = _local(prediction, gold)
    if decided is not None or prediction is None:
        return Grade(bool(decided))
    result = await run_guarded_async(
        mv_worker, (prediction, gold, timeout_s), timeout_s + OUTER_GRACE_S
    )
    return _settle(result, prediction, gold, timeout_s)


def is_equivalent(prediction: str | None, gold: str, timeout_s: float = 5.0) -> bool | None:
    """Whether `prediction` is the same answer as `gold`; None when it cannot be decided (not
    within `timeout_s`, or ungradable: see `grade_answer` for the reason).

    Either may be a bare answer or a text holding one (a sentence, a solution with boxes).
    Asymmetric like math-verify: `gold` is the reference (e.g. `x = 5` gold accepts `5`).
    """
    return grade_answer(prediction, gold, timeout_s).correct


async def is_equivalent_async(
    prediction: str | None, gold: str, timeout_s: float = 5.0
) -> bool | None:
    """`is_equivalent` for event loops: the sympy work never blocks the loop."""
    return (await grade_answer_async(prediction, gold, timeout_s)).correct


# --------------------------------------------------------------------------------------------
# The AnswerJudge
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """Verdict for one problem; `correct` is None when it could not be decided."""

    correct: bool | None
    reason: str | None = None


class Grader:
    """The `AnswerJudge` used for voting and grading alike (see `reasoning.types.AnswerJudge`)."""

    name = GRADER_NAME

    def __init__(self, strict: bool = False, timeout_s: float = 5.0) -> None:
        self.strict = strict
        self.timeout_s = timeout_s

    def extract(self, text: str) -> str | None:
        return extract_answer_with_rule(text, strict=self.strict)[0]

    async def equivalent(self, a: str | None, b: str | None) -> bool | None:
        """Whether answer `a` matches `b` (`b` plays the reference role)."""
        if a is None or b is None:
            return False
        return await is_equivalent_async(a, b, self.timeout_s)

    async def grade(
        self, prediction: str | None, gold: str | None, problem: Problem | None = None
    ) -> Grade:
        """The verdict on `prediction`; pass `problem` so that a task with its own checker
        (countdown) is graded by it rather than by equivalence with `gold`."""
        if problem is not None and problem.metadata.get("task") == COUNTDOWN:
            return _grade_countdown(prediction, problem)
        if gold is None:
            return Grade(None, "no gold answer")
        if prediction is None:
            return Grade(False, "no answer extracted")
        return await grade_answer_async(prediction, gold, self.timeout_s)

    def for_problem(self, problem: Problem) -> Grader | CountdownJudge:
        """The judge a search on `problem` votes with: this grader, or for a countdown problem
        one that reads APR traces and counts every valid expression as one answer."""
        spec = countdown_spec(problem.metadata)
        return self if spec is None else CountdownJudge(self, *spec)

    def __repr__(self) -> str:
        return f"Grader(strict={self.strict}, timeout_s={self.timeout_s})"


def _grade_countdown(prediction: str | None, problem: Problem) -> Grade:
    """Any expression that uses the numbers once each and reaches the target is right (the
    reference solution is only one of them), and so is an APR solution path whose operations
    replay to the target (`evals.countdown.check_answer`). Reasons are kept for wrong answers."""
    spec = countdown_spec(problem.metadata)
    if spec is None:
        return Grade(None, "countdown problem without integer 'numbers' and 'target' metadata")
    if prediction is None:
        return Grade(False, "no answer extracted")
    verdict = check_answer(prediction, *spec)
    return Grade(verdict.correct, None if verdict.correct else verdict.reason)
