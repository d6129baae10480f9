"""Keep the terminal for the toolkit's own lines while the engine's log goes to a file.

vLLM (and torch, Triton, tcmalloc, ...) write start-up warnings, deprecation notices and
exit-time kill messages from the main process *and* from the engine-core and worker child
processes, at the C level as well as through Python logging. Child processes inherit file
descriptors when they are spawned, so only an OS-level redirect catches all of it:
`engine_log(path)` points fds 1 and 2 at `path` for the duration of a run and hands the toolkit
the terminal's own stdout and stderr (`stdout()`, `stderr()`) for what it means to show: what
runs, the progress bar, the summary, errors. The fds are restored before an exception leaves
the block, so tracebacks and Hydra's error messages reach the terminal.

A child process keeps the fds it was spawned with: an engine started in one block (and shared
by later ones, as across the jobs of a Hydra multirun) keeps writing from its child processes
to the log file of the block that started it; each block's file gets what the main process
writes during that block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

_terminals: list[tuple[TextIO, TextIO]] = []  # (stdout, stderr) of each open block, innermost last


def stdout() -> TextIO:
    """The terminal's stdout, also inside `engine_log` (else `sys.stdout`)."""
    return _terminals[-1][0] if _terminals else sys.stdout


def stderr() -> TextIO:
    """The terminal's stderr, also inside `engine_log` (else `sys.stderr`)."""
    return _terminals[-1][1] if _terminals else sys.stderr


TOOLKIT_PACKAGES = ("reasoning", "search", "verifiers", "evals")


@contextlib.contextmanager
def toolkit_warnings(packages: tuple[str, ...] = TOOLKIT_PACKAGES) -> Iterator[None]:
    """Show the toolkit's own warnings and errors on the terminal inside `engine_log` (they are
    the user's business, unlike the engine's); they still reach the log files as well."""
    handler = logging.StreamHandler(stderr())
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in packages]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, *(s for pair in _terminals for s in pair)):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to flush
                stream.flush()


def _stream(fd: int, like: TextIO | None) -> TextIO:
    """A line-buffered text stream on `fd` (which the caller closes), encoded like `like`."""
    encoding = getattr(like, "encoding", None) or "utf-8"
    return open(fd, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)


@contextlib.contextmanager
def engine_log(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Send fds 1 and 2 (this process and every child spawned meanwhile) to `path`, appending.

    When an exception leaves the block and the log grew, its path is printed to stderr (after
    the fds are restored) so the engine's side of the failure can be found. A new log that
    stayed empty is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    start = path.stat().st_size if existed else 0
    _flush()
    saved = (os.dup(1), os.dup(2))
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = (_stream(saved[0], sys.stdout), _stream(saved[1], sys.stderr))
    failed = True
    try:
        try:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
        finally:
            os.close(log_fd)
        _terminals.append(terminal)
        yield path
        failed = False
    finally:
        if terminal in _terminals:
            _terminals.remove(terminal)
        _flush()
        for stream in terminal:
            stream.flush()
            stream.close()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        size = path.stat().st_size if path.exists() else 0
        if not existed and size == 0:
            path.unlink(missing_ok=True)  # nothing was logged (a config error, a replay)
        elif failed and size > start:
            print(f"engine log: {path}", file=sys.stderr, flush=True)
