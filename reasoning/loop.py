"""One long-lived event loop for synchronous callers.

An `AsyncLLM` engine binds to the loop that first used it, so `solve()` called twice (or a
Hydra multirun with several jobs) must reuse one loop rather than `asyncio.run` each time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="reasoning-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the shared loop and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coro, background_loop()).result()
