"""Sandboxed grading: worker processes that grade what the in-process fast path cannot.

Its own module because math-verify (sympy) can hang on pathological input, so it runs in a spawned
worker process under a SIGALRM deadline, with an outer `future.result(timeout=...)` guard that
kills the pool when a worker is stuck in C code where the signal cannot fire. Workers are spawned,
never forked (the parent hosts a multithreaded vLLM engine), and they start without the parent's
`__main__`, so a script or notebook that grades needs no `if __name__ == "__main__":` guard.
Functions the workers run stay at module top level: spawned pools pickle them by qualified name.

A worker reads the answer out of a text (an explicit one first: boxes, the math after `the answer
is`, read by `evals.extraction`, which knows drafts and `</think>`; else math-verify's own
extraction), then compares the two answers: the fast path first, math-verify's `verify` after.
A worker returns a verdict and, when it has none, why: the deadline, or an answer it will not
grade (`evals.normalization.ungradable`). A prediction whose box holds prose (`\\boxed{3 then we
would need more steps}`) is wrong, with that reason: the number in it is not its answer. A bare
answer counts as parsed only when its whole text parses: math-verify falls back to the first
number it can read (`3+` as 3), which would make a malformed answer equal to that number.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import signal
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import context, popen_spawn_posix
from typing import Any, NamedTuple

from evals.extraction import (
    box_is_prose,
    clean_text,
    explicit_answer,
    extract_answer,
    is_bare_answer,
    last_boxes,
    last_inequalities,
    list_size,
    strip_answer,
    tuple_size,
)
from evals.normalization import fast_path, ungradable
from reasoning.process import spawn_without_main

__all__ = [
    "OUTER_GRACE_S",
    "mv_worker",
    "run_guarded",
    "run_guarded_async",
    "shutdown",
    "timed_out",
]

logger = logging.getLogger(__name__)

_THINK_END = "</think>"
# math-verify's own extraction reads at most this much of a text's end: some of its regexes are
# quadratic (20k characters of `\\(` take it 10 s). Boxes and `the answer is` are read from the
# whole text before it, and the hand-written rules after it.
_MV_EXTRACT_MAX_CHARS = 4000


class _Ungradable(Exception):
    """An answer the worker will not hand to sympy; the message says why."""


class _NotAnAnswer(Exception):
    """A text whose answer is a box that holds prose; the message says which."""


class _Deadline(BaseException):
    """Raised by SIGALRM in the worker; a BaseException so math-verify's `except Exception` and
    `except TimeoutException` handlers let it through."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def _is_parsed(value: Any) -> bool:
    from sympy import Basic, MatrixBase

    return isinstance(value, (Basic, MatrixBase))


class _Answer(NamedTuple):
    """An answer as text, with math-verify's parse of it when math-verify extracted it."""

    text: str
    parsed: list[Any]


def _mv_parse(candidates: tuple[str, ...]) -> list[Any]:
    """Parse the first candidate form that yields a sympy object (math-verify needs delimiters).

    LaTeX first; the plain-expression reader only when what it read is the whole candidate, since
    it otherwise returns the first number it finds (`3+` and `1+__import__('os')` as 3 and 1).
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    first: list[Any] = []
    for text in candidates:
        if not text:
            continue
        latex, plain = [LatexExtractionConfig()], [ExprExtractionConfig()]
        parsed = parse(f"${text}$", latex, parsing_timeout=None)  # type: ignore[arg-type]
        if any(_is_parsed(p) for p in parsed):
            return parsed
        expr = parse(f"${text}$", plain, parsing_timeout=None)  # type: ignore[arg-type]
        read = [e for e in expr if isinstance(e, str)]
        if any(_is_parsed(e) for e in expr) and read and _squeeze(read[0]) == _squeeze(text):
            return expr
        first = first or parsed
    return first


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _mv_extract(text: str) -> _Answer | None:
    """math-verify's own extraction (LaTeX, then plain expressions; rightmost match wins)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    found = parse(text, config, parsing_timeout=None)  # type: ignore[arg-type]
    strings = [f for f in found if isinstance(f, str) and f.strip()]
    parsed = [f for f in found if _is_parsed(f)]
    if not strings and not parsed:
        return None
    return _Answer(strings[0] if strings else str(parsed[0]), parsed)


