"""Beam search and DVTS: hand-computed decisions on scripted models, properties, real engine.

The scripted generator names each sampled step after its parent's step plus a letter (the
k-th sample of "b" is "b" + "a", "b" + "b", ...; a greedy T=0 sample adds "g"), so every
node of a hand-computed tree has a readable name; the scripted verifier scores a step by its
name. It is `ScriptedGenerator(steps=...)`: plain scripted texts end at EOS, which would end
every chain after one step.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.grading import Grader
from reasoning import Budget, Chain, Context, Problem, Sampling
from reasoning.outcome import Outcome
from reasoning.tree import ROOT
from search.beam import Beam, cyclic_counts
from search.dvts import DVTS
from tests.fakes import ScriptedGenerator, StepScript, StepVerifier

PROBLEM = Problem("p", "What is 4 + 5?", "9")
HEAD = f"Q: {PROBLEM.question}\nA: "


def named(scores: dict[str, float]) -> StepVerifier:
    """Scores a step by its name (first word); unnamed steps score 0."""
    return StepVerifier(lambda step: scores.get(step.split(" ")[0], 0.0))


def named_script(answers: dict[str, str], rename: dict[str, str] | None = None) -> StepScript:
    """Sample k of a call on a chain ending in step "x" is "x" + the next unused letter for "x"
    (greedy samples: "x" + "g"); steps named in `answers` box that answer."""
    used: dict[str, int] = {}
    rename = rename or {}

    def script(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
        parent = steps[-1].split(" ")[0] if steps else ""
        if sampling.temperature == 0:
            name = parent + "g"
        else:
            name = parent + "abcdefghijklmnop"[used.get(parent, 0)]
            used[parent] = used.get(parent, 0) + 1
        name = rename.get(name, name)
        return f"{name} \\boxed{{{answers[name]}}}" if name in answers else name

    return script


def ctx_for(gen: ScriptedGenerator, verifier: StepVerifier, **kw: object) -> Context:
    return Context(PROBLEM, gen, verifier=verifier, judge=Grader(), **kw)  # type: ignore[arg-type]


def names(chains: Sequence[Chain]) -> list[str]:
    return [c.steps[-1].split(" ")[0] for c in chains]


def status(out: Outcome) -> dict[str, str]:
    """Tree status by step name (names are unique in the hand-computed trees)."""
    g = out.tree.graph
    return {g.nodes[n]["step"].split(" ")[0]: g.nodes[n]["status"] for n in g if n != ROOT}


def assert_paths(out: Outcome) -> None:
    """Every outcome chain is a tree node whose root path spells out its steps."""
    g = out.tree.graph
    for c in out.chains:
        path = out.tree.path(c.id)
        assert path[0] == ROOT and len(path) == len(c.steps) + 1
        assert [g.nodes[n]["step"] for n in path[1:]] == list(c.steps)


def assert_ledger_matches_tree(out: Outcome) -> None:
    """Every sample the ledger paid for is a tree node, and no node was free."""
    g = out.tree.graph
    nodes = [n for n in g if n != ROOT]
    assert out.ledger.samples == len(nodes)
    parent = {n: next(iter(g.predecessors(n))) for n in nodes}
    own = [g.nodes[n]["tokens"] - g.nodes[parent[n]].get("tokens", 0) for n in nodes]
    assert out.ledger.generated_tokens == sum(own)


# --- beam search: hand-computed ------------------------------------------------------------

BEAM_SCORES = {
    "a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7,
    "ba": 0.8, "bb": 0.2, "da": 0.6, "db": 0.4,
    "daa": 0.3, "dab": 0.95, "dba": 0.1, "dbb": 0.5,
}  # fmt: skip
BEAM_ANSWERS = {"ba": "5", "daa": "7", "dab": "9", "dba": "9", "dbb": "4"}


async def test_beam_keeps_the_top_n_over_m_and_duplicates_them_to_n() -> None:
    gen = ScriptedGenerator(steps=named_script(BEAM_ANSWERS))
    ctx = ctx_for(gen, named(BEAM_SCORES))
    out = await Beam(n=4, width=2, max_steps=3).run(PROBLEM, ctx)
    # iteration 0: one call of 4 samples from the empty solution
    # iteration 1: b (.9) and d (.7) survive, 2 children each; ba boxes an answer (finished)
    # iteration 2 (last, to EOS): da (.6) and db (.4) survive, bb (.2) is pruned
    calls = [(p.removeprefix(HEAD), s.n, s.stop) for p, s in gen.calls]
    assert calls == [
        ("", 4, ("\n\n",)),
        ("b\n\n", 2, ("\n\n",)),
        ("d\n\n", 2, ("\n\n",)),
        ("d\n\nda\n\n", 2, ()),
        ("d\n\ndb\n\n", 2, ()),
    ]
    st_ = status(out)
    assert [st_[x] for x in "abcd"] == ["pruned", "selected", "pruned", "selected"]
    assert (st_["ba"], st_["bb"], st_["da"], st_["db"]) == (
        "finished",
        "pruned",
        "selected",
        "selected",
    )
    # the 4 best of the 5 completed beams, best first; the answer is the argmax's
    assert names(out.chains) == ["dab", "ba", "dbb", "daa"]
    assert out.answer == "9" and out.chain is not None and names([out.chain]) == ["dab"]
    assert out.chain.steps == ("d", "da", "dab \\boxed{9}") and out.chain.scores == (0.7, 0.6, 0.95)
    assert all(c.finished for c in out.chains)
    assert [c.finish_reason for c in out.chains] == ["eos", "boxed", "eos", "eos"]
    assert st_["dab"] == "selected" and out.details["iterations"] == 3
    assert out.details["finished"] == 5 and out.stopped_by is None
    assert out.ledger.verifier_calls == 4 + 4 + 4
    assert_paths(out)
    assert_ledger_matches_tree(out)


async def test_beam_with_fewer_survivors_duplicates_cyclically_to_n() -> None:
    # b and c repeat a's text: de-duplicated, a is the only open beam (d boxed an answer),
    # so all 4 samples of iteration 1 continue a, in one call.
    gen = ScriptedGenerator(steps=named_script({"d": "1", "aa": "2"}, rename={"b": "a", "c": "a"}))
    out = await Beam(n=4, width=2, max_steps=2).run(
        PROBLEM, ctx_for(gen, named({"a": 0.5, "d": 0.9, "aa": 0.1}))
    )
    assert [(p.removeprefix(HEAD), s.n) for p, s in gen.calls] == [("", 4), ("a\n\n", 4)]
    g = out.tree.graph
    dups = [n for n in g if g.nodes[n].get("duplicate")]
    assert len(dups) == 2 and all(g.nodes[n]["status"] == "pruned" for n in dups)
    assert names(out.chains) == ["d", "aa", "ab", "ac"]  # best first; 4 completed, no repeats
    assert out.answer == "1"
    assert cyclic_counts(3, 8) == [3, 3, 2] and cyclic_counts(1, 4) == [4]


async def test_beam_without_duplicate_filtering_keeps_equal_texts() -> None:
    gen = ScriptedGenerator(steps=named_script({}, rename={"b": "a"}))
    await Beam(n=4, width=2, max_steps=2, filter_duplicates=False).run(
        PROBLEM, ctx_for(gen, named({"a": 0.9, "c": 0.1, "d": 0.5}))
    )
    assert [p.removeprefix(HEAD) for p, _ in gen.calls[1:]] == ["a\n\n", "a\n\n"]

    gen = ScriptedGenerator(steps=named_script({}, rename={"b": "a"}))
    await Beam(n=4, width=2, max_steps=2).run(
        PROBLEM, ctx_for(gen, named({"a": 0.9, "c": 0.1, "d": 0.5}))
    )
    assert [p.removeprefix(HEAD) for p, _ in gen.calls[1:]] == ["a\n\n", "d\n\n"]


async def test_beam_completes_every_beam_once_n_copies_when_fewer_finish() -> None:
    # one beam survives each step (width = n); everything ends at the last iteration
    gen = ScriptedGenerator(steps=named_script({"ba": "3", "bb": "4"}))
    scores = {"a": 0.2, "b": 0.8, "ba": 0.9, "bb": 0.1}
    out = await Beam(n=2, width=2, max_steps=2).run(PROBLEM, ctx_for(gen, named(scores)))
    assert names(out.chains) == ["ba", "bb"] and out.answer == "3"
    # a single completion is repeated to n completions (SAL), so the vote sees n of them
    gen = ScriptedGenerator(steps=named_script({"a": "3"}, rename={"b": "a"}))
    out = await Beam(n=2, width=1, max_steps=1).run(PROBLEM, ctx_for(gen, named({})))
    assert len(out.chains) == 2 and out.ledger.samples == 2


async def test_lookahead_ranks_by_the_rollout_and_drops_it() -> None:
    scores = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.2, "ag": 0.1, "bg": 0.9, "cg": 0.8, "dg": 0.0}
    answers = {x + y: "1" for x in "abcd" for y in "ab"}
    plain = ScriptedGenerator(steps=named_script(answers))
    out0 = await Beam(n=4, width=2, max_steps=2).run(PROBLEM, ctx_for(plain, named(scores)))
    assert [p.removeprefix(HEAD) for p, _ in plain.calls[1:]] == ["a\n\n", "c\n\n"]

    gen = ScriptedGenerator(steps=named_script(answers))
    out = await Beam(n=4, width=2, max_steps=2, lookahead=1).run(
        PROBLEM, ctx_for(gen, named(scores))
    )
    greedy = [(p.removeprefix(HEAD), s.n) for p, s in gen.calls if s.temperature == 0]
    assert greedy == [("a\n\n", 1), ("b\n\n", 1), ("c\n\n", 1), ("d\n\n", 1)]
    assert [p.removeprefix(HEAD) for p, s in gen.calls[5:]] == ["b\n\n", "c\n\n"]
    assert all(s.temperature == 0.8 for _, s in gen.calls[5:])  # no lookahead at the end
    g = out.tree.graph
    rollouts = [n for n in g if g.nodes[n]["status"] == "lookahead"]
    assert sorted(g.nodes[n]["step"] for n in rollouts) == ["ag", "bg", "cg", "dg"]
    assert not any(s.endswith("g") for c in out.chains for s in c.steps)
    b = next(n for n in g if g.nodes[n]["step"] == "b")
    assert g.nodes[b]["scores"] == [0.1] and g.nodes[b]["lookahead_score"] == 0.9
    assert all(len(c.scores) == len(c.steps) == 2 for c in out.chains)
    assert out.ledger.samples == out0.ledger.samples + 4  # the rollouts are paid for
    assert_paths(out)
    assert_ledger_matches_tree(out)


async def test_beam_on_budget_returns_the_finished_chains_so_far() -> None:
    # Budget(samples=6): iteration 1 gets b's 2 samples, then d's call is refused. ba (boxed)
    # is the only completed chain; the spent sample budget does not stop the verifier, so ba is
    # scored (0.8) and the vote is the configured one, not the majority fallback.
    gen = ScriptedGenerator(steps=named_script(BEAM_ANSWERS))
    ctx = ctx_for(gen, named(BEAM_SCORES), budget=Budget(samples=6))
    out = await Beam(n=4, width=2, max_steps=3).run(PROBLEM, ctx)
    assert out.stopped_by == "samples" and out.answer == "5" and names(out.chains) == ["ba"]
    assert out.ledger.samples == 6 and out.details["aggregate"] == Beam().aggregate
    assert out.chains[0].scores == (0.9, 0.8) and out.ledger.verifier_calls == 6
    assert_paths(out)


async def test_beam_on_budget_without_finished_chains_returns_the_best_partial_ones() -> None:
    gen = ScriptedGenerator(steps=named_script(BEAM_ANSWERS))
    ctx = ctx_for(gen, named(BEAM_SCORES), budget=Budget(verifier_calls=4))
    out = await Beam(n=4, width=2, max_steps=3).run(PROBLEM, ctx)
    assert out.stopped_by == "verifier_calls" and out.details["iterations"] == 1
    assert names(out.chains) == ["b", "d", "c", "a"]  # ranked by score
    assert out.answer is None and all(len(c.scores) == 1 for c in out.chains)


# --- beam search: the reference's choices (search-and-learn) as keys --------------------------

# b and d survive iteration 0; b's children ba and bb both box an answer, so da and db are the
# two open beams, and all four of their children finish at the last iteration: 6 finished > n
ORDER_SCORES = BEAM_SCORES | {"bb": 0.2, "dba": 0.35}
ORDER_ANSWERS = BEAM_ANSWERS | {"bb": "6"}


@pytest.mark.parametrize(
    ("order", "kept", "answer"),
    [
        # the 4 best by score: dab .95, ba .8, dbb .5, dba .35
        ("score", ["dab", "ba", "dbb", "dba"], "9"),
        # the first 4 to finish: ba, bb, then the last iteration in slot order (da, db, da, db
        # once the 2 survivors are repeated to n = 4): daa, dba; dab (.95) finished too late
        ("finish", ["ba", "bb", "daa", "dba"], "5"),
    ],
)
async def test_finished_order_keeps_the_best_or_the_first_to_finish(
    order: str, kept: list[str], answer: str
) -> None:
    gen = ScriptedGenerator(steps=named_script(ORDER_ANSWERS))
    out = await Beam(n=4, width=2, max_steps=3, finished_order=order).run(
        PROBLEM, ctx_for(gen, named(ORDER_SCORES))
    )
    assert out.details["finished"] == 6 and out.stopped_by is None
    assert names(out.chains) == kept and out.answer == answer
    assert_paths(out)
    assert_ledger_matches_tree(out)


async def test_lookahead_ranking_false_ranks_by_the_step_and_still_pays_for_the_rollouts() -> None:
    # the scores of test_lookahead_ranks_by_the_rollout_and_drops_it: by the rollout b (.9) and
    # c (.8) survive; by the step itself a (.9) and c (.5), as without lookahead
    scores = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.2, "ag": 0.1, "bg": 0.9, "cg": 0.8, "dg": 0.0}
    answers = {x + y: "1" for x in "abcd" for y in "ab"}
    gen = ScriptedGenerator(steps=named_script(answers))
    out = await Beam(n=4, width=2, max_steps=2, lookahead=1, lookahead_ranking=False).run(
        PROBLEM, ctx_for(gen, named(scores))
    )
    greedy = [(p.removeprefix(HEAD), s.n) for p, s in gen.calls if s.temperature == 0]
    assert greedy == [("a\n\n", 1), ("b\n\n", 1), ("c\n\n", 1), ("d\n\n", 1)]  # still generated
    assert [p.removeprefix(HEAD) for p, s in gen.calls[5:]] == ["a\n\n", "c\n\n"]
    st_ = status(out)
    assert [st_[x] for x in "abcd"] == ["selected", "pruned", "selected", "pruned"]
    assert sorted(x for x, v in st_.items() if v == "lookahead") == ["ag", "bg", "cg", "dg"]
    g = out.tree.graph
    b = next(n for n in g if g.nodes[n]["step"] == "b")
    assert "lookahead_score" not in g.nodes[b]  # the rollouts were never scored
    # one verifier call per candidate (the step, not its rollout), as with lookahead_ranking
    assert out.ledger.verifier_calls == 4 + 4
    assert out.ledger.samples == 4 + 4 + 4  # iteration 0, its 4 rollouts, the last iteration
    assert all(len(c.scores) == len(c.steps) == 2 for c in out.chains)
    assert_paths(out)
    assert_ledger_matches_tree(out)


def test_the_reference_choices_are_validated_by_name() -> None:
    with pytest.raises(ValueError, match="search.finished_order"):
        Beam(finished_order="first")
    with pytest.raises(ValueError, match="search.lookahead_ranking"):
        Beam(lookahead_ranking="no")  # type: ignore[arg-type]
    assert Beam().finished_order == "score" and Beam().lookahead_ranking is True


# --- DVTS: hand-computed -------------------------------------------------------------------

DVTS_SCORES = {
    "a": 0.3, "b": 0.4, "c": 0.9, "d": 0.8,
    "ba": 0.2, "bb": 0.7, "ca": 0.5, "cb": 0.6,
    "cba": 0.3, "cbb": 0.95,
}  # fmt: skip
DVTS_ANSWERS = {"bb": "5", "cba": "7", "cbb": "9"}


async def test_dvts_subtrees_are_independent_and_greedy() -> None:
    gen = ScriptedGenerator(steps=named_script(DVTS_ANSWERS))
    out = await DVTS(n=4, width=2, max_steps=3).run(PROBLEM, ctx_for(gen, named(DVTS_SCORES)))
    # subtree 1 samples a, b; subtree 2 samples c, d. Subtree 1 keeps b (.4) although both
    # of subtree 2's samples score higher: there is no competition across subtrees.
    # Iteration 1: subtree 1 picks bb (.7), which boxes an answer: it stops there.
    # Iteration 2 (last, to EOS): only subtree 2 (at cb) is still live.
    calls = [(p.removeprefix(HEAD), s.n, s.stop) for p, s in gen.calls]
    assert calls == [
        ("", 2, ("\n\n",)),
        ("", 2, ("\n\n",)),
        ("b\n\n", 2, ("\n\n",)),
        ("c\n\n", 2, ("\n\n",)),
        ("c\n\ncb\n\n", 2, ()),
    ]
    st_ = status(out)
    assert [st_[x] for x in ("a", "b", "c", "d", "ba", "ca", "cb")] == [
        "pruned", "selected", "selected", "pruned", "pruned", "pruned", "selected",
    ]  # fmt: skip
    # output: each subtree's last `width` candidates (ba is a partial one)
    assert names(out.chains) == ["ba", "bb", "cba", "cbb"]
    assert [c.finished for c in out.chains] == [False, True, True, True]
    assert out.answer == "9" and names([out.chain]) == ["cbb"]  # type: ignore[list-item]
    assert out.details["subtrees"] == 2 and out.details["iterations"] == 3
    assert all(len(c.scores) == len(c.steps) for c in out.chains)
    assert_paths(out)
    assert_ledger_matches_tree(out)


async def test_dvts_lookahead_and_weighted_vote() -> None:
    # without lookahead subtree 1 would keep a (.6 > .5); its rollout ag scores .1, bg .9
    scores = {"a": 0.6, "b": 0.5, "ag": 0.1, "bg": 0.9, "ba": 0.4, "bb": 0.3}
    gen = ScriptedGenerator(steps=named_script({"ba": "2", "bb": "3"}))
    out = await DVTS(n=2, width=2, max_steps=2, lookahead=1, aggregate="weighted").run(
        PROBLEM, ctx_for(gen, named(scores))
    )
    assert [p.removeprefix(HEAD) for p, s in gen.calls if s.temperature > 0] == ["", "b\n\n"]
    assert names(out.chains) == ["ba", "bb"] and out.answer == "2"
    assert out.details["votes"] == {"2": 0.4, "3": 0.3}
    assert_paths(out)


async def test_dvts_on_budget_returns_the_finished_chains_so_far() -> None:
    gen = ScriptedGenerator(steps=named_script(DVTS_ANSWERS))
    ctx = ctx_for(gen, named(DVTS_SCORES), budget=Budget(verifier_calls=8))
    out = await DVTS(n=4, width=2, max_steps=3).run(PROBLEM, ctx)
    # iterations 0 and 1 are scored (8 calls); bb is the only finished chain
    assert out.stopped_by == "verifier_calls" and names(out.chains) == ["bb"]
    assert out.answer == "5" and out.chain is not None and out.chain.scores == (0.4, 0.7)


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="search.width"):
        Beam(n=6, width=4)
    with pytest.raises(ValueError, match="search.n"):
        DVTS(n=0)
    with pytest.raises(ValueError, match="search.aggregate"):
        Beam(aggregate="rpc")
    with pytest.raises(ValueError, match="search.step_reduction"):
        DVTS(step_reduction="max")
    with pytest.raises(ValueError, match="search.lookahead"):
        Beam(lookahead=-1)
    assert Beam().verifier_use and DVTS().verifier_use


def test_configs_build_the_controllers() -> None:
    from reasoning.build import build_search, compose_config

    beam = build_search(compose_config(["search=beam"]))
    dvts = build_search(compose_config(["search=dvts", "search.n=16"]))
    assert beam == Beam() and dvts == DVTS(n=16)


# --- properties ------------------------------------------------------------------------------


def random_script(p_box: float = 0.15, p_eos: float = 0.1) -> StepScript:
    """Steps of 1..6 words drawn from the call's seed, the chain so far and the sample index."""

    def script(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
        rng = random.Random(f"{sampling.seed}:{sampling.temperature}:{list(steps)}:{k}")
        words = [rng.choice(["x", "y", "z", "2 + 2 = 4"]) for _ in range(rng.randint(1, 6))]
        roll = rng.random()
        if roll < p_box:
            words.append(f"\\boxed{{{rng.randint(0, 3)}}}")
        elif roll < p_box + p_eos:
            words.append("<eos>")
        return " ".join(words)

    return script


def hashed_score(step: str) -> float:
    return zlib.crc32(step.encode()) % 101 / 100


@st.composite
def searches(draw: st.DrawFn) -> Beam | DVTS:
    n = draw(st.sampled_from([1, 2, 4, 6, 8]))
    width = draw(st.sampled_from([w for w in (1, 2, 3, 4, 8) if n % w == 0]))
    cls = draw(st.sampled_from([Beam, DVTS]))
    return cls(
        n=n,
        width=width,
        max_steps=draw(st.integers(1, 6)),
        lookahead=draw(st.integers(0, 2)),
        max_step_tokens=draw(st.integers(1, 6)),
        step_reduction=draw(st.sampled_from(["last", "min", "mean"])),
        aggregate=draw(st.sampled_from(["best_score", "weighted", "majority"])),
    )


def run_search(search: Beam | DVTS, budget: Budget, seed: int, concurrent: bool) -> Outcome:
    gen = ScriptedGenerator(steps=random_script(), concurrent=concurrent)
    ctx = Context(
        PROBLEM, gen, verifier=StepVerifier(hashed_score), judge=Grader(), budget=budget, seed=seed
    )
    return asyncio.run(search.run(PROBLEM, ctx))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    search=searches(),
    tokens=st.integers(1, 80),
    seed=st.integers(0, 3),
    concurrent=st.booleans(),
)
def test_token_budget_is_exceeded_by_at_most_one_iteration(
    search: Beam | DVTS, tokens: int, seed: int, concurrent: bool
) -> None:
    """The ledger check comes before each call and one iteration's calls (n samples; a
    lookahead level: at most n rollouts) are in flight together, so all may pass it before any
    is metered: at most B - 1 + n * max_step_tokens. When calls complete one at a time, the
    Context's per-call clamp gives B + (samples of one call) - 1 <= B + n - 1."""
    out = run_search(search, Budget(generated_tokens=tokens), seed, concurrent)
    spent = out.ledger.generated_tokens
    assert spent <= tokens - 1 + search.n * search.max_step_tokens
    if not concurrent:
        assert spent <= tokens + search.n - 1
    assert out.stopped_by in (None, "generated_tokens")
    assert_paths(out)
    assert_ledger_matches_tree(out)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(search=searches(), seed=st.integers(0, 3), limit=st.sampled_from([None, 5, 20]))
