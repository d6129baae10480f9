"""The adaptive controllers' shared sampler (search/sample_pool.py): in-flight bound, a stop
that does not depend on timing, aborts metered as delivered, per-token watches, the budget."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Sequence

from evals.grading import Grader
from reasoning import Budget, Context, Problem
from reasoning.types import Delta, Prompt, Sampling
from search.sample_pool import Cut, Drawn, draw
from tests.fakes import ScriptedGenerator

PROBLEM = Problem("p", "What is 2 + 3?", "5")
SAMPLING = Sampling(temperature=0.8, max_tokens=64)


def seeds(n: int, seed: int = 0) -> list[int]:
    """The seeds samples 0..n-1 draw (ctx.rng, in start order)."""
    rng = random.Random(f"{seed}:{PROBLEM.id}")
    return [rng.randrange(2**31) for _ in range(n)]


class PerSample(ScriptedGenerator):
    """Sample i (known by its seed) writes texts[i]; `slow[i]` seconds per delta."""

    def __init__(
        self,
        texts: Sequence[str],
        slow: dict[int, float] | None = None,
        hang_after: dict[int, int] | None = None,
    ) -> None:
        self.index = {s: i for i, s in enumerate(seeds(len(texts)))}
        super().__init__(lambda prompt, sampling: texts[self.index[sampling.seed]])
        self.slow = slow or {}
        self.hang_after = hang_after or {}  # sample i stops delivering after this many deltas
        self.in_flight = self.peak = 0

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        i = self.index[sampling.seed]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            async for at, delta in aenumerate(super().stream(prompt, sampling)):
                await asyncio.sleep(self.slow.get(i, 0.001))
                if at == self.hang_after.get(i, -1):
                    await asyncio.sleep(3600)  # until the pool aborts it
                yield delta
        finally:
            self.in_flight -= 1


async def aenumerate(deltas: AsyncGenerator[Delta, None]) -> AsyncGenerator[tuple[int, Delta]]:
    at = 0
    async with contextlib.aclosing(deltas):
        async for delta in deltas:
            yield at, delta
            at += 1


def _ctx(gen: ScriptedGenerator, **kw: object) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), **kw)  # type: ignore[arg-type]


def stop_after(k: int):  # type: ignore[no-untyped-def]
    def decide(prefix: Sequence[Drawn]) -> str | None:
        return f"saw {k}" if len(prefix) >= k else None

    return decide


async def test_the_stop_sees_samples_in_index_order_whatever_finishes_first() -> None:
    texts = [f"w{i} a b c d e \\boxed{{{i}}}" for i in range(8)]  # 8 tokens each
    # sample 0 is slow: samples 1-3 finish first, yet the stop after 2 keeps samples 0 and 1
    gen = PerSample(texts, slow={0: 0.02})
    ctx = _ctx(gen)
    result = await draw(ctx, SAMPLING, max_n=8, in_flight=4, decide=stop_after(2))
    assert [d.index for d in result.kept] == [0, 1]
    assert result.stopped_after == 2 and result.reason == "saw 2"
    cuts = {d.index: d.cut for d in result.samples}
    assert cuts[2] in (Cut.AFTER_STOP, Cut.STOPPED) and cuts[3] in (Cut.AFTER_STOP, Cut.STOPPED)
    assert gen.peak <= 4
    # every token delivered is metered, the aborted samples' partial ones too
    assert ctx.ledger.generated_tokens == sum(d.completion.tokens for d in result.samples)
    (event,) = [e for e in ctx.events if e["event"] == "early_stop"]
    assert event["after"] == 2 and event["aborted"] == result.aborted
    statuses = {ctx.tree.node(d.chain.id)["status"] for d in result.samples if not d.kept}
    assert statuses == {"pruned"}


async def test_an_aborted_sample_is_metered_with_what_it_delivered() -> None:
    texts = ["a \\boxed{1}"] + ["x " * 40 + "\\boxed{2}"]  # 2 tokens, then 41
    gen = PerSample(texts, slow={0: 0.02}, hang_after={1: 5})
    ctx = _ctx(gen)
    result = await draw(ctx, SAMPLING, max_n=2, in_flight=2, decide=stop_after(1))
    aborted = result.samples[1]
    assert aborted.cut == Cut.STOPPED and aborted.completion.tokens == 5
    assert gen.aborted == 1
    assert ctx.ledger.generated_tokens == 2 + aborted.completion.tokens
    assert ctx.ledger.samples == 2


async def test_a_watch_ends_a_sample_as_it_decodes() -> None:
    texts = ["a b c d e f g h \\boxed{1}", "a b \\boxed{2}"]
    gen = PerSample(texts)
    ctx = _ctx(gen)

    def watch(index: int):  # type: ignore[no-untyped-def]
        seen = [0]

        def on(delta: Delta) -> str | None:
            seen[0] += delta.tokens
            return "too long" if seen[0] >= 4 else None

        return on

    result = await draw(ctx, SAMPLING, max_n=2, in_flight=2, watch=watch)
    first, second = result.samples
    assert first.cut == Cut.WATCH and first.completion.tokens == 4
    assert second.kept and second.completion.tokens == 3
    assert [e["sample"] for e in ctx.events if e["event"] == "sample_cut"] == [0]
    assert ctx.ledger.generated_tokens == 7


async def test_the_budget_ends_the_draw_without_an_error() -> None:
    gen = PerSample([f"\\boxed{{{i}}}" for i in range(10)])
    ctx = _ctx(gen, budget=Budget(samples=3))
    result = await draw(ctx, SAMPLING, max_n=10, in_flight=2)
    assert len(result.kept) == 3 and ctx.stopped_by == "samples"
    assert result.stopped_after is None


async def test_without_a_rule_all_samples_are_kept_in_order() -> None:
    gen = PerSample([f"\\boxed{{{i}}}" for i in range(5)], slow={0: 0.01, 2: 0.005})
    result = await draw(_ctx(gen), SAMPLING, max_n=5, in_flight=3)
    assert [d.index for d in result.kept] == [0, 1, 2, 3, 4]
    assert [d.completion.text for d in result.kept] == [f"\\boxed{{{i}}}" for i in range(5)]
