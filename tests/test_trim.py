"""Thought trimming on the scripted generator: splitting, loops, each policy's rule, the
returned completion, metering, aborts, events, and a wrapped best-of-N.

Scripted texts put a space before every blank line so that the fake's word count (which caps
a sample) and its streamed pieces (which meter it) agree: one token per piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from evals.grading import Grader
from reasoning import Context, Problem, api
from reasoning.budget import Budget
from reasoning.build import ConfigError, build_sampler, compose_config, instantiate_group
from reasoning.prompts import ThinkingFormat
from reasoning.settings import default_of, fields_of
from reasoning.types import Completion, FinishReason, Sampling
from search.beam import Beam
from search.best_of_n import BestOfN
from search.hyper import HyPER
from tests.conftest import REPO
from tests.fakes import EOS, ConstantVerifier, Reply, ScriptedGenerator
from trim import BudgetForcing, SolveDetect, Trimmer, TrimR
from trim.repetition import repeats_ngram
from trim.solve_detect import p_yes
from trim.thoughts import Thoughts, opens_with_cue, thought_boundaries
from trim.trimmer import thinking_ahead

PROBLEM = Problem("p", "What is 2 + 3?", "5")
THINK = ThinkingFormat(forced=True)
CUE = "\nFinal Answer:"  # s1's answer cue, every trimmer's default
OLD_CUE = "\n\nFinal answer: $\\boxed{"  # the toolkit's earlier cue, now an option
ANSWER = "5"  # the scripted continuation: one token


def answers(prompt: str) -> bool:
    """Whether a prompt asks for the answer after a cut (either cue)."""
    return prompt.endswith((CUE, OLD_CUE))


def script(thinking: str, *, extended: str = "", checker: str = "NONE") -> Callable[..., str]:
    """The sample's thinking; the answer after a cut; a reply to a side question; what the
    model writes after an extension cue."""

    def text(prompt: str, sampling: Sampling) -> str:
        if answers(prompt):
            return ANSWER
        if prompt.startswith("user: "):
            return checker(prompt) if callable(checker) else checker
        if prompt.endswith("Wait"):
            return extended
        return thinking

    return text


def make(
    texts: Callable[..., str], trimmer: Trimmer, thinking: ThinkingFormat | None = THINK
) -> tuple[ScriptedGenerator, Context]:
    gen = ScriptedGenerator(texts)
    gen.thinking = thinking
    return gen, Context(PROBLEM, gen, judge=Grader(), sampler=trimmer)


async def one(ctx: Context, max_tokens: int = 100) -> Completion:
    (completion,) = await ctx.generate(Sampling(max_tokens=max_tokens))
    return completion


def trims(ctx: Context) -> list[dict[str, object]]:
    return [e for e in ctx.events if e["event"] == "trim"]


# --- thought splitting ------------------------------------------------------------------------


def test_thoughts_split_at_blank_lines_that_open_with_a_cue() -> None:
    text = "a = 1. \n\nWait, b. \n\nSo c. \n\nHmm x"
    assert thought_boundaries(text) == [7, 26]  # "So" opens no thought
    assert text[7:9] == "\n\n" and text[26:28] == "\n\n"
    assert thought_boundaries("a.\n\nLet me verify: 2") == [2]
    assert thought_boundaries("a.\n\n\nBut no") == [2]  # extra blank lines before the cue
    assert thought_boundaries("a.\n\nSo b", cues=("So",)) == [2]


@pytest.mark.parametrize(
    ("visible", "decided"),
    [("Wai", None), ("Wait", None), ("Wait,", True), ("Waiting", False), ("Let me", None),
     ("Let me check", None), ("Let me compute", False), ("We", False)],
)  # fmt: skip
def test_a_boundary_waits_for_the_first_words(visible: str, decided: bool | None) -> None:
    from trim.thoughts import REFLECTION_CUES

    assert opens_with_cue(visible, REFLECTION_CUES) is decided


def test_the_incremental_splitter_reports_each_boundary_once() -> None:
    thoughts = Thoughts(("Wait",))
    assert thoughts.update("x = 1.\n\n") == []
    assert thoughts.update("x = 1.\n\nWai") == []
    assert thoughts.update("x = 1.\n\nWait,") == [6]
    assert thoughts.update("x = 1.\n\nWait, no.") == []
    assert thoughts.count == 1 and thoughts.span(0) == (0, 6)


def test_repetition_detector() -> None:
    loop = [1, 2, 1, 2, 1, 2]
    assert repeats_ngram(loop, window=6, ngram=2, repeats=3)  # (1, 2) at 0, 2, 4
    assert not repeats_ngram(loop, window=6, ngram=2, repeats=4)
    assert not repeats_ngram(loop, window=4, ngram=2, repeats=3)  # only the last 4 count
    assert not repeats_ngram([1, 2, 3, 4, 5, 6], window=6, ngram=1, repeats=2)
    assert repeats_ngram([9] * 5, window=5, ngram=3, repeats=3)  # overlapping spans count


def test_p_yes_normalises_over_yes_and_no() -> None:
    assert p_yes(math.log(0.6), math.log(0.2)) == pytest.approx(0.75)
    assert p_yes(-1000.0, 0.0) == 0.0
    assert p_yes(-math.inf, -math.inf) is None


def test_only_a_prompt_inside_or_before_thinking_is_watched() -> None:
    assert thinking_ahead(None, "Q: x\nA: ")
    assert thinking_ahead(THINK, "Q: x\nA: <think>\n")
    assert thinking_ahead(ThinkingFormat(), "Q: x\nA: ")  # the model opens it itself
    assert not thinking_ahead(THINK, "Q: x\nA: <think>\nok </think>")


# --- TrimR ------------------------------------------------------------------------------------

AGREEING = (
    "2 + 3 = 5. \n\nWait, 3 + 2 = 5 too. \n\nHmm, so 5 again. \n\nBut one more look. "
    "\n\nActually it is fine and I am done thinking now. </think> \\boxed{5}"
)


@pytest.mark.parametrize("agree", [2, 3])
async def test_trimr_overthinking_cuts_after_the_mth_agreeing_thought(agree: int) -> None:
    # the lenient checker reads "= 5" as each thought's answer (its last-number fallback)
    gen, ctx = make(script(AGREEING), TrimR(agree=agree, checker="grader"))
    out = await one(ctx)
    boundaries = thought_boundaries(AGREEING)
    kept = AGREEING[: boundaries[agree - 1]]  # thoughts 1..m, the m-th's blank line dropped
    cue = TrimR.conclude_cue + "</think>" + CUE
    assert out.text == kept + cue + ANSWER
    (event,) = trims(ctx)
    assert event["reason"] == "overthinking" and event["thoughts"] == agree
    assert event["answer"] == "5" and event["at_char"] == len(kept)
    assert event["continuation_tokens"] == 1 and gen.aborted == 1
    streamed = event["at_token"]
    assert isinstance(streamed, int) and streamed < len(gen.tokenize(AGREEING))
    assert event["tokens_saved"] == 100 - streamed
    assert out.tokens == streamed + 1 == ctx.ledger.generated_tokens
    assert ctx.ledger.samples == 1 and out.finish_reason == FinishReason.EOS
    # token_ids: the model's own tokens only, the cue left out
    assert gen.detokenize(out.token_ids or ()) == kept + ANSWER


async def test_trimr_does_not_cut_thoughts_that_disagree() -> None:
    text = "x is 4. \n\nWait, no, x is 6. \n\nHmm, x is 7. \n\nSo done. </think> \\boxed{7}"
    gen, ctx = make(script(text), TrimR(agree=2))
    out = await one(ctx)
    assert out.text == text and trims(ctx) == [] and gen.aborted == 0
    assert out.tokens == len(gen.tokenize(text)) == ctx.ledger.generated_tokens


async def test_trimr_underthinking_by_thought_count() -> None:
    text = "x is 4. \n\nWait, 6. \n\nHmm, 7. \n\nBut 8. \n\nAlternatively 9. </think> \\boxed{9}"
    gen, ctx = make(script(text), TrimR(max_thoughts=3))
    out = await one(ctx)
    kept = text[: thought_boundaries(text)[2]]
    assert out.text == kept + TrimR.force_cue + "</think>" + CUE + ANSWER
    (event,) = trims(ctx)
    assert event["reason"] == "underthinking" and event["thoughts"] == 3


async def test_trimr_underthinking_by_share_of_max_tokens() -> None:
    words = " ".join(["step"] * 30) + " </think> \\boxed{5}"
    gen, ctx = make(script(words), TrimR(underthink_share=0.5))
    out = await one(ctx, max_tokens=20)
    kept = " ".join(["step"] * 10)  # 10 = 0.5 * 20 tokens, then the cut
    assert out.text == kept + TrimR.force_cue + "</think>" + CUE + ANSWER
    (event,) = trims(ctx)
    assert (event["reason"], event["at_token"], event["tokens_saved"]) == ("underthinking", 10, 10)
    assert event["at_char"] == len(kept) and event["thoughts"] == 0
    assert ctx.ledger.generated_tokens == out.tokens == 11 and gen.aborted == 1


async def test_trimr_repetition_forces_a_conclusion() -> None:
    text = "I" + " think I" * 20 + " </think> \\boxed{5}"
    _, ctx = make(script(text), TrimR(window=12, ngram=2, repeats=3, underthink_share=1.0))
    out = await one(ctx)
    # tokens: "I", " think", " I", ...: (" think", " I") is complete for the 3rd time at 7
    (event,) = trims(ctx)
    assert (event["reason"], event["at_token"]) == ("repetition", 7)
    assert out.text == "I think I think I think I" + TrimR.force_cue + "</think>" + CUE + ANSWER


async def test_trimr_model_checker_asks_the_policy_model_and_meters_it() -> None:
    def reply(prompt: str) -> str:
        return "5" if "= 5" in prompt or "5 too" in prompt else "NONE"

    gen, ctx = make(script(AGREEING, checker=reply), TrimR(checker="model"))
    out = await one(ctx)
    side = [(p, s) for p, s in gen.calls if p.startswith("user: ")]
    assert len(side) >= 2
    assert all(s.temperature == 0 and s.max_tokens == 32 and s.n == 1 for _, s in side)
    assert "What final answer does this reasoning reach?" in side[0][0]
    assert side[0][0].startswith("user: 2 + 3 = 5. \n\n")
    (event,) = trims(ctx)
    assert event["reason"] == "overthinking" and event["thoughts"] == 2
    side_tokens = sum(1 for _ in side)  # each reply is one word
    assert ctx.ledger.generated_tokens == out.tokens + side_tokens
    assert ctx.ledger.samples == 1


async def test_trimr_on_a_model_that_does_not_think() -> None:
    thinking = AGREEING.replace(" </think>", "")
    gen, ctx = make(script(thinking), TrimR(checker="grader"), thinking=None)
    out = await one(ctx)
    kept = AGREEING[: thought_boundaries(AGREEING)[1]]
    assert out.text == kept + TrimR.conclude_cue + CUE + ANSWER  # no close tag
    assert "<think>" not in gen.streams[0][0]


# --- Solve-Detect-Verify's detect step --------------------------------------------------------


class ProbedGenerator(ScriptedGenerator):
    """Answers a yes/no probe with the logprobs of the two label ids: P(Yes) from the prompt."""

    def __init__(self, texts: Callable[..., str], p: Callable[[str], float | None]) -> None:
        probe = Reply(" Yes", finish=FinishReason.LENGTH, tokens=1)
        super().__init__(
            lambda prompt, s: probe if s.logprob_token_ids else texts(prompt, s),
            id_logprobs=lambda prompt, ids: labels(p(prompt), ids),
        )


def labels(p: float | None, ids: tuple[int, ...]) -> dict[int, float] | None:
    """{yes: log p, no: log(1 - p)} for the label ids (yes, no); None: no logprobs."""
    return None if p is None else {ids[0]: math.log(p), ids[1]: math.log(1 - p)}


HESITANT = "x = 5. \n\nWait, is x 5? \n\nHmm, yes x = 5. \n\nWait, sure. </think> \\boxed{5}"


def _sdv(threshold: float, p: Callable[[str], float | None]) -> tuple[ProbedGenerator, Context]:
    gen = ProbedGenerator(script(HESITANT), p)
    gen.thinking = THINK
    return gen, Context(PROBLEM, gen, judge=Grader(), sampler=SolveDetect(threshold=threshold))


def _second_probe_sure(prompt: str) -> float:
    return 0.85 if "is x 5?" in prompt else 0.5  # the first boundary: unsure


async def test_sdv_cuts_when_p_yes_reaches_the_threshold() -> None:
    gen, ctx = _sdv(0.8, _second_probe_sure)
    out = await one(ctx)
    boundaries = thought_boundaries(HESITANT, cues=SolveDetect.cues)
    kept = HESITANT[: boundaries[1]]
    assert out.text == kept + "\n</think>" + CUE + ANSWER
    (event,) = trims(ctx)
    assert event["reason"] == "answer_reached" and event["p_yes"] == pytest.approx(0.85)
    assert event["thoughts"] == 2 and gen.aborted == 1
    probes = [(p, s) for p, s in gen.calls if s.logprob_token_ids]
    rendered = gen.render(PROBLEM)
    probe = SolveDetect.probe
    assert probes[0][0] == rendered + HESITANT[: boundaries[0]] + probe  # the exact prefix
    assert probes[1][0] == rendered + kept + probe
    labels = (gen.tokenize(" Yes")[0], gen.tokenize(" No")[0])
    assert all(s.logprob_token_ids == labels and s.max_tokens == 1 for _, s in probes)
    assert ctx.ledger.generated_tokens == out.tokens + len(probes)


async def test_sdv_does_not_cut_below_the_threshold() -> None:
    gen, ctx = _sdv(0.9, _second_probe_sure)
    out = await one(ctx)
    assert out.text == HESITANT and trims(ctx) == [] and gen.aborted == 0


async def test_sdv_without_label_logprobs_fails_at_the_first_probe_reply() -> None:
    """A backend that ignores `logprob_token_ids` would leave the detector unable to fire on
    any sample (issue 19): the first probe reply that shows it fails the sample, naming the
    trimmer, its label keys and what the backend must return; the trace keeps why."""
    gen, ctx = _sdv(0.8, lambda prompt: None)
    with pytest.raises(ValueError) as err:
        await one(ctx)
    message = str(err.value)
    assert message.startswith("trim=sdv reads the probe's logprobs of token ids ")
    assert "(trim.yes='Yes')" in message and "(trim.no='No')" in message
    assert "the backend returned none" in message and "logprob_token_ids" in message
    failed = [e for e in ctx.events if e["event"] == "probe_failed"]
    assert len(failed) == 1 and failed[0]["policy"] == "sdv"
    assert sum(1 for _, s in gen.calls if s.logprob_token_ids) == 1  # no probe after it
    assert trims(ctx) == []


async def test_trimr_side_requests_stay_within_max_thoughts() -> None:
    """A fan-out bound (issue 19): however many thoughts stream past before the checker's
    replies come back, a sample asks at most max_thoughts side questions (the verdict of thought
    max_thoughts - 1 always cuts, so no later verdict is ever read)."""
    thinking = (
        "Start. " + "".join(f"\n\nWait, look {i}. " for i in range(12)) + "</think> \\boxed{5}"
    )
    gen, ctx = make(script(thinking), TrimR(checker="model", max_thoughts=3))
    gen.delay_s = lambda prompt: 0.02 if prompt.startswith("user: ") else 0.0  # slow checker
    await one(ctx, max_tokens=400)
    side = [p for p, _ in gen.calls if p.startswith("user: ")]
    assert 1 <= len(side) <= 3


# --- side requests the budget refuses ---------------------------------------------------------


def _spent(trimmer: Trimmer, gen: ScriptedGenerator) -> Context:
    """A Context whose whole token budget the sample's own stream holds (30 of 30), so every
    side request comes back refused (`ctx.try_generate`)."""
    gen.thinking = THINK
    budget = Budget(generated_tokens=30)
    return Context(PROBLEM, gen, judge=Grader(), sampler=trimmer, budget=budget)


async def test_a_refused_sdv_probe_is_no_verdict_and_no_probe_failure() -> None:
    gen = ProbedGenerator(script(HESITANT), _second_probe_sure)  # would cut at the 2nd probe
    ctx = _spent(SolveDetect(threshold=0.8), gen)
    out = await one(ctx, max_tokens=30)
    assert out.text == HESITANT and trims(ctx) == []
    assert [e for e in ctx.events if e["event"] == "probe_failed"] == []  # not the backend's fault
    assert not any(s.logprob_token_ids for _, s in gen.calls)  # refused before the generator
    assert ctx.ledger.generator_calls == 1


async def test_a_refused_trimr_question_reads_no_answer() -> None:
    gen = ScriptedGenerator(script(AGREEING, checker="5"))  # would agree at the 2nd thought
    ctx = _spent(TrimR(checker="model", underthink_share=0.6), gen)
    await one(ctx, max_tokens=30)
    (event,) = trims(ctx)
    assert (event["reason"], event["answer"]) == ("underthinking", None)  # the share rule
    assert not any(p.startswith("user: ") for p, _ in gen.calls)


# --- budget forcing ---------------------------------------------------------------------------


async def test_budget_cuts_at_exactly_max_think_tokens() -> None:
    thinking = " ".join(f"w{i}" for i in range(20)) + " </think> \\boxed{5}"
    gen, ctx = make(script(thinking), BudgetForcing(max_think_tokens=5))
    out = await one(ctx)
    assert out.text == "w0 w1 w2 w3 w4" + "\n</think>" + CUE + ANSWER
    (event,) = trims(ctx)
    assert (event["reason"], event["at_token"], event["tokens_saved"]) == ("budget", 5, 95)
    assert gen.aborted == 1 and ctx.ledger.generated_tokens == out.tokens == 6
    # the continuation continues the exact ids: prompt + kept + cue
    (prompt, sampling), *_ = [(p, s) for p, s in gen.calls if p.endswith(CUE)]
    assert prompt == gen.render(PROBLEM) + "w0 w1 w2 w3 w4\n</think>" + CUE
    # a free answer phase: what thinking left of the sample's max_tokens
    assert sampling.max_tokens == 100 - 5 and sampling.n == 1


async def test_budget_extends_thinking_that_ends_too_early() -> None:
    first = "a b </think> \\boxed{3}"
    more = " more thinking here ok </think> \\boxed{5}"
    policy = BudgetForcing(max_think_tokens=50, min_think_tokens=6)
    gen, ctx = make(script(first, extended=more), policy)
    out = await one(ctx)
    assert out.text == "a b Wait" + more  # the close tag and the early answer dropped
    (extend,) = [e for e in ctx.events if e["event"] == "extend"]
    assert (extend["at_token"], extend["at_char"], extend["cue"]) == (3, 4, "Wait")
    assert trims(ctx) == [] and gen.aborted == 1  # the first stream left at its close tag
    assert gen.streams[1][0] == gen.render(PROBLEM) + "a b Wait"
    assert gen.streams[1][1].max_tokens == 100 - 3  # what the sample's cap has left
    assert out.tokens == 3 + 6 == ctx.ledger.generated_tokens
    assert ctx.ledger.samples == 1


async def test_budget_extends_at_eos_at_most_max_extensions_times() -> None:
    policy = BudgetForcing(
        max_think_tokens=90, min_think_tokens=50, max_extensions=1, extend_cue="\nWait"
    )
    gen = ScriptedGenerator(lambda p, s: " still 4" if p.endswith("Wait") else "x is 4")
    ctx = Context(PROBLEM, gen, judge=Grader(), sampler=policy)  # a model that does not think
    out = await one(ctx)
    assert out.text == "x is 4\nWait still 4"
    assert len([e for e in ctx.events if e["event"] == "extend"]) == 1
    assert len(gen.streams) == 2 and out.tokens == 5 == ctx.ledger.generated_tokens


async def test_a_closed_thinking_block_is_not_watched() -> None:
    gen, ctx = make(script("w1 w2 w3 w4 w5"), BudgetForcing(max_think_tokens=2))
    prompt = "Q: x\nA: <think>\nok </think>"
    (out,) = await BudgetForcing(max_think_tokens=2).sample(ctx, prompt, Sampling(max_tokens=9))
    assert out.text == "w1 w2 w3 w4 w5" and trims(ctx) == [] and gen.aborted == 0


# --- the forced end and s1's rules (issue 20) -------------------------------------------------

TWENTY = " ".join(f"w{i}" for i in range(20)) + " </think> \\boxed{9}"


@pytest.mark.parametrize("policy", [BudgetForcing, TrimR, SolveDetect])
def test_every_trimmer_forces_s1s_end_by_default(policy: type[Trimmer]) -> None:
    """s1 writes the end-of-thinking delimiter, then "\\nFinal Answer:", and lets the answer
    run; no trimmer opens a box or caps the answer at 256 tokens unless asked."""
    assert policy.answer_cue == "\nFinal Answer:"
    assert policy.answer_tokens == 32768  # s1's answer-phase cap; the sample's own cap binds first


async def test_the_forced_end_is_s1s_and_the_grader_reads_its_answer() -> None:
    gen, ctx = make(script(TWENTY), BudgetForcing(max_think_tokens=5))
    out = await one(ctx)
    assert out.text == "w0 w1 w2 w3 w4\n</think>\nFinal Answer:" + ANSWER
    assert Grader().extract(out.text) == "5"  # the lenient grader reads after "Final Answer:"


@pytest.mark.parametrize(("max_tokens", "answer_tokens", "room"), [(100, None, 95), (100, 8, 8)])
async def test_the_answer_phase_is_free_up_to_what_the_sample_has_left(
    max_tokens: int, answer_tokens: int | None, room: int
) -> None:
    keys = {} if answer_tokens is None else {"answer_tokens": answer_tokens}
    gen, ctx = make(script(TWENTY), BudgetForcing(max_think_tokens=5, **keys))
    await one(ctx, max_tokens=max_tokens)
    (sampling,) = [s for p, s in gen.calls if answers(p)]
    assert sampling.max_tokens == room


@pytest.mark.parametrize(("max_tokens", "room"), [(100, 95), (400, 256)])
async def test_the_toolkits_earlier_end_is_an_option(max_tokens: int, room: int) -> None:
    """answer_cue="\\n\\nFinal answer: $\\\\boxed{" with answer_tokens=256 is the earlier end;
    the answer is still bounded by what the sample has left."""
    policy = BudgetForcing(max_think_tokens=5, answer_cue=OLD_CUE, answer_tokens=256)
    gen, ctx = make(script(TWENTY), policy)
    out = await one(ctx, max_tokens=max_tokens)
    assert out.text == "w0 w1 w2 w3 w4\n</think>" + OLD_CUE + ANSWER
    (sampling,) = [s for p, s in gen.calls if answers(p)]
    assert sampling.max_tokens == room


async def test_budget_auto_ceiling_leaves_100_tokens_for_the_answer() -> None:
    """max_think_tokens null is s1's `auto`: the sample's max_tokens less 100."""
    assert BudgetForcing.max_think_tokens is None
    words = " ".join(f"w{i}" for i in range(120)) + " </think> \\boxed{9}"
    gen, ctx = make(script(words), BudgetForcing())
    out = await one(ctx, max_tokens=105)
    (event,) = trims(ctx)
    assert (event["reason"], event["at_token"]) == ("budget", 5)
    assert out.text.endswith("w4\n</think>" + CUE + ANSWER)
    (sampling,) = [s for p, s in gen.calls if answers(p)]
    assert sampling.max_tokens == 100


BELOW = r"^trim\.max_think_tokens must be below the sample's max_tokens \(100\)"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (BudgetForcing(max_think_tokens=100), BELOW),
        (BudgetForcing(max_think_tokens=150), BELOW),
        (BudgetForcing(), r"^trim\.max_think_tokens null \(s1's auto\) leaves 100 tokens"),
    ],
)
async def test_a_ceiling_that_leaves_no_room_for_the_answer_is_refused(
    policy: BudgetForcing, message: str
) -> None:
    """At or above the sample's max_tokens the ceiling could never fire: the sample would end in
    its thinking without an answer, so it is refused, not run untrimmed."""
    gen, ctx = make(script(TWENTY), policy)
    with pytest.raises(ValueError, match=message):
        await one(ctx, max_tokens=100)
    assert gen.streams == []


@pytest.mark.parametrize("ignore_end", [1, 2])
async def test_budget_ignores_the_end_of_thinking_n_times_whatever_its_length(
    ignore_end: int,
) -> None:
    """s1's thinking_n_ignore: the first N ends become "Wait" (no floor needed), the next ends."""
    first, more = "a b </think> \\boxed{3}", " c </think> \\boxed{4}"
    gen, ctx = make(script(first, extended=more), BudgetForcing(ignore_end=ignore_end))
    out = await one(ctx, max_tokens=200)
    assert out.text == "a b Wait" + " c Wait" * (ignore_end - 1) + more
    extends = [e for e in ctx.events if e["event"] == "extend"]
    assert [e["cue"] for e in extends] == ["Wait"] * ignore_end
    assert len(gen.streams) == ignore_end + 1 and trims(ctx) == []


