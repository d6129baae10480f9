"""The shared step-expansion engine on a scripted generator."""

from __future__ import annotations

from evals.grading import Grader
from reasoning import Budget, Chain, Completion, Context, Problem, Sampling
from search.expand import StepSampling, child, expand, score
from tests.fakes import ConstantVerifier, ScriptedGenerator

PROBLEM = Problem("x", "What is 2 + 2?", "4")
POLICY = StepSampling(max_steps=3)


def test_child_finish_reasons() -> None:
    root = Chain()
    step = Completion("2 + 2 = 4", 5, "stop", stop="\n\n")
    assert not child(root, step, POLICY).finished
    assert child(
        root, Completion("so \\boxed{4}", 4, "stop", stop="\n\n"), POLICY
    ).finish_reason == ("boxed")
    assert child(root, Completion("the end", 2, "stop"), POLICY).finish_reason == "eos"
    cap = POLICY.max_step_tokens
    assert child(root, Completion("cut", cap, "length"), POLICY).finish_reason == "length"
    # fewer tokens than the step cap yet cut by length: the Context clamped the call
    assert child(root, Completion("cu", cap - 1, "length"), POLICY).finish_reason == "budget"
    assert child(root, Completion("\n", 1, "stop", stop="\n\n"), POLICY).finish_reason == "empty"
    deep = Chain(steps=("a", "b"))
    assert child(deep, step, POLICY).finish_reason == "max_steps"
    kid = child(deep, step, POLICY)
    assert kid.parent == deep.id and kid.steps == ("a", "b", "2 + 2 = 4") and kid.tokens == 5


async def test_expand_continues_each_chain_with_its_own_prefix() -> None:
    gen = ScriptedGenerator(lambda prompt, sampling: "next step")
    ctx = Context(PROBLEM, gen, judge=Grader())
    a, b = Chain().extend("first a"), Chain().extend("first b")
    kids = await expand(ctx, [a, b], [2, 3], POLICY)
    assert [len(k) for k in kids] == [2, 3]
    assert all(k.parent == a.id for k in kids[0]) and all(k.parent == b.id for k in kids[1])
    prompts = [p for p, _ in gen.calls]
    assert prompts[0].endswith("first a\n\n") and prompts[1].endswith("first b\n\n")
    sampling: Sampling = gen.calls[0][1]
    assert sampling.stop == ("\n\n",) and sampling.n == 2
    assert len(ctx.tree) == 5
    last = await expand(ctx, [a], 1, POLICY, last=True)
    assert gen.calls[-1][1].stop == () and len(last[0]) == 1


async def test_expand_stops_cleanly_on_budget_and_scores_record_in_the_tree() -> None:
    gen = ScriptedGenerator(lambda prompt, sampling: "w w w")
    ctx = Context(
        PROBLEM, gen, judge=Grader(), budget=Budget(samples=3), verifier=ConstantVerifier()
    )
    kids = await expand(ctx, [Chain(), Chain(), Chain()], 2, POLICY)
    assert sum(len(k) for k in kids) == 3 and ctx.stopped_by == "samples"
    flat = [k for ks in kids for k in ks]
    # a spent generator budget still lets the verifier rank what was generated ...
    assert all(c.scores == (0.5,) for c in await score(ctx, flat))
    assert ctx.ledger.verifier_calls == 3
    # ... and a spent verifier budget returns the chains unscored
    capped = Context(
        PROBLEM, gen, judge=Grader(), budget=Budget(verifier_calls=1), verifier=ConstantVerifier()
    )
    (two,) = await expand(capped, [Chain()], 2, POLICY)
    assert all(c.scores == (0.5,) for c in await score(capped, two[:1]))
    assert await score(capped, two[1:]) == two[1:] and capped.stopped_by == "verifier_calls"

    fresh = Context(PROBLEM, gen, judge=Grader(), verifier=ConstantVerifier())
    (kids,) = await expand(fresh, [Chain()], 2, POLICY)
    scored = await score(fresh, kids)
    assert all(c.scores == (0.5,) for c in scored) and fresh.ledger.verifier_calls == 2
    assert fresh.tree.graph.nodes[scored[0].id]["scores"] == [0.5]
