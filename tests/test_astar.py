"""A*-decoding: hand-computed expansion orders on a scripted policy and verifier, caps, budget
fall-backs, property tests of the accounting/tree/determinism contracts, and one real-engine run."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.grading import Grader
from reasoning import Budget, Completion, Context, Outcome, Problem, Sampling
from reasoning.tree import ROOT
from search.astar import AStar
from tests.fakes import ScriptedGenerator, StepScript, StepVerifier, steps_of

PROBLEM = Problem("p", "What is 2 + 3?", "5")
STATUSES = {"expanded", "finished", "selected", "pruned"}


def table(children: Mapping[str, Sequence[str]]) -> StepScript:
    """Children keyed by the last step ("" for the root); sample i takes entry i (cycled)."""

    def script(steps: tuple[str, ...], sampling: Sampling, i: int) -> str:
        kids = children[steps[-1] if steps else ""]
        return kids[i % len(kids)]

    return script


def ctx_for(
    children: Mapping[str, Sequence[str]] | StepScript,
    scores: Mapping[str, float] | Callable[[str], float],
    **kw: Any,
) -> Context:
    script = children if callable(children) else table(children)
    generator = ScriptedGenerator(steps=script)
    return Context(PROBLEM, generator, verifier=StepVerifier(scores), judge=Grader(), **kw)


def run(astar: AStar, ctx: Context) -> Outcome:
    return asyncio.run(astar.run(PROBLEM, ctx))


def last_step(ctx: Context, node_id: str) -> str:
    return "" if node_id == ROOT else ctx.tree.graph.nodes[node_id]["step"]


def order(out: Outcome, ctx: Context) -> list[str]:
    """The expansion order as the last step of each expanded node ("" = root)."""
    return [last_step(ctx, node_id) for node_id, _ in out.details["expansions"]]


def status(ctx: Context) -> dict[str, str]:
    return {d["step"]: d["status"] for n, d in ctx.tree.graph.nodes(data=True) if n != ROOT}


# --- hand-computed expansion orders -------------------------------------------------------------

BACKTRACK = {"": ["A", "B"], "A": ["A1", "A2"], "B": ["B1 \\boxed{5}", "B2"]}
BACKTRACK_SCORES = {
    "A": 0.875,
    "B": 0.625,
    "A1": 0.25,
    "A2": 0.125,
    "B1 \\boxed{5}": 0.75,
    "B2": 0.5,
}


def test_greedy_child_drops_so_astar_backtracks_to_the_sibling() -> None:
    # risk cost, lambda = 1: f(A) = 1/8 + 1/8 = 1/4 < f(B) = 3/8 + 3/8 = 3/4, so A goes first;
    # its children score badly (f(A1) = 1/8 + 3/4 + 3/4 = 13/8, f(A2) = 15/8), so B is next;
    # f(B1) = 3/8 + 1/4 + 1/4 = 7/8 is finished and best in the frontier: the search stops.
    ctx = ctx_for(BACKTRACK, BACKTRACK_SCORES)
    out = run(AStar(width=2), ctx)
    assert order(out, ctx) == ["", "A", "B"]
    assert [f for _, f in out.details["expansions"]] == [0.0, 0.25, 0.75]
    assert out.details["goals"] == [(out.chain.id, 0.875)]  # type: ignore[union-attr]
    assert out.answer == "5" and out.details["stop"] == "complete" and out.stopped_by is None
    assert out.chain is not None and out.chain.steps == ("B", "B1 \\boxed{5}")
    assert [c.id for c in out.chains] == [out.chain.id]
    assert status(ctx) == {
        "A": "expanded",
        "B": "expanded",
        "A1": "pruned",
        "A2": "pruned",
        "B2": "pruned",
        "B1 \\boxed{5}": "selected",
    }
    node = ctx.tree.graph.nodes[out.chain.id]
    assert (node["g"], node["h"], node["f"]) == (0.625, 0.25, 0.875)
    assert out.ledger.generator_calls == 3 and out.ledger.verifier_calls == 6


PATHS = {
    "": ["A", "B"],
    "A": ["A1", "A9"],
    "B": ["B1 \\boxed{7}", "B9"],
    "A1": ["A2 \\boxed{3}", "A8"],
}
PATH_SCORES = {"A": 0.75, "B": 0.625, "A1": 0.6875, "A9": 0.0, "A2 \\boxed{3}": 0.875}
PATH_SCORES |= {"A8": 0.0, "B1 \\boxed{7}": 0.875, "B9": 0.0}


def test_path_cost_g_changes_which_node_is_expanded() -> None:
    # lambda = 1: f(A) = 1/2, f(B) = 3/4; A1 gets g = 1/4 + 5/16, f = 7/8 > f(B), so B is
    # expanded and its boxed child (f = 3/8 + 1/8 + 1/8 = 5/8) wins.
    risky = ctx_for(PATHS, PATH_SCORES)
    out = run(AStar(width=2), risky)
    assert order(out, risky) == ["", "A", "B"] and out.answer == "7"
    # lambda = 0 (pure PRM best-first): f(A1) = 5/16 < f(B) = 3/8, so the search goes deeper.
    greedy = ctx_for(PATHS, PATH_SCORES)
    out = run(AStar(width=2, cost_weight=0.0), greedy)
    assert order(out, greedy) == ["", "A", "A1"] and out.answer == "3"
    assert [f for _, f in out.details["expansions"]] == [0.0, 0.25, 0.3125]
    # depth cost: every step costs lambda; with lambda = 1/2 the shallow B (f = 7/8) beats
    # A1 (f = 1 + 5/16), then B1 (f = 1 + 1/8) beats A1 too.
    deep = ctx_for(PATHS, PATH_SCORES)
    out = run(AStar(width=2, path_cost="depth", cost_weight=0.5), deep)
    assert order(out, deep) == ["", "A", "B"] and out.answer == "7"


def test_ties_go_to_the_node_pushed_first() -> None:
    children = {
        "": ["X", "Y"],
        "X": ["X1", "X9"],
        "Y": ["Y1 \\boxed{2}", "Y9"],
        "X1": ["X2 \\boxed{4}", "X8"],
    }
    scores = {"X": 0.5, "Y": 0.5, "X1": 0.5, "X9": 0.0, "Y1 \\boxed{2}": 0.5, "Y9": 0.0}
    scores |= {"X2 \\boxed{4}": 0.5, "X8": 0.0}
    ctx = ctx_for(children, scores)
    out = run(AStar(width=2, cost_weight=0.0), ctx)
    # all f = 1/2: X before Y (root order), Y before X1, X1 before the goal Y1, Y1 before X2
    assert order(out, ctx) == ["", "X", "Y", "X1"] and out.answer == "2"


EARLY = {
    "": ["P", "F \\boxed{3}", "Q"],
    "P": ["P1 \\boxed{4}", "P2 \\boxed{6}", "P3"],
    "Q": ["Q1 \\boxed{4}", "Q2", "Q3"],
}
EARLY_SCORES = {"P": 0.875, "F \\boxed{3}": 0.75, "Q": 0.5, "P1 \\boxed{4}": 0.125}
EARLY_SCORES |= {"P2 \\boxed{6}": 0.9375, "P3": 0.0, "Q1 \\boxed{4}": 0.0, "Q2": 0.0, "Q3": 0.0}


def test_a_finished_node_wins_only_at_the_top_of_the_frontier() -> None:
    # lambda = 0: f(P) = 1/8 < f(F) = 1/4 (finished) < f(Q) = 1/2. With two expansions per
    # round, P is popped, F waits (P is better), then P2 (f = 1/16) beats F and wins.
    ctx = ctx_for(EARLY, EARLY_SCORES)
    out = run(AStar(width=3, cost_weight=0.0, expansions_per_round=2), ctx)
    assert order(out, ctx) == ["", "P"] and out.details["rounds"] == 2
    assert out.answer == "6" and out.ledger.generator_calls == 2
    assert status(ctx)["F \\boxed{3}"] == "pruned" and status(ctx)["Q"] == "pruned"


def test_early_stop_when_the_first_complete_solution_is_best() -> None:
    scores = dict(EARLY_SCORES, **{"P2 \\boxed{6}": 0.5})  # P's children are all worse than F
    ctx = ctx_for(EARLY, scores)
    out = run(AStar(width=3, cost_weight=0.0), ctx)
    assert order(out, ctx) == ["", "P"] and out.answer == "3"
    assert out.details["stop"] == "complete" and out.ledger.generator_calls == 2
    assert len(out.details["goals"]) == 1


def test_without_early_stop_goals_are_collected_and_voted() -> None:
    scores = dict(EARLY_SCORES, **{"P2 \\boxed{6}": 0.5, "Q2": 0.125})
    children = dict(EARLY, Q2=["Q4 \\boxed{3}"], Q3=["Q5 \\boxed{3}"], P3=["P4 \\boxed{3}"])
    scores |= {"Q4 \\boxed{3}": 0.25, "Q5 \\boxed{3}": 0.25, "P4 \\boxed{3}": 0.25}
    ctx = ctx_for(children, scores)
    astar = AStar(width=3, cost_weight=0.0, expansions_per_round=2, stop_on_first_complete=False)
    out = run(astar, ctx)
    # f = 1 - r. Round 2 pops P, accepts F (f = 1/4) as a goal on the way, and expands P and Q
    # together; round 3 accepts P2 (1/2) and P1 (7/8), then expands Q2 and P3 (7/8, 1); round
    # 4 accepts Q4, P4 (3/4) and Q1 (1) and expands Q3; Q5 (3/4) is the last goal.
    assert order(out, ctx) == ["", "P", "Q", "Q2", "P3", "Q3"] and out.details["rounds"] == 4
    prompts = [steps_of(p) for p, _ in ctx.generator.calls]  # type: ignore[attr-defined]
    assert prompts[1:3] == [("P",), ("Q",)]
    goals = [last_step(ctx, i).split(" ")[0] for i, _ in out.details["goals"]]
    assert goals == ["F", "P2", "P1", "Q4", "P4", "Q1", "Q5"]
    assert [f for _, f in out.details["goals"]] == [0.25, 0.5, 0.875, 0.75, 0.75, 1.0, 0.75]
    assert [c.id for c in out.chains] == [i for i, _ in out.details["goals"]]
    assert out.details["stop"] == "frontier_empty" and out.details["frontier_left"] == 0
    assert out.details["duplicates"] == 6  # Q2, P3 and Q3 each give one child three times
    # best_score among the goals: F has the highest step score (3/4)
    assert out.answer == "3" and out.chain is not None and out.chain.steps == ("F \\boxed{3}",)
    assert set(status(ctx).values()) <= STATUSES


def test_duplicate_children_are_dropped_before_scoring() -> None:
    children = {"": ["A", "A", "B \\boxed{5}"]}
    scores = {"A": 0.5, "B \\boxed{5}": 0.75}
    ctx = ctx_for(children, scores)
    out = run(AStar(width=3), ctx)
    assert out.ledger.verifier_calls == 2 and out.details["duplicates"] == 1
    dup = [d for _, d in ctx.tree.graph.nodes(data=True) if "duplicate_of" in d]
    assert len(dup) == 1 and dup[0]["status"] == "pruned"
    plain = ctx_for(children, scores)
    assert run(AStar(width=3, filter_duplicates=False), plain).ledger.verifier_calls == 3


# --- caps and budget ----------------------------------------------------------------------------

WORDY = {"": ["a b 1", "d e 2"], "a b 1": ["g h 3", "j k 4"], "d e 2": ["m n 5", "p q 6"]}
WORDY_SCORES = {s: 0.5 for kids in WORDY.values() for s in kids} | {"g h 3": 0.75}


def test_step_cap_writes_the_last_step_to_eos() -> None:
    ctx = ctx_for({"": ["one"], "one": ["two \\boxed{2}"]}, {"one": 0.5, "two \\boxed{2}": 0.5})
    out = run(AStar(width=1, max_steps=2), ctx)
    calls = ctx.generator.calls  # type: ignore[attr-defined]
    assert [s.stop for _, s in calls] == [("\n\n",), ()]
    assert out.chain is not None and out.chain.steps == ("one", "two \\boxed{2}")
    assert out.chain.finish_reason == "eos" and out.details["stop"] == "complete"
    single = ctx_for({"": ["all at once 7"]}, {"all at once 7": 0.5})
    out = run(AStar(width=2, max_steps=1), single)
    assert single.generator.calls[0][1].stop == ()  # type: ignore[attr-defined]
    assert out.chain is not None and out.chain.finished and out.details["duplicates"] == 1
    assert out.answer == "7"


def test_max_expansions_stops_between_rounds() -> None:
    ctx = ctx_for(WORDY, WORDY_SCORES)
    out = run(AStar(width=2, max_expansions=2, expansions_per_round=3, cost_weight=0.0), ctx)
    assert out.details["stop"] == "max_expansions" and order(out, ctx) == ["", "a b 1"]
    assert out.chain is not None and out.chain.steps == ("a b 1", "g h 3")


def test_token_budget_returns_the_best_finished_solution_so_far() -> None:
    children = {"": ["A", "\\boxed{9}"], "A": ["Ax \\boxed{5}", "Ay \\boxed{7}"]}
    scores = {"A": 0.5, "\\boxed{9}": 0.25}
    ctx = ctx_for(children, scores, budget=Budget(generated_tokens=3))
    out = run(AStar(width=2, cost_weight=0.0), ctx)
    # round 1 spends 2 tokens; round 2 expands A with one token per sample, cut to "Ax" and
    # "Ay": steps cut off by the budget, pruned unscored, so A goes back to the frontier. With
    # the budget spent the search stops, and the boxed 9 scored in round 1 is the best finished
    assert out.stopped_by == "generated_tokens" and out.details["stop"] == "budget:generated_tokens"
    assert out.answer == "9" and order(out, ctx) == [""] and out.ledger.verifier_calls == 2
    assert [c.steps for c in out.chains] == [("\\boxed{9}",)]
    assert status(ctx) == {
        "A": "pruned", "\\boxed{9}": "selected", "Ax": "pruned", "Ay": "pruned"
    }  # fmt: skip


def test_a_child_generated_with_the_last_tokens_is_scored_and_can_win() -> None:
    children = {"": ["A", "\\boxed{9}"], "A": ["Ax \\boxed{5}", "Ay \\boxed{7}"]}
    scores = {"A": 0.5, "\\boxed{9}": 0.25, "Ax \\boxed{5}": 0.75, "Ay \\boxed{7}": 0.1}
    ctx = ctx_for(children, scores, budget=Budget(generated_tokens=6))
    out = run(AStar(width=2, cost_weight=0.0), ctx)
    # round 2 completes A's children with the budget's last 4 tokens; they are still scored,
    # and with nothing left to expand the best-scored finished node wins (f = 0.25)
    assert out.details["stop"] == "budget:generated_tokens" and out.ledger.generated_tokens == 6
    assert out.answer == "5" and out.chain is not None and out.chain.scores == (0.5, 0.75)


def test_budget_without_a_finished_solution_returns_the_best_partial() -> None:
    ctx = ctx_for(WORDY, WORDY_SCORES | {"d e 2": 0.75}, budget=Budget(verifier_calls=2))
    out = run(AStar(width=2), ctx)
    # round 1 scores both children; the Context then refuses d e 2's expansion, so it goes
    # back to the frontier, where it is the best partial
    assert out.stopped_by == "verifier_calls" and out.details["stop"] == "budget:verifier_calls"
    assert order(out, ctx) == [""] and out.details["frontier_left"] == 2
    assert out.chain is not None and out.chain.steps == ("d e 2",) and out.answer == "2"
    assert [c.id for c in out.chains] == [out.chain.id]
    assert status(ctx) == {"a b 1": "pruned", "d e 2": "selected"}


def test_children_left_unscored_by_the_budget_are_voted_without_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("reasoning.context.time.monotonic", lambda: clock[0])
    children = {"": ["A", "B"], "A": ["\\boxed{4}", "\\boxed{8}"], "B": ["B1"]}
    ctx = ctx_for(children, {"A": 0.75, "B": 0.5}, budget=Budget(wall_s=1.5))
    complete = ctx.generator.complete

    async def one_second_per_call(prompt: str, sampling: Sampling) -> list[Completion]:
        clock[0] += 1.0
        return await complete(prompt, sampling)

    ctx.generator.complete = one_second_per_call  # type: ignore[method-assign]
    out = run(AStar(width=2), ctx)
    # round 1 ends at 1 s and is scored; round 2 starts before the limit and ends at 2 s, past
    # it, so its children (A's two answers) are never scored and the vote falls back to majority
    assert out.stopped_by == "wall_s" and out.ledger.verifier_calls == 2
    assert [c.steps for c in out.chains] == [("A", "\\boxed{4}"), ("A", "\\boxed{8}")]
    assert out.details["aggregate"].startswith("majority") and out.answer == "4"
    assert out.details["missing_scores"] == {
        "chains": 2,
        "of": 2,
        "reason": "wall_s",
        "vote": "majority instead of best_score",
    }


def test_the_budget_can_refuse_the_very_first_expansion() -> None:
    ctx = ctx_for(WORDY, WORDY_SCORES, budget=Budget(samples=1))
    ctx.ledger.samples = 1
    out = run(AStar(), ctx)
    assert out.answer is None and out.chains == [] and out.stopped_by == "samples"
    assert out.details["expansions"] == [] and out.details["frontier_left"] == 1


def test_bad_settings_name_the_key() -> None:
    for kw, key in [
        ({"width": 0}, "search.width"),
        ({"expansions_per_round": 0}, "search.expansions_per_round"),
        ({"max_steps": 0}, "search.max_steps"),
        ({"token_ref": 0}, "search.token_ref"),
        ({"max_expansions": 0}, "search.max_expansions"),
        ({"step_reduction": "median"}, "search.step_reduction"),
        ({"path_cost": "time"}, "search.path_cost"),
        ({"cost_weight": -1.0}, "search.cost_weight"),
        ({"temperature": -0.1}, "search.temperature"),
        ({"top_p": 0.0}, "search.top_p"),
        ({"aggregate": "rpc"}, "search.aggregate"),
    ]:
        with pytest.raises(ValueError, match=key):
            AStar(**kw)  # type: ignore[arg-type]
    assert AStar().verifier_use


def test_hydra_config_lists_every_field_with_its_default() -> None:
    from omegaconf import OmegaConf

    from reasoning.build import build_search, compose_config

    cfg = compose_config(["search=astar"])
    keys = set(OmegaConf.to_container(cfg.search)) - {"_target_"}  # type: ignore[arg-type]
    assert keys == {f.name for f in fields(AStar)}
    assert asdict(build_search(cfg)) == asdict(AStar())


# --- properties ---------------------------------------------------------------------------------

VOCAB = ["x", "y y", "z z z", "w w", "u", "t t", "so \\boxed{1}", "v v v v"]


def random_script(steps: tuple[str, ...], sampling: Sampling, i: int) -> str:
    """A deterministic function of (prefix, sampling seed, sample index)."""
    rng = random.Random(f"{sampling.seed or 0}|{'/'.join(steps)}|{i}")
    return rng.choice(VOCAB) + ("" if rng.random() < 0.3 else f" {rng.randrange(9)}")


def hashed_score(step: str) -> float:
    return (zlib.crc32(step.encode()) % 9) / 8


searches = st.builds(
    AStar,
    width=st.integers(1, 3),
    expansions_per_round=st.integers(1, 3),
    max_steps=st.integers(1, 6),
    max_step_tokens=st.integers(1, 8),
    path_cost=st.sampled_from(["risk", "depth", "tokens"]),
    cost_weight=st.sampled_from([0.0, 0.25, 1.0]),
    step_reduction=st.sampled_from(["last", "min", "prod", "mean"]),
    stop_on_first_complete=st.booleans(),
    filter_duplicates=st.booleans(),
    token_ref=st.just(4),
)


def prop_run(astar: AStar, seed: int, budget: Budget) -> tuple[Outcome, Context]:
    ctx = Context(
        PROBLEM,
        ScriptedGenerator(steps=random_script),
        verifier=StepVerifier(hashed_score),
        judge=Grader(),
        budget=budget,
        seed=seed,
    )
    return run(astar, ctx), ctx


PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(searches, st.integers(0, 2**16), st.integers(1, 80))
def test_token_spend_stays_within_one_round_of_the_limit(
    astar: AStar, seed: int, limit: int
) -> None:
    """Bound: spend < limit + expansions_per_round * width * max_step_tokens.

    A round starts only while spend < limit, and its calls are in flight together (each sees
    the same remaining budget), so at most one round's worth of calls can land past the limit.
    With one call per round the Budget's clamp (ceil(left / n) tokens per sample) tightens
    that to limit + width - 1.
    """
    out, ctx = prop_run(astar, seed, Budget(generated_tokens=limit))
    spent = out.ledger.generated_tokens
    assert spent < limit + astar.expansions_per_round * astar.width * astar.max_step_tokens
    if astar.expansions_per_round == 1:
        assert spent <= limit + astar.width - 1
    assert out.details["generated_tokens"] == spent


@PROPS
@given(searches, st.integers(0, 2**16), st.integers(1, 80))
def test_every_outcome_chain_is_a_path_in_the_tree(astar: AStar, seed: int, limit: int) -> None:
    out, ctx = prop_run(astar, seed, Budget(generated_tokens=limit))
    graph = ctx.tree.graph
    for chain in out.chains:
        path = ctx.tree.path(chain.id)
        assert path[0] == ROOT and tuple(graph.nodes[n]["step"] for n in path[1:]) == chain.steps
    if out.chain is not None:
        assert out.chain in out.chains and graph.nodes[out.chain.id]["status"] == "selected"
    assert {d["status"] for n, d in graph.nodes(data=True) if n != ROOT} <= STATUSES
    expanded = {n for n, d in graph.nodes(data=True) if n != ROOT and d["status"] == "expanded"}
    assert expanded == {n for n, _ in out.details["expansions"] if n != ROOT}


def fingerprint(out: Outcome, ctx: Context) -> tuple[Any, ...]:
    """The outcome without the process-global chain ids."""
    ledger = out.ledger.to_dict()
    ledger.pop("wall_s")
    steps = [
        tuple(last_step(ctx, n) for n in ctx.tree.path(i)[1:])
        for i, _ in out.details["expansions"]
        if i != ROOT
    ]
    return (
        out.answer,
        [(c.steps, c.scores) for c in out.chains],
        steps,
        [f for _, f in out.details["expansions"]],
        out.details["stop"],
        ledger,
        len(ctx.tree),
    )


@PROPS
@given(searches, st.integers(0, 2**16), st.integers(1, 80))
def test_the_same_seed_gives_the_same_outcome(astar: AStar, seed: int, limit: int) -> None:
    first = prop_run(astar, seed, Budget(generated_tokens=limit))
    second = prop_run(astar, seed, Budget(generated_tokens=limit))
    assert fingerprint(*first) == fingerprint(*second)


# --- the real engine ----------------------------------------------------------------------------


@pytest.mark.engine
def test_astar_on_the_real_engine(engine) -> None:  # noqa: ANN001
    from evals.arith import generate_arith
    from reasoning.loop import run_sync
    from verifiers.arith_checker import ArithStepChecker

    problem = generate_arith(1, levels=(2,), seed=5)[0]
    checker = ArithStepChecker()
    ctx = Context(problem, engine, verifier=checker, judge=Grader())
    astar = AStar(width=2, max_steps=3, max_step_tokens=48)
    out = run_sync(astar.run(problem, ctx))

    graph = ctx.tree.graph
    expansions = out.details["expansions"]
    assert expansions[0] == (ROOT, 0.0) and 1 <= len(expansions) <= 1 + 2 + 4
    assert out.ledger.generator_calls >= len(expansions) and out.ledger.generated_tokens > 0
    assert out.ledger.verifier_calls == sum(1 for _, d in graph.nodes(data=True) if "f" in d)
    assert out.details["stop"] in {"complete", "frontier_empty"} and out.stopped_by is None
    for chain in out.chains:
        path = ctx.tree.path(chain.id)
        assert tuple(graph.nodes[n]["step"] for n in path[1:]) == chain.steps
        assert 1 <= len(chain.steps) <= 3 and len(chain.scores) == len(chain.steps)
        assert list(chain.scores) == checker.check_steps(chain.steps)
    if out.details["stop"] == "complete":
        assert out.chain is not None and out.chain.finished and len(out.chains) == 1
    assert {d["status"] for n, d in graph.nodes(data=True) if n != ROOT} <= STATUSES