async def test_budget_can_ignore_an_end_without_writing_a_word() -> None:
    """s1's ablation without thinking_n_ignore_str: the close tag is dropped, nothing written."""

    def text(prompt: str, sampling: Sampling) -> str:
        if answers(prompt):
            return ANSWER
        return " c </think> \\boxed{4}" if prompt.endswith("a b ") else "a b </think> \\boxed{3}"

    gen, ctx = make(text, BudgetForcing(ignore_end=1, extend_cue=""))
    out = await one(ctx, max_tokens=200)
    assert out.text == "a b  c </think> \\boxed{4}"
    assert gen.streams[1][0] == gen.render(PROBLEM) + "a b "


def test_budget_ignores_no_end_at_the_ceiling_and_writes_one_newline() -> None:
    from types import SimpleNamespace

    from trim.budget_forcing import BudgetWatch

    watch = BudgetWatch(BudgetForcing(ignore_end=3), ceiling=10)
    seen = SimpleNamespace(text="x = 1.")
    assert watch.extend(seen, 10) is None  # type: ignore[arg-type]
    assert watch.extend(seen, 9) == "Wait"  # type: ignore[arg-type]
    cut = watch.step(SimpleNamespace(text="x = 1.\n"), 10)  # type: ignore[arg-type]
    assert cut is not None and cut.cue == ""  # s1 adds "\n" only when the thinking lacks one
    cut = watch.step(seen, 10)  # type: ignore[arg-type]
    assert cut is not None and cut.cue == "\n"


