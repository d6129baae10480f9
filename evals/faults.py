"""Sorting a failure in two kinds: the problem's own, or one that must stop the whole run.

A problem-level fault (a prompt longer than the model's context, a grader crash, an input the
tokenizer refuses, ...) ends that problem alone: the runner records it and goes on. A
run-level fault (`is_run_level`: the backend is down, the engine died, the disk is full,
Ctrl-C) no other problem would survive either, so the run stops (`RunInterrupted`).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

# OSError numbers that mean the machine or the run directory is in trouble, not one problem.
RUN_LEVEL_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EIO", "EMFILE", "ENFILE", "ENOMEM")
    if hasattr(errno, name)
)
# Exception classes (by name, so that neither vllm nor openai need importing) that no other
# problem would survive either: vLLM's engine core died; the server refuses our key or model.
RUN_LEVEL_NAMES = frozenset(
    {"EngineDeadError", "AuthenticationError", "PermissionDeniedError", "NotFoundError"}
)
MAX_ERROR_CHARS = 2000  # of an exception's text in a record (a message may quote the input)


class RunInterrupted(RuntimeError):
    """A run stopped by a failure; everything finished before it is on disk."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the leaves of an exception group, and what each was raised from."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        if e.__cause__ is not None:
            todo.append(e.__cause__)


def is_run_level(exc: BaseException) -> bool:
    """Whether `exc` must stop the whole run rather than end one problem with an error.

    Run-level: anything that is not an `Exception` (KeyboardInterrupt, CancelledError,
    SystemExit); a backend that is down (`ConnectionError`, which the openai backend's
    `ServerUnavailableError` is); `MemoryError`; an `OSError` about the disk or the machine
    (no space, quota, read-only, I/O error, too many open files); vLLM's `EngineDeadError`;
    the server refusing our key or model (401/403/404). Also when any of these is inside an
    exception group or is the cause of the exception. Everything else is the problem's own.
    """
    for e in _causes(exc):
        if not isinstance(e, Exception) or isinstance(e, ConnectionError | MemoryError):
            return True
        if isinstance(e, RunInterrupted):
            return True
        if isinstance(e, OSError) and e.errno in RUN_LEVEL_ERRNOS:
            return True
        if RUN_LEVEL_NAMES & {c.__name__ for c in type(e).__mro__}:
            return True
    return False


def _one_line(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # a broken __str__ must not hide the error
        text = "<unprintable>"
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f"... [{len(text) - MAX_ERROR_CHARS} chars cut]"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def describe_error(exc: BaseException) -> str:
    """`Type: message`, with what it was raised from (vLLM wraps errors in an empty
    EngineGenerateError) and the leaves of an exception group."""
    parts = []
    for e in _causes(exc):
        if isinstance(e, BaseExceptionGroup) and e.exceptions:
            continue
        parts.append(_one_line(e))
    return " <- ".join(parts) or _one_line(exc)


def root_type(exc: BaseException) -> str:
    """The name of the exception's type (of the first leaf, for an exception group)."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return type(leaf).__name__
