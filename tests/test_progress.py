"""The progress feed (reasoning/progress.py), what the Context publishes to it, and
cancellation: a cancelled search leaves no task and no generator request behind.

The fakes count their own requests in flight (`Counting`); the HTTP backend runs against the
stub server (tests/servers.py, no vLLM); one `engine` test checks the in-process engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest

from evals.grading import Grader
from reasoning.budget import Budget
from reasoning.context import Context
from reasoning.progress import ProgressFeed, ProgressItem
from reasoning.solver import SolveParts, solve_problem
from reasoning.types import (
    Chain,
    Completion,
    Delta,
    EventKind,
    FinishReason,
    Problem,
    Prompt,
    Sampling,
)
from search import BestOfN
from search.greedy import Greedy
from tests.fakes import ScriptedGenerator
from tests.servers import StubServer

PROBLEM = Problem("p", "What is 2 + 3?", "5")
TEXT = "two plus three is five so \\boxed{5}"


class Counting(ScriptedGenerator):
    """The scripted fake, counting its calls and streams in flight as a backend does."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.in_flight = 0
        self.peak = 0

    def running_requests(self) -> int:
        return self.in_flight

    def _enter(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        self._enter()
        try:
            return await super().complete(prompt, sampling)
        finally:
            self.in_flight -= 1

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        self._enter()
        inner = super().stream(prompt, sampling)
        try:
            async for delta in inner:
                yield delta
        finally:
            await inner.aclose()
            self.in_flight -= 1


async def drain(feed: ProgressFeed) -> list[ProgressItem]:
    return [item async for item in feed]


def kinds(items: list[ProgressItem], kind: str) -> list[ProgressItem]:
    return [i for i in items if i.kind == kind]


# --- the feed itself -------------------------------------------------------------------------


async def test_the_feed_ends_after_close_with_everything_queued() -> None:
    feed = ProgressFeed()
    reader = asyncio.ensure_future(drain(feed))
    await asyncio.sleep(0)
    feed.put(ProgressItem("token", "a", {"stream": 0}))
    feed.put(ProgressItem("status", fields={"step": None}))
    await asyncio.sleep(0)
    assert not reader.done()  # open: the reader waits for more
    feed.close()
    feed.put(ProgressItem("token", "late"))  # after the end: ignored, never raises
    items = await asyncio.wait_for(reader, 2)
    assert [(i.kind, i.text) for i in items] == [("token", "a"), ("status", "")]


def test_a_full_feed_drops_tokens_never_status_or_samples() -> None:
    feed = ProgressFeed(max_items=4)
    feed.put(ProgressItem("status", fields={"n": 0}))
    for k in range(10):  # each from another stream: nothing to merge into
        feed.put(ProgressItem("token", f"t{k}", {"stream": k}))
    feed.put(ProgressItem("sample", "whole"))
    for k in range(1, 6):
        feed.put(ProgressItem("status", fields={"n": k}))
    items = list(feed._items)
    assert [i.fields["n"] for i in kinds(items, "status")] == [0, 1, 2, 3, 4, 5]
    assert [i.text for i in kinds(items, "sample")] == ["whole"]
    tokens = kinds(items, "token")
    assert len(tokens) <= 4 and feed.dropped == 10 - len(tokens)
    assert [t.text for t in tokens] == [f"t{k}" for k in range(10 - len(tokens), 10)][:4]


def test_a_full_feed_merges_tokens_of_one_stream_so_no_text_is_lost() -> None:
    feed = ProgressFeed(max_items=3)
    for k in range(50):
        feed.put(ProgressItem("token", f"{k} ", {"stream": 7}))
    items = list(feed._items)
    assert len(items) == 3 and feed.dropped == 0
    assert "".join(i.text for i in items) == "".join(f"{k} " for k in range(50))


# --- what the Context publishes --------------------------------------------------------------


async def test_greedy_streams_its_tokens_in_order_then_the_sample_and_status() -> None:
    gen = Counting([TEXT])
    feed = ProgressFeed()
    reader = asyncio.ensure_future(drain(feed))
    solved = await solve_problem(PROBLEM, SolveParts(gen, Greedy(), judge=Grader()), feed=feed)
    items = await asyncio.wait_for(reader, 2)  # ends: solve_problem closed the feed
    assert solved.error is None and feed.closed
    tokens = kinds(items, "token")
    assert len(tokens) == len(TEXT.split(" ")) > 1  # one per delta, not one at the end
    assert "".join(t.text for t in tokens) == TEXT
    assert {t.fields["stream"] for t in tokens} == {0}
    (sample,) = kinds(items, "sample")
    assert sample.text == TEXT and sample.fields["tokens"] == len(TEXT.split(" "))
    assert items.index(sample) > items.index(tokens[-1])
    status = kinds(items, "status")
    assert status[-1].fields["event"] == "done"
    assert status[-1].fields["generated_tokens"] == solved.ledger.generated_tokens
    assert status[-1].fields["chains_alive"] == 0
    assert any(s.fields["chains_alive"] == 1 for s in status)
    spent = [s.fields["generated_tokens"] for s in status]
    assert spent == sorted(spent)
    assert {"step", "verifier_calls", "elapsed_s"} <= set(status[0].fields)


async def test_a_streamed_sample_equals_the_sample_of_a_run_without_a_feed() -> None:
    quiet_gen, loud_gen = Counting([TEXT]), Counting([TEXT])
    quiet = await solve_problem(PROBLEM, SolveParts(quiet_gen, Greedy(), judge=Grader()))
    loud = await solve_problem(
        PROBLEM, SolveParts(loud_gen, Greedy(), judge=Grader()), feed=ProgressFeed()
    )
    assert quiet.result().answer == loud.result().answer == "5"
    q, lo = quiet.ledger, loud.ledger
    assert (q.generated_tokens, q.samples, q.generator_calls, q.prompt_tokens) == (
        lo.generated_tokens,
        lo.samples,
        lo.generator_calls,
        lo.prompt_tokens,
    )
    assert quiet_gen.streams == [] and len(loud_gen.streams) == 1


async def test_without_a_feed_nothing_is_published_and_nothing_streams() -> None:
    gen = Counting([TEXT])
    ctx = Context(PROBLEM, gen, judge=Grader())
    assert ctx.progress is None
    await BestOfN(n=1).run(PROBLEM, ctx)
    ctx.record(EventKind.HYPER, note="x")
    assert gen.streams == []  # the runner's path: one non-streamed call
    feed = ProgressFeed(tokens=False)  # a feed that asks for no tokens: no streaming either
    ctx = Context(PROBLEM, gen, judge=Grader(), feed=feed)
    await BestOfN(n=1).run(PROBLEM, ctx)
    assert gen.streams == [] and kinds(list(feed._items), "token") == []
    assert len(kinds(list(feed._items), "sample")) == 1


async def test_best_of_n_publishes_each_sample_and_the_chains_in_flight() -> None:
    gen = Counting([TEXT], delay_s=0.01)
    feed = ProgressFeed()
    ctx = Context(PROBLEM, gen, judge=Grader(), feed=feed)
    await BestOfN(n=6, batch_size=3).run(PROBLEM, ctx)
    items = list(feed._items)
    assert [i.text for i in kinds(items, "sample")] == [TEXT] * 6
    assert kinds(items, "token") == []  # n > 1 per call: samples, not tokens
    alive = [s.fields["chains_alive"] for s in kinds(items, "status")]
    assert alive == [3, 0, 3, 0]
    assert all(s.fields["step"] is None for s in kinds(items, "status"))  # no steps here


class Watched(ScriptedGenerator):
    """A backend that tells each sample's text as it is decoded (word by word), as the
    in-process engine's `complete_watched` does; sample k writes TEXTS[k]."""

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        return await self.complete_watched(prompt, sampling, None)

    async def complete_watched(
        self, prompt: Prompt, sampling: Sampling, watch: Any
    ) -> list[Completion]:
        texts = [TEXTS[k % len(TEXTS)] for k in range(sampling.n)]
        if watch is not None:
            for k, text in enumerate(texts):
                for word in text.split(" "):
                    watch(k, word + " ")
        return [Completion(t, len(t.split()), FinishReason.EOS) for t in texts]


TEXTS = ["first sample so \\boxed{4}", "second one \\boxed{4}", "third \\boxed{5}"]


async def test_a_watched_call_of_several_samples_streams_its_first_sample() -> None:
    """best-of-N's one call of n samples: the first sample leads the feed as it is decoded,
    the others come as samples when the call returns; without a feed nothing is watched."""
    feed = ProgressFeed()
    ctx = Context(PROBLEM, Watched(), judge=Grader(), feed=feed)
    await BestOfN(n=3).run(PROBLEM, ctx)
    items = list(feed._items)
    assert "".join(i.text for i in kinds(items, "token")) == TEXTS[0] + " "
    assert [i.text for i in kinds(items, "sample")] == TEXTS
    quiet = Context(PROBLEM, Watched(), judge=Grader())
    assert (await BestOfN(n=3).run(PROBLEM, quiet)).answer == "4"


async def test_status_follows_events_steps_and_verifier_calls() -> None:
    gen = Counting(["a step"])
    feed = ProgressFeed(tokens=False)
    ctx = Context(PROBLEM, gen, judge=Grader(), feed=feed)
    await ctx.generate(Sampling(n=2, max_tokens=8), chain=Chain(steps=("one", "two")))
    ctx.record(EventKind.FORK, at="x", threads=2)
    ctx.report_progress(chains_alive=5)
    status = kinds(list(feed._items), "status")
    assert status[-3].fields["step"] == 3  # continuing a chain of two steps
    assert status[-2].fields["event"] == "fork"
    assert status[-1].fields["chains_alive"] == 5 and status[-1].fields["step"] == 3


async def test_only_the_leading_stream_is_published() -> None:
    gen = Counting(["a b c d e"], delay_s=0.001)
    feed = ProgressFeed()
    ctx = Context(PROBLEM, gen, feed=feed)

    async def one() -> str:
        text = ""
        async with contextlib.aclosing(ctx.stream(Sampling(max_tokens=20))) as deltas:
            async for delta in deltas:
                text += delta.text
        return text

    await asyncio.gather(one(), one())  # two at once: the first leads, whole
    await one()  # the lead is free again: this one leads
    tokens = kinds(list(feed._items), "token")
    assert [t.fields["stream"] for t in tokens] == [0] * 5 + [2] * 5
    assert "".join(t.text for t in tokens[:5]) == "a b c d e"


async def test_the_feed_is_closed_when_the_search_fails() -> None:
    gen = Counting([TEXT], fail_on=lambda prompt: True)
    feed = ProgressFeed()
    solved = await solve_problem(PROBLEM, SolveParts(gen, BestOfN(n=2)), feed=feed)
    assert isinstance(solved.error, ConnectionError) and feed.closed
    assert await asyncio.wait_for(drain(feed), 2) is not None


# --- cancellation ----------------------------------------------------------------------------


async def _until(condition: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.005)
    return bool(condition())


def _others() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


@pytest.mark.parametrize("trimmed", [False, True])
async def test_cancelling_a_search_ends_every_request_and_task(trimmed: bool) -> None:
    from trim import BudgetForcing

    gen = Counting(["w " * 60 + "\\boxed{5}"], delay_s=0.2)
    sampler = BudgetForcing(max_think_tokens=150) if trimmed else None
    parts = SolveParts(gen, BestOfN(n=4, max_tokens=200), judge=Grader(), sampler=sampler)
    before = _others()
    feed = ProgressFeed()
    reader = asyncio.ensure_future(drain(feed))
    task = asyncio.ensure_future(solve_problem(PROBLEM, parts, feed=feed))
    assert await _until(lambda: gen.in_flight >= (4 if trimmed else 1))
    await asyncio.sleep(0.05)  # mid-flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gen.running_requests() == 0 and feed.closed
    await asyncio.wait_for(reader, 2)  # the reader ends too
    assert await _until(lambda: _others() <= before, 2), _others() - before
    if trimmed:
        assert gen.aborted == 4  # every stream was closed before its end


async def test_cancelling_a_search_over_http_closes_its_requests() -> None:
    from reasoning.backends.openai_server import OpenAIGenerator

    with StubServer(max_requests=50, lifetime_s=30, hang_s=10) as stub:
        gen = OpenAIGenerator("embedded:smollm2-135m", base_urls=stub.base_url, served_model="stub")
        hanging = Problem("h", "HANG")
        for search in (BestOfN(n=2), Greedy()):  # a call, then a stream (a feed streams n=1)
            task = asyncio.ensure_future(
                solve_problem(hanging, SolveParts(gen, search), feed=ProgressFeed())
            )
            assert await _until(lambda: gen.running_requests() == 1)
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert gen.running_requests() == 0
        assert stub.count("HANG") == 2
        await gen.aclose()


# --- the real engine -------------------------------------------------------------------------


@pytest.fixture
def fresh_problem() -> Iterator[Problem]:
    # a question no cache holds: the engine must decode it
    yield Problem(f"cancel-{uuid.uuid4().hex[:8]}", "Write a long story about a cat, then 2 + 3.")


@pytest.mark.engine
def test_engine_cancelled_best_of_n_aborts_every_engine_request(engine, fresh_problem) -> None:  # noqa: ANN001
    from reasoning.loop import run_sync

    async def go() -> tuple[int, int, int]:
        parts = SolveParts(
            engine,
            BestOfN(n=4, temperature=1.0, max_tokens=1500),
            judge=Grader(),
            budget=Budget(),
        )
        feed = ProgressFeed()
        task = asyncio.ensure_future(solve_problem(fresh_problem, parts, feed=feed))
        assert await _until(lambda: engine.running_requests() >= 1, 120)
        await asyncio.sleep(0.5)  # decoding now
        peak = engine.running_requests()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _until(lambda: engine.running_requests() == 0, 5)
        inner = getattr(engine, "inner", engine)  # under a record/replay wrapper
        await _until(lambda: inner._engine.output_processor.get_num_unfinished_requests() == 0, 5)
        unfinished = inner._engine.output_processor.get_num_unfinished_requests()
        return peak, engine.running_requests(), unfinished

    peak, running, unfinished = run_sync(go())
    assert peak >= 1
    assert running == 0, "our count of engine requests did not come back to 0"
    assert unfinished == 0, "the engine still holds requests of the cancelled search"


def test_a_replaying_cache_reports_running_requests_without_building_its_engine(
    tmp_path: Any,
) -> None:
    from reasoning.cache.store import CallCache
    from reasoning.cache.wrappers import CachedGenerator

    built: list[int] = []

    def factory() -> Counting:
        built.append(1)
        return Counting([TEXT])

    cached = CachedGenerator(factory, CallCache(tmp_path / "c.sqlite"), "replay", name="x")
    assert cached.running_requests() == 0 and built == []
    live = CachedGenerator(Counting([TEXT]), CallCache(tmp_path / "d.sqlite"), "auto", name="y")
    live.inner.in_flight = 2  # type: ignore[attr-defined]
    assert live.running_requests() == 2


async def test_a_run_recorded_without_a_feed_replays_to_a_streaming_client(tmp_path: Any) -> None:
    from reasoning.cache.store import CallCache
    from reasoning.cache.wrappers import CachedGenerator

    path = tmp_path / "calls.sqlite"
    recorder = CachedGenerator(Counting([TEXT]), CallCache(path), "record", name="fake")
    recorded = await solve_problem(PROBLEM, SolveParts(recorder, Greedy(), judge=Grader()))

    def no_engine() -> Counting:
        raise AssertionError("replay built the generator")

    replayer = CachedGenerator(no_engine, CallCache(path), "replay", name="fake")
    feed = ProgressFeed()
    replayed = await solve_problem(
        PROBLEM, SolveParts(replayer, Greedy(), judge=Grader()), feed=feed
    )
    assert replayed.result().answer == recorded.result().answer == "5"
    assert replayed.ledger.generated_tokens == recorded.ledger.generated_tokens
    assert replayed.ledger.replayed_tokens == recorded.ledger.generated_tokens
    tokens = kinds([i async for i in feed], "token")
    assert "".join(t.text for t in tokens) == TEXT


@pytest.mark.engine
def test_a_watched_engine_call_returns_what_complete_returns(engine) -> None:  # noqa: ANN001
    """The same greedy request, watched or not: the same samples (a CPU engine takes no
    per-request seed, so only greedy samples compare; top_p keeps the top token), and what the
    watch was told adds up to each sample's text."""
    from reasoning.loop import run_sync

    inner = getattr(engine, "inner", engine)
    prompt = "Count from one to ten:"
    sampling = Sampling(n=3, temperature=1.0, top_p=1e-9, max_tokens=24)  # greedy, n > 1
    told: dict[int, str] = {}

    def watch(index: int, text: str) -> None:
        told[index] = told.get(index, "") + text

    async def both() -> tuple[list[Completion], list[Completion]]:
        plain = await inner.complete(prompt, sampling)
        return plain, await inner.complete_watched(prompt, sampling, watch)

    plain, watched = run_sync(both())
    assert [c.token_ids for c in watched] == [c.token_ids for c in plain]
    assert [c.text for c in watched] == [c.text for c in plain]
    assert [c.finish_reason for c in watched] == [c.finish_reason for c in plain]
    assert [told.get(i, "") for i in range(3)] == [c.text for c in watched]