def test_outcome_chains_are_tree_paths_and_runs_repeat(
    search: Beam | DVTS, seed: int, limit: int | None
) -> None:
    budget = Budget(verifier_calls=limit)
    first = run_search(search, budget, seed, concurrent=True)
    second = run_search(search, budget, seed, concurrent=False)
    assert_paths(first)
    assert_ledger_matches_tree(first)
    assert first.chains, "some chain always comes back"
    if limit is None:
        assert first.stopped_by is None
        assert len(first.chains) == search.n
        assert all(len(c.scores) == len(c.steps) for c in first.chains)
    if isinstance(search, Beam) and first.stopped_by is None:
        assert all(c.finished for c in first.chains)

    def summary(out: Outcome) -> tuple[object, ...]:
        ledger = {k: v for k, v in out.ledger.to_dict().items() if k != "wall_s"}
        chains = [(c.steps, c.scores, c.finish_reason) for c in out.chains]
        return out.answer, chains, ledger, out.stopped_by, len(out.tree)

    assert summary(first) == summary(second)  # same seed, same outcome (also when concurrent)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([2, 4, 8]),
    width=st.sampled_from([1, 2]),
    lookahead=st.integers(1, 2),
    order=st.sampled_from(["score", "finish"]),
    ranking=st.booleans(),
    tokens=st.none() | st.integers(1, 80),
    seed=st.integers(0, 3),
)
def test_the_reference_choices_keep_the_budget_bound_paths_and_determinism(
    n: int, width: int, lookahead: int, order: str, ranking: bool, tokens: int | None, seed: int
) -> None:
    search = Beam(
        n=n,
        width=width,
        max_steps=4,
        lookahead=lookahead,
        max_step_tokens=4,
        finished_order=order,
        lookahead_ranking=ranking,
    )
    budget = Budget(generated_tokens=tokens)
    out = run_search(search, budget, seed, concurrent=True)
    if tokens is not None:
        assert out.ledger.generated_tokens <= tokens - 1 + n * search.max_step_tokens
    assert_paths(out)
    assert_ledger_matches_tree(out)
    if out.stopped_by is None:
        assert len(out.chains) == n and all(c.finished for c in out.chains)
        assert all(len(c.scores) == len(c.steps) for c in out.chains)
    again = run_search(search, budget, seed, concurrent=True)  # same seed, same outcome
    assert [c.steps for c in again.chains] == [c.steps for c in out.chains]
    assert again.answer == out.answer and again.ledger.samples == out.ledger.samples


