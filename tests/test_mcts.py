"""MCTS: UCT / PUCT arithmetic, hand-traced searches on scripted models, virtual loss, backup,
final answer rules, terminal leaves, the budget, the config, and the real engine.

The scripted generator names each sampled step after its parent's step plus a letter (the
k-th sample of "b" is "ba", "bb", ...), and the scripted verifier scores a step by its name
(tests/test_beam.py's `named_script` and `named`), so every node of a hand-traced tree has a
readable name and a known value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.grading import Grader
from reasoning import Budget, Chain, Context, Sampling
from reasoning.loop import run_sync
from reasoning.outcome import Outcome
from reasoning.tree import ROOT
from search.mcts import MCTS, _Tree, puct, step_priors, uct
from tests.fakes import Reply, ScriptedGenerator, StepVerifier
from tests.test_astar import hashed_score, random_script
from tests.test_beam import (
    HEAD,
    PROBLEM,
    assert_ledger_matches_tree,
    assert_paths,
    ctx_for,
    named,
    named_script,
)

# a: .2, b: .6 open; their children box answers 1..4 with values 1.0, 0.0, .5, .4
SCORES = {"a": 0.2, "b": 0.6, "aa": 1.0, "ab": 0.0, "ba": 0.5, "bb": 0.4}
ANSWERS = {"aa": "1", "ab": "2", "ba": "3", "bb": "4"}


def stats(out: Outcome) -> dict[str, tuple[int, float | None]]:
    """(visits, mean value) by step name; the root as "root"."""
    g = out.tree.graph
    named_ = {n: (g.nodes[n]["step"].split(" ")[0] if n != ROOT else "root") for n in g}
    return {named_[n]: (g.nodes[n].get("visits"), g.nodes[n].get("value")) for n in g}


def prompts(gen: ScriptedGenerator) -> list[tuple[str, int]]:
    return [(p.removeprefix(HEAD), s.n) for p, s in gen.calls]


async def run(search: MCTS, **kw: object) -> tuple[Outcome, ScriptedGenerator]:
    gen = ScriptedGenerator(steps=named_script(ANSWERS))
    out = await search.run(PROBLEM, ctx_for(gen, named(SCORES), **kw))
    return out, gen


# --- the selection formulas ---------------------------------------------------------------------


def test_uct_by_hand() -> None:
    # Q = 1.1 / 2 = .55; ln 4 = 1.386294; sqrt(1.386294 / 2) = .832555
    assert uct(1.1, 2, 4, 1.0) == pytest.approx(0.55 + 0.832555, abs=1e-6)
    # c = 2 weighs the exploration term only: .55 + 2 * .832555 = 2.215110
    assert uct(1.1, 2, 4, 2.0) == pytest.approx(2.215110, abs=1e-6)
    # mutations: no ln -> .55 + sqrt(4/2) = 1.964; no sqrt -> .55 + .693 = 1.243;
    # c on Q -> 2 * .55 + .8326 = 1.9326: each differs from the values above
    assert uct(1.1, 2, 4, 1.0) not in (pytest.approx(1.964, abs=1e-3), pytest.approx(1.243, 1e-3))
    assert uct(1.1, 2, 4, 2.0) != pytest.approx(1.9326, abs=1e-3)
    assert uct(0.0, 0, 4, 1.0) == math.inf  # an unvisited child is tried first
    assert uct(0.3, 1, 1, 5.0) == pytest.approx(0.3)  # ln 1 = 0: no exploration bonus


def test_puct_by_hand() -> None:
    # Q = .55; c * P * sqrt(N_parent) / (1 + N) = 2 * .25 * 2 / 3 = .333333
    assert puct(1.1, 2, 4, 0.25, 2.0) == pytest.approx(0.883333, abs=1e-6)
    # unvisited: Q = 0, bonus 2 * .25 * 2 / 1 = 1.0 (no infinity: the prior orders them)
    assert puct(0.0, 0, 4, 0.25, 2.0) == pytest.approx(1.0)
    # c on Q instead: 2 * .55 + .25 * 2 / 3 = 1.2667; sqrt missing: .55 + 2 * .25 * 4 / 3 = 1.2167
    assert puct(1.1, 2, 4, 0.25, 2.0) not in (
        pytest.approx(1.2667, 1e-3),
        pytest.approx(1.2167, 1e-3),
    )


def test_step_priors_are_the_per_token_geometric_mean_normalised() -> None:
    parent = Chain(("s",), logprobs=(-3.0,))  # the parent's own logprobs are skipped
    a = parent.extend("a", tokens=1, logprobs=(-1.0,))
    b = parent.extend("b x x x", tokens=4, logprobs=(-0.5,) * 4)
    # exp(-1) = .367879, exp(mean -.5) = .606531; sum .974410 -> .377541, .622459
    # (the sum of logprobs would give b exp(-2) = .135335 and rank a first)
    assert step_priors(parent, [a, b]) == pytest.approx([0.377541, 0.622459], abs=1e-6)
    assert step_priors(parent, [a, parent.extend("c")]) == [0.5, 0.5]  # no logprobs: uniform


# --- the working tree: virtual loss and backup -----------------------------------------------


def test_backup_adds_the_value_along_the_path_and_removes_the_virtual_loss() -> None:
    tree = _Tree(exploration=1.0, prior="none")
    root = tree.root
    tree.grow(root, [Chain(("x",)), Chain(("y",))])
    x, y = root.children or []
    tree.grow(x, [Chain(("x", "z"))])
    (z,) = x.children or []
    tree.hold([root, x, z])
    assert (root.virtual, x.virtual, z.virtual) == (1, 1, 1)
    tree.backup([root, x, z], 0.7)
    tree.hold([root, x])
    tree.backup([root, x], 0.3)
    # root and x: 2 visits, .7 + .3 = 1.0, mean .5; z: 1 visit, .7; y untouched
    assert (root.visits, root.value_sum, root.q) == (2, pytest.approx(1.0), pytest.approx(0.5))
    assert (x.visits, x.q, z.visits, z.q, y.visits) == (2, pytest.approx(0.5), 1, 0.7, 0)
    assert (root.virtual, x.virtual, z.virtual) == (0, 0, 0)  # removed at backup
    assert not tree.pending
    # a backup without a value (the budget refused the scoring) only releases the path
    tree.hold([root, y])
    tree.backup([root, y], None)
    assert (root.visits, y.visits, root.virtual, y.virtual) == (2, 0, 0, 0)
    # a held path lowers its nodes' means: x with 2 visits (sum 1.0) and one virtual loss, root
    # with 2 + 1: 1.0 / 3 + sqrt(ln 3 / 3) = .333333 + sqrt(.366204) = .333333 + .605148
    tree.hold([root, x])
    assert tree.score_of(x) == pytest.approx(0.938481, abs=1e-6)


# --- hand-traced searches ---------------------------------------------------------------------


async def test_uct_search_by_hand_one_simulation_per_round() -> None:
    out, gen = await run(MCTS(width=2, simulations=8, in_flight=1))
    # s1: expand the root (a, b); root N=1, W=0 (no step to value)
    # s2: a unvisited first -> expand a, value .2    s3: b unvisited -> expand b, value .6
    # s4: ln 3 = 1.0986: a .2 + 1.048 = 1.248, b .6 + 1.048 = 1.648 -> b; ba unvisited: .5
    # s5: ln 4: a .2 + 1.177 = 1.377, b .55 + sqrt(1.386 / 2) = 1.383 -> b; bb: .4
    # s6: ln 5: a .2 + 1.269 = 1.469, b .5 + sqrt(1.609 / 3) = 1.232 -> a; aa: 1.0
    # s7: ln 6: a .6 + sqrt(1.792 / 2) = 1.547, b .5 + .773 = 1.273 -> a; ab: 0
    # s8: ln 7: a .4 + .805, b .5 + .805 -> b; ln 3: ba .5 + 1.048, bb .4 + 1.048 -> ba (.5 again)
    assert prompts(gen) == [("", 2), ("a\n\n", 2), ("b\n\n", 2)]  # finished leaves never grow
    assert stats(out) == {
        "root": (8, 0.4),  # 0 + .2 + .6 + .5 + .4 + 1 + 0 + .5 = 3.2; / 8
        "a": (3, 0.4),  # .2 + 1 + 0
        "b": (4, 0.5),  # .6 + .5 + .4 + .5
        "aa": (1, 1.0),
        "ab": (1, 0.0),
        "ba": (2, 0.5),
        "bb": (1, 0.4),
    }
    # by visits: root -> b (4 > 3) -> ba (2 > 1), finished: answer 3
    assert out.answer == "3" and out.chain is not None and out.chain.steps == ("b", "ba \\boxed{3}")
    assert out.details["simulations"] == 8 and out.details["rounds"] == 8
    assert out.details["stop"] == "simulations" and out.stopped_by is None
    assert out.details["root_visits"] == [3, 4]
    assert out.details["votes"] == {"1": 1, "2": 1, "3": 2, "4": 1}
    # every leaf is valued once: a, b, ba, bb, aa, ab (ba's second visit reuses its value)
    assert out.ledger.verifier_calls == 6
    g = out.tree.graph
    assert {g.nodes[n]["status"] for n in g if n != ROOT} == {"expanded", "finished", "selected"}
    assert_paths(out)
    assert_ledger_matches_tree(out)


async def test_a_node_value_is_its_step_scores_reduced_by_step_reduction() -> None:
    out, _ = await run(MCTS(width=2, simulations=4, in_flight=1, step_reduction="mean"))
    # s4 reaches ba (the trace above): its scores (b .6, ba .5) -> mean .55 (last would be .5)
    s = stats(out)
    assert s["ba"] == (1, 0.55) and s["b"] == (2, pytest.approx(0.575))  # (.6 + .55) / 2


async def test_final_answer_by_value_differs_from_by_visits() -> None:
    out, _ = await run(MCTS(width=2, simulations=8, in_flight=1, final_answer="value"))
    # the same tree; the finished chain of highest mean value is aa (1.0), not ba (.5)
    assert out.answer == "1" and out.chain is not None and out.chain.steps[-1] == "aa \\boxed{1}"
    assert out.details["aggregate"] == "mcts:value"


async def test_virtual_loss_sends_the_second_simulation_of_a_round_elsewhere() -> None:
    out, gen = await run(MCTS(width=2, simulations=5, in_flight=2))
    # round 1: the root only (it is pending: nothing else to select)
    # round 2: a (unvisited), then a is pending -> b; both expanded in the same round
    # round 3: root N=3. first: a .2 + sqrt(ln 3) = 1.248, b .6 + 1.048 = 1.648 -> b -> ba
    #   with b held (N 1+1, sum .6) and root (3+1): a .2 + sqrt(ln 4) = 1.377,
    #   b .3 + sqrt(ln 4 / 2) = 1.133 -> a -> aa. Without the virtual loss b would score
    #   .6 + 1.177 = 1.777 and the second simulation would take bb.
    assert prompts(gen) == [("", 2), ("a\n\n", 2), ("b\n\n", 2)]
    s = stats(out)
    assert (s["ba"][0], s["aa"][0], s["bb"][0], s["ab"][0]) == (1, 1, 0, 0)
    assert out.details["rounds"] == 3 and out.details["max_in_flight"] == 2
    # virtual losses: round 1 path [root]; round 2 [root,a] [root,b]; round 3 two paths of 3
    assert out.details["virtual_losses"] == 1 + 4 + 6
    # root: 0 + .2 + .6 + .5 + 1.0 = 2.3 over 5; a and b tie on 2 visits: the first (a) -> aa
    assert s["root"] == (5, 0.46) and s["a"] == (2, 0.6) and s["b"] == (2, 0.55)
    assert out.answer == "1"


async def test_two_simulations_per_round_by_hand() -> None:
    # in_flight=2 for 7 simulations: rounds 1-3 as in the test above, then round 4
    out, _ = await run(MCTS(width=2, simulations=7, in_flight=2))
    # round 4: root N=5 (W 2.3); a N2 W1.2, b N2 W1.1; ln 5 = 1.609, sqrt(1.609/2) = .897
    #   first: a .6 + .897 = 1.497, b .55 + .897 = 1.447 -> a; a's children: aa visited, ab
    #   unvisited -> ab (0). second: a held (3, 1.2) .4 + sqrt(ln 6 / 3) = .4 + .773 = 1.173,
    #   b .55 + sqrt(1.792 / 2) = 1.497 -> b -> bb (unvisited): .4
    s = stats(out)
    assert (s["aa"][0], s["ab"][0], s["ba"][0], s["bb"][0]) == (1, 1, 1, 1)
    assert s["root"][0] == 7 and s["a"] == (3, 0.4) and s["b"] == (3, 0.5)
    # by visits: a and b tie (3): a; aa and ab tie (1): aa
    assert out.answer == "1"


async def test_virtual_loss_is_removed_at_backup() -> None:
    out, gen = await run(MCTS(width=2, simulations=8, in_flight=3))
    # round 1: the root. Round 2: a, b (then both pending: a round of 2). root N3 W.8
    # round 3: b (1.648 > 1.248) -> ba; then root 4, b held (2, .6): a .2 + sqrt(ln 4) = 1.377,
    #   b .3 + .833 = 1.133 -> a -> aa; then root 5: a (2, .2) .1 + sqrt(ln 5 / 2) = .997,
    #   b (2, .6) .3 + .897 = 1.197 -> b, ba pending -> bb. Back up .5, 1.0, .4: root N6 W2.7,
    #   a N2 W1.2, b N3 W1.5, and every virtual loss is gone.
    # round 4 (2 left): a .6 + sqrt(ln 6 / 2) = 1.547, b .5 + sqrt(ln 6 / 3) = 1.273 -> a -> ab;
    #   then root 7, a held (3, 1.2) .4 + .805 = 1.205, b .5 + .805 = 1.305 -> b; b's children
    #   (ln 4): ba .5 + 1.177, bb .4 + 1.177 -> ba (valued: no call). Back up 0 and .5.
    # Had the round-2 and round-3 losses stayed, round 4 would see a and b with means dragged
    # toward 0 and visit aa twice: the answer would be 1.
    assert prompts(gen) == [("", 2), ("a\n\n", 2), ("b\n\n", 2)]
    assert out.details["root_visits"] == [3, 4] and out.details["rounds"] == 4
    s = stats(out)
    assert (s["aa"][0], s["ab"][0], s["ba"][0], s["bb"][0]) == (1, 1, 2, 1)
    assert s["root"] == (8, 0.4) and out.answer == "3"


async def test_puct_orders_unvisited_children_by_the_policy_prior() -> None:
    def script(steps: tuple[str, ...], sampling: Sampling, k: int) -> Reply:
        stop = sampling.stop[0] if sampling.stop else None
        if not steps:  # a: one token at p = e^-1; b: four tokens at e^-.5 each
            return (
                Reply("a", stop, logprob=-1.0) if k == 0 else Reply("b x x x", stop, logprob=-0.5)
            )
        return Reply(steps[-1].split(" ")[0] + "ab"[k] + " \\boxed{1}", None, logprob=-0.1)

    verifier = StepVerifier(lambda step: 0.5)
    for prior, first in (("policy", "b x x x\n\n"), ("none", "a\n\n")):
        gen = ScriptedGenerator(steps=script)
        ctx = Context(PROBLEM, gen, verifier=verifier, judge=Grader())
        out = await MCTS(width=2, simulations=2, in_flight=1, prior=prior).run(PROBLEM, ctx)
        # priors .377541 (a) and .622459 (b): PUCT with N_root = 1 scores a .378, b .622 -> b;
        # UCT takes the first unvisited child, a
        assert gen.calls[1][0].removeprefix(HEAD) == first
        assert all(s.logprobs == (0 if prior == "policy" else None) for _, s in gen.calls)
        g = out.tree.graph
        priors = {g.nodes[n]["step"]: g.nodes[n].get("prior") for n in g if n != ROOT}
        if prior == "policy":
            assert priors["a"] == pytest.approx(0.377541) and priors["b x x x"] == pytest.approx(
                0.622459
            )
        else:
            assert set(priors.values()) == {None}


async def test_a_finished_leaf_is_valued_once_and_never_expanded() -> None:
    gen = ScriptedGenerator(steps=named_script({"a": "7"}))
    ctx = ctx_for(gen, named({"a": 0.9}))
    out = await MCTS(width=1, simulations=4, in_flight=1).run(PROBLEM, ctx)
    # s1 expands the root into the finished "a"; s2-s4 select it: one verifier call, no growth
    assert prompts(gen) == [("", 1)] and out.ledger.verifier_calls == 1
    assert stats(out)["a"] == (3, 0.9) and out.answer == "7"
    # several simulations of one round may end on the same finished leaf
    gen = ScriptedGenerator(steps=named_script({"a": "7"}))
    out = await MCTS(width=1, simulations=4, in_flight=3).run(
        PROBLEM, ctx_for(gen, named({"a": 0.9}))
    )
    # round 1: root; round 2: a (unvalued: pending) -> 1 simulation; round 3: a twice (valued)
    assert out.details["rounds"] == 3 and stats(out)["a"] == (3, 0.9)
    assert out.ledger.verifier_calls == 1


async def test_the_last_allowed_step_is_written_to_the_end() -> None:
    gen = ScriptedGenerator(steps=named_script({}))
    out = await MCTS(width=1, simulations=5, in_flight=1, max_steps=2).run(
        PROBLEM, ctx_for(gen, named({"a": 0.3, "aa": 0.6}))
    )
    # root -> a (stop at the delimiter); a -> aa with no stop string (the step cap)
    assert [s.stop for _, s in gen.calls] == [("\n\n",), ()]
    assert out.chain is not None and out.chain.steps == ("a", "aa") and out.chain.finished
    assert out.chain.scores == (0.3, 0.6)  # the chosen chain carries its verifier scores


def test_pending_leaves_and_nodes_expanded_into_nothing_are_not_selected() -> None:
    tree = _Tree(exploration=1.0, prior="none")
    root = tree.root
    tree.grow(root, [Chain(("x",)), Chain(("y",))])
    x, y = root.children or []
    tree.grow(x, [])  # expanded into nothing (a generator that returned no sample)
    path = tree.select()
    assert path is not None and path == [root, y]  # x is skipped although it comes first
    tree.hold(path)
    assert tree.select() is None  # y is in flight this round: nothing left to select
    tree.backup(path, 0.5)
    assert tree.select() == [root, y]  # free again after its backup


async def test_the_budget_stops_between_rounds_and_the_answer_is_what_was_reached() -> None:
    # one token per step: round 1 (root) spends 2, round 2 (a) 2 more = the limit of 4
    out, gen = await run(
        MCTS(width=2, simulations=16, in_flight=1), budget=Budget(generated_tokens=4)
    )
    assert prompts(gen) == [("", 2), ("a\n\n", 2)]
    assert out.stopped_by == "generated_tokens" and out.details["stop"] == "budget:generated_tokens"
    assert out.details["simulations"] == 2 and out.ledger.generated_tokens == 4
    # nothing finished was reached: the most visited path ends at a (no answer, a partial chain)
    assert out.chain is not None and out.chain.steps == ("a",) and out.answer is None


async def test_the_spend_past_a_token_limit_is_at_most_one_round() -> None:
    gen = ScriptedGenerator(steps=named_script(ANSWERS), concurrent=True)
    search = MCTS(width=2, simulations=16, in_flight=2)
    out = await search.run(PROBLEM, ctx_for(gen, named(SCORES), budget=Budget(generated_tokens=3)))
    # round 1: 2 tokens (root). Round 2 expands a and b together: a's call is clamped to the 1
    # token left (2 samples of 1 token: 4 in all, its steps cut by the budget and pruned), b's is
    # refused. The bound: limit - 1 + in_flight * width * max_step_tokens.
    assert out.ledger.generated_tokens == 4
    assert out.ledger.generated_tokens <= 3 - 1 + 2 * 2 * search.max_step_tokens
    assert (
        prompts(gen) == [("", 2), ("a\n\n", 2)] and out.details["stop"] == "budget:generated_tokens"
    )
    g = out.tree.graph
    assert sum(1 for n in g if g.nodes[n].get("cut_by_budget")) == 2
    assert out.details["root_visits"] == [1, 1]  # a and b were still valued (scoring is not tokens)


async def test_a_verifier_budget_leaves_the_round_unvalued() -> None:
    out, _ = await run(MCTS(width=2, simulations=16, in_flight=2), budget=Budget(verifier_calls=2))
    # round 2 values a and b (2 calls, the limit); round 3 is not started
    assert out.stopped_by == "verifier_calls" and out.ledger.verifier_calls == 2
    assert out.details["rounds"] == 2


def test_settings_validate_and_the_config_lists_every_field() -> None:
    from omegaconf import OmegaConf

    from reasoning.build import build_search, build_verifier, check_verifier, compose_config

    for kw, key in [
        ({"width": 0}, "search.width"),
        ({"simulations": 0}, "search.simulations"),
        ({"exploration": -1.0}, "search.exploration"),
        ({"prior": "uniform"}, "search.prior"),
        ({"final_answer": "best"}, "search.final_answer"),
        ({"in_flight": 0}, "search.in_flight"),
        ({"lookahead": -1}, "search.lookahead"),
    ]:
        with pytest.raises(ValueError, match=key):
            MCTS(**kw)  # type: ignore[arg-type]
    cfg = compose_config(["search=mcts", "verifier=arith"])
    keys = set(OmegaConf.to_container(cfg.search)) - {"_target_"}  # type: ignore[arg-type]
    assert keys == {f.name for f in fields(MCTS)}
    search = build_search(cfg)
    assert isinstance(search, MCTS) and asdict(search) == asdict(MCTS())
    verifier = build_verifier(cfg)
    assert verifier is not None
    check_verifier(search, verifier)
    assert MCTS().verifier_use


async def test_the_api_runs_mcts_by_its_config_name() -> None:
    from reasoning.api import asolve

    gen = ScriptedGenerator(steps=named_script(ANSWERS))
    overrides = ["search.width=2", "search.simulations=8", "search.in_flight=1"]
    out = await asolve(
        PROBLEM, search="mcts", generator=gen, verifier=named(SCORES), judge=Grader(),
        overrides=overrides,
    )  # fmt: skip
    # the hand-traced search above, built from conf/search/mcts.yaml with the overrides
    assert out.answer == "3" and out.details["simulations"] == 8 and stats(out)["b"] == (4, 0.5)


async def test_lookahead_values_a_leaf_by_its_greedy_rollout() -> None:
    scores = dict(SCORES, ag=0.9, bg=0.1)
    gen = ScriptedGenerator(steps=named_script(ANSWERS))
    out = await MCTS(width=2, simulations=3, in_flight=1, lookahead=1).run(
        PROBLEM, ctx_for(gen, named(scores))
    )
    # s2 expands a and rolls it out one greedy step (ag): a's value is ag's score .9
    greedy = [(p.removeprefix(HEAD), s.n) for p, s in gen.calls if s.temperature == 0]
    assert greedy == [("a\n\n", 1), ("b\n\n", 1)]
    s = stats(out)
    assert s["a"] == (1, 0.9) and s["b"] == (1, 0.1) and s["ag"] == (None, None)
    g = out.tree.graph
    assert {g.nodes[n]["status"] for n in g if g.nodes[n].get("step") in ("ag", "bg")} == {
        "lookahead"
    }


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 3),
    simulations=st.integers(1, 12),
    in_flight=st.integers(1, 4),
    max_steps=st.integers(1, 4),
    lookahead=st.integers(0, 2),
    prior=st.sampled_from(["none", "policy"]),
    final_answer=st.sampled_from(["visits", "value"]),
)
def test_visits_add_up_on_any_tree(**kw: object) -> None:
    search = MCTS(**kw)  # type: ignore[arg-type]
    gen = ScriptedGenerator(steps=random_script)
    ctx = Context(PROBLEM, gen, verifier=StepVerifier(hashed_score), judge=Grader())
    out = run_sync(search.run(PROBLEM, ctx))
    g = out.tree.graph
    visits = {n: g.nodes[n]["visits"] for n in g if "visits" in g.nodes[n]}
    # each simulation adds one visit to the root; a node's first visit is its own (the one that
    # valued it), every later one passed through one of its children
    assert visits[ROOT] == out.details["simulations"] <= search.simulations
    for n, v in visits.items():
        kids = [visits[k] for k in g.successors(n) if k in visits]
        if n == ROOT or kids:
            assert v == 1 + sum(kids), n
        value = g.nodes[n]["value"]
        assert (value is None) == (v == 0) and (value is None or 0.0 <= value <= 1.0)
    assert out.details["rounds"] <= out.details["simulations"]
    assert out.details["max_in_flight"] <= search.in_flight
    assert_paths(out)
    assert_ledger_matches_tree(out)


# --- the real engine -------------------------------------------------------------------------


@pytest.mark.engine
def test_mcts_on_the_real_engine(engine) -> None:  # noqa: ANN001
    from evals.arith import generate_arith
    from reasoning.loop import run_sync
    from verifiers.arith_checker import ArithStepChecker

    for problem in generate_arith(2, levels=(1,), seed=3):
        ctx = Context(problem, engine, verifier=ArithStepChecker(), judge=Grader())
        mcts = MCTS(width=2, simulations=4, in_flight=2, max_steps=3, max_step_tokens=48)
        out = run_sync(mcts.run(problem, ctx))
        g = ctx.tree.graph
        assert g.nodes[ROOT]["visits"] == out.details["simulations"] >= 1
        assert any((g.nodes[n].get("visits") or 0) > 0 for n in g if n != ROOT)
        assert out.ledger.verifier_calls > 0 and out.ledger.generated_tokens > 0
        for n in g:
            v = g.nodes[n].get("value")
            assert v is None or 0.0 <= v <= 1.0
        assert_paths(out)
