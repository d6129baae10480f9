"""search=adaptive_sc and its stop rules (search/stop_rules.py): hand-computed posteriors,
windows and doubling checkpoints, each with the mutation it catches, then the controller on
scripted samples (stops, aborts metered, no-answer samples, n reached, the budget, +trim)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import pytest

from evals.grading import Grader
from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Budget, Context
from reasoning.build import ConfigError, build_search, compose_config
from reasoning.context import Context as Ctx
from reasoning.loop import run_sync
from reasoning.types import Completion, Prompt, Sampling
from search import AdaptiveSC
from search.sample_pool import Drawn, draw
from search.stop_rules import (
    BetaStop,
    DoublingStop,
    WindowStop,
    beta_majority_probability,
    is_doubling_checkpoint,
    leader_counts,
    regularized_beta_half,
)
from tests.test_sample_pool import PROBLEM, PerSample

# --- the regularized incomplete beta at 1/2, exactly --------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 1, Fraction(1, 2)),  # n=1: C(1,1)/2
        (2, 1, Fraction(1, 4)),  # n=2: C(2,2)/4
        (1, 2, Fraction(3, 4)),  # n=2: (C(2,1)+C(2,2))/4 = 3/4
        (4, 2, Fraction(6, 32)),  # n=5: (C(5,4)+C(5,5))/32 = (5+1)/32
        (3, 4, Fraction(42, 64)),  # n=6: (20+15+6+1)/64
        (5, 1, Fraction(1, 32)),  # n=5: C(5,5)/32
    ],
)
def test_regularized_beta_half_by_hand(a: int, b: int, expected: Fraction) -> None:
    assert regularized_beta_half(a, b) == expected


def test_regularized_beta_half_matches_the_integral() -> None:
    """The binomial sum against a midpoint-rule integral of x^(a-1) (1-x)^(b-1)."""
    steps = 20000

    def integral(a: int, b: int, lo: float, hi: float) -> float:
        h = (hi - lo) / steps
        return sum(
            ((lo + (i + 0.5) * h) ** (a - 1)) * (1 - lo - (i + 0.5) * h) ** (b - 1) * h
            for i in range(steps)
        )

    for a, b in [(2, 3), (7, 2), (5, 5), (9, 4)]:
        numeric = integral(a, b, 0.0, 0.5) / integral(a, b, 0.0, 1.0)
        assert float(regularized_beta_half(a, b)) == pytest.approx(numeric, abs=1e-6)


@pytest.mark.parametrize(
    ("v1", "v2", "p"),
    [
        (0, 0, 0.5),  # no votes: Beta(1,1), P(p1 > 1/2) = 1/2
        (1, 0, 0.75),  # 1 - I(2,1) = 1 - 1/4
        (3, 0, 0.9375),  # 1 - I(4,1) = 1 - 1/16
        (4, 0, 0.96875),  # 1 - I(5,1) = 1 - 1/32
        (3, 1, 0.8125),  # 1 - I(4,2) = 1 - 6/32; Beta(v1, v2) (no +1) would give 7/8
        (4, 1, 57 / 64),  # 1 - I(5,2): n=6, (C(6,5)+C(6,6))/64 = 7/64
        (5, 1, 0.9375),  # 1 - I(6,2): n=7, (7+1)/128
        (6, 1, 247 / 256),  # 1 - I(7,2): n=8, (8+1)/256
        (2, 2, 0.5),  # a tie
    ],
)
def test_beta_majority_probability_by_hand(v1: int, v2: int, p: float) -> None:
    assert beta_majority_probability(v1, v2) == p


def test_leader_counts_ignore_no_answer_samples() -> None:
    assert leader_counts([0, None, 1, 0, None, 2, 1, 0]) == (3, 2)
    assert leader_counts([None, None]) == (0, 0)
    assert leader_counts([4]) == (1, 0)


# --- the rules over answer sequences -------------------------------------------------------


def first_stop(rule, clusters: Sequence[int | None]) -> int | None:  # type: ignore[no-untyped-def]
    """After how many samples the rule first stops, feeding it growing prefixes."""
    for k in range(1, len(clusters) + 1):
        if rule(clusters[:k]) is not None:
            return k
    return None


def test_beta_stops_after_four_equal_answers() -> None:
    # P after k equal answers = 1 - 2^-(k+1): 0.75, 0.875, 0.9375, 0.96875 -> first >= 0.95 at 4
    assert first_stop(BetaStop(0.95), [0] * 10) == 4


def test_beta_with_a_dissenter_stops_at_seven() -> None:
    # answers 5,6,5,5,5,5,5: votes (3,1) 0.8125, (4,1) 0.8906, (5,1) 0.9375, (6,1) 0.9648
    assert first_stop(BetaStop(0.95), [0, 1, 0, 0, 0, 0, 0, 0]) == 7


def test_beta_stops_when_p_equals_the_threshold() -> None:
    # one answer: P = 0.75 exactly; the reference compares with >=, so a > would not stop
    assert BetaStop(0.75)([0]) is not None
    assert BetaStop(0.7500001)([0]) is None


def test_beta_counts_only_answers() -> None:
    # no-answer samples move nothing: 4 answers after 3 blanks stop at sample 7
    assert first_stop(BetaStop(0.95), [None, None, None, 0, 0, 0, 0]) == 7
    assert first_stop(BetaStop(0.95), [None] * 10) is None


def test_beta_uses_the_runner_up_not_all_others() -> None:
    # votes 5 / 1 / 1: P from (5, 1) = 0.9375 < 0.95; with a 6th vote (6,1) = 0.9648 stops.
    # Counting both dissenters as one runner-up (5, 2) would give 1 - I(6,3) = 0.855
    assert BetaStop(0.95)([0, 1, 2, 0, 0, 0, 0]) is None
    assert BetaStop(0.95)([0, 1, 2, 0, 0, 0, 0, 0]) is not None
    assert BetaStop(0.93)([0, 1, 2, 0, 0, 0, 0]) is not None  # 0.9375 >= 0.93


def test_window_rule_uses_non_overlapping_windows() -> None:
    # w=3, answers 5,6,5,5,5,5: windows are samples 1-3 (5,6,5) and 4-6 (5,5,5) -> stop at 6.
    # A sliding window would already stop at 5 (samples 3-5 = 5,5,5).
    answers = [0, 1, 0, 0, 0, 0]
    assert WindowStop(3)(answers[:5]) is None
    assert first_stop(WindowStop(3), answers) == 6


def test_window_rule_looks_at_whole_windows_only() -> None:
    # w=3: 5,6,5,5 must not stop at 4 (a window of 2 would: samples 3-4 agree); 5,5,5 stops at 3
    assert first_stop(WindowStop(3), [0, 1, 0, 0]) is None
    assert first_stop(WindowStop(3), [0, 0, 0]) == 3
    assert first_stop(WindowStop(3), [0, 0]) is None  # not yet a whole window
    # every sample of the window counts: the first one dissents (a window of w-1 would stop)
    assert WindowStop(3)([1, 0, 0]) is None
    assert WindowStop(3)([0, 0, 0, 1, 0, 0]) is None


def test_a_missing_answer_breaks_a_window() -> None:
    assert WindowStop(3)([0, None, 0]) is None
    assert WindowStop(3)([None, None, None]) is None
    assert WindowStop(3)([None, 0, 0, 0, 0, 0]) is not None  # the second window agrees


def test_doubling_checkpoints_are_powers_of_two_from_two() -> None:
    assert [k for k in range(1, 40) if is_doubling_checkpoint(k)] == [2, 4, 8, 16, 32]


def test_doubling_checks_only_at_checkpoints() -> None:
    # 3 of 3 agree, but 3 closes no round (its_hub: rounds of 2, 2, 4, 8, ...)
    assert DoublingStop(0.75)([0, 0, 0]) is None
    assert DoublingStop(0.75)([0, 1]) is None  # 1/2 < 0.75
    assert first_stop(DoublingStop(0.75), [0, 1, 0, 0, 1, 1, 1, 1]) == 4  # 3/4 at 4


def test_doubling_share_is_at_least_not_above() -> None:
    assert DoublingStop(0.75)([0, 1, 0, 0]) is not None  # exactly 3/4
    assert DoublingStop(0.76)([0, 1, 0, 0]) is None
    assert DoublingStop(0.7)([0, 0, 0, 0, 0, 0, 0, 1, 2, 3]) is None  # 10: no checkpoint


def test_doubling_counts_no_answer_samples_in_the_share() -> None:
    # 3 of 4 samples agree (the 4th has no answer): 3/4; 2 of 4 with 2 blanks: 1/2, no stop
    assert DoublingStop(0.75)([0, 0, 0, None]) is not None
    assert DoublingStop(0.75)([0, 0, None, None]) is None


# --- the pool awaits a rule that asks the judge ---------------------------------------------


async def test_the_pool_awaits_a_decide_that_returns_an_awaitable() -> None:
    seen: list[int] = []

    async def decide(prefix: Sequence[Drawn]) -> str | None:
        await asyncio.sleep(0.001)  # e.g. the grader deciding an equivalence in a worker
        seen.append(len(prefix))
        return "two" if len(prefix) == 2 else None

    gen = PerSample(boxed(*["5"] * 6))
    result = await draw(_ctx(gen), Sampling(max_tokens=64), max_n=6, in_flight=1, decide=decide)
    assert seen == [1, 2] and result.stopped_after == 2 and result.reason == "two"
    assert [d.index for d in result.kept] == [0, 1]


# --- the controller ------------------------------------------------------------------------


def _ctx(gen: PerSample, **kw: object) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), **kw)  # type: ignore[arg-type]


def boxed(*answers: str) -> list[str]:
    return [f"so \\boxed{{{a}}}" for a in answers]  # 2 tokens each


def node_tokens(ctx: Context) -> int:
    return sum(int(a.get("tokens", 0)) for _, a in ctx.tree.graph.nodes(data=True))


async def test_beta_stops_after_four_and_votes_over_them() -> None:
    gen = PerSample(boxed(*["5"] * 16))
    ctx = _ctx(gen)
    out = await AdaptiveSC(n=16, in_flight=1).run(PROBLEM, ctx)
    assert out.answer == "5" and len(out.chains) == 4
    d = out.details
    assert (d["stop_rule"], d["drawn"], d["kept"], d["aborted"], d["stopped_after"]) == (
        "beta",
        4,
        4,
        0,
        4,
    )
    assert d["stop"] == "beta: P(majority) >= 0.95"
    assert d["leader_votes"] == [4, 0] and d["p_majority"] == 0.96875  # 1 - 1/32
    assert d["votes"] == {"5": 4.0}
    (event,) = [e for e in ctx.events if e["event"] == "early_stop"]
    assert event["after"] == 4
    assert ctx.ledger.samples == 4 and ctx.ledger.generated_tokens == 8 == node_tokens(ctx)


async def test_samples_in_flight_at_the_stop_are_aborted_and_metered() -> None:
    # samples 0-3 answer 5 (2 tokens); sample 3 is slow, so while it decodes samples 4-6 start
    # (in_flight=4) and hang after 3 tokens. When 3 finishes the rule stops after 4 samples and
    # aborts 4-6, each metered with the 3 tokens it delivered: 4*2 + 3*3 = 17 tokens
    texts = boxed("5", "5", "5", "5") + ["x " * 30 + "\\boxed{6}"] * 12
    gen = PerSample(texts, slow={3: 0.05}, hang_after={i: 3 for i in range(4, 16)})
    ctx = _ctx(gen)
    out = await AdaptiveSC(n=16, in_flight=4).run(PROBLEM, ctx)
    d = out.details
    assert out.answer == "5" and d["stopped_after"] == 4 and d["kept"] == 4
    assert (d["drawn"], d["aborted"], d["after_stop"]) == (7, 3, 0)
    assert gen.peak <= 4 and gen.aborted == 3
    pruned = [a for _, a in ctx.tree.graph.nodes(data=True) if a.get("status") == "pruned"]
    assert [a["cut"] for a in pruned] == ["stopped"] * 3
    # every delivered token is metered, the aborted samples' partial ones too, and is in the tree
    assert ctx.ledger.generated_tokens == 17 == node_tokens(ctx)
    assert ctx.ledger.samples == 7
    (event,) = [e for e in ctx.events if e["event"] == "early_stop"]
    assert (event["after"], event["aborted"], event["aborted_tokens"]) == (4, 3, 9)


async def test_equal_answers_are_one_vote_as_the_grader_says() -> None:
    # 1/2 and 0.5 are one answer to the grader: four samples, one cluster -> beta stops at 4
    gen = PerSample(boxed("\\frac{1}{2}", "0.5", "1/2", "0.5") + boxed(*["7"] * 12))
    out = await AdaptiveSC(n=16, in_flight=1).run(PROBLEM, _ctx(gen))
    assert out.details["stopped_after"] == 4 and out.details["votes"] == {"\\frac{1}{2}": 4.0}


async def test_n_reached_without_a_stop_is_a_plain_vote_ties_to_the_first() -> None:
    gen = PerSample(boxed("5", "6", "5", "6", "7", "7"))
    ctx = _ctx(gen)
    out = await AdaptiveSC(n=6, in_flight=2).run(PROBLEM, ctx)
    assert out.answer == "5" and len(out.chains) == 6  # 2-2-2: the answer seen first
    assert out.details["stopped_after"] is None and out.details["stop"] == "n: all 6 samples drawn"
    assert not [e for e in ctx.events if e["event"] == "early_stop"]


async def test_no_early_stop_is_reported_at_the_last_sample() -> None:
    # 4 equal answers with n=4: the rule would fire at 4, but nothing is saved there
    gen = PerSample(boxed("5", "5", "5", "5"))
    out = await AdaptiveSC(n=4, in_flight=1).run(PROBLEM, _ctx(gen))
    assert out.details["stopped_after"] is None and out.details["drawn"] == 4


async def test_no_answer_samples_count_as_samples_but_cast_no_vote() -> None:
    gen = PerSample(["no idea", "still thinking"] + boxed(*["5"] * 14))
    out = await AdaptiveSC(n=16, in_flight=1).run(PROBLEM, _ctx(gen))
    # beta counts answers only: 2 blanks then 4 fives -> stops after sample 6
    assert out.details["stopped_after"] == 6 and out.answer == "5"
    assert out.ledger.samples == 6 and out.details["votes"] == {"5": 4.0}


async def test_the_budget_cuts_the_draw_and_says_so() -> None:
    gen = PerSample(boxed(*["5", "6"] * 8))
    ctx = _ctx(gen, budget=Budget(samples=3))
    out = await AdaptiveSC(n=16, in_flight=2).run(PROBLEM, ctx)
    assert out.details["drawn"] == 3 and out.details["stop"] == "budget: samples"
    assert out.stopped_by == "samples" and out.answer == "5"  # 5, 6, 5


async def test_window_rule_through_the_controller() -> None:
    gen = PerSample(boxed("5", "6", "5", "5", "5", "5") + boxed(*["9"] * 10))
    out = await AdaptiveSC(n=16, stop="window", window_size=3, in_flight=1).run(PROBLEM, _ctx(gen))
    assert out.details["stopped_after"] == 6 and out.answer == "5"
    assert out.details["stop"] == "window: 3 samples agree"
    assert out.details["leader_votes"] == [5, 1] and "p_majority" not in out.details


async def test_doubling_rule_through_the_controller() -> None:
    # checkpoints 2 (5,6: 1/2), 4 (5,6,5,5: 3/4 >= 0.75) -> stop after 4
    gen = PerSample(boxed("5", "6", "5", "5") + boxed(*["9"] * 12))
    out = await AdaptiveSC(n=16, stop="doubling", in_flight=1).run(PROBLEM, _ctx(gen))
    assert out.details["stopped_after"] == 4 and out.details["votes"] == {"5": 3.0, "6": 1.0}


class PassThrough:
    """A trimmer that takes each sample whole (as +trim does): no stream for the pool to abort."""

    name = "pass"

    async def sample(self, ctx: Ctx, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        return await ctx.generate(sampling, prompt=prompt, new_samples=True)


async def test_with_a_trimmer_samples_come_whole_and_the_rule_still_stops() -> None:
    gen = PerSample(boxed(*["5"] * 16))
    ctx = _ctx(gen, sampler=PassThrough())
    out = await AdaptiveSC(n=16, in_flight=3).run(PROBLEM, ctx)
    d = out.details
    assert d["stopped_after"] == 4 and d["kept"] == 4 and d["aborted"] == 0
    assert d["drawn"] == 4 + d["after_stop"] <= 6  # at most in_flight - 1 finished past the stop
    assert ctx.ledger.generated_tokens == 2 * d["drawn"] == node_tokens(ctx)


async def test_the_runner_records_the_stop_in_the_result_line(tmp_path: Path) -> None:
    gen = PerSample(boxed(*["5"] * 16))
    runner = Runner(gen, AdaptiveSC(in_flight=1), tmp_path, progress=False)  # type: ignore[arg-type]
    await runner.run([PROBLEM])
    (record,) = read_results(tmp_path / RESULTS)
    assert record["search"] == "adaptive_sc" and record["correct"] is True
    assert record["search_params"]["stop"] == "beta"
    # the line shows the stop: its event (with the rule's reason), 4 chains voted, 4 samples spent
    (event,) = record["events"]
    assert event == "early_stop:beta: P(majority) >= 0.95"  # the same on every problem
    assert record["chains"] == 4 and record["ledger"]["samples"] == 4


# --- settings and the CLI ------------------------------------------------------------------


def test_the_cli_composes_the_window_rule() -> None:
    search = build_search(compose_config(["search=adaptive_sc", "search.stop=window"]))
    assert isinstance(search, AdaptiveSC)
    assert (search.stop, search.window_size, search.n, search.in_flight) == ("window", 5, 16, 4)
    assert search.verifier_use is None


@pytest.mark.parametrize(
    ("override", "stop"),
    [
        ("search.window_size=3", "beta"),
        ("search.agreement=0.8", "window"),
        ("search.beta_threshold=0.9", "doubling"),
    ],
)
def test_a_rules_key_is_refused_under_another_rule(override: str, stop: str) -> None:
    # it would not act, and the run's record would carry it as if it had
    key = override.split("=")[0]
    with pytest.raises((ConfigError, ValueError), match=f"^{key} acts only with search.stop="):
        build_search(compose_config(["search=adaptive_sc", override, f"search.stop={stop}"]))
    # at its default it is accepted, and under its own rule it acts
    build_search(compose_config(["search=adaptive_sc", f"search.stop={stop}"]))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("search.beta_threshold=0.5", "beta_threshold"),
        ("search.agreement=0.4", "agreement"),
        ("search.stop=sprt", "stop"),
        ("search.in_flight=0", "in_flight"),
        ("search.window_size=20", "window_size"),
    ],
)
def test_bad_settings_name_their_key(override: str, key: str) -> None:
    extra = ["search.stop=window"] if key == "window_size" else []
    with pytest.raises((ConfigError, ValueError), match=f"search.{key}"):
        build_search(compose_config(["search=adaptive_sc", override, *extra]))


# --- the real engine (run by the integrator) ---------------------------------------------


@pytest.mark.engine
def test_adaptive_sc_on_the_engine_meters_what_the_trace_shows(engine) -> None:  # noqa: ANN001
    from evals.arith import generate_arith

    for problem in generate_arith(3, seed=5):
        for stop in ("beta", "window", "doubling"):
            ctx = Context(problem, engine, judge=Grader(), seed=1)
            window = {"window_size": 3} if stop == "window" else {}  # the window rule's key
            search = AdaptiveSC(n=6, max_tokens=48, stop=stop, in_flight=3, **window)
            out = run_sync(search.run(problem, ctx))
            assert out.details["drawn"] <= 6 and out.details["kept"] <= out.details["drawn"]
            assert ctx.ledger.samples == out.details["drawn"]
            assert ctx.ledger.generated_tokens == node_tokens(ctx)


async def test_the_api_runs_adaptive_sc_by_its_config_name() -> None:
    from reasoning.api import asolve

    gen = PerSample(boxed(*["5"] * 16))
    out = await asolve(
        PROBLEM, search="adaptive_sc", generator=gen, judge=Grader(),
        overrides=["search.in_flight=1", "search.stop=window", "search.window_size=3"],
    )  # fmt: skip
    # conf/search/adaptive_sc.yaml with the overrides: the first window of 3 agrees -> stop at 3
    assert out.answer == "5" and out.details["stop_rule"] == "window"
    assert out.details["stopped_after"] == 3 and out.ledger.samples == 3