async def test_sdv_default_threshold_is_the_papers_p_yes_above_p_no() -> None:
    """The paper's rule is P(Yes) > P(No): at exactly 0.5 nothing is cut, just above it is."""
    assert SolveDetect.threshold == 0.5
    gen = ProbedGenerator(script(HESITANT), lambda prompt: 0.5)
    gen.thinking = THINK
    ctx = Context(PROBLEM, gen, judge=Grader(), sampler=SolveDetect())
    out = await one(ctx)
    assert out.text == HESITANT and trims(ctx) == []
    gen = ProbedGenerator(script(HESITANT), lambda prompt: 0.5 + 1e-9)
    gen.thinking = THINK
    ctx = Context(PROBLEM, gen, judge=Grader(), sampler=SolveDetect())
    await one(ctx)
    (event,) = trims(ctx)
    assert event["thoughts"] == 1 and event["p_yes"] > 0.5


async def test_sdv_threshold_is_strict() -> None:
    gen, ctx = _sdv(0.85, lambda prompt: 0.85)
    out = await one(ctx)
    assert out.text == HESITANT and trims(ctx) == []


async def test_trimr_is_no_thinking_cap_by_default() -> None:
    """The 0.6 x max_tokens cut is opt-in (underthink_share); by default long thinking that
    neither settles, wanders past max_thoughts nor loops runs to the sample's cap."""
    assert TrimR.underthink_share is None
    words = " ".join(f"w{i}" for i in range(30)) + " </think> \\boxed{5}"
    gen, ctx = make(script(words), TrimR())
    out = await one(ctx, max_tokens=20)
    assert trims(ctx) == [] and gen.aborted == 0 and out.tokens == 20


