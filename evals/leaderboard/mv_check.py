"""The audit's second judge, run inside a grading worker: plain math-verify under a deadline.

Its own module with light imports (no pandas, no matplotlib), because spawned grading
workers import it by name (evals.verify_workers pickles functions by qualified name).
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from evals.verify_workers import timed_out


class _Deadline(BaseException):
    """SIGALRM in the worker; a BaseException so math-verify's `except Exception` lets it by."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def plain_verify(gold: str, text: str, timeout_s: float) -> tuple[bool | None, str | None]:
    """In a worker process: math-verify's `verify(parse(gold), parse(text))` with its default
    extraction, under a deadline. (verdict, None), or (None, why)."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-4))
        try:
            gold_parsed = parse(gold, parsing_timeout=None)  # type: ignore[arg-type]
            if not gold_parsed:
                return None, "math-verify cannot parse the gold answer"
            pred_parsed = parse(text, parsing_timeout=None)  # type: ignore[arg-type]
            if not pred_parsed:
                return False, "math-verify found no answer in the text"
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None)), None  # type: ignore[arg-type]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return None, timed_out(timeout_s)
    except Exception as exc:  # sympy failing on odd input: no verdict, and why
        return None, f"math-verify failed: {type(exc).__name__}"
    finally:
        signal.signal(signal.SIGALRM, previous)