# --- the real engine -------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.parametrize("kind", [Beam, DVTS], ids=["beam", "dvts"])
def test_step_search_on_the_real_engine(engine, kind: type[Beam | DVTS]) -> None:  # noqa: ANN001
    """Beam(n=4, width=2, 3 iterations, 48-token steps) and DVTS alike, with the arithmetic
    checker as the step verifier: structure only (SmolLM2's answers are mostly wrong)."""
    from evals.arith import generate_arith
    from reasoning.loop import run_sync
    from verifiers.arith_checker import ArithStepChecker

    search = kind(n=4, width=2, max_steps=3, max_step_tokens=48)
    (problem,) = generate_arith(1, levels=(2,), seed=3)
    ctx = Context(problem, engine, verifier=ArithStepChecker(), judge=Grader(), seed=1)
    out = run_sync(search.run(problem, ctx))
    assert len(out.chains) == 4 and out.stopped_by is None
    assert_paths(out)
    assert_ledger_matches_tree(out)
    for c in out.chains:
        assert 1 <= len(c.steps) <= 3 and len(c.scores) == len(c.steps)
        assert all(0.0 <= s <= 1.0 for s in c.scores)
        assert c.finished or isinstance(search, DVTS)
    # every sample scored once, in its iteration (conclude found nothing left to score)
    assert out.ledger.verifier_calls == out.ledger.samples >= 4
    if isinstance(search, Beam):
        assert out.ledger.samples == 4 * out.details["iterations"]
    assert out.answer is None or isinstance(out.answer, str)
    g = out.tree.graph
    assert max(g.nodes[n].get("depth", 0) for n in g) <= 3
    assert all(g.nodes[n]["status"] != "expanded" for n in g if g.nodes[n].get("depth") == 1)