SAME_NUMBER = (
    "Try x = 4. \n\nWait, with y we also get 4. \n\nHmm, and z gives 4 as well. "
    "\n\nBut z might be off by one here, giving 7. </think> \\boxed{4}"
)


async def test_trimr_default_checker_needs_a_stated_answer() -> None:
    """Thoughts that merely end on the same number are not answer-bearing by default (the
    grader's last-number fallback would read 4, 4: an overthinking cut)."""
    assert TrimR.checker == "explicit"
    gen, ctx = make(script(SAME_NUMBER), TrimR())
    out = await one(ctx)
    assert out.text == SAME_NUMBER and trims(ctx) == []
    gen, ctx = make(script(SAME_NUMBER), TrimR(checker="grader"))  # the lenient option
    await one(ctx)
    (event,) = trims(ctx)
    assert (event["reason"], event["answer"]) == ("overthinking", "4")


STATED = (
    "2 + 3 = 5, so the answer is 5. \n\nWait, check: \\boxed{5}. \n\nHmm, more. "
    "\n\nActually done. </think> \\boxed{5}"
)


async def test_trimr_default_checker_reads_boxed_and_stated_answers() -> None:
    gen, ctx = make(script(STATED), TrimR())
    out = await one(ctx)
    kept = STATED[: thought_boundaries(STATED)[1]]
    assert out.text == kept + TrimR.conclude_cue + "</think>" + CUE + ANSWER
    (event,) = trims(ctx)
    assert (event["reason"], event["answer"], event["thoughts"]) == ("overthinking", "5", 2)


