"""The scripted fakes: the search tests' hand-computed trees hold only if these do what they say."""

from __future__ import annotations

import asyncio
import math

import pytest

from reasoning import Chain, Problem, Sampling
from reasoning.types import Completion, FinishReason, Prompt, TokenPrompt
from tests.fakes import (
    EOS,
    Reply,
    RuleGenerator,
    ScriptedGenerator,
    StepVerifier,
    TokenRuleGenerator,
    always,
    chars,
    pieces,
    spaces,
    steps_of,
    words,
)

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


# --- the rule-based fake ------------------------------------------------------------------------


def one(gen: RuleGenerator, prompt: Prompt, sampling: Sampling | None = None) -> Completion:
    (out,) = asyncio.run(gen.complete(prompt, sampling or Sampling()))
    return out


def test_the_first_matching_rule_answers_and_an_unmatched_prompt_fails() -> None:
    gen = RuleGenerator(
        [("end", "by suffix"), (lambda p: p.startswith("Q"), "by test"), ("end", "never")]
    )
    assert one(gen, "Q and end").text == "by suffix"
    assert one(gen, "Q only").text == "by test"
    assert gen.prompts == ["Q and end", "Q only"]
    with pytest.raises(AssertionError, match="no rule"):
        one(gen, "nothing")


def test_units_split_a_text_losslessly_and_count_differently() -> None:
    text = " a  b\n\nc "
    for unit, n in ((spaces, 5), (words, 3), (pieces, 4), (chars, 9)):
        assert "".join(unit(text)) == text and len(unit(text)) == n, unit.__name__
    assert spaces("") == [""] and words("") == [] and pieces("") == []


def test_a_searched_reply_ends_at_the_earliest_stop_and_may_count_it() -> None:
    stops = Sampling(stop=("STOP", "END", "ST"))
    free = RuleGenerator([(always, "one two END three STOP")], unit=words)
    out = one(free, "p", stops)
    assert (out.text, out.tokens, out.finish_reason, out.stop) == ("one two ", 2, "stop", "END")
    assert isinstance(out.finish_reason, FinishReason) and not out.hit_eos
    counted = RuleGenerator([(always, "one two END three")], unit=words, count_stop=True)
    assert one(counted, "p", stops).tokens == 3  # the engine decoded the stop string
    tie = one(RuleGenerator([(always, "a STOP")], unit=words), "p", stops)
    assert tie.stop == "STOP"  # "STOP" and "ST" start together: the first listed wins
    eos = one(free, "p", Sampling(stop=("none",)))
    assert eos.hit_eos and eos.text == "one two END three STOP" and eos.tokens == 5


def test_a_sample_over_max_tokens_is_cut_and_a_stop_past_the_cap_is_not_reached() -> None:
    gen = RuleGenerator([(always, "a b c STOP d")], unit=words, count_stop=True)
    out = one(gen, "p", Sampling(max_tokens=2, stop=("STOP",)))
    assert (out.text, out.tokens, out.finish_reason, out.stop) == ("a b", 2, "length", None)
    out = one(gen, "p", Sampling(max_tokens=3, stop=("STOP",)))  # 4 tokens with the stop
    assert (out.text, out.finish_reason) == ("a b c", FinishReason.LENGTH)
    assert one(gen, "p", Sampling(max_tokens=4, stop=("STOP",))).stop == "STOP"


def test_a_token_cut_drops_the_token_a_stop_begins_in() -> None:
    sampling = Sampling(stop=("OP",))
    by_text = one(RuleGenerator([(always, "we add STOP more")], unit=pieces), "p", sampling)
    by_token = RuleGenerator([(always, "we add STOP more")], unit=pieces, stop_cut="token")
    assert by_text.text == "we add ST" and one(by_token, "p", sampling).text == "we add"
    assert one(by_token, "p", sampling).tokens == 2


