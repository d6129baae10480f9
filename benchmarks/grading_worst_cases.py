"""Grading worst cases: how long extraction, normalisation and equivalence take on adversarial
inputs, and what verdict they give.

The inputs are the ones of the grading-cost issue: unclosed `\\boxed{` repeated (extraction was
quadratic: 16 s at 30 KB, over 140 s at 1 MB), unclosed `\\begin{pmatrix}` repeated
(normalisation: 9 s at 100 KB), `$` and `\\text{a}` repeated to 1 MB (30-40 s), numbers over
Python's 4300-digit `int()` limit (a ValueError before any timeout), and the answers that were
graded correct by accident (`3+` as 3, a unicode minus lost). Each row times one call; the last
rows time `Grader.grade` inside an event loop and report the longest stall of a 1 ms ticker
running beside it (the loop must keep ticking while a worker grades).

    .venv/bin/python benchmarks/grading_worst_cases.py [--scale 1.0] [--bound 2.0] [--timeout 5]

`--scale` multiplies every size (0.1 for a quick look); a row slower than `--bound` seconds is
marked SLOW and the script exits 1: the timing bounds of grading live here, not in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KB, MB = 1000, 1_000_000
# Before the fix, from the issue (same inputs, full size); "-" where it gave no number.
BEFORE = {
    "boxed_30k": "16 s",
    "boxed_1m": "> 140 s",
    "pmatrix_100k": "9 s",
    "dollar_1m": "30-40 s",
    "text_a_1m": "30-40 s",
    "bigint_pred": "ValueError",
    "bigint_gold": "ValueError",
    "bigint_same": "ValueError",
    "trailing_plus": "True (wrong)",
    "python_code": "True (wrong)",
    "unicode_minus": "'5' (sign lost)",
    "zero_width": "True (wrong)",
}


def _repeat(atom: str, size: int) -> str:
    return atom * max(1, size // len(atom))


def cases(scale: float) -> list[tuple[str, str, str, Callable[[str], Any], str]]:
    """(key, shown input, call name, call, input text) for every row."""
    from evals.extraction import extract_answer
    from evals.grading import Grader, is_equivalent
    from evals.normalization import normalize_answer

    def size(n: int) -> int:
        return max(1, int(n * scale))

    extract = ("extract_answer", extract_answer)
    grader_extract = ("Grader.extract", Grader().extract)
    normalize = ("normalize_answer", normalize_answer)

    def versus(gold: str) -> tuple[str, Callable[[str], Any]]:
        return f"is_equivalent(_, {gold!r})", lambda text: is_equivalent(text, gold)

    boxed_30k = _repeat("\\boxed{", size(30 * KB))
    boxed_1m = _repeat("\\boxed{", size(MB))
    pmatrix = _repeat("\\begin{pmatrix}", size(100 * KB))
    dollar = _repeat("$", size(MB))
    text_a = _repeat("\\text{a}", size(MB))
    digits = "1" * max(4301, size(5000))
    code = "1+__import__('os').system('true')"
    gold_side = ("is_equivalent('5', _)", lambda g: is_equivalent("5", g))
    both_sides = ("is_equivalent(_, _)", lambda t: is_equivalent(t, t))
    rows: list[tuple[str, str, tuple[str, Callable[[str], Any]], str]] = [
        ("boxed_30k", "\\boxed{ x4300", extract, boxed_30k),
        ("boxed_30k", "\\boxed{ x4300", versus("5"), boxed_30k),
        ("boxed_1m", "\\boxed{ to 1 MB", extract, boxed_1m),
        ("boxed_1m", "\\boxed{ to 1 MB", grader_extract, boxed_1m),
        ("boxed_1m", "\\boxed{ to 1 MB", versus("5"), boxed_1m),
        ("pmatrix_100k", "\\begin{pmatrix} to 100 KB", normalize, pmatrix),
        ("pmatrix_100k", "\\begin{pmatrix} to 100 KB", versus("5"), pmatrix),
        ("dollar_1m", "$ to 1 MB", normalize, dollar),
        ("dollar_1m", "$ to 1 MB", extract, dollar),
        ("dollar_1m", "$ to 1 MB", versus("5"), dollar),
        ("text_a_1m", "\\text{a} to 1 MB", normalize, text_a),
        ("text_a_1m", "\\text{a} to 1 MB", extract, text_a),
        ("text_a_1m", "\\text{a} to 1 MB", versus("5"), text_a),
        ("unclosed_bracket_1m", "\\[ to 1 MB", extract, _repeat("\\[", size(MB))),
        ("unclosed_paren_1m", "\\( to 1 MB", versus("5"), _repeat("\\(", size(MB))),
        ("commas_1m", "The answer is , to 1 MB", extract, "The answer is " + "," * size(MB)),
        ("blanks_1m", "The answer is, blanks to 1 MB", extract, "The answer is" + " " * size(MB)),
        ("nested_boxes", "\\boxed{ x5000 5 } x5000", extract, "\\boxed{" * 5000 + "5" + "}" * 5000),
        ("bigint_pred", f"{len(digits)}-digit number", versus("5"), digits),
        ("bigint_gold", "5 vs a long gold", gold_side, digits),
        ("bigint_same", f"{len(digits)}-digit number", both_sides, digits),
        ("bigint_text", "The answer is <long number>.", versus("7"), f"The answer is {digits}."),
        ("trailing_plus", "3+", versus("3"), "3+"),
        ("python_code", code, versus("1"), code),
        ("unicode_minus", "The result is \\u22125", extract, "The result is \u22125"),
        ("unicode_minus", "The result is \\u22125", versus("5"), "The result is \u22125"),
        ("zero_width", "1\\u200b0", versus("1"), "1\u200b0"),
        ("surrogate", "\\ud800", versus("5"), "\ud800"),
    ]
    return [(key, shown, call[0], call[1], text) for key, shown, call, text in rows]


def _timed(call: Callable[[str], Any], text: str) -> tuple[float, Any]:
    start = time.perf_counter()
    try:
        result = call(text)
    except Exception as e:  # a worst case must not raise: shown as such in the table
        result = f"raised {type(e).__name__}"
    return time.perf_counter() - start, result


async def _loop_stall(text: str, gold: str) -> tuple[float, float, Any]:
    """(grading seconds, longest gap between ticks of a 1 ms ticker, grade) for one grade."""
    from evals.grading import Grader

    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    grade = await Grader().grade(text, gold)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return elapsed, max(gaps), grade


def _fmt(result: Any) -> str:
    text = repr(result)
    return text if len(text) <= 40 else text[:37] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every input size")
    parser.add_argument("--bound", type=float, default=2.0, help="seconds a row may take")
    parser.add_argument("--timeout", type=float, default=5.0, help="grading timeout (seconds)")
    args = parser.parse_args()
    from benchmarks.settings import print_settings
    from evals import extraction, grading, normalization, verify_workers

    print_settings(
        {
            "scale": args.scale,
            "bound_s": args.bound,
            "timeout_s": args.timeout,
            "grader": grading.grader_info(),
            "caps": {
                "MAX_TEXT_CHARS": extraction.MAX_TEXT_CHARS,
                "LOCAL_MAX_CHARS": grading.LOCAL_MAX_CHARS,
                "MAX_ANSWER_CHARS": normalization.MAX_ANSWER_CHARS,
                "mv_extract_max_chars": verify_workers._MV_EXTRACT_MAX_CHARS,
            },
            "workers": verify_workers._WORKERS,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "int_max_str_digits": sys.get_int_max_str_digits(),
        }
    )
    grading.is_equivalent("\\sqrt{8}", "2\\sqrt{2}")  # start the workers outside the timings
    slow = 0
    print("| input | size | call | seconds | result | before |")
    print("| --- | ---: | --- | ---: | --- | --- |")
    try:
        for key, shown, name, call, text in cases(args.scale):
            seconds, result = _timed(call, text)
            flag = " SLOW" if seconds > args.bound else ""
            slow += bool(flag)
            print(
                f"| {shown} | {len(text):,} | {name} | {seconds:.3f}{flag} | {_fmt(result)} "
                f"| {BEFORE.get(key, '-')} |",
                flush=True,
            )
        for shown, text in (
            ("\\boxed{ to 1 MB", _repeat("\\boxed{", int(MB * args.scale))),
            ("\\text{a} to 1 MB", _repeat("\\text{a}", int(MB * args.scale))),
        ):
            seconds, stall, grade = asyncio.run(_loop_stall(text, "5"))
            flag = " SLOW" if stall > min(args.bound, 0.25) else ""
            slow += bool(flag)
            print(
                f"| {shown} | {len(text):,} | Grader.grade in a loop: longest tick gap "
                f"| {stall:.3f}{flag} | {_fmt(grade)} (grade took {seconds:.2f} s) | - |",
                flush=True,
            )
    finally:
        grading.shutdown()
    print(f"\n{slow} row(s) over the bound")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
