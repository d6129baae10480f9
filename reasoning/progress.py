"""What a search is doing while it runs: a bounded feed the Context publishes to.

The reasoning server streams a search to its client as it runs (the leading chain's tokens,
each finished sample, a status line: step, chains alive, tokens spent). The Context publishes
those items to a `ProgressFeed` given to `solve_problem(..., feed=...)`; nothing is published
(and nothing costs more than one `if` per call) without one, so the runner's path is unchanged.

The feed never blocks the search: `put` is synchronous and bounded. A slow client loses the
granularity of token items, then token items themselves, never a status or sample item and
never the end (docs/architecture.md, "Progress and cancellation").
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from reasoning.context import Context
    from reasoning.types import Chain, Completion

ItemKind = Literal["token", "sample", "status"]


@dataclass(frozen=True)
class ProgressItem:
    """One thing a running search published.

    `token`: new text of the leading chain (`fields["stream"]` numbers the stream it came
    from, so a consumer sees where the lead moved to another chain); `sample`: one finished
    sample's text (`fields`: tokens, finish_reason); `status`: where the search stands
    (`fields`: step, chains_alive, generated_tokens, verifier_calls, elapsed_s, event, and the
    ledger's samples and generator_calls).
    """

    kind: ItemKind
    text: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)


class ProgressFeed:
    """A bounded async queue the Context publishes to while a search runs; never blocks the
    search (a slow client loses intermediate token items, never the status or the end).

    The bound (`max_items`) holds queued items. When it is full, a new token item is merged
    into the newest queued item when that is a token item of the same stream (no text is
    lost, only the steps it came in), else the oldest queued token item is dropped (`dropped`
    counts them); status and sample items are always queued (a search makes a bounded number
    of them: a few per generator call and event). `tokens=False` asks the Context not to
    stream single-sample calls for this feed (no token items from `generate`).
    One consumer iterates it, on the event loop the search runs on.
    """

    def __init__(self, max_items: int = 1024, *, tokens: bool = True) -> None:
        if max_items < 1:
            raise ValueError(f"a progress feed holds at least one item; got max_items={max_items}")
        self.max_items = max_items
        self.tokens = tokens
        self.dropped = 0  # token items dropped because the consumer fell behind
        self._items: deque[ProgressItem] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: ProgressItem) -> None:
        """Queue `item` (sync, never blocks, never raises; ignored once closed)."""
        if self._closed:
            return
        items = self._items
        if len(items) >= self.max_items and not self._make_room(item):
            return
        items.append(item)
        self._ready.set()

    def _make_room(self, item: ProgressItem) -> bool:
        """Room for `item` in a full queue; False when it was merged or dropped instead."""
        items = self._items
        if item.kind != "token":
            return True  # status and sample items are never dropped
        last = items[-1]
        if last.kind == "token" and last.fields.get("stream") == item.fields.get("stream"):
            items[-1] = replace(last, text=last.text + item.text)
            return False
        for at, queued in enumerate(items):
            if queued.kind == "token":
                del items[at]
                self.dropped += 1
                return True
        self.dropped += 1  # only status and sample items queued: the new token goes
        return False

    def close(self) -> None:
        """The search is over: the iterator ends once the queued items are read."""
        self._closed = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[ProgressItem]:
        while True:
            while self._items:
                yield self._items.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()


class Publisher:
    """The Context's side of a feed: which stream leads, what a status says.

    The leading chain is the stream that started while no other stream led; it leads until it
    ends, and the next stream to start after that leads next. A single-path search (greedy, a
    trimmed sample, its extensions) is therefore streamed whole; of concurrent streams (a
    trimmer over best-of-N, parallel threads) the first one is, and when it ends the lead goes
    to the next stream that starts (never into the middle of one already running, so every
    led stream's text is whole from its first token).
    """

    def __init__(self, feed: ProgressFeed, ctx: Context, started: float) -> None:
        self.feed = feed
        self.ctx = ctx
        self.started = started  # the Context's monotonic start
        self.step: int | None = None  # the deepest step a call continued to (1 + its steps)
        self.chains_alive = 0  # samples in generator calls in flight now
        self.declared: dict[str, Any] = {}  # what the controller said (Context.report_progress)
        self._streams = itertools.count()
        self._lead: int | None = None

    @property
    def streams_samples(self) -> bool:
        """Whether single-sample generator calls are streamed for the feed's token items."""
        return self.feed.tokens

    def saw(self, chain: Chain | None) -> None:
        """A call continues `chain`: a step-level search is at its next step."""
        if chain is not None:
            step = len(chain.steps) + 1
            if self.step is None or step > self.step:
                self.step = step

    def call_started(self, samples: int) -> None:
        self.chains_alive += samples
        self.status()

    def call_ended(self, samples: int) -> None:
        self.chains_alive = max(0, self.chains_alive - samples)
        self.status()

    def open_stream(self) -> tuple[int, bool]:
        """A new stream's number, and whether it leads."""
        number = next(self._streams)
        if self._lead is None:
            self._lead = number
        return number, self._lead == number

    def close_stream(self, number: int) -> None:
        if self._lead == number:
            self._lead = None

    def token(self, number: int, text: str) -> None:
        if text:
            self.feed.put(ProgressItem("token", text, {"stream": number}))

    def samples(self, completions: Iterable[Completion]) -> None:
        for c in completions:
            if not c.refused:
                fields = {"tokens": c.tokens, "finish_reason": str(c.finish_reason)}
                self.feed.put(ProgressItem("sample", c.text, fields))

    def status(self, event: str | None = None) -> None:
        ledger = self.ctx.ledger
        fields: dict[str, Any] = {
            "step": self.step,
            "chains_alive": self.chains_alive,
            "generated_tokens": ledger.generated_tokens,
            "verifier_calls": ledger.verifier_calls,
            "samples": ledger.samples,
            "generator_calls": ledger.generator_calls,
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "event": event,
        }
        fields.update(self.declared)
        self.feed.put(ProgressItem("status", fields=fields))