# --- sampling, validation, config -------------------------------------------------------------


async def test_each_sample_streams_alone_with_its_own_seed() -> None:
    gen, ctx = make(script("w0 w1 w2 w3 </think> \\boxed{5}"), BudgetForcing(max_think_tokens=2))
    outs = await ctx.generate(Sampling(max_tokens=50, n=3, seed=7))
    assert [s.seed for _, s in gen.streams] == [7, 8, 9]
    assert all(s.n == 1 and s.max_tokens == 50 for _, s in gen.streams)
    assert [e["sample"] for e in trims(ctx)] == [0, 1, 2] and len(outs) == 3
    continuations = [s for p, s in gen.calls if answers(p)]
    assert sorted(s.seed for s in continuations) == [7, 8, 9]  # the sample's own seed


async def test_best_of_n_wrapped_by_a_trimmer_end_to_end() -> None:
    thinking = "so 2 + 3 = 6 ? hmm maybe more to say here </think> \\boxed{6}"
    gen, ctx = make(script(thinking), BudgetForcing(max_think_tokens=4))
    out = await BestOfN(n=3, max_tokens=40).run(PROBLEM, ctx)
    assert out.answer == "5"  # every sample cut before its wrong answer, then answered
    assert len(out.chains) == 3 and len(gen.streams) == 3 and gen.aborted == 3
    assert len(trims(ctx)) == 3 and out.ledger.samples == 3
    assert out.ledger.generated_tokens == 3 * (4 + 1)
    assert out.ledger.generator_calls == 6  # 3 streams, 3 continuations