def test_declared_replies_canned_completions_and_per_sample_lists() -> None:
    declared = RuleGenerator([(always, ("a b", "</T>"))], prompt_tokens=len, prefix_cache=2)
    out = one(declared, "abc", Sampling(stop=("x",)))
    assert (out.text, out.tokens, out.stop, out.prompt_tokens, out.cached_prompt_tokens) == (
        "a b",
        2,
        "</T>",
        3,
        2,
    )
    aborted = one(RuleGenerator([(always, Reply("a", finish=FinishReason.ABORT))]), "p")
    assert aborted.finish_reason == FinishReason.ABORT and aborted.stop is None
    forced = one(RuleGenerator([(always, Reply(" x y", tokens=1))]), "p", Sampling(max_tokens=1))
    assert (forced.text, forced.tokens) == (" x y", 1)
    canned = RuleGenerator([(always, Completion("z", 3, "length"))], prompt_tokens=7)
    assert one(canned, "p") == Completion("z", 3, "length", prompt_tokens=7)
    with pytest.raises(AssertionError, match="more than the call allows"):
        one(canned, "p", Sampling(max_tokens=2))
    per_sample = RuleGenerator([(always, ["first", Reply("second", "\n")])])
    got = asyncio.run(per_sample.complete("p", Sampling(n=2)))
    assert [(c.text, c.stop) for c in got] == [("first", None), ("second", "\n")]


def test_logprobs_come_from_the_table_or_the_reply_and_only_when_asked() -> None:
    def table(before: str, piece: str) -> dict[str, float]:
        return {piece: -0.5 * len(before), " Q": -3.0}

    gen = TokenRuleGenerator([(always, "a b")], table=table)
    plain = one(gen, "pp")
    assert plain.logprobs is None and plain.top_logprobs is None
    sampled = one(gen, "pp", Sampling(logprobs=0))
    assert sampled.logprobs == (-1.0, -1.5) and sampled.top_logprobs is None
    top = one(gen, "pp", Sampling(logprobs=2))
    assert top.top_logprobs == ({"a": -1.0, " Q": -3.0}, {" b": -1.5, " Q": -3.0})
    assert top.top_token_ids == ((gen.tokenize("a")[0], gen.tokenize(" Q")[0]),) + (
        (gen.tokenize(" b")[0], gen.tokenize(" Q")[0]),
    )
    fixed = RuleGenerator([(always, Reply("x y z", logprob=-0.25))], unit=words)
    assert one(fixed, "p", Sampling(logprobs=0)).logprobs == (-0.25,) * 3


def test_token_id_logprobs_cover_the_ids_asked_for() -> None:
    gen = RuleGenerator(
        [(always, "Yes more")],
        unit=words,
        id_logprobs=lambda prompt, ids: None if "drop" in prompt else {7: -0.1},
    )
    probe = Sampling(max_tokens=1, logprob_token_ids=(7, 8))
    out = one(gen, "p", probe)
    assert (out.text, out.finish_reason) == ("Yes", FinishReason.LENGTH)
    assert out.token_id_logprobs == ({7: -0.1, 8: -math.inf},)
    assert one(gen, "drop", probe).token_id_logprobs is None


def test_token_prompts_are_read_as_ids_and_samples_carry_their_ids() -> None:
    gen = TokenRuleGenerator([("Q: x", " so y")])
    ids = gen.tokenize("Q: x")
    out = one(gen, TokenPrompt(ids))
    assert gen.token_prompts == [ids] and gen.prompts == ["Q: x"]
    assert out.prompt_tokens == len(ids) == 2 and out.tokens == 2
    assert gen.detokenize(out.token_ids or ()) == out.text == " so y"


async def test_a_stream_sends_the_sample_piece_by_piece_and_counts_aborts() -> None:
    gen = TokenRuleGenerator([(always, "a b c STOP")])
    deltas = [d async for d in gen.stream("p", Sampling(stop=("STOP",), logprobs=0))]
    assert "".join(d.text for d in deltas) == "a b c "
    assert [d.finish_reason for d in deltas] == [None, None, None, "stop"]
    assert deltas[-1].stop == "STOP" and all(d.logprobs == (-0.1,) for d in deltas)
    stream = gen.stream("p", Sampling())
    await anext(stream)
    await stream.aclose()
    assert gen.aborted == 1 and len(gen.streams) == 2


async def test_a_delay_per_prompt_reorders_arrivals_and_fail_on_raises() -> None:
    arrived: list[str] = []

    def note(prompt: str, sampling: Sampling) -> str:
        arrived.append(prompt)
        return "ok"

    gen = RuleGenerator([(always, note)], delay_s=lambda p: 0.02 if p == "slow" else 0.0)
    await asyncio.gather(gen.complete("slow", STEP), gen.complete("fast", STEP))
    assert arrived == ["fast", "slow"] and gen.prompts == ["slow", "fast"]
    failing = RuleGenerator([(always, "x")], fail_on=lambda p: "bad" in p)
    with pytest.raises(ConnectionError):
        await failing.complete("bad", STEP)
