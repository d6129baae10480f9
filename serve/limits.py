"""Admission: at most `max_in_flight` searches run, at most `max_queue` wait; the rest are
refused at once (429 + Retry-After) instead of piling up until every client times out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from serve.openai_format import APIError


class Admission:
    """A bounded slot pool with a bounded queue in front of it (one event loop)."""

    def __init__(self, max_in_flight: int, max_queue: int, retry_after_s: int = 1) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.waiting = 0
        self._free = asyncio.Condition()

    def full(self) -> bool:
        return self.in_flight >= self.max_in_flight and self.waiting >= self.max_queue

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a search slot for the block; a 429 APIError when slots and queue are full."""
        if self.full():
            raise APIError(
                429,
                f"server busy: {self.in_flight} searches running and {self.waiting} waiting "
                f"(server.max_in_flight={self.max_in_flight}, server.max_queue={self.max_queue})",
                code="server_busy",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        async with self._free:
            self.waiting += 1
            try:
                await self._free.wait_for(lambda: self.in_flight < self.max_in_flight)
            finally:
                self.waiting -= 1
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._free:
                self.in_flight -= 1
                self._free.notify()
