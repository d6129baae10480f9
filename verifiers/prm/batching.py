"""A micro-batcher: score calls from concurrent chains and problems, queued and flushed together.

Generic over item and result types; the pooling PRM is its one user, since vLLM's generation
batches requests itself and only the pooling calls need batching on the caller's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent callers on one event loop and runs them in batches.

    A batch goes out when `batch_size` items are waiting or `wait_s` after the first of them
    arrived; at most `max_inflight` batches run at once, and whatever piles up meanwhile goes
    out together in the next batch (so a busy engine sees bigger batches, not a longer queue).
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        batch_size: int,
        wait_s: float,
        max_inflight: int = 1,
    ) -> None:
        self._run = run
        self.batch_size = max(1, batch_size)
        self.wait_s = max(0.0, wait_s)
        self._sem = asyncio.Semaphore(max(1, max_inflight))
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches: list[int] = []  # sizes of the batches sent, for tests and benchmarks

    async def submit(self, items: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        self._schedule(loop)
        return list(await asyncio.gather(*futures))

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._pending) >= self.batch_size:
            self._kick()
        elif self._pending and self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._kick)

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        async with self._sem:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            self._schedule(asyncio.get_running_loop())  # the rest: now or after wait_s
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled
            if not batch:
                return
            self.batches.append(len(batch))
            try:
                results = await self._run([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
