"""Whole samples drawn a few at a time until a rule says stop: the shared engine of the
adaptive controllers (`adaptive_sc`, `deepconf`; docs/adaptive-sc.md, docs/deepconf.md).

Best-of-N asks for all N samples at once. An adaptive rule instead looks at each finished
sample and decides whether more are needed, and a per-token rule (DeepConf online) may end a
sample while it decodes. Both need:

- samples streamed one per request, so that a sample ended early is aborted at the engine and
  metered with exactly the tokens it delivered (`Context.stream`);
- a bounded number in flight (`in_flight`): what the engine batches, and the most a stop can
  waste;
- a stop that does not depend on timing. Sample i draws its seed from `ctx.rng` when it
  starts, and samples start in index order; the stop rule sees finished samples in index order
  (the longest finished prefix), so the same seed gives the same stop and answer however the
  engine schedules them. A sample past the stop that finished anyway is kept in the trace
  (pruned, `cut=after_stop`) and metered, never voted.

The pool records every sample in the tree (kept ones `finished`, the others `pruned` with
their `cut`), one `early_stop` event when the rule stops and one `sample_cut` event per sample
a watch ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from reasoning.budget import BudgetExhausted
from reasoning.context import Context, joined_deltas
from reasoning.steps import chain_from_completion
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Completion, Delta, EventKind, Sampling


class Cut(StrEnum):
    """Why a sample that started is not voted."""

    WATCH = "watch"  # its watch ended it while it decoded (DeepConf: confidence fell too low)
    STOPPED = "stopped"  # the stop rule fired while it decoded: aborted
    AFTER_STOP = "after_stop"  # it finished, but after the sample at which the rule stopped


@dataclass(frozen=True)
class Drawn:
    """One sample that started: its index (start order), what it delivered, its chain."""

    index: int
    completion: Completion
    chain: Chain
    cut: Cut | None = None
    cut_reason: str | None = None  # what the watch said when it ended the sample

    @property
    def kept(self) -> bool:
        return self.cut is None


@dataclass(frozen=True)
class Draw:
    """Every sample that started, in index order, and where the rule stopped."""

    samples: list[Drawn]
    stopped_after: int | None = None  # samples (in order) when the rule fired; None: never
    reason: str | None = None  # the rule's own words for the stop

    @property
    def kept(self) -> list[Drawn]:
        """The samples a vote may use: finished, not cut, within the stop."""
        return [d for d in self.samples if d.kept]

    @property
    def aborted(self) -> int:
        return sum(d.cut == Cut.STOPPED for d in self.samples)


# Called each time the finished prefix grows, with that prefix (kept and watch-cut samples, in
# index order); a reason to stop, or None to go on. It may return an awaitable of that (a rule that
# asks the judge whether two answers are equal); samples in flight go on decoding meanwhile.
Decide = Callable[[Sequence[Drawn]], "str | None | Awaitable[str | None]"]
# A per-sample watch, made when sample i starts and fed each delta it delivers; a reason to end
# the sample there, or None.
Watch = Callable[[Delta], "str | None"]
WatchFactory = Callable[[int], Watch]


async def draw(
    ctx: Context,
    sampling: Sampling,
    *,
    max_n: int,
    in_flight: int,
    decide: Decide | None = None,
    watch: WatchFactory | None = None,
    first_index: int = 0,
) -> Draw:
    """Draw up to `max_n` samples of the problem's prompt (`sampling.n` is ignored: one per
    request), at most `in_flight` decoding at once, until `decide` says stop or the budget
    refuses one. `first_index` numbers the samples after an earlier draw's (a warm-up)."""
    if max_n < 1 or in_flight < 1:
        raise ValueError(f"max_n and in_flight must be >= 1, got {max_n} and {in_flight}")
    pool = _Pool(ctx, replace(sampling, n=1), watch, first_index)
    return await pool.run(max_n, in_flight, decide)


