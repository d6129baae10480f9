"""The scripted fakes: the search tests' hand-computed trees hold only if these do what they say."""

from __future__ import annotations

import asyncio

import pytest

from reasoning import Chain, Problem, Sampling
from tests.fakes import EOS, ScriptedGenerator, StepVerifier, steps_of

PROBLEM = Problem("f", "What is 1 + 1?", "2")
STEP = Sampling(stop=("\n\n",), max_tokens=10)


async def test_steps_end_on_the_stop_unless_marked_eos_or_the_call_has_no_stop() -> None:
    gen = ScriptedGenerator(steps=["a b", "c" + EOS])
    step, last = await gen.complete(gen.render(PROBLEM), Sampling(n=2, stop=("\n\n",)))
    assert (step.text, step.finish_reason, step.stop) == ("a b", "stop", "\n\n")
    assert (last.text, last.tokens, last.stop) == ("c", 1, None) and last.hit_eos
    [free] = await gen.complete(gen.render(PROBLEM), Sampling())
    assert free.hit_eos and free.text == "a b"  # no stop string requested: the step is the last
    # whole-solution texts end at EOS even when the call asks for a stop string
    [whole] = await ScriptedGenerator(["a b"]).complete(gen.render(PROBLEM), STEP)
    assert whole.hit_eos


async def test_a_text_longer_than_max_tokens_is_cut_and_hits_no_stop() -> None:
    gen = ScriptedGenerator(steps=["one two three" + EOS])
    [cut] = await gen.complete(gen.render(PROBLEM), Sampling(stop=("\n\n",), max_tokens=2))
    assert (cut.text, cut.tokens, cut.finish_reason, cut.stop) == ("one two", 2, "length", None)


async def test_the_step_script_sees_the_steps_parsed_from_the_prompt_and_the_sample_index() -> None:
    seen: list[tuple[tuple[str, ...], int]] = []

    def script(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
        seen.append((steps, k))
        return f"s{len(steps)}.{k}"

    gen = ScriptedGenerator(steps=script)
    prompt = gen.render(PROBLEM, Chain(steps=("x = 1", "", "y")))
    sampling = Sampling(n=2, stop=("\n\n",))
    out = await gen.complete(prompt, sampling)
    assert seen == [(("x = 1", "", "y"), 0), (("x = 1", "", "y"), 1)]
    assert [c.text for c in out] == ["s3.0", "s3.1"] and gen.calls == [(prompt, sampling)]
    assert out[0].prompt_tokens == len(prompt.split())
    assert steps_of(gen.render(PROBLEM)) == ()


@pytest.mark.parametrize(("concurrent", "seen"), [(False, [1, 2]), (True, [2, 2])])
async def test_concurrent_calls_are_all_recorded_before_any_answers(
    concurrent: bool, seen: list[int]
) -> None:
    recorded: list[int] = []

    def script(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
        recorded.append(len(gen.calls))  # calls made so far when this one answers
        return "x"

    gen = ScriptedGenerator(steps=script, concurrent=concurrent)
    prompt = gen.render(PROBLEM)
    await asyncio.gather(gen.complete(prompt, STEP), gen.complete(prompt, STEP))
    assert recorded == seen


async def test_step_verifier_scores_each_step_and_rejects_unscripted_ones() -> None:
    chain = Chain(steps=("a", "b"))
    assert await StepVerifier({"a": 0.25, "b": 0.5}).score(PROBLEM, [chain]) == [[0.25, 0.5]]
    assert await StepVerifier(len).score(PROBLEM, [Chain(steps=("abc",))]) == [[3]]
    with pytest.raises(KeyError):
        await StepVerifier({"a": 0.25}).score(PROBLEM, [chain])
