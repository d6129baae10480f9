"""Generative judge and RLHFlow-style generative PRM: scripted logprobs, then the real engine."""

from __future__ import annotations

import math

import pytest

from evals.grading import Grader
from reasoning import Chain, Completion, Context, Problem, Sampling
from reasoning.loop import run_sync
from search import BestOfN
from tests.fakes import RuleGenerator, always, words
from verifiers.generative_prm import GenerativePRM
from verifiers.judge import GenerativeJudge
from verifiers.next_token import (
    UNDECIDED,
    LabelLogprobsMissingError,
    label_probability,
    label_variants,
)

PROBLEM = Problem("j", "What is 3 + 5?", "8")
CHAINS = [
    Chain(steps=("3 + 5 = 8.", "So the answer is \\boxed{8}.")),
    Chain(steps=("3 + 5 = 9, so \\boxed{9}.",)),
]


# single-token words of the scripted vocabulary; anything else is one token per character
_WORDS = {"Yes": 1001, " Yes": 1002, "yes": 1003, "No": 1004, " No": 1005, "no": 1006}


class _Tok:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):  # noqa: ANN001
        return "".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [_WORDS[text]] if text in _WORDS else [ord(c) for c in text]


class _LogprobGenerator(RuleGenerator):
    """Answers with the logprobs of the label token ids asked for; '9' in the prompt makes it
    say No. Ids outside its table have probability 0."""

    name = "scripted-logprobs"
    tokenizer = _Tok()

    def __init__(self) -> None:
        super().__init__(
            [(always, _probe)],
            unit=words,
            template="{question}",
            prompt_tokens=10,
            id_logprobs=_label_table,
        )


def _probe(prompt: str, sampling: Sampling) -> str:
    """A one-token call for label logprobs; the model would go on after its label."""
    assert sampling.max_tokens == 1 and sampling.temperature == 0.0
    assert sampling.logprob_token_ids
    return "Yes and more"


def _label_table(prompt: str, ids: tuple[int, ...]) -> dict[int, float]:
    good = "9" not in prompt
    return {
        _WORDS[" Yes"]: math.log(0.6 if good else 0.1),
        _WORDS["No"]: math.log(0.2 if good else 0.7),
        ord("+"): math.log(0.5 if good else 0.1),
        ord("-"): math.log(0.1 if good else 0.6),
    }


async def test_label_probability_renormalises_and_handles_absent_labels() -> None:
    gen = _LogprobGenerator()
    yes, no = [_WORDS[" Yes"], _WORDS["yes"]], [_WORDS["No"], _WORDS["no"]]
    p, tokens = await label_probability(gen, "fine", yes, no)
    assert p == pytest.approx(0.6 / 0.8) and tokens == 11
    p, _ = await label_probability(gen, "fine", [_WORDS["yes"]], [_WORDS["no"]])
    assert p == UNDECIDED  # both labels at probability 0


async def test_label_probability_refuses_a_backend_without_the_label_logprobs() -> None:
    class TopKOnly(_LogprobGenerator):
        async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
            return [Completion("Yes", 1, "length", top_logprobs=({"Yes": -0.1},))]

    with pytest.raises(LabelLogprobsMissingError, match="logprob_token_ids"):
        await label_probability(TopKOnly(), "fine", [1001], [1004])


def test_judge_labels_are_every_single_token_spelling() -> None:
    judge = GenerativeJudge(generator=_LogprobGenerator())
    assert judge.label_ids == ((1001, 1002, 1003), (1004, 1005, 1006))
    assert label_variants(_Tok(), ["+"]) == (ord("+"),)  # " +" is two tokens here
    with pytest.raises(ValueError, match="single token"):
        label_variants(_Tok(), ["maybe"])


async def test_outcome_judge_scores_each_chain_once() -> None:
    gen = _LogprobGenerator()
    scores = await GenerativeJudge(generator=gen).score(PROBLEM, CHAINS)
    assert scores == [[pytest.approx(0.75)] * 2, [pytest.approx(0.125)]]
    assert len(gen.prompts) == 2 and scores.tokens == 22
    assert "Proposed solution:\n3 + 5 = 8.\n\nSo the answer is \\boxed{8}." in gen.prompts[0]


async def test_process_judge_scores_every_prefix() -> None:
    gen = _LogprobGenerator()
    scores = await GenerativeJudge(generator=gen, mode="process").score(PROBLEM, CHAINS)
    assert [len(s) for s in scores] == [2, 1] and len(gen.prompts) == 3
    assert "Solution so far:\n3 + 5 = 8.\n\nIs every" in gen.prompts[0]
    with pytest.raises(ValueError, match="verifier.mode"):
        GenerativeJudge(generator=gen, mode="final")