class _Pool:
    def __init__(
        self, ctx: Context, sampling: Sampling, watch: WatchFactory | None, first: int
    ) -> None:
        self.ctx = ctx
        self.sampling = sampling
        self.watch = watch
        self.first = first
        self.deltas: dict[int, list[Delta]] = {}

    async def run(self, max_n: int, in_flight: int, decide: Decide | None) -> Draw:
        done: dict[int, Drawn | None] = {}  # None: the budget refused it
        seen: list[Drawn] = []  # the finished prefix the rule has seen, in index order
        tasks: dict[asyncio.Task[Drawn], int] = {}
        launched = prefix = 0
        refused = False
        stopped_after: int | None = None
        reason: str | None = None
        try:
            while True:
                while not refused and stopped_after is None and launched < max_n:
                    if len(tasks) >= in_flight:
                        break
                    index = self.first + launched
                    tasks[asyncio.ensure_future(self._one(index))] = index
                    launched += 1
                if not tasks:
                    break
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=tasks.__getitem__):
                    index = tasks.pop(task)
                    try:
                        done[index] = task.result()
                    except BudgetExhausted:
                        done[index] = None
                        refused = True
                while stopped_after is None and self.first + prefix in done:
                    latest = done[self.first + prefix]
                    prefix += 1
                    if decide is None or latest is None:
                        continue
                    seen.append(latest)
                    verdict = decide(seen)
                    reason = await verdict if inspect.isawaitable(verdict) else verdict
                    if reason is not None:
                        stopped_after = prefix
                if stopped_after is not None and tasks:
                    for aborted in await self._abort(tasks):
                        done[aborted.index] = aborted
                    tasks.clear()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        samples = [d for _, d in sorted(done.items()) if d is not None]
        if stopped_after is not None:
            last = self.first + stopped_after
            samples = [
                replace(d, cut=Cut.AFTER_STOP) if d.index >= last and d.cut is None else d
                for d in samples
            ]
        result = Draw(samples, stopped_after, reason)
        self._record(result)
        return result

    async def _one(self, index: int) -> Drawn:
        ctx = self.ctx
        sampling = replace(self.sampling, seed=ctx.rng.randrange(2**31))
        deltas = self.deltas.setdefault(index, [])
        watch = self.watch(index) if self.watch is not None else None
        cut_reason: str | None = None
        if watch is None and ctx.sampler is not None:  # a trimmer takes the whole sample
            (completion,) = await ctx.generate(sampling)
            return Drawn(index, completion, chain_from_completion(completion))
        async with contextlib.aclosing(ctx.stream(sampling)) as stream:
            async for delta in stream:
                deltas.append(delta)
                if watch is not None and (cut_reason := watch(delta)) is not None:
                    break
        completion = joined_deltas(deltas)
        cut = Cut.WATCH if cut_reason is not None else None
        return Drawn(index, completion, chain_from_completion(completion), cut, cut_reason)

    async def _abort(self, tasks: dict[asyncio.Task[Drawn], int]) -> list[Drawn]:
        """Cancel the samples still decoding (each stream aborts its request and meters what
        it delivered) and return them as cut `stopped`, with what they had delivered."""
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        out: list[Drawn] = []
        for index, result in zip(tasks.values(), results, strict=True):
            if isinstance(result, Drawn):  # it finished before the cancel reached it
                out.append(result)
                continue
            if isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError | BudgetExhausted
            ):
                raise result
            partial = joined_deltas(self.deltas.get(index, []))
            chain = chain_from_completion(partial)
            out.append(Drawn(index, partial, chain, Cut.STOPPED))
        return out

    def _record(self, result: Draw) -> None:
        ctx = self.ctx
        for d in result.samples:
            if d.kept:
                ctx.tree.add(d.chain, NodeStatus.FINISHED, sample=d.index)
            else:
                ctx.tree.add(d.chain, NodeStatus.PRUNED, sample=d.index, cut=str(d.cut))
            if d.cut == Cut.WATCH:
                ctx.record(
                    EventKind.SAMPLE_CUT,
                    sample=d.index,
                    tokens=d.completion.tokens,
                    reason=d.cut_reason,
                )
        if result.stopped_after is not None:
            ctx.record(
                EventKind.EARLY_STOP,
                after=result.stopped_after,
                reason=result.reason,
                aborted=result.aborted,
                after_stop=sum(d.cut == Cut.AFTER_STOP for d in result.samples),
                aborted_tokens=sum(
                    d.completion.tokens for d in result.samples if d.cut == Cut.STOPPED
                ),
            )
