"""The run's processes: children that end with their parent, children that never re-run the
caller's script, where the engine's output goes, and a short engine shutdown.

Process-wide concerns of whoever runs the engine (the `reason` CLI, the Python API, the in-process
backend, the grading workers): they live in the core so that the CLI and `evals` reach them
without importing a backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from multiprocessing import spawn
from pathlib import Path
from typing import Any

LIFELINE_POLL_S = 0.5  # how often a child looks at its parent
LIFELINE_GRACE_S = 1.0  # SIGTERM first (vLLM shuts down cleanly), SIGKILL this much later
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding `reasoning/`
_lifeline_lock = threading.Lock()
_lifeline_installed = False
_watching: tuple[int, int] | None = None  # (this process, the parent it watches)


class _Token:
    """What `multiprocessing.util.register_after_fork` keys its hook on (a weakref target)."""


_TOKEN = _Token()


def install_lifeline() -> None:
    """Make every `multiprocessing` child of this process (and theirs) end when its parent does.

    A `reason` killed with SIGKILL runs no cleanup, and vLLM's engine core and worker processes
    (GBs of memory), the grading workers and the resource tracker would live on; a rerun would
    start a second engine beside them. With the lifeline each child watches its parent from a
    daemon thread and, once the parent is gone (the child was re-parented), sends itself
    SIGTERM and, LIFELINE_GRACE_S later, SIGKILL. Forked children start the watcher from an
    after-fork hook; spawned ones from a few lines put before their `-c` program, which also
    install the lifeline in them for their own children. The resource tracker needs none: it
    exits when the last process holding its pipe has ended.

    Not PR_SET_PDEATHSIG: it fires when the *thread* that started a child ends, and the engine
    is started from a worker thread. Idempotent; process-wide from the first call.
    """
    global _lifeline_installed
    with _lifeline_lock:
        if _lifeline_installed:
            return
        _lifeline_installed = True
    from multiprocessing import spawn, util

    util.register_after_fork(_TOKEN, _after_fork)
    stock = spawn.get_command_line

    def command_line(**kwds: Any) -> list[str]:
        cmd = list(stock(**kwds))
        if "-c" in cmd:  # [python, flags..., -c, program, --multiprocessing-fork]
            at = cmd.index("-c") + 1
            cmd[at] = _spawn_prelude(os.getpid()) + cmd[at]
        return cmd

    spawn.get_command_line = command_line


def _spawn_prelude(parent: int) -> str:
    """Lines a spawned child runs before multiprocessing's own: watch `parent`."""
    return (
        "try:\n"
        "    import sys\n"
        f"    sys.path.insert(0, {_PACKAGE_ROOT!r})\n"
        "    from reasoning.process import watch_parent\n"
        f"    watch_parent({parent})\n"
        "except Exception:\n"
        "    pass\n"
    )


def _after_fork(_token: _Token) -> None:
    # the process that forked this one (under forkserver, the server, not the requester)
    watch_parent(os.getppid())


def watch_parent(parent: int) -> None:
    """In a child process: end this process when process `parent` (its parent) has ended."""
    global _watching
    install_lifeline()
    me = os.getpid()
    if _watching == (me, parent):
        return
    _watching = (me, parent)
    if os.getppid() != parent:  # gone already, before the child got this far
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="lifeline", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(LIFELINE_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(LIFELINE_GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


def shorten_engine_shutdown(seconds: float) -> None:
    """Give in-process engines `seconds` to stop their processes when closed (after SIGTERM,
    where vLLM's default 5 s would outlast the exit grace)."""
    from reasoning.backends.vllm_engine import VLLMGenerator

    VLLMGenerator.shutdown_timeout_s = seconds


# --------------------------------------------------------------------------------------------
# Children that never import the caller's `__main__`
# --------------------------------------------------------------------------------------------

# Set (in this context: the thread, or the task and the threads it hands work to with
# `asyncio.to_thread`) while processes are started that need nothing from `__main__`.
_without_main: ContextVar[bool] = ContextVar("spawn_without_main", default=False)
_stock_preparation_data: Any = None
_preparation_lock = threading.Lock()


def _preparation_data(name: str) -> dict[str, Any]:
    data = _stock_preparation_data(name)
    if _without_main.get():
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


@contextlib.contextmanager
def spawn_without_main() -> Iterator[None]:
    """Processes spawned inside this block (from this thread, or from the threads and tasks of
    this context) start without importing the caller's `__main__`.

    A spawned child normally re-runs the parent's main module (as `__mp_main__`) before it works:
    a script without an `if __name__ == "__main__":` guard would then run its own body again in
    the child (build a config, start an engine), and multiprocessing stops that with "An attempt
    has been made to start a new process before the current process has finished its
    bootstrapping phase". vLLM's engine core and workers (spawned on CPU, and wherever CUDA is
    initialised) and the grading workers need nothing from `__main__`, so their launch drops it:
    a script works the same with or without the guard. Other processes keep their main module.
    """
    global _stock_preparation_data
    with _preparation_lock:
        if _stock_preparation_data is None:
            _stock_preparation_data = spawn.get_preparation_data
            spawn.get_preparation_data = _preparation_data
    token = _without_main.set(True)
    try:
        yield
    finally:
        _without_main.reset(token)


# --------------------------------------------------------------------------------------------
# Where the engine's output goes
# --------------------------------------------------------------------------------------------

# Where engines started in this context send their output (fds 1 and 2); None: where this
# process's own output goes. The `reason` CLI redirects the whole run itself and leaves it unset.
_engine_log: ContextVar[Path | None] = ContextVar("engine_log", default=None)


def default_engine_log() -> Path:
    """The engine log of a quiet API call: `reasoning-engine-<pid>.log` in the temp folder."""
    return Path(tempfile.gettempdir()) / f"reasoning-engine-{os.getpid()}.log"


@contextlib.contextmanager
def engine_output_to(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Engines started inside this block (in this context) write their output to `path`
    (appending), None: to this process's stdout and stderr (see `engine_output`)."""
    token = _engine_log.set(None if path is None else Path(path))
    try:
        yield
    finally:
        _engine_log.reset(token)


def engine_log() -> Path | None:
    """The file engines started now write to (`engine_output_to`), or None."""
    return _engine_log.get()


_redirect_lock = threading.RLock()


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to flush
                stream.flush()


@contextlib.contextmanager
def engine_output(path: Path | None) -> Iterator[None]:
    """Send fds 1 and 2 to `path` (appending) for the duration of the block; None: no change.

    For a backend around starting and stopping its engine: vLLM writes from this process and
    from its engine-core and worker processes, through Python logging and at the C level, and
    a child keeps the fds it was started with, so only an OS-level redirect while the children
    start catches all of it. When an exception leaves the block, it names the log.
    """
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _redirect_lock:  # two engines starting at once must restore the fds in order
        _flush_std()
        saved = (os.dup(1), os.dup(2))
        try:
            log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
            finally:
                os.close(log_fd)
            yield
        except Exception as e:
            e.add_note(f"engine log: {path}")
            raise
        finally:
            _flush_std()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