async def test_a_step_search_is_trimmed_step_by_step() -> None:
    """Under a step search every step is one watched call: the trimmer acts on the step that
    thinks too long (here the second), with the step's own token count. (The toolkit's earlier
    cue opens with a blank line, the step delimiter, which is how the scripted steps below see
    that the answer is asked for.)"""

    def step(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
        if steps and "</think>" in steps[-1]:
            return ANSWER + EOS  # the answer after a cut: the sample's end
        return "w0 w1" if not steps else "w2 w3 w4 w5 w6"

    gen = ScriptedGenerator(steps=step)
    gen.thinking = THINK
    ctx = Context(
        PROBLEM,
        gen,
        verifier=ConstantVerifier(),
        judge=Grader(),
        sampler=BudgetForcing(max_think_tokens=3, answer_cue=OLD_CUE, answer_tokens=256),
    )
    out = await Beam(n=2, width=2, max_steps=4).run(PROBLEM, ctx)
    assert out.answer == "5"
    cuts = trims(ctx)
    assert cuts and all((e["reason"], e["at_token"]) == ("budget", 3) for e in cuts)
    assert len(cuts) == len(gen.streams) - 2  # the two first steps end under the cap, uncut
    for chain in out.chains:
        assert chain.steps[0] == "w0 w1"
        assert chain.steps[1].startswith("w2 w3 w4\n</think>" + OLD_CUE + ANSWER)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["search=hyper", "budget.generated_tokens=4096", "+trim=trimr"], "hyper"),
        (["search=threads", "+trim=budget"], "threads"),
    ],
)
def test_trimming_is_refused_by_name_where_it_cannot_act(overrides: list[str], name: str) -> None:
    with pytest.raises(ConfigError, match=f"^trimming cannot act on {name}: it decodes its own"):
        build_sampler(compose_config(overrides))