async def test_generative_prm_conversation_and_scores() -> None:
    gen = _LogprobGenerator()
    prm = GenerativePRM(generator=gen)
    scores = await prm.score(PROBLEM, CHAINS)
    assert scores == [[pytest.approx(5 / 6)] * 2, [pytest.approx(1 / 7)]]
    assert prm.label_ids == ((ord("+"),), (ord("-"),))
    assert gen.prompts[1] == (
        "[user]What is 3 + 5? 3 + 5 = 8.[assistant]+[user]So the answer is \\boxed{8}.[assistant]"
    )


def test_needs_a_model() -> None:
    with pytest.raises(ValueError, match="generator or a backend"):
        GenerativeJudge()


@pytest.mark.engine
def test_judge_and_generative_prm_on_the_real_engine(engine) -> None:  # noqa: ANN001
    judge = GenerativeJudge(generator=engine, mode="process")
    scores = run_sync(judge.score(PROBLEM, CHAINS))
    assert [len(s) for s in scores] == [2, 1]
    flat = [x for s in scores for x in s]
    assert all(0.0 <= x <= 1.0 for x in flat)
    assert all(0.0 < x < 1.0 for x in flat), "exact Yes/No logprobs: never exactly 0, 1 or 0.5"
    assert scores.tokens > 0
    prm_scores = run_sync(GenerativePRM(generator=engine).score(PROBLEM, CHAINS))
    assert [len(s) for s in prm_scores] == [2, 1]
    assert all(0.0 < x < 1.0 for s in prm_scores for x in s)


def _last_prompt_logprob(engine, text: str) -> tuple[int, float]:  # noqa: ANN001
    """(id, logprob) of the last token of `text` as a prompt, from vLLM's prompt logprobs: a
    different engine path from the sampler's `logprob_token_ids` that the verifier uses."""
    import uuid

    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(
        max_tokens=1, temperature=0.0, prompt_logprobs=0, output_kind=RequestOutputKind.FINAL_ONLY
    )

    async def go():  # noqa: ANN202
        final = None
        vllm_engine = getattr(engine, "inner", engine)._engine
        async for out in vllm_engine.generate(text, params, request_id=uuid.uuid4().hex):
            final = out
        last = final.prompt_token_ids[-1]
        return last, final.prompt_logprobs[-1][last].logprob

    return run_sync(go())


@pytest.mark.engine
def test_generative_prm_is_the_exact_two_way_softmax_on_the_engine(engine) -> None:  # noqa: ANN001
    prm = GenerativePRM(generator=engine)
    chain = Chain(steps=CHAINS[0].steps[:1])
    ((score,),) = run_sync(prm.score(PROBLEM, [chain]))
    prompt = prm.prompt(PROBLEM, chain.steps)
    (plus,), (minus,) = prm.label_ids
    # scored as prompts, "<conversation>+" and "<conversation>-" end in the label tokens...
    plus_id, lp_plus = _last_prompt_logprob(engine, prompt + "+")
    minus_id, lp_minus = _last_prompt_logprob(engine, prompt + "-")
    assert (plus_id, minus_id) == (plus, minus)
    # ... and P(+) is the ratio of their probabilities: the two-way softmax over the logits
    expected = math.exp(lp_plus) / (math.exp(lp_plus) + math.exp(lp_minus))
    assert 0.0 < score < 1.0
    assert score == pytest.approx(expected, abs=1e-5)
    # the case the top-20 reading got wrong (1.0 or 0.5): a label outside SmolLM2's top 20
    (top,) = run_sync(engine.complete(prompt, Sampling(temperature=0.0, max_tokens=1, logprobs=20)))
    assert not {"+", "-"} <= {t.strip() for t in top.top_logprobs[0]}


@pytest.mark.engine
def test_weighted_best_of_n_with_the_judge_is_metered(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, verifier=GenerativeJudge(generator=engine), judge=Grader())
    out = run_sync(BestOfN(n=4, max_tokens=48, aggregate="weighted").run(PROBLEM, ctx))
    assert out.ledger.verifier_calls == 4 and out.ledger.verifier_tokens > 0
    assert all(len(c.scores) == len(c.steps) for c in out.chains)
    if out.answer is not None:
        assert out.details["votes"][out.answer] == max(out.details["votes"].values())
