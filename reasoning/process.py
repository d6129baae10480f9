"""The run's processes: children that end with their parent, and a short engine shutdown.

Process-wide concerns of whoever runs the engine (the `reason` CLI, the in-process backend): they
live in the core so that the CLI reaches them without importing a backend.
"""

from __future__ import annotations

import os
import signal
import threading
import time
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
