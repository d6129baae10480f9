"""Sandboxed math-verify: worker processes that compare what the fast path cannot decide.

Its own module because math-verify (sympy) can hang on pathological input, so it runs in a spawned
worker process under a SIGALRM deadline, with an outer `future.result(timeout=...)` guard that
kills the pool when a worker is stuck in C code where the signal cannot fire. Workers are spawned,
never forked (the parent hosts a multithreaded vLLM engine), so scripts that grade need the usual
`if __name__ == "__main__":` guard. Functions the workers run stay at module top level: spawned
pools pickle them by qualified name.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import signal
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["OUTER_GRACE_S", "mv_worker", "run_guarded", "run_guarded_async", "shutdown"]

logger = logging.getLogger(__name__)


class _Deadline(BaseException):
    """Raised by SIGALRM in the worker; a BaseException so math-verify's `except Exception` and
    `except TimeoutException` handlers let it through."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def _mv_parse(candidates: tuple[str, ...]) -> list[Any]:
    """Parse the first candidate form that yields a sympy object (math-verify needs delimiters)."""
    from math_verify import parse
    from sympy import Basic, MatrixBase

    first: list[Any] = []
    for text in candidates:
        if not text:
            continue
        parsed = parse(f"${text}$", parsing_timeout=None)  # type: ignore[arg-type]
        if any(isinstance(p, (Basic, MatrixBase)) for p in parsed):
            return parsed
        first = first or parsed
    return first


def _mv_compare(forms: tuple[str, str, str, str]) -> bool:
    from math_verify import verify

    pred_clean, gold_clean, pred_raw, gold_raw = forms
    try:
        gold = _mv_parse((gold_clean, gold_raw))
        pred = _mv_parse((pred_clean, pred_raw))
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=None))  # type: ignore[arg-type]
    except Exception:  # a sympy failure on odd input is a mismatch, not a crash
        logger.debug("math-verify failed on %r", forms, exc_info=True)
        return False


def mv_worker(forms: tuple[str, str, str, str], timeout_s: float) -> bool | None:
    """Run in a worker's main thread: math-verify under a SIGALRM deadline; None when it fires.

    The alarm is disarmed inside the outer `try`, so one firing during cleanup is still caught.
    """
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-4))
        try:
            return _mv_compare(forms)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _warmup() -> int:
    """Import sympy/math-verify once per worker so the first real call is not charged for it."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))
    return os.getpid()


_WORKERS = max(1, int(os.environ.get("REASONING_GRADER_WORKERS", min(4, os.cpu_count() or 1))))
_WARMUP_TIMEOUT_S = 120.0
OUTER_GRACE_S = 2.0  # the in-worker alarm should win; the outer guard is for stuck C code
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> ProcessPoolExecutor:
    """The shared worker pool, created on first use with spawned (never forked) warm workers."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = ProcessPoolExecutor(
                max_workers=_WORKERS, mp_context=multiprocessing.get_context("spawn")
            )
            try:
                warm = [pool.submit(_warmup) for _ in range(_WORKERS)]
                for f in warm:
                    f.result(timeout=_WARMUP_TIMEOUT_S)
            except (BrokenProcessPool, TimeoutError) as e:
                _kill(pool)
                raise RuntimeError(
                    "grading workers failed to start; a script that grades must guard its entry "
                    "point with `if __name__ == '__main__':` (workers are spawned)"
                ) from e
            _pool = pool
        return _pool


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


def run_guarded(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run `fn(*args)` in the pool; on the outer timeout kill the pool and return None.

    A pool broken or discarded by another call's timeout is rebuilt and the call retried once.
    """
    with _thread_slots:
        for _ in range(2):
            pool = _get_pool()
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
            pool = _pool if _pool is not None else await asyncio.to_thread(_get_pool)
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
