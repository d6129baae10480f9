"""Side requests that run beside the decode: started at a thought boundary, read in order.

TrimR and Solve-Detect-Verify both judge a thought while the model keeps writing the next
one (the decode never pauses for them); their verdicts are applied in thought order, so a
fast late verdict never overtakes a slow early one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
M = TypeVar("M")


class Pending(Generic[M, T]):
    """Tasks in start order, each with what the caller needs to act on its result (`meta`)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[M, asyncio.Task[T]]] = deque()

    def spawn(self, meta: M, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        self._queue.append((meta, task))
        return task

    def ready(self) -> list[tuple[M, T]]:
        """Results of the finished tasks at the front of the queue (a task's error is raised)."""
        out: list[tuple[M, T]] = []
        while self._queue and self._queue[0][1].done():
            meta, task = self._queue.popleft()
            out.append((meta, task.result()))
        return out

    def __len__(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        """Cancel what is still running. A cancelled `ctx.generate` is not metered (the Context
        meters a call when it returns), so this runs only when the verdicts no longer matter."""
        tasks = [task for _, task in self._queue]
        self._queue.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
