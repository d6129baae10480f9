"""Adaptive generation on the real engine: streaming with abort, exact continuation, thought
trimming of a forced thinking block, and HyPER and trimmed runs through the runner.

One engine for this module: the embedded SmolLM2 in float32 with a forced `<think>` block
(`model=smollm2-135m-think model.dtype=float32`). float32, because the exactness checks compare
a chunked decode with a whole one token for token, and in bfloat16 a chunk's prefill and the
step-by-step decode round differently (docs/adaptive-generation.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.experiment import run_experiment
from evals.grading import Grader
from reasoning.build import compose_config, generator_for
from reasoning.context import Context
from reasoning.loop import run_sync
from reasoning.types import Problem, Sampling, TokenPrompt
from search import BestOfN
from search.chunked import ChunkSampling, decode_chunks, start_chain
from trim.budget_forcing import BudgetForcing
from trim.solve_detect import SolveDetect

pytestmark = pytest.mark.engine

MODEL = ["model=smollm2-135m-think", "model.dtype=float32"]
STORY = Problem("story", "Write a long story about a cat who learns to count, then compute 12 * 7.")
ARITH = Problem("arith", "Explain step by step how to compute 37 * 23.", "851")


@pytest.fixture(scope="module")
def thinker() -> Iterator[Any]:
    generator = generator_for(compose_config(MODEL).backend)
    generator.start()
    yield generator
    generator.close()


def _unfinished(generator: Any) -> int:
    return int(generator._engine.output_processor.get_num_unfinished_requests())


async def _wait_for(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_an_aborted_stream_leaves_the_engine_and_meters_what_was_delivered(thinker) -> None:  # noqa: ANN001
    async def go() -> tuple[int, bool, bool, Context, list[str]]:
        ctx = Context(STORY, thinker)
        # a second request keeps the engine stepping, so the scheduler reports after the abort
        clock = asyncio.ensure_future(
            thinker.complete(thinker.render(STORY), Sampling(temperature=0, max_tokens=400))
        )
        assert await _wait_for(lambda: thinker.watch.running >= 1)
        delivered = 0
        finishes = []
        stream = ctx.stream(Sampling(temperature=0, max_tokens=400))
        async with contextlib.aclosing(stream):
            async for delta in stream:
                delivered += delta.tokens
                finishes.append(delta.finish_reason)
                if delivered >= 12:
                    break
        # the aborted request leaves the scheduler's running set while the clock runs on
        left = await _wait_for(lambda: thinker.watch.running == 1 or clock.done())
        clock_running = not clock.done()
        await clock
        return delivered, left and clock_running, _unfinished(thinker) == 0, ctx, finishes

    delivered, left_running_set, nothing_unfinished, ctx, finishes = run_sync(go())
    assert 12 <= delivered < 400
    assert left_running_set, "the aborted request was still scheduled while another ran"
    assert nothing_unfinished
    assert all(f is None for f in finishes)  # it was cut, not finished
    led = ctx.ledger
    assert (led.generated_tokens, led.generator_calls, led.samples) == (delivered, 1, 1)
    assert led.prompt_tokens == len(thinker.tokenize(thinker.render(STORY)))


def test_a_trace_decoded_in_chunks_equals_the_trace_decoded_whole(thinker) -> None:  # noqa: ANN001
    async def go() -> tuple[Any, Any, list[int], Context]:
        ctx = Context(STORY, thinker)
        (whole,) = await ctx.generate(Sampling(temperature=0, max_tokens=90))
        streamed: list[int] = []
        stream = ctx.stream(Sampling(temperature=0, max_tokens=90))
        async with contextlib.aclosing(stream):
            async for delta in stream:
                streamed.extend(delta.token_ids)
        chain = start_chain()
        policy = ChunkSampling(temperature=0, round_tokens=16)
        while not chain.finished and len(chain.token_ids or ()) < 90:
            (chunk,) = await decode_chunks(ctx, [chain], policy)
            chain = chunk.chain
        return whole, chain, streamed, ctx

    whole, chain, streamed, ctx = run_sync(go())
    assert whole.finish_reason == "length"  # long enough to cross several chunk boundaries
    assert chain.token_ids[:90] == whole.token_ids  # continued from the exact token ids
    assert len(chain.steps) >= 6 and chain.delimiter == ""
    assert chain.text.startswith(whole.text[:200])
    assert tuple(streamed) == whole.token_ids  # a stream is the same decode
    assert ctx.ledger.samples == 3  # the whole one, the stream, the chunked chain's first chunk


def test_a_forced_thinking_block_is_cut_and_the_model_then_answers(thinker) -> None:  # noqa: ANN001
    trimmer = BudgetForcing(max_think_tokens=24, answer_tokens=24)
    ctx = Context(ARITH, thinker, judge=Grader(), sampler=trimmer, seed=3)
    outcome = run_sync(BestOfN(n=2, max_tokens=300, temperature=0.7).run(ARITH, ctx))
    cuts = [e for e in ctx.events if e["event"] == "trim"]
    assert len(cuts) == 2 and all(e["reason"] == "budget" for e in cuts)
    assert all(e["at_token"] == 24 and e["tokens_saved"] == 300 - 24 for e in cuts)
    assert thinker.render(ARITH).endswith("<think>\n")
    for chain in outcome.chains:
        thinking, close, answer = chain.text.partition("</think>")
        assert close and thinking.strip()
        assert answer.startswith(trimmer.answer_cue)
        assert answer.removeprefix(trimmer.answer_cue).strip()  # the model wrote on after the cue
    continuation = sum(e["continuation_tokens"] for e in cuts)
    assert 0 < continuation <= 2 * 24
    # the ledger saw both streams up to their cut and both answers
    assert ctx.ledger.generated_tokens == 2 * 24 + continuation
    assert sum(c.tokens for c in outcome.chains) == ctx.ledger.generated_tokens
    assert ctx.ledger.samples == 2


def test_the_detect_probe_reads_p_yes_on_the_exact_prefix_and_cuts(thinker) -> None:  # noqa: ANN001
    # SmolLM2 never hesitates ("Wait", "Hmm"); a story's paragraph openers stand in as cues
    trimmer = SolveDetect(
        threshold=0.01,
        cues=("The", "As", "One", "She", "He", "It", "They", "But", "And", "So", "When", "Then"),
        answer_tokens=8,
    )
    ctx = Context(STORY, thinker, judge=Grader(), sampler=trimmer, seed=1)
    outcome = run_sync(BestOfN(n=1, max_tokens=400, temperature=0).run(STORY, ctx))
    (cut,) = [e for e in ctx.events if e["event"] == "trim"]
    assert cut["reason"] == "answer_reached" and 0.01 <= cut["p_yes"] <= 1
    (chain,) = outcome.chains
    assert "</think>" in chain.text and cut["at_token"] < 400
    # each probe is a one-token side request on the exact prefix: metered, not a sample
    probes = ctx.ledger.generator_calls - 2  # the stream and the answer
    assert probes >= 1
    assert ctx.ledger.samples == 1
    assert ctx.ledger.generated_tokens == cut["at_token"] + cut["continuation_tokens"] + probes


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "overrides",
    [
        ["search=hyper", "search.n=3", "search.round_tokens=16", "budget.generated_tokens=400"],
        ["+trim=budget", "trim.max_think_tokens=4", "search.n=2", "search.max_tokens=96"],
        ["+trim=trimr", "search.n=2", "search.max_tokens=96", "trim.underthink_share=0.25"],
    ],
    ids=["hyper", "budget", "trimr"],
)
def test_runs_write_results_summaries_and_traces_with_their_events(
    thinker,  # noqa: ANN001
    tmp_path: Path,
    overrides: list[str],
) -> None:
    cfg = compose_config([*MODEL, *overrides, "dataset.arith.n=2", "progress=false"])
    summary = run_experiment(cfg, tmp_path)
    assert summary["problems"] == 2 and summary["errors"] == 0
    records = _records(tmp_path)
    assert len(records) == 2
    trims = 0
    for record in records:
        trace = json.loads((tmp_path / "traces" / f"{record['id']}.json").read_text())
        events = trace["details"]["events"]
        kinds = {e["event"] for e in events}
        if overrides[0] == "search=hyper":
            assert "hyper" in kinds and record["search"] == "hyper"
            statuses = {n["status"] for n in trace["tree"]["nodes"]}
            assert "forked" in statuses or "pruned" in statuses  # the pool changed
        else:
            trims += sum(1 for e in events if e["event"] == "trim")
        assert record["events"] == _counts(events)
    assert summary["events"]
    if overrides[0] != "search=hyper":
        # samples reach their rule (a 4-token ceiling, a share of the budget); a sample may still
        # end on its own first, and the engine's batching varies its text, so the run as a whole
        # is asserted, not each problem
        assert trims >= 1


def _counts(events: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        key = f"{e['event']}:{e['reason']}" if e.get("reason") else e["event"]
        out[key] = out.get(key, 0) + 1
    return out


def test_chunked_decoding_continues_exact_ids_not_retokenized_text(thinker) -> None:  # noqa: ANN001
    """A forced token the text would not tokenize back to: the continuation still starts from
    exactly the ids given (the prompt the engine saw has exactly those tokens)."""
    prompt_ids = thinker.tokenize(thinker.render(ARITH))
    odd = thinker.tokenize(" t") + thinker.tokenize("he")  # " the" as two tokens, not one
    assert thinker.tokenize(" the") != odd
    out = run_sync(
        thinker.complete(TokenPrompt(prompt_ids + odd), Sampling(temperature=0, max_tokens=4))
    )
    assert out[0].prompt_tokens == len(prompt_ids) + len(odd)