def _answer(text: str) -> _Answer | None:
    """The answer a prediction or gold holds: itself when bare; else its boxes or the math right
    after `the answer is` (see `evals.extraction`: drafts, boxes in parts), then math-verify's
    extraction, the hand-written rules last. After `</think>` first, the whole text second."""
    if is_bare_answer(text):
        return _Answer(strip_answer(text), [])
    parts = [text.rsplit(_THINK_END, 1)[1], text] if _THINK_END in text else [text]
    for part in parts:
        explicit = explicit_answer(part)
        if explicit is not None and explicit[1] == "boxed" and box_is_prose(explicit[0]):
            raise _NotAnAnswer(f"the box holds prose, not an answer: {explicit[0][:80]!r}")
        if explicit is not None:
            return _Answer(explicit[0], [])
        joined = last_inequalities(part[-_MV_EXTRACT_MAX_CHARS:])
        if joined is not None:
            return _Answer(joined, [])  # `$x < -1$ or $x > 6$`: one answer in two parts
        extracted = _mv_extract(part[-_MV_EXTRACT_MAX_CHARS:])
        if extracted is not None:
            return extracted
    fallback = extract_answer(text)
    return _Answer(fallback, []) if fallback else None


def _compare(pred: _Answer, ref: _Answer) -> bool:
    """The fast path on the two answers, then math-verify's `verify`; raises `_Ungradable` for
    answers too long for sympy or a malformed gold."""
    from math_verify import verify

    decided, forms = fast_path(pred.text, ref.text)
    if decided is not None:
        return decided
    reason = ungradable(pred.text, ref.text)
    if reason is not None:
        raise _Ungradable(reason)
    gold_parsed = ref.parsed or _mv_parse((forms.gold, forms.gold_raw))
    pred_parsed = pred.parsed or _mv_parse((forms.pred, forms.pred_raw))
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))  # type: ignore[arg-type]


def _judge(prediction: str, gold: str) -> tuple[bool | None, str | None]:
    """Extract both answers and compare them: (verdict, None), or (None, why) when they cannot
    be compared. A gold that lists k values is also compared with the last k boxes of the
    prediction when the model boxed them sentences apart."""
    prediction, gold = clean_text(prediction), clean_text(gold)
    try:
        pred = _answer(prediction)
    except _NotAnAnswer as e:
        return False, str(e)  # the model boxed something that is no answer: wrong, and why
    try:
        ref = _answer(gold)
    except _NotAnAnswer as e:
        return None, f"gold answer: {e}"
    if pred is None or ref is None:
        return False, None
    reason = None
    try:
        if _compare(pred, ref):
            return True, None
    except _Ungradable as e:
        reason = str(e)
    if not is_bare_answer(prediction):
        part = prediction.rsplit(_THINK_END, 1)[-1]
        spread = last_boxes(part, list_size(ref.text))
        entries = tuple_size(ref.text)  # `p = \boxed{3}, then q = \boxed{-1}` for `(3, -1)`
        spread_tuple = last_boxes(part, entries) if entries > 1 else None
        for candidate in (spread, f"({spread_tuple})" if spread_tuple else None):
            if candidate is None or candidate == pred.text:
                continue
            try:
                if _compare(_Answer(candidate, []), ref):
                    return True, None
            except _Ungradable:
                pass
    return (None, reason) if reason is not None else (False, None)


def _mv_compare(prediction: str, gold: str) -> tuple[bool | None, str | None]:
    try:
        return _judge(prediction, gold)
    except Exception:  # a sympy failure on odd input is a mismatch, not a crash
        logger.debug("math-verify failed on %.200r vs %.200r", prediction, gold, exc_info=True)
        return False, None


def mv_worker(prediction: str, gold: str, timeout_s: float) -> tuple[bool | None, str | None]:
    """Run in a worker's main thread: math-verify under a SIGALRM deadline. (verdict, None), or
    (None, why): the deadline fired, or an answer cannot be graded.

    The alarm is disarmed inside the outer `try`, so one firing during cleanup is still caught.
    """
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if threading.current_thread() is not threading.main_thread():
        return _mv_compare(prediction, gold)  # the in-process fallback: its caller's deadline
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-4))
        try:
            return _mv_compare(prediction, gold)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return None, timed_out(timeout_s)
    finally:
        signal.signal(signal.SIGALRM, previous)


def timed_out(timeout_s: float) -> str:
    """The reason given for a comparison the deadline stopped."""
    return f"grading timed out after {timeout_s:g}s"


