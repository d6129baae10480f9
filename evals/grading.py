"""Equivalence grading for math benchmarks (MATH500, AIME, AMC): the grader itself.

One function decides equivalence for both voting clusters and final grading, so a vote can never
be counted as "the same answer" by one rule and graded by another.

The cascade is cheap first: two bare answers (`3/4`, `x \\geq 5`, not prose) are normalised and
compared as strings and plain numbers in-process (`evals.normalization`). Texts that hold an answer
(`so $y \\le 4$ holds`, a whole solution with boxes) and what the fast path cannot decide go to a
sandboxed worker process (`evals.verify_workers`), where math-verify extracts and compares.
Decided results are cached here. Workers are spawned without the caller's `__main__`, so scripts
and notebooks grade without an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections import OrderedDict
from dataclasses import dataclass

from evals.extraction import extract_answer, extract_answer_with_rule, is_bare_answer
from evals.normalization import fast_path, normalize_answer
from evals.verify_workers import (
    OUTER_GRACE_S,
    mv_worker,
    run_guarded,
    run_guarded_async,
    shutdown,
)

GRADER_NAME = "reasoning-grader"
GRADER_VERSION = "2"  # 2: texts graded by their answer, boxes joined, decimal commas

__all__ = [
    "GRADER_NAME",
    "GRADER_VERSION",
    "Grade",
    "Grader",
    "extract_answer",
    "extract_answer_with_rule",
    "grader_info",
    "is_equivalent",
    "is_equivalent_async",
    "normalize_answer",
    "shutdown",
]


def grader_info() -> dict[str, str]:
    """Identify the grader in run records, so scores from different graders are never mixed."""
    try:
        mv_version = importlib.metadata.version("math-verify")
    except importlib.metadata.PackageNotFoundError:
        mv_version = "not installed"
    return {"name": GRADER_NAME, "version": GRADER_VERSION, "math_verify": mv_version}


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


def _local(prediction: str | None, gold: str) -> bool | None:
    """The verdict without a worker: cached, or two bare answers the fast path decides."""
    if prediction is None:
        return False
    cached = _cache_get((prediction, gold))
    if cached is not None:
        return cached
    if not (is_bare_answer(prediction) and is_bare_answer(gold)):
        return None if prediction.strip() else False
    decided, _ = fast_path(prediction, gold)
    if decided is not None:
        _cache_put((prediction, gold), decided)
    return decided


def is_equivalent(prediction: str | None, gold: str, timeout_s: float = 5.0) -> bool | None:
    """Whether `prediction` is the same answer as `gold`; None when undecided within `timeout_s`.

    Either may be a bare answer or a text holding one (a sentence, a solution with boxes).
    Asymmetric like math-verify: `gold` is the reference (e.g. `x = 5` gold accepts `5`).
    """
    decided = _local(prediction, gold)
    if decided is not None or prediction is None:
        return bool(decided)
    result = run_guarded(mv_worker, (prediction, gold, timeout_s), timeout_s + OUTER_GRACE_S)
    if result is not None:
        _cache_put((prediction, gold), bool(result))
    return result


async def is_equivalent_async(
    prediction: str | None, gold: str, timeout_s: float = 5.0
) -> bool | None:
    """`is_equivalent` for event loops: the sympy work never blocks the loop."""
    decided = _local(prediction, gold)
    if decided is not None or prediction is None:
        return bool(decided)
    result = await run_guarded_async(
        mv_worker, (prediction, gold, timeout_s), timeout_s + OUTER_GRACE_S
    )
    if result is not None:
        _cache_put((prediction, gold), bool(result))
    return result


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

    async def grade(self, prediction: str | None, gold: str | None) -> Grade:
        if gold is None:
            return Grade(None, "no gold answer")
        if prediction is None:
            return Grade(False, "no answer extracted")
        result = await self.equivalent(prediction, gold)
        if result is None:
            return Grade(None, f"grading timed out after {self.timeout_s:g}s")
        return Grade(result, None)

    def __repr__(self) -> str:
        return f"Grader(strict={self.strict}, timeout_s={self.timeout_s})"
