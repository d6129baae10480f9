"""Particle filtering and particle Gibbs: hand-computed weights and resampling decisions on
scripted runs, budget / tree / determinism properties, and one run on the real engine."""

from __future__ import annotations

import asyncio
import random
from dataclasses import fields
from pathlib import Path

import pytest
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from evals.grading import Grader
from reasoning import Budget, Context, Outcome, Problem, Sampling
from reasoning.steps import collapse_steps
from reasoning.types import STEP_DELIMITER
from search.particle_filter import (
    REFERENCE_EPS,
    ParticleFilter,
    bfloat16,
    effective_sample_size,
    particle_weights,
    resample_indices,
)
from search.particle_gibbs import ParticleGibbs
from tests.fakes import ConstantVerifier, ScriptedGenerator, StepScript

PROBLEM = Problem("pf", "What is 2 + 5?", "7")
HEAD = f"Q: {PROBLEM.question}\nA: "
CONF = Path(__file__).resolve().parent.parent / "conf" / "search"


def last_step_verifier(rewards: dict[str, float]) -> ConstantVerifier:
    """Scores every step of a chain by its last step's text (the reward is the last score).

    The hand-computed cases below give each step its own reward, so they run with
    `step_reduction="last"`; the default, model aggregation, is tested in
    tests/test_model_aggregation.py."""
    return ConstantVerifier(lambda text: rewards[text.split("\n\n")[-1]])


def _ctx(gen: ScriptedGenerator, verifier: ConstantVerifier, **kw: object) -> Context:
    return Context(PROBLEM, gen, verifier=verifier, judge=Grader(), **kw)  # type: ignore[arg-type]


def assert_paths_in_tree(out: Outcome) -> None:
    """Every outcome chain is a tree node whose root path spells out its steps."""
    for chain in out.chains:
        path = out.tree.path(chain.id)[1:]
        assert tuple(out.tree.graph.nodes[i]["step"] for i in path) == chain.steps


# --- weights and resampling, by hand --------------------------------------------------------


def test_weights_are_softmax_of_logit_over_temperature() -> None:
    # logit(0.9) = ln 9, logit(0.5) = 0, logit(0.2) = ln 1/4: w ∝ 9 : 1 : 0.25
    assert particle_weights([0.9, 0.5, 0.2]) == pytest.approx([9 / 10.25, 1 / 10.25, 0.25 / 10.25])
    # T = 2: w ∝ 3 : 1 : 0.5
    assert particle_weights([0.9, 0.5, 0.2], 2.0) == pytest.approx([3 / 4.5, 1 / 4.5, 0.5 / 4.5])
    # the paper's softmax(r): e^0.9, e^0.5, e^0.2 over their sum 5.3297271
    assert particle_weights([0.9, 0.5, 0.2], weighting="reward") == pytest.approx(
        [0.4614876, 0.3093444, 0.2291680], abs=1e-7
    )
    # r clipped to (1e-6, 1 - 1e-6): odds 999999 vs 1/999999 -> 1 / (1 + 999999^2) ~ 1e-12
    w = particle_weights([1.0, 0.0])
    assert w[1] == pytest.approx(1.000002e-12, rel=1e-6) and w[0] == pytest.approx(1.0)
    assert particle_weights([0.3] * 4) == pytest.approx([0.25] * 4)


