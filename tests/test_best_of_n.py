"""Best-of-N and greedy control flow on a scripted generator."""

from __future__ import annotations

import pytest

from evals.grading import Grader
from reasoning import Budget, Context, Problem
from search import BestOfN, Greedy
from tests.fakes import ConstantVerifier, ScriptedGenerator

PROBLEM = Problem("p", "What is 2 + 3?", "5")


def _ctx(gen: ScriptedGenerator, **kw: object) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), **kw)  # type: ignore[arg-type]


async def test_majority_over_n_samples() -> None:
    gen = ScriptedGenerator(["so \\boxed{5}", "hmm \\boxed{6}", "it is \\boxed{5}", "\\boxed{7}"])
    out = await BestOfN(n=4).run(PROBLEM, _ctx(gen))
    assert out.answer == "5"
    assert len(out.chains) == 4 and len(gen.calls) == 1 and gen.calls[0][1].n == 4
    assert out.ledger.samples == 4 and out.stopped_by is None
    assert out.details["votes"] == {"5": 2.0, "6": 1.0, "7": 1.0}
    assert out.tree.graph.nodes[out.chain.id]["status"] == "selected"


async def test_batches_and_budget_stop_cleanly() -> None:
    gen = ScriptedGenerator(["a b c \\boxed{5}"])  # 4 tokens each
    out = await BestOfN(n=8, batch_size=2).run(
        PROBLEM, _ctx(gen, budget=Budget(generated_tokens=10))
    )
    # 2 samples (8 tokens), then 1 more call clamped to 1 token each -> 10 tokens, then stop.
    assert out.stopped_by == "generated_tokens"
    assert out.ledger.generated_tokens == 10 and len(gen.calls) == 2
    assert out.answer == "5"


async def test_weighted_vote_uses_the_verifier() -> None:
    gen = ScriptedGenerator(["\\boxed{5}", "\\boxed{9}", "\\boxed{9}"])
    verifier = ConstantVerifier(lambda text: 0.9 if "5" in text else 0.1)
    ctx = _ctx(gen, verifier=verifier)
    out = await BestOfN(n=3, aggregate="weighted").run(PROBLEM, ctx)
    assert out.answer == "5" and out.ledger.verifier_calls == 3
    assert out.chain is not None and out.chain.scores == (0.9,)


async def test_weighted_falls_back_to_majority_when_verifier_budget_is_spent() -> None:
    from reasoning import Chain
    from search.conclude import conclude

    ctx = _ctx(ScriptedGenerator(), verifier=ConstantVerifier(), budget=Budget(verifier_calls=1))
    chains = [Chain(steps=(f"\\boxed{{{a}}}",)) for a in (5, 9, 9)]
    for c in chains:
        ctx.tree.add(c)
    ctx.ledger.verifier_calls = 1  # spent earlier in the search
    out = await conclude(ctx, chains, "weighted")
    assert out.answer == "9" and out.details["aggregate"].startswith("majority")
    missing = out.details["missing_scores"]
    assert missing["chains"] == 3 and missing["reason"] == "verifier_calls"
    assert out.stopped_by == "verifier_calls"


async def test_greedy_is_one_temperature_zero_sample() -> None:
    gen = ScriptedGenerator(["\\boxed{5}"])
    out = await Greedy().run(PROBLEM, _ctx(gen))
    assert out.answer == "5" and len(gen.calls) == 1
    assert gen.calls[0][1].temperature == 0.0 and gen.calls[0][1].n == 1


def test_greedy_has_no_n_to_label_a_run_with() -> None:
    with pytest.raises(
        ValueError, match=r"search\.n is not a search setting of greedy; valid: max_tokens"
    ):
        Greedy(n=16)  # type: ignore[call-arg]


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="search.aggregate"):
        BestOfN(aggregate="plurality")
    with pytest.raises(ValueError, match="search.n"):
        BestOfN(n=0)
