"""Core types, budget, ledger, Context metering and the search tree."""

from __future__ import annotations

import asyncio

import pytest

from evals.grading import Grader
from reasoning import Budget, BudgetExhausted, Chain, Context, Ledger, Problem, Sampling
from reasoning.prompts import ChatRenderer
from reasoning.tree import SearchTree
from tests.fakes import ConstantVerifier, ScriptedGenerator

PROBLEM = Problem("p1", "What is 1 + 1?", "2")


def test_chain_extend_is_immutable_and_links_parent() -> None:
    root = Chain()
    child = root.extend("step one", tokens=3, score=0.5)
    grandchild = child.extend("step two", tokens=2, finished=True, finish_reason="eos")
    assert root.steps == () and root.tokens == 0
    assert child.steps == ("step one",) and child.parent == root.id
    assert grandchild.text == "step one\n\nstep two"
    assert grandchild.tokens == 5 and grandchild.scores == (0.5,)
    assert grandchild.finished and grandchild.finish_reason == "eos"
    assert len({root.id, child.id, grandchild.id}) == 3


def test_budget_rejects_non_positive_limits() -> None:
    with pytest.raises(ValueError, match="budget.generated_tokens"):
        Budget(generated_tokens=0)


def test_ledger_add_and_exhausted() -> None:
    total = Ledger()
    total.add(Ledger(generated_tokens=5, samples=2, wall_s=1.5))
    total.add(Ledger(generated_tokens=7, samples=1, wall_s=0.5))
    assert (total.generated_tokens, total.samples, total.wall_s) == (12, 3, 2.0)
    assert total.exhausted(Budget(generated_tokens=12)) == "generated_tokens"
    assert total.exhausted(Budget(generated_tokens=13, samples=3)) == "samples"
    assert total.exhausted(Budget(generated_tokens=13)) is None
    assert Ledger.from_dict(total.to_dict()) == total


async def test_context_meters_every_call() -> None:
    gen = ScriptedGenerator(["a b c", "d e"])
    ctx = Context(PROBLEM, gen, budget=Budget())
    out = await ctx.generate(Sampling(n=2, max_tokens=10))
    assert [c.tokens for c in out] == [3, 2]
    assert ctx.ledger.generated_tokens == 5
    assert ctx.ledger.samples == 2 and ctx.ledger.generator_calls == 1
    assert ctx.ledger.prompt_tokens == len(gen.render(PROBLEM).split())
    assert ctx.ledger.wall_s >= 0


async def test_budget_stops_before_the_next_call_and_clamps_the_last() -> None:
    gen = ScriptedGenerator(["w " * 9 + "w"])  # 10 tokens per sample
    ctx = Context(PROBLEM, gen, budget=Budget(generated_tokens=25))
    await ctx.generate(Sampling(n=1, max_tokens=100))
    await ctx.generate(Sampling(n=1, max_tokens=100))
    out = await ctx.generate(Sampling(n=1, max_tokens=100))  # only 5 tokens left
    assert out[0].tokens == 5 and gen.calls[-1][1].max_tokens == 5
    assert ctx.ledger.generated_tokens == 25
    with pytest.raises(BudgetExhausted) as info:
        await ctx.generate(Sampling(n=1, max_tokens=100))
    assert info.value.limit == "generated_tokens" and ctx.stopped_by == "generated_tokens"
    assert len(gen.calls) == 3


async def test_concurrent_calls_wait_for_unused_reservations_instead_of_being_cut() -> None:
    gen = ScriptedGenerator(["w " * 9 + "w"], delay_s=0.01)  # 10 tokens per sample
    ctx = Context(PROBLEM, gen, budget=Budget(generated_tokens=45))
    calls = [ctx.generate(Sampling(n=1, max_tokens=20)) for _ in range(4)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    # 2 calls fit at once (2 x 20 reserved of 45); the third waits for the first to hand back
    # its 10 unused tokens rather than being cut to 5, and so does the fourth: every call ran
    # its whole step, and only the one left alone at the end could have been clamped
    caps = [s.max_tokens for _, s in gen.calls]
    assert [len(r) for r in results] == [1, 1, 1, 1], results
    assert caps == [20, 20, 20, 15] and ctx.ledger.generated_tokens == 40
    more = await ctx.generate(Sampling(n=1, max_tokens=20))  # alone: clamped to what is left
    assert more[0].tokens == 5 and gen.calls[-1][1].max_tokens == 5
    with pytest.raises(BudgetExhausted):
        await ctx.generate(Sampling(n=1, max_tokens=20))


async def test_sample_budget_shrinks_n() -> None:
    gen = ScriptedGenerator(["x"])
    ctx = Context(PROBLEM, gen, budget=Budget(samples=3))
    assert len(await ctx.generate(Sampling(n=8))) == 3
    with pytest.raises(BudgetExhausted):
        await ctx.generate(Sampling(n=1))


async def test_wall_clock_budget() -> None:
    gen = ScriptedGenerator(["x"], delay_s=0.05)
    ctx = Context(PROBLEM, gen, budget=Budget(wall_s=0.04))
    await ctx.generate(Sampling())
    with pytest.raises(BudgetExhausted, match="wall_s"):
        await ctx.generate(Sampling())


async def test_score_needs_a_verifier_and_is_metered() -> None:
    ctx = Context(PROBLEM, ScriptedGenerator(), budget=Budget(verifier_calls=2))
    with pytest.raises(ValueError, match="verifier="):
        await ctx.score([Chain(steps=("a",))])
    ctx.verifier = ConstantVerifier()
    scores = await ctx.score([Chain(steps=("a", "b")), Chain(steps=("c",))])
    assert scores == [[0.5, 0.5], [0.5]]
    assert ctx.ledger.verifier_calls == 2
    with pytest.raises(BudgetExhausted, match="verifier_calls"):
        await ctx.score([Chain(steps=("a",))])


async def test_same_seed_same_request_seeds() -> None:
    seeds = []
    for _ in range(2):
        gen = ScriptedGenerator()
        ctx = Context(PROBLEM, gen, seed=7)
        await asyncio.gather(*(ctx.generate(Sampling()) for _ in range(3)))
        seeds.append([s.seed for _, s in gen.calls])
    assert seeds[0] == seeds[1] and len(set(seeds[0])) == 3


def test_tree_records_paths_and_exports_json() -> None:
    tree = SearchTree()
    a = Chain().extend("a")
    b = a.extend("b")
    tree.add(a)
    tree.add(b, status="finished")
    tree.mark(b.id, "selected")
    assert tree.path(b.id) == ["root", a.id, b.id]
    data = tree.to_json()
    assert {n["id"] for n in data["nodes"]} == {"root", a.id, b.id}
    assert len(tree) == 2


class _Tok:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):  # noqa: ANN001
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")


def test_continuation_prompt_is_parent_prompt_plus_step() -> None:
    renderer = ChatRenderer(_Tok(), "short")
    parent = Chain().extend("Step 1: add.")
    child = parent.extend("Step 2: done.")
    assert renderer.render(PROBLEM, child) == renderer.render(PROBLEM, parent) + "Step 2: done.\n\n"
    assert renderer.render(PROBLEM).endswith("<assistant>")


def test_grader_is_an_answer_judge() -> None:
    from reasoning.types import AnswerJudge

    assert isinstance(Grader(), AnswerJudge)