def test_effective_sample_size() -> None:
    assert effective_sample_size([0.25] * 4) == pytest.approx(4.0)
    assert effective_sample_size([1.0, 0.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert effective_sample_size([0.5, 0.25, 0.25]) == pytest.approx(1 / 0.375)


def test_resample_indices_by_inverse_cdf_on_the_seeded_rng() -> None:
    # Random(0).random(): 0.8444, 0.7580, 0.4206, 0.2589; cum weights 0.5, 0.75, 1.0
    assert resample_indices([0.5, 0.25, 0.25], 4, random.Random(0)) == [0, 0, 2, 2]
    # degenerate weights: every draw is particle 0, whatever the seed
    for seed in range(20):
        assert resample_indices([1.0, 0.0, 0.0, 0.0], 4, random.Random(seed)) == [0, 0, 0, 0]
    assert resample_indices([0.0, 0.0, 1.0], 3, random.Random(1)) == [2, 2, 2]


# --- scripted runs ----------------------------------------------------------------------------


async def test_degenerate_weights_resample_particle_zero_and_final_is_best_reward() -> None:
    steps = ["good", "bad1", "bad2", "bad3", "\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"]
    gen = ScriptedGenerator(steps=steps)
    rewards = {"good": 1.0, "bad1": 0.0, "bad2": 0.0, "bad3": 0.0}
    rewards |= {"\\boxed{1}": 0.2, "\\boxed{2}": 0.9, "\\boxed{3}": 0.4, "\\boxed{4}": 0.6}
    ctx = _ctx(gen, last_step_verifier(rewards))
    out = await ParticleFilter(n=4, max_steps=2, step_reduction="last").run(PROBLEM, ctx)

    first, second = out.details["steps"]
    assert first["rewards"] == [1.0, 0.0, 0.0, 0.0] and first["resampled"]
    assert first["picks"] == [0, 0, 0, 0]
    good = first["particles"][0]
    node = out.tree.graph.nodes[good]
    assert node["status"] == "resampled" and node["copies"] == 4
    assert node["weight"] == pytest.approx(1.0)
    for pruned in first["particles"][1:]:
        assert out.tree.graph.nodes[pruned]["status"] == "pruned"
        assert out.tree.graph.nodes[pruned]["copies"] == 0
    # the second step continues four copies of "good", each with its own call
    assert len(gen.calls) == 8 and all(p.endswith("good\n\n") for p, _ in gen.calls[4:])
    assert gen.calls[-1][1].stop == ()  # the last step writes to EOS
    assert all(c.parent == good for c in out.chains) and all(c.finished for c in out.chains)
    assert not second["resampled"] and second["picks"] is None
    # highest final reward wins (0.9), not the first or the majority
    assert out.answer == "2" and out.chain is not None and out.chain.scores[-1] == 0.9
    assert out.details["weights"] == [first["weights"], second["weights"]]
    assert out.ledger.verifier_calls == 8 and out.stopped_by is None
    assert_paths_in_tree(out)


async def test_finished_particles_stay_in_the_pool_and_uniform_weights_skip_ess_resampling() -> (
    None
):
    gen = ScriptedGenerator(steps=["\\boxed{5}", "a", "b", "c", "d", "\\boxed{6}", "\\boxed{7}"])
    rewards = {"\\boxed{5}": 0.5, "a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}
    rewards |= {"\\boxed{6}": 0.4, "\\boxed{7}": 0.3}
    ctx = _ctx(gen, last_step_verifier(rewards))
    out = await ParticleFilter(n=3, max_steps=3, resample="ess", step_reduction="last").run(
        PROBLEM, ctx
    )

    steps = out.details["steps"]
    assert len(steps) == 3
    for s in steps[:2]:  # ESS = 3 >= 0.5 * 3: the pool goes on unchanged
        assert s["weights"] == pytest.approx([1 / 3] * 3) and s["ess"] == pytest.approx(3.0)
        assert not s["resampled"] and s["picks"] is None
    finished = steps[0]["particles"][0]
    # the finished particle keeps its slot and final reward, and is never expanded again
    assert [s["particles"][0] for s in steps] == [finished] * 3
    assert [s["rewards"][0] for s in steps] == [0.5] * 3
    assert len(gen.calls) == 3 + 2 + 2
    assert out.details["final"][0] == finished
    assert out.answer == "5" and out.chain is not None and out.chain.id == finished
    assert_paths_in_tree(out)

    # the same script with resample="always" does resample (the ESS does not matter)
    gen = ScriptedGenerator(steps=["\\boxed{5}", "a", "b", "c", "d", "\\boxed{6}", "\\boxed{7}"])
    always = await ParticleFilter(n=3, max_steps=3, step_reduction="last").run(
        PROBLEM, _ctx(gen, last_step_verifier(rewards))
    )
    assert always.details["steps"][0]["resampled"]
    assert len(always.details["steps"][0]["picks"]) == 3


async def test_skewed_weights_trigger_ess_resampling() -> None:
    gen = ScriptedGenerator(steps=["a", "b", "c", "d", "\\boxed{1}"])
    rewards = {"a": 0.99, "b": 0.01, "c": 0.01, "d": 0.01, "\\boxed{1}": 0.5}
    ctx = _ctx(gen, last_step_verifier(rewards))
    out = await ParticleFilter(n=4, max_steps=2, resample="ess", step_reduction="last").run(
        PROBLEM, ctx
    )
    first = out.details["steps"][0]
    assert first["ess"] < 2.0 and first["resampled"]  # ESS ~ 1.0 < 0.5 * 4


async def test_a_drawn_finished_particle_is_copied_and_ends_the_run() -> None:
    gen = ScriptedGenerator(steps=["\\boxed{5}", "a", "b"])
    rewards = {"\\boxed{5}": 1.0, "a": 0.0, "b": 0.0}
    ctx = _ctx(gen, last_step_verifier(rewards))
    out = await ParticleFilter(n=3, max_steps=4).run(PROBLEM, ctx)
    (step,) = out.details["steps"]
    assert step["picks"] == [0, 0, 0] and len(gen.calls) == 3
    assert out.details["final"] == [step["particles"][0]] * 3
    assert len(out.chains) == 1 and out.answer == "5"
    assert out.tree.graph.nodes[out.chain.id]["status"] == "selected"


async def test_particle_gibbs_keeps_and_replays_the_reference() -> None:
    texts = ["a", "b", "c", "\\boxed{7}", "x2", "x3", "d", "e", "y1", "y2"]
    rewards = dict.fromkeys(texts, 0.0) | {"a": 1.0, "\\boxed{7}": 1.0}
    gen = ScriptedGenerator(steps=texts)
    ctx = _ctx(gen, last_step_verifier(rewards))
    out = await ParticleGibbs(passes=2, n=3, max_steps=2, step_reduction="last").run(PROBLEM, ctx)

    one, two = out.details["passes"]
    a = one["steps"][0]["particles"][0]
    ref = one["final"][0]  # "a" then "\boxed{7}": reward 1.0, drawn with prob. 1 - 2e-12
    assert one["reference"] is None and two["reference"] == ref
    assert out.tree.graph.nodes[ref]["step"] == "\\boxed{7}"
    # 3 + 3 calls in pass 1, then only the 2 fresh particles generate: the reference is replayed
    assert len(gen.calls) == 3 + 3 + 2 + 2 and out.ledger.verifier_calls == 10
    first = two["steps"][0]
    assert first["particles"][0] == a and first["rewards"] == [1.0, 0.0, 0.0]
    assert first["picks"] == [0, 0, 0]  # slot 0 is kept; both fresh slots fork the reference
    assert out.tree.graph.nodes[a].get("reference") is True
    assert all(p.endswith("a\n\n") for p, _ in gen.calls[8:])
    assert two["final"][0] == ref  # never replaced
    forks = [out.tree.graph.nodes[i]["step"] for i in two["final"][1:]]
    assert forks == ["y1", "y2"]
    assert {c.parent for c in out.chains} == {a}
    assert out.answer == "7" and out.chain is not None and out.chain.id == ref
    assert_paths_in_tree(out)


async def test_budget_stop_returns_the_best_scored_answer_so_far() -> None:
    gen = ScriptedGenerator(steps=["1 + 2 = 3"])  # 5 tokens a step, never finishes
    ctx = _ctx(gen, last_step_verifier({"1 + 2 = 3": 0.5}), budget=Budget(generated_tokens=12))
    out = await ParticleFilter(n=2, max_steps=10, max_step_tokens=8).run(PROBLEM, ctx)
    assert out.stopped_by == "generated_tokens"
    # step 1: 10 tokens; step 2: one call clamped to 2 tokens ("1 +": a step cut off by the
    # budget, pruned unscored, its parent kept), then the ledger is at the limit and the other
    # particle's call is refused
    assert out.ledger.generated_tokens == 12 and out.ledger.verifier_calls == 2
    cut = [d for _, d in ctx.tree.graph.nodes(data=True) if d.get("cut_by_budget")]
    assert [(d["step"], d["status"]) for d in cut] == [("1 +", "pruned")]
    assert len(out.details["steps"]) == 1
    assert out.answer == "3" and out.chain is not None and out.chain.steps == ("1 + 2 = 3",)
    assert_paths_in_tree(out)


# --- where the references disagree: reward precision, PG's answer pool and reference reward ---


def test_bfloat16_rounds_to_eight_bits_and_the_reference_clip_is_machine_epsilon() -> None:
    # between 0.5 and 1 bfloat16 values are 1/256 apart; the midpoint 0.998046875 ties to even
    assert bfloat16(0.998) == 0.99609375 and bfloat16(0.998046875) == 1.0
    assert bfloat16(0.9985) == bfloat16(0.9999) == 1.0
    assert bfloat16(0.99) == 0.98828125 and bfloat16(0.5) == 0.5 and bfloat16(0.0) == 0.0
    # r = 1 clipped to 1 - 2.2e-16 has logit ln((1 - eps) / eps) = 36.04 (13.8 at our 1e-6)
    w = particle_weights([1.0, 0.98828125], eps=REFERENCE_EPS)
    odds = (1 - REFERENCE_EPS) / REFERENCE_EPS
    assert w[1] == pytest.approx((253 / 3) / (odds + 253 / 3), rel=1e-9)  # odds of 0.98828125
    w = particle_weights([1.0, 0.98828125])  # our clip: odds 999999 for r = 1
    assert w[1] == pytest.approx((253 / 3) / (999999 + 253 / 3), rel=1e-9)


NEAR_ONE = {"\\boxed{1}": 0.9985, "\\boxed{2}": 0.9999, "\\boxed{3}": 0.99}


@pytest.mark.parametrize("precision", ["float", "bf16"])
async def test_bf16_rewards_tie_near_one_and_change_the_weights_and_the_pick(
    precision: str,
) -> None:
    gen = ScriptedGenerator(steps=list(NEAR_ONE))
    search = ParticleFilter(n=3, max_steps=1, step_reduction="last", reward_precision=precision)
    out = await search.run(PROBLEM, _ctx(gen, last_step_verifier(NEAR_ONE)))
    (step,) = out.details["steps"]
    if precision == "float":
        # odds 0.9985/0.0015 = 1997/3, 0.9999/0.0001 = 9999, 0.99/0.01 = 99: sum 32291/3
        assert step["rewards"] == [0.9985, 0.9999, 0.99]
        assert step["weights"] == pytest.approx([1997 / 32291, 29997 / 32291, 297 / 32291])
        assert out.answer == "2"  # 0.9999 beats 0.9985
    else:
        # both near-1 rewards read as 1.0: equal weights, and the argmax ties to the first
        assert step["rewards"] == [1.0, 1.0, 0.98828125]
        odds = (1 - REFERENCE_EPS) / REFERENCE_EPS
        assert step["weights"][:2] == pytest.approx([0.5, 0.5])
        assert step["weights"][2] == pytest.approx((253 / 3) / (2 * odds), rel=1e-6)
        assert out.answer == "1"
    # the chains keep the verifier's own scores either way
    assert out.chain is not None and out.chain.scores[-1] == NEAR_ONE[out.chain.steps[-1]]


class Draws(random.Random):
    """`random()` returns the scripted draws first (the resampling and reference draws), then
    a seeded sequence; generator seeds come from `randrange`, which does not consume them."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else super().random()


@pytest.mark.parametrize("final_pool", ["all", "last"])
async def test_final_pool_all_or_last_pass_picks_a_different_answer(final_pool: str) -> None:
    # pass 1 (one step, to the end): A "\boxed{1}" 0.75 and B "\boxed{2}" 0.5. Weights ∝ odds
    # 3 : 1 = 0.75 : 0.25; the draw 0.9 falls past 0.75, so B is the reference of pass 2, whose
    # one fresh particle C "\boxed{3}" scores 0.25. A is the best overall but not in pass 2.
    rewards = {"\\boxed{1}": 0.75, "\\boxed{2}": 0.5, "\\boxed{3}": 0.25}
    gen = ScriptedGenerator(steps=list(rewards))
    ctx = _ctx(gen, last_step_verifier(rewards))
    ctx.rng = Draws([0.9])
    search = ParticleGibbs(passes=2, n=2, max_steps=1, step_reduction="last", final_pool=final_pool)
    out = await search.run(PROBLEM, ctx)
    one, two = out.details["passes"]
    a, b = one["final"]
    assert two["reference"] == b and two["final"][0] == b and len(gen.calls) == 3
    (c,) = two["final"][1:]
    if final_pool == "all":
        assert [x.id for x in out.chains] == [a, b, c] and out.answer == "1"
    else:  # the last pass's pool: the reference B (0.5) and C (0.25)
        assert [x.id for x in out.chains] == [b, c] and out.answer == "2"
    assert out.tree.graph.nodes[out.chain.id]["status"] == "selected"  # type: ignore[union-attr]


def plan(steps: dict[str, list[str]]) -> StepScript:
    """The i-th step grown from a chain whose last step is named x (first word; "" for the
    empty chain) is steps[x][i]; an unplanned call fails the test."""
    used: dict[str, int] = {}

    def script(done: tuple[str, ...], sampling: Sampling, k: int) -> str:
        parent = done[-1].split(" ")[0] if done else ""
        i = used[parent] = used.get(parent, -1) + 1
        return steps[parent][i]

    return script


# Pass 1: R = r1 r2 "r3 \boxed{7}" and Q = q1 q2 "q3 \boxed{4}" score 0 at steps 1 and 2
# (uniform weights: ESS = 2, no resampling under resample=ess, ess_threshold=1), then R ends
# on 1.0 and Q on 0.0, so R is the reference (weight 1 - 1e-12). Pass 2: one fresh slot.
REF_STEPS = {
    "": ["r1", "q1", "f1"],
    "r1": ["r2", "t2"],
    "q1": ["q2"],
    "r2": ["r3 \\boxed{7}", "s3 \\boxed{8}"],
    "q2": ["q3 \\boxed{4}"],
    "f1": ["f2"],
    "f2": ["f3 \\boxed{5}"],
}
REF_REWARDS = dict.fromkeys(["r1", "q1", "r2", "q2", "q3"], 0.0) | {"r3": 1.0}
REF_REWARDS |= dict.fromkeys(["f1", "f2", "f3", "t2", "s3"], 0.5)


@pytest.mark.parametrize(
    ("how", "slot0_rewards", "picks", "survivor"),
    [
        # its own prefix: r1 = 0, r2 = 0 against f (0.5): the fresh line survives twice
        ("prefix", [0.0, 0.0, 1.0], [[0, 1], [0, 1], None], "f3"),
        # one step ahead: r2 = 0 at depth 1, then r3 = 1: the reference is forked at depth 2
        ("ahead", [0.0, 1.0, 1.0], [[0, 1], [0, 0], None], "s3"),
        # its final reward, 1.0, from the start: forked at depth 1 (t2) and again at depth 2
        ("final", [1.0, 1.0, 1.0], [[0, 0], [0, 0], None], "s3"),
    ],
)
async def test_reference_reward_prefix_ahead_or_final_changes_the_survivor(
    how: str, slot0_rewards: list[float], picks: list[list[int] | None], survivor: str
) -> None:
    gen = ScriptedGenerator(steps=plan(REF_STEPS))
    verifier = ConstantVerifier(lambda text: REF_REWARDS[text.split("\n\n")[-1].split(" ")[0]])
    search = ParticleGibbs(
        passes=2,
        n=2,
        max_steps=3,
        resample="ess",
        ess_threshold=1.0,
        step_reduction="last",
        reference_reward=how,
    )
    out = await search.run(PROBLEM, _ctx(gen, verifier))
    one, two = out.details["passes"]
    assert [s["resampled"] for s in one["steps"]] == [False, False, False]
    ref = two["reference"]
    assert out.tree.graph.nodes[ref]["step"] == "r3 \\boxed{7}"
    assert [s["rewards"][0] for s in two["steps"]] == slot0_rewards
    assert [s["picks"] for s in two["steps"]] == picks
    assert two["final"][0] == ref  # replayed to its end, never replaced
    assert out.tree.graph.nodes[two["final"][1]]["step"].split(" ")[0] == survivor
    # the reference's own scores are untouched: the best final reward is still R's 1.0
    assert out.answer == "7" and out.chain is not None and out.chain.id == ref
    assert_paths_in_tree(out)


def test_the_reference_choices_are_validated_by_name() -> None:
    for cls, kwargs, key in [
        (ParticleFilter, {"reward_precision": "fp16"}, "search.reward_precision"),
        (ParticleGibbs, {"reward_precision": "half"}, "search.reward_precision"),
        (ParticleGibbs, {"final_pool": "best"}, "search.final_pool"),
        (ParticleGibbs, {"reference_reward": "next"}, "search.reference_reward"),
    ]:
        with pytest.raises(ValueError, match=key):
            cls(**kwargs)
    # the defaults: full precision, every pass, the reference's own prefix
    assert ParticleGibbs().reward_precision == "float" and ParticleGibbs().final_pool == "all"
    assert ParticleGibbs().reference_reward == "prefix"


def test_settings_are_validated_by_name() -> None:
    for kwargs, key in [
        ({"n": 0}, "search.n"),
        ({"resample_temperature": 0.0}, "search.resample_temperature"),
        ({"resample": "sometimes"}, "search.resample"),
        ({"ess_threshold": 1.5}, "search.ess_threshold"),
        ({"weighting": "prod"}, "search.weighting"),
        ({"max_steps": 0}, "search.max_steps"),
        ({"top_p": 0.0}, "search.top_p"),
        ({"max_step_tokens": 0}, "search.max_step_tokens"),
    ]:
        with pytest.raises(ValueError, match=key):
            ParticleFilter(**kwargs)
    with pytest.raises(ValueError, match="search.passes"):
        ParticleGibbs(passes=0)
    with pytest.raises(ValueError, match="search.n"):
        ParticleGibbs(passes=2, n=1)
    assert ParticleFilter().verifier_use and ParticleGibbs().verifier_use


@pytest.mark.parametrize(
    ("name", "cls"), [("particle_filter", ParticleFilter), ("particle_gibbs", ParticleGibbs)]
)
def test_configs_name_every_field(name: str, cls: type) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert set(cfg) - {"_target_"} == {f.name for f in fields(cls)}
    assert instantiate(cfg) == cls()


# --- properties -----------------------------------------------------------------------------


def _random_step(steps: tuple[str, ...], sampling: Sampling, k: int) -> str:
    """Deterministic in (steps so far, seed): a few words, sometimes a boxed answer."""
    prompt = HEAD + "".join(step + STEP_DELIMITER for step in steps)  # as rendered
    rng = random.Random(f"{prompt}|{sampling.seed}")
    words = " ".join(rng.choice(["we", "add", "2", "5", "="]) for _ in range(rng.randint(0, 4)))
    return f"{words} \\boxed{{{rng.randint(1, 9)}}}" if rng.random() < 0.3 else f"{words} step"


def _hashed_rewards(text: str) -> float:
    return random.Random(text.split("\n\n")[-1]).choice([0.0, 0.2, 0.5, 0.8, 1.0])


def _search(gibbs: bool, n: int, iterations: int, **kw: object) -> ParticleFilter:
    if gibbs:
        return ParticleGibbs(passes=iterations, n=max(n, 2), **kw)  # type: ignore[arg-type]
    return ParticleFilter(n=n, **kw)  # type: ignore[arg-type]


def _all_steps(out: Outcome) -> list[dict[str, object]]:
    if "passes" in out.details:  # particle Gibbs
        return [s for it in out.details["passes"] for s in it["steps"]]
    return out.details["steps"]


def _run(search: ParticleFilter, seed: int, budget: Budget, delay_s: float) -> Outcome:
    gen = ScriptedGenerator(steps=_random_step, delay_s=delay_s)
    ctx = Context(
        PROBLEM,
        gen,
        verifier=ConstantVerifier(_hashed_rewards),
        judge=Grader(),
        budget=budget,
        seed=seed,
    )
    return asyncio.run(search.run(PROBLEM, ctx))


SEARCHES = st.builds(
    _search,
    gibbs=st.booleans(),
    n=st.integers(1, 5),
    iterations=st.integers(1, 3),
    max_steps=st.integers(1, 4),
    max_step_tokens=st.integers(1, 6),
    resample_temperature=st.sampled_from([0.5, 1.0, 2.0]),
    resample=st.sampled_from(["always", "ess"]),
    weighting=st.sampled_from(["logit", "reward"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    search=SEARCHES,
    seed=st.integers(0, 10_000),
    tokens=st.integers(1, 60),
    delay=st.sampled_from([0.0, 0.0005]),
)
def test_token_budget_bound_and_tree_paths(
    search: ParticleFilter, seed: int, tokens: int, delay: float
) -> None:
    out = _run(search, seed, Budget(generated_tokens=tokens), delay)
    # Guaranteed: only the last recorded step may end at or past the limit (its children are
    # still scored; nothing is resampled or grown after it), and the step that crossed the
    # limit spent at most one call of min(max_step_tokens, B) per particle.
    steps = _all_steps(out)
    assert all(s["tokens"] < tokens for s in steps[:-1])
    if steps and steps[-1]["tokens"] >= tokens:
        assert steps[-1]["picks"] is None and not steps[-1]["resampled"]
    assert out.ledger.generated_tokens <= tokens - 1 + search.n * min(
        search.max_step_tokens, tokens
    )
    if out.ledger.generated_tokens >= tokens:
        assert out.stopped_by == "generated_tokens"
    assert_paths_in_tree(out)
    if out.chain is not None:
        assert out.chain in out.chains and out.chain.scores


def _fingerprint(out: Outcome) -> tuple[object, ...]:
    ledger = out.ledger.to_dict()
    ledger.pop("wall_s")
    steps = _all_steps(out)
    return (
        out.answer,
        out.chain.steps if out.chain else None,
        [c.steps for c in out.chains],
        [(s["rewards"], s["weights"], s["picks"], s["finished"]) for s in steps],
        ledger,
        out.stopped_by,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    search=SEARCHES,
    seed=st.integers(0, 10_000),
    tokens=st.none() | st.integers(5, 80),
    delay=st.sampled_from([0.0, 0.0005]),
)
def test_same_seed_same_outcome(
    search: ParticleFilter, seed: int, tokens: int | None, delay: float
) -> None:
    budget = Budget(generated_tokens=tokens)
    first = _run(search, seed, budget, delay)
    assert _fingerprint(_run(search, seed, budget, delay)) == _fingerprint(first)
    assert_paths_in_tree(first)


def test_unfinished_particles_run_to_max_steps_without_a_budget() -> None:
    out = _run(ParticleFilter(n=3, max_steps=3), 1, Budget(), 0.0)
    assert out.stopped_by is None and out.chains
    assert all(c.finished and 1 <= len(c.steps) <= 3 for c in out.chains)


def _reference_search(
    gibbs: bool, n: int, iterations: int, precision: str, pool: str, how: str, **kw: object
) -> ParticleFilter:
    if gibbs:
        return ParticleGibbs(
            passes=iterations,
            n=max(n, 2),
            reward_precision=precision,
            final_pool=pool,
            reference_reward=how,
            **kw,  # type: ignore[arg-type]
        )
    return ParticleFilter(n=n, reward_precision=precision, **kw)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    search=st.builds(
        _reference_search,
        gibbs=st.booleans(),
        n=st.integers(1, 4),
        iterations=st.integers(1, 3),
        precision=st.sampled_from(["float", "bf16"]),
        pool=st.sampled_from(["all", "last"]),
        how=st.sampled_from(["prefix", "ahead", "final"]),
        max_steps=st.integers(1, 4),
        max_step_tokens=st.integers(1, 6),
        resample=st.sampled_from(["always", "ess"]),
    ),
    seed=st.integers(0, 10_000),
    tokens=st.none() | st.integers(1, 60),
)
def test_the_reference_choices_keep_the_budget_bound_paths_and_determinism(
    search: ParticleFilter, seed: int, tokens: int | None
) -> None:
    budget = Budget(generated_tokens=tokens)
    out = _run(search, seed, budget, 0.0)
    if tokens is not None:
        bound = tokens - 1 + search.n * min(search.max_step_tokens, tokens)
        assert out.ledger.generated_tokens <= bound
    assert_paths_in_tree(out)
    if out.chain is not None:
        assert out.chain in out.chains and out.chain.scores
    assert _fingerprint(_run(search, seed, budget, 0.0)) == _fingerprint(out)


# --- the real engine --------------------------------------------------------------------------


@pytest.mark.engine
def test_particle_filter_and_gibbs_on_the_real_engine(engine) -> None:  # noqa: ANN001
    from evals.arith import generate_arith
    from reasoning.loop import run_sync
    from verifiers.arith_checker import ArithStepChecker

    problem = generate_arith(1, levels=(2,), seed=3)[0]
    checker = ArithStepChecker()

    ctx = Context(problem, engine, verifier=checker, judge=Grader())
    out = run_sync(ParticleFilter(n=4, max_steps=3, max_step_tokens=48).run(problem, ctx))
    assert out.stopped_by is None and out.chains
    steps = out.details["steps"]
    assert 1 <= len(steps) <= 3 and len(out.details["final"]) == 4
    for s in steps:
        assert len(s["weights"]) == 4 and sum(s["weights"]) == pytest.approx(1.0)
    for chain in out.chains:
        assert 1 <= len(chain.steps) <= 3 and chain.finished
        # model aggregation (the default): step k carries the checker's score of the whole
        # prefix up to k, read as one step
        assert list(chain.scores) == [
            checker.check_steps(collapse_steps(chain.steps[: k + 1]))[0]
            for k in range(len(chain.steps))
        ]
    assert_paths_in_tree(out)
    if out.chain is not None:
        assert out.chain.scores[-1] == max(c.scores[-1] for c in out.chains)
    assert out.ledger.verifier_calls >= 4 and out.ledger.generated_tokens <= 4 * 3 * 48

    ctx = Context(problem, engine, verifier=checker, judge=Grader())
    out = run_sync(ParticleGibbs(passes=2, n=3, max_steps=2, max_step_tokens=48).run(problem, ctx))
    assert out.stopped_by is None
    one, two = out.details["passes"]
    assert two["reference"] in one["final"] and two["final"][0] == two["reference"]
    assert len(one["final"]) == len(two["final"]) == 3
    for chain in out.chains:
        assert 1 <= len(chain.steps) <= 2 and chain.finished
        assert list(chain.scores) == [
            checker.check_steps(collapse_steps(chain.steps[: k + 1]))[0]
            for k in range(len(chain.steps))
        ]
    assert_paths_in_tree(out)