# what docs/thought-trimming.md says a trimmer wraps: every controller but hyper, threads and
# deepconf
TRIMMED = [
    "best_of_n",
    "adaptive_sc",
    "greedy",
    "beam",
    "dvts",
    "astar",
    "mcts",
    "particle_filter",
    "particle_gibbs",
]


def test_the_trimmed_controllers_are_all_but_those_that_decode_their_own_prompts() -> None:
    searches = {p.stem for p in (REPO / "conf" / "search").glob("*.yaml")}
    # auto stands for the advisor's pick: trimming is refused or built for the pick, once the
    # config is resolved (evals/auto.py)
    assert searches - set(TRIMMED) == {"hyper", "threads", "deepconf", "auto"}


@pytest.mark.parametrize("search", TRIMMED)
def test_trimming_is_built_under_every_controller_that_samples_through_the_context(
    search: str,
) -> None:
    sampler = build_sampler(compose_config([f"search={search}", "+trim=budget"]))
    assert isinstance(sampler, BudgetForcing)


def test_the_api_refuses_trimming_before_any_engine_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_engine(cfg: object) -> None:
        raise AssertionError("the engine was started before the refusal")

    monkeypatch.setattr(api, "build_generator", no_engine)
    overrides = ["budget.generated_tokens=4096"]
    with pytest.raises(ConfigError, match="^trimming cannot act on hyper"):
        api.solve("What is 2 + 3?", search="hyper", trim="trimr", overrides=overrides)
    with pytest.raises(ConfigError, match="^trimming cannot act on hyper"):  # ready objects too
        api.solve("What is 2 + 3?", search=HyPER(), trim=TrimR(), overrides=overrides)