def _warmup() -> int:
    """Import sympy/math-verify once per worker so the first real call is not charged for it."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))
    return os.getpid()


_WORKERS = max(1, int(os.environ.get("REASONING_GRADER_WORKERS", min(4, os.cpu_count() or 1))))
_WARMUP_TIMEOUT_S = 120.0
_START_ATTEMPTS = 3
OUTER_GRACE_S = 2.0  # the in-worker alarm should win; the outer guard is for stuck C code
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()

# Spawned children normally re-run the parent's `__main__` (as `__mp_main__`) before they work:
# an unguarded script would then grade again inside each worker and fail to start a pool there.
# Grading workers need nothing from `__main__`, so their launch drops it (the core's
# `spawn_without_main`, which the engine's processes use too); other processes keep it.


class _WorkerPopen(popen_spawn_posix.Popen):
    def _launch(self, process_obj: Any) -> None:
        with spawn_without_main():
            super()._launch(process_obj)


class _WorkerProcess(context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _WorkerPopen:
        return _WorkerPopen(process_obj)


class _WorkerContext(context.SpawnContext):
    """The spawn context, with children that never import the parent's `__main__`."""

    Process = _WorkerProcess


def _get_pool() -> ProcessPoolExecutor:
    """The shared worker pool, created on first use with spawned (never forked) warm workers."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _start_pool()
        return _pool


def _start_pool() -> ProcessPoolExecutor:
    """A warm pool. A worker that dies while starting (seen now and then when the pool is
    started inside another pool's worker, e.g. a Hydra joblib job) costs a retry, not the
    problem's grade; only `_START_ATTEMPTS` failures in a row are an error."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        pool = ProcessPoolExecutor(max_workers=_WORKERS, mp_context=_WorkerContext())
        try:
            warm = [pool.submit(_warmup) for _ in range(_WORKERS)]
            for f in warm:
                f.result(timeout=_WARMUP_TIMEOUT_S)
            return pool
        except (BrokenProcessPool, TimeoutError) as e:
            codes = [p.exitcode for p in (getattr(pool, "_processes", None) or {}).values()]
            _kill(pool)
            if attempt == _START_ATTEMPTS:
                raise RuntimeError("grading workers failed to start") from e
            logger.warning(
                "grading workers failed to start (exit codes %s); retrying (%d of %d)",
                codes,
                attempt + 1,
                _START_ATTEMPTS,
            )
    raise AssertionError("unreachable")


def _discard_pool(pool: ProcessPoolExecutor) -> None:
    """Kill a pool whose worker is stuck; the next call builds a fresh one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    logger.warning("grading worker stuck or dead; replacing the pool")
    _kill(pool)


def _kill(pool: ProcessPoolExecutor) -> None:
    # No public API kills workers; `_processes` has been stable since Python 3.2.
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Close the worker pool (idempotent); a later grading call starts a new one."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


# At most one job in flight per worker, so time spent queueing is not charged to a job's timeout.
_thread_slots = threading.BoundedSemaphore(_WORKERS)
_loop_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _loop_semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _loop_slots.get(loop)
    if sem is None:
        sem = _loop_slots[loop] = asyncio.Semaphore(_WORKERS)
    return sem


_fallback = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="grading-fallback")


def _in_process(fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
    """`fn` in a thread of this process, for when no worker pool can start (seen inside
    some launcher workers): the grade is kept, but a comparison stuck in C code cannot be
    killed, only abandoned at its deadline."""
    logger.warning("grading workers cannot start here; grading in-process threads instead")
    return _fallback.submit(fn, *args)


def run_guarded(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run `fn(*args)` in the pool; on the outer timeout kill the pool and return None.

    A pool broken or discarded by another call's timeout is rebuilt and the call retried once.
    """
    with _thread_slots:
        for _ in range(2):
            try:
                pool = _get_pool()
            except RuntimeError:
                try:
                    return _in_process(fn, args).result(timeout=timeout_s)
                except (TimeoutError, ValueError):  # ValueError: fn needs the main thread
                    return None
            try:
                future: Future[Any] = pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):  # RuntimeError: pool already shut down
                _discard_pool(pool)
                continue
            try:
                return future.result(timeout=timeout_s)
            except TimeoutError:
                _discard_pool(pool)
                return None
            except BrokenProcessPool:
                _discard_pool(pool)
            except CancelledError:  # `shutdown()` raced with this call
                return None
    return None


async def run_guarded_async(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Async twin of `run_guarded`: awaits the pool future without blocking the event loop."""
    async with _loop_semaphore():
        for _ in range(2):
            try:
                pool = _pool if _pool is not None else await asyncio.to_thread(_get_pool)
            except RuntimeError:
                future = asyncio.wrap_future(_in_process(fn, args))
                try:
                    return await asyncio.wait_for(future, timeout=timeout_s)
                except (TimeoutError, ValueError):  # ValueError: fn needs the main thread
                    return None
            try:
                future = pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):
                _discard_pool(pool)
                continue
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout_s)
            except TimeoutError:
                _discard_pool(pool)
                return None
            except BrokenProcessPool:
                _discard_pool(pool)
    return None
