"""Generative judge and RLHFlow-style generative PRM: scripted logprobs, then the real engine."""

from __future__ import annotations

import math

import pytest

from evals.grading import Grader
from reasoning import Chain, Completion, Context, Problem, Sampling
from reasoning.loop import run_sync
from search import BestOfN
from verifiers.generative_prm import GenerativePRM
from verifiers.judge import GenerativeJudge
from verifiers.next_token import UNDECIDED, label_probability

PROBLEM = Problem("j", "What is 3 + 5?", "8")
CHAINS = [
    Chain(steps=("3 + 5 = 8.", "So the answer is \\boxed{8}.")),
    Chain(steps=("3 + 5 = 9, so \\boxed{9}.",)),
]


class _Tok:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):  # noqa: ANN001
        return "".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]"


class _LogprobGenerator:
    """Answers with fixed top-k alternatives; '9' anywhere in the prompt makes it say No."""

    name = "scripted-logprobs"
    tokenizer = _Tok()

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def render(self, problem, chain=None):  # noqa: ANN001, ANN201
        return problem.question

    async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
        self.prompts.append(prompt)
        assert sampling.max_tokens == 1 and sampling.temperature == 0.0 and sampling.logprobs
        good = "9" not in prompt
        top = {
            " Yes": math.log(0.6 if good else 0.1),
            "No": math.log(0.2 if good else 0.7),
            "+": math.log(0.5 if good else 0.1),
            "-": math.log(0.1 if good else 0.6),
            "Maybe": math.log(0.1),
        }
        return [Completion("Yes", 1, "length", prompt_tokens=10, top_logprobs=(top,))]


async def test_label_probability_renormalises_and_handles_absent_labels() -> None:
    gen = _LogprobGenerator()
    p, tokens = await label_probability(gen, "fine", ["yes"], ["no"])
    assert p == pytest.approx(0.6 / 0.8) and tokens == 11
    p, _ = await label_probability(gen, "fine", ["absent"], ["missing"])
    assert p == UNDECIDED


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
    assert any(x != UNDECIDED for x in flat), "Yes/No should be among SmolLM2's top-20 tokens"
    assert scores.tokens > 0
    prm_scores = run_sync(GenerativePRM(generator=engine).score(PROBLEM, CHAINS))
    assert [len(s) for s in prm_scores] == [2, 1]
    assert all(0.0 <= x <= 1.0 for s in prm_scores for x in s)


@pytest.mark.engine
def test_weighted_best_of_n_with_the_judge_is_metered(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, verifier=GenerativeJudge(generator=engine), judge=Grader())
    out = run_sync(BestOfN(n=4, max_tokens=48, aggregate="weighted").run(PROBLEM, ctx))
    assert out.ledger.verifier_calls == 4 and out.ledger.verifier_tokens > 0
    assert all(len(c.scores) == len(c.steps) for c in out.chains)
    if out.answer is not None:
        assert out.details["votes"][out.answer] == max(out.details["votes"].values())