@pytest.mark.parametrize(
    ("make_bad", "key"),
    [
        (lambda: TrimR(agree=0), "trim.agree "),
        (lambda: TrimR(checker="judge"), "trim.checker "),
        (lambda: TrimR(underthink_share=1.5), "trim.underthink_share "),
        (lambda: TrimR(cues="Wait"), "trim.cues "),  # type: ignore[arg-type]
        (lambda: TrimR(ngram=20, window=10), "trim.ngram "),
        (lambda: SolveDetect(threshold=0), "trim.threshold "),
        (lambda: SolveDetect(yes="No"), "trim.no "),
        (lambda: BudgetForcing(min_think_tokens=9, max_think_tokens=5), "trim.min_think_tokens"),
        (lambda: BudgetForcing(answer_tokens=0), "trim.answer_tokens "),
        (lambda: BudgetForcing(ignore_end=-1), "trim.ignore_end "),
        (lambda: TrimR(underthink_share=0), "trim.underthink_share "),
    ],
)
def test_bad_keys_name_the_trim_key(make_bad: Callable[[], object], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_bad()


CONFIGS = sorted((REPO / "conf" / "trim").glob("*.yaml"))


def test_there_is_one_config_per_policy() -> None:
    assert {p.stem for p in CONFIGS} == {"trimr", "sdv", "budget"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_trim_config_lists_each_key_with_its_default(path: Path) -> None:
    keys = yaml.safe_load(path.read_text())
    target = keys.pop("_target_")
    built = instantiate_group(OmegaConf.load(path), "trim")  # as `reason` builds it
    assert f"{type(built).__module__}.{type(built).__name__}" == target
    assert built.name == path.stem
    defaults = {name: default_of(info) for name, info in fields_of(type(built)).items()}
    assert set(keys) == set(defaults)
    plain = {k: tuple(v) if isinstance(v, list) else v for k, v in keys.items()}
    assert plain == defaults
    assert type(built)() == built


async def test_a_thinking_tag_of_special_tokens_is_seen_where_thinking_ends() -> None:
    """s1 closes its thinking with "<|im_start|>answer", whose first token is special: text
    decoded the usual way drops it, so the trimmer asks for special tokens to see the end."""
    special = "<|im_start|>"
    s1 = ThinkingFormat(open=special + "think", close=special + "answer", forced=True)

    class SkipsSpecialTokens(ScriptedGenerator):
        def detokenize(self, ids: Sequence[int]) -> str:
            return super().detokenize(ids).replace(special, "")

    def text(prompt: str, sampling: Sampling) -> str:
        if answers(prompt):
            return ANSWER
        said = " c <|im_start|>answer 4" if prompt.endswith("Wait") else "a b <|im_start|>answer 3"
        return said if sampling.keep_special_tokens else said.replace(special, "")

    gen = SkipsSpecialTokens(text)
    gen.thinking = s1
    ctx = Context(PROBLEM, gen, judge=Grader(), sampler=BudgetForcing(ignore_end=1))
    out = await one(ctx, max_tokens=200)
    assert out.text == "a b Wait c <|im_start|>answer 4"
    assert [e["cue"] for e in ctx.events if e["event"] == "extend"] == ["Wait"]
    assert all(sampling.keep_special_tokens for _, sampling in gen.streams)


async def test_a_plain_thinking_tag_keeps_the_usual_decoding() -> None:
    gen, ctx = make(script("a b </think> \\boxed{3}"), BudgetForcing())
    await one(ctx, max_tokens=200)
    assert gen.streams and not any(sampling.keep_special_tokens for _, sampling in gen.streams)
