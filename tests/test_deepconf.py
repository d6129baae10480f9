"""search=deepconf (search/deepconf.py): the warm-up threshold, the sliding group-confidence
watch, the consensus stop, the online vote, the offline vote (best_of_n's), the budget and the
settings it refuses.

Every trace is scripted per sample (sample i is known by its seed) and every token carries its
own confidence: a word `c2.5` (or `c2.5|\\boxed{7}`) comes with the top-2 logprobs
{-2.5, -2.5}, so its token confidence c_t = -mean = 2.5. Values are dyadic, so the window
means below are exact in floating point.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import pytest

from evals.grading import Grader
from reasoning import Budget, Context, Problem
from reasoning.types import Sampling
from search import BestOfN, DeepConf
from search.confidence_vote import GroupWatch, keep_threshold
from tests.fakes import ScriptedGenerator

PROBLEM = Problem("p", "What is 3 + 4?", "7")
_CONF = re.compile(r"c(\d+(?:\.\d+)?)")


def confidences(before: str, piece: str) -> dict[str, float]:
    """The top-2 logprobs of a piece `c<v>...`: both -v, so c_t = v."""
    found = _CONF.match(piece.strip())
    assert found, f"every scripted token names its confidence, got {piece!r}"
    v = float(found.group(1))
    return {"x": -v, "y": -v}


def seeds(n: int, seed: int = 0) -> list[int]:
    """The seeds samples 0..n-1 draw (ctx.rng, in start order)."""
    rng = random.Random(f"{seed}:{PROBLEM.id}")
    return [rng.randrange(2**31) for _ in range(n)]


class Traces(ScriptedGenerator):
    """Sample i (known by its seed) writes texts[i], each token with its scripted confidence."""

    def __init__(self, texts: Sequence[str]) -> None:
        index = {s: i for i, s in enumerate(seeds(len(texts)))}
        super().__init__(lambda prompt, sampling: texts[index[sampling.seed]], table=confidences)


def trace(*values: float, answer: str | None = "7") -> str:
    """A trace whose tokens have confidences `values`; the last one writes the answer."""
    words = [f"c{v:g}" for v in values]
    if answer is not None:
        words[-1] += f"|\\boxed{{{answer}}}"
    return " ".join(words)


def ctx_for(gen: ScriptedGenerator, **kw: object) -> Context:
    return Context(PROBLEM, gen, judge=Grader(), **kw)  # type: ignore[arg-type]


def cut_events(ctx: Context) -> list[dict[str, object]]:
    return [e for e in ctx.events if e["event"] == "sample_cut"]


# --- the threshold --------------------------------------------------------------------------


def test_the_threshold_is_numpys_linear_percentile_of_the_kept_share() -> None:
    values = [3.0, 1.0, 5.0, 2.0, 4.0]
    # sorted 1 2 3 4 5; keep 0.1 -> the 90th percentile: rank 0.9 * (5 - 1) = 3.6, so
    # 4 + 0.6 * (5 - 4) = 4.6 ("DeepConf-low"); keep 0.9 -> the 10th: rank 0.4 -> 1.4 ("-high")
    assert keep_threshold(values, 0.1) == pytest.approx(4.6, abs=1e-12)
    assert keep_threshold(values, 0.9) == pytest.approx(1.4, abs=1e-12)
    # keep 0.5 -> the median, 3; keep 1 -> the 0th percentile, the minimum
    assert keep_threshold(values, 0.5) == 3.0 and keep_threshold(values, 1.0) == 1.0


@pytest.mark.parametrize(("keep", "threshold"), [(0.1, 4.6), (0.9, 1.4)])
async def test_the_warmup_sets_the_threshold_from_its_lowest_group_confidences(
    keep: float, threshold: float
) -> None:
    # five warm-up traces of two tokens, window 2: each one window, whose mean is its confidence
    # (c, c) -> c; so the lowest group confidences are 3 1 5 2 4 and the threshold is as above
    texts = [trace(v, v) for v in (3, 1, 5, 2, 4)]
    search = DeepConf(n=5, warmup=5, confidence_window=2, confidence_keep=keep)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["warmup_confidences"] == [3.0, 1.0, 5.0, 2.0, 4.0]
    assert out.details["threshold"] == pytest.approx(threshold)
    assert ctx.ledger.samples == 5 and out.details["traces"] == 5  # warmup == n: no more


# --- the sliding-window watch ----------------------------------------------------------------


def test_group_watch_acts_on_a_full_window_and_a_strict_drop() -> None:
    watch = GroupWatch(threshold=2.0, window=2)
    # c: 1 -> no full window yet (alone it would be 1 < 2); (1+3)/2 = 2, not < 2; then 3, then
    # (3+1)/2 = 2 again, then (1+0.5)/2 = 0.75 < 2: ended at the fifth token
    assert [watch.add(c) for c in (1.0, 3.0, 3.0, 1.0, 0.5)] == [None, None, None, None, 0.75]
    assert watch.seen == 5


async def _one_watched(text: str, window: int = 2) -> tuple[Context, object]:
    """Warm-up: "7" and "8", both of confidence 2 (window means 2), so the threshold is 2 and
    no consensus of 1 can be reached; then the scripted trace, watched (sample 2)."""
    texts = [trace(2, 2), trace(2, 2, answer="8"), text]
    search = DeepConf(n=3, warmup=2, confidence_window=window, consensus=1.0, in_flight=1)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["threshold"] == 2.0
    return ctx, out


async def test_a_trace_is_ended_at_the_token_where_its_window_mean_drops_below() -> None:
    # window 2 over 3 3 2 1 1 1 ...: means from token 2 on are 3, 2.5, 1.5 -> below 2 at token 4
    # (a window of 3 would first drop at token 5: (3+2+1)/3 = 2 is not below, (2+1+1)/3 is)
    ctx, out = await _one_watched(trace(3, 3, 2, 1, 1, 1, 1, 1))
    (event,) = cut_events(ctx)
    assert event["sample"] == 2 and event["tokens"] == 4  # not 3, not 5
    assert out.details["cut"] == [{"sample": 2, "token": 4, "group": 1.5}]  # type: ignore[attr-defined]
    # metered as delivered: 2 + 2 warm-up tokens + the 4 the cut trace delivered
    assert ctx.ledger.generated_tokens == 4 + 4
    nodes = [d for _, d in ctx.tree.graph.nodes(data=True) if "sample" in d]
    statuses = sorted((d["sample"], d["status"], d.get("cut")) for d in nodes)
    assert statuses == [(0, "selected", None), (1, "finished", None), (2, "pruned", "watch")]
    # the warm-up traces (2 >= 2) vote, the cut one does not: a tie, to the first
    assert out.details["votes"] == {"7": 2.0, "8": 2.0} and out.answer == "7"  # type: ignore[attr-defined]


async def test_a_window_mean_equal_to_the_threshold_does_not_end_the_trace() -> None:
    # means 2.5, 2, 2, 2: never below 2 (a `<=` rule would end it at token 3)
    ctx, out = await _one_watched(trace(3, 2, 2, 2, 2, answer="9"))
    assert cut_events(ctx) == [] and ctx.ledger.generated_tokens == 4 + 5
    # its lowest group confidence is 2 >= 2: it votes
    assert out.details["votes"] == {"7": 2.0, "8": 2.0, "9": 2.0}  # type: ignore[attr-defined]


async def test_the_watch_waits_for_a_full_window() -> None:
    # token 1 alone has confidence 1 < 2, but no window of 2 exists yet; then (1+3)/2 = 2 and 3s:
    # never cut (a window of 1 would end it at token 1)
    ctx, _ = await _one_watched(trace(1, 3, 3, 3))
    assert cut_events(ctx) == [] and ctx.ledger.generated_tokens == 4 + 4


# --- the consensus stop ---------------------------------------------------------------------


async def test_sampling_stops_when_the_weighted_consensus_is_reached() -> None:
    # warm-up: "7" and "8", confidence 2 each -> threshold 2 and consensus 2/4 = 0.5. Each later
    # trace is "7" at 2: after k of them (2 + 2k) / (4 + 2k): 0.667, 0.75, 0.8 -> stop after 3
    # at exactly 0.8 (a `>` rule would go on to the fourth, 10/12)
    texts = [trace(2, 2), trace(2, 2, answer="8")] + [trace(2, 2)] * 10
    search = DeepConf(n=12, warmup=2, confidence_window=2, consensus=0.8, in_flight=1)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["warmup_consensus"] == 0.5
    assert out.details["stopped_after"] == 3 and out.details["consensus"] == 0.8
    assert ctx.ledger.samples == 5 and out.answer == "7"
    (event,) = [e for e in ctx.events if e["event"] == "early_stop"]
    assert event["after"] == 3 and "consensus 0.8000" in str(event["reason"])


async def test_the_consensus_is_confidence_weighted_over_every_warmup_trace() -> None:
    # warm-up: "7" at 6, "8" at 1, "8" at 1. The threshold (keep 0.1): sorted 1 1 6, rank
    # 0.9 * 2 = 1.8 -> 1 + 0.8 * 5 = 5. Consensus over every warm-up trace, weighted:
    # 6 / 8 = 0.75 < 0.8, so sampling goes on (counting only the traces at or above the
    # threshold would give 6/6 = 1 and stop at once). The next "7" at 6: 12 / 14 = 0.857 -> stop
    # after 1 (by count it would take 7: 2/3, 2/4, ..., 8/10 = 0.8)
    texts = [trace(6, 6), trace(1, 1, answer="8"), trace(1, 1, answer="8")] + [trace(6, 6)] * 9
    search = DeepConf(n=12, warmup=3, confidence_window=2, consensus=0.8, in_flight=1)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["threshold"] == 5.0 and out.details["warmup_consensus"] == 0.75
    assert out.details["stopped_after"] == 1 and ctx.ledger.samples == 4
    # the vote: only the traces at or above 5 -> "7" with 6 + 6
    assert out.details["votes"] == {"7": 12.0} and out.answer == "7"  # type: ignore[attr-defined]


async def test_a_warmup_already_at_consensus_starts_no_more_traces() -> None:
    texts = [trace(2, 2)] * 4
    search = DeepConf(n=4, warmup=2, confidence_window=2)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["warmup_consensus"] == 1.0 and out.details["stopped_after"] is None
    assert ctx.ledger.samples == 2 and out.answer == "7"


async def test_the_consensus_counts_equivalent_answers_as_one() -> None:
    # warm-up: "\\frac{1}{2}" and "0.5" at confidence 2 each: one answer for the judge, so the
    # consensus is 4 / 4 = 1 and no more traces start (grouped by text it would be 2 / 4 = 0.5)
    texts = [trace(2, 2, answer="\\frac{1}{2}"), trace(2, 2, answer="0.5")] + [trace(2, 2)] * 4
    search = DeepConf(n=6, warmup=2, confidence_window=2, in_flight=1)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["warmup_consensus"] == 1.0 and ctx.ledger.samples == 2


# --- the online vote ------------------------------------------------------------------------


async def test_only_traces_at_or_above_the_threshold_vote_weighted_by_confidence() -> None:
    # window 4. Warm-up: "7" at 2, "8" at 4; keep 0.5 -> the median of 2 and 4: threshold 3.
    # Later: "7" in one token at 1.5 (shorter than the window: never watched, finishes, but
    # 1.5 < 3: no vote), then "7" at 3 (3 >= 3: votes). Votes: "8" 4 against "7" 3 -> "8".
    # Letting the short trace vote gives "7" 4.5; letting the warm-up's "7" vote gives "7" 5.
    texts = [trace(2, 2, 2, 2), trace(4, 4, 4, 4, answer="8"), trace(1.5), trace(3, 3, 3, 3)]
    search = DeepConf(n=4, warmup=2, confidence_window=4, confidence_keep=0.5, consensus=1.0)
    ctx = ctx_for(Traces(texts))
    out = await search.run(PROBLEM, ctx)
    assert out.details["threshold"] == 3.0 and cut_events(ctx) == []
    assert out.details["votes"] == {"8": 4.0, "7": 3.0} and out.answer == "8"  # type: ignore[attr-defined]
    assert out.details["confidence"]["kept"] == [1, 3]  # type: ignore[index]
    assert out.chain is not None and out.chain.text == texts[1]


# --- offline --------------------------------------------------------------------------------


async def test_offline_is_best_of_n_confidence_vote_on_the_same_traces() -> None:
    texts = [
        trace(1, 2, 1, answer="8"),
        trace(3, 3, 3),
        trace(2, 2, 4, answer="8"),
        trace(4, 4, 4, answer="9"),
        trace(5, 1, 5),
        trace(1, 1, 1, answer="8"),
    ]
    keys = {"n": 6, "top_logprobs": 20, "confidence_window": 2, "confidence_keep": 0.5}
    offline = await DeepConf(mode="offline", in_flight=1, **keys).run(
        PROBLEM, ctx_for(ScriptedGenerator(texts, table=confidences))
    )
    best = await BestOfN(aggregate="confidence", **keys).run(
        PROBLEM, ctx_for(ScriptedGenerator(texts, table=confidences))
    )
    # lowest group confidences (window 2): 1.5 3 2 4 3 1; keep 0.5 -> the median 2.5: traces
    # 1 3 4 vote: "7" 3 + 3 = 6 against "9" 4 -> "7", the first "7" (trace 1) chosen
    assert offline.details["confidence"] == best.details["confidence"]  # type: ignore[index]
    assert offline.details["confidence"]["confidences"] == [1.5, 3.0, 2.0, 4.0, 3.0, 1.0]  # type: ignore[index]
    assert offline.details["votes"] == best.details["votes"] == {"7": 6.0, "9": 4.0}
    assert offline.answer == best.answer == "7"
    assert offline.chain is not None and best.chain is not None
    assert offline.chain.text == best.chain.text == texts[1]


# --- the budget and the settings ------------------------------------------------------------


async def test_the_budget_stops_the_draw_and_the_vote_uses_what_finished() -> None:
    texts = [trace(2, 2), trace(2, 2, answer="8")] + [trace(2, 2)] * 8
    search = DeepConf(n=10, warmup=2, confidence_window=2, consensus=1.0, in_flight=1)
    ctx = ctx_for(Traces(texts), budget=Budget(samples=3))
    out = await search.run(PROBLEM, ctx)
    assert out.stopped_by == "samples" and ctx.ledger.samples == 3
    # three traces finished: "7" 2 + 2 against "8" 2
    assert out.details["traces"] == 3 and out.answer == "7"


async def test_a_budget_spent_in_the_warmup_votes_with_the_warmup() -> None:
    texts = [trace(2, 2), trace(2, 2, answer="8")] + [trace(2, 2)] * 4
    ctx = ctx_for(Traces(texts), budget=Budget(samples=1))
    out = await DeepConf(n=6, warmup=2, confidence_window=2, in_flight=1).run(PROBLEM, ctx)
    # one warm-up trace: threshold 2, no later draw; it votes alone
    assert out.stopped_by == "samples" and ctx.ledger.samples == 1
    assert out.details["traces"] == 1 and out.answer == "7"


@pytest.mark.parametrize("value", [None, 0])
def test_token_confidence_needs_top_k_logprobs(value: int | None) -> None:
    with pytest.raises(ValueError, match="search.top_logprobs must be k > 0"):
        DeepConf(top_logprobs=value)
    with pytest.raises(ValueError, match="search.top_logprobs"):
        DeepConf(mode="offline", top_logprobs=value)


def test_online_needs_the_lowest_group_measure_and_a_warmup_within_n() -> None:
    with pytest.raises(ValueError, match="search.confidence must be lowest_group"):
        DeepConf(confidence="tail")
    DeepConf(mode="offline", confidence="tail")  # offline may vote by any measure
    with pytest.raises(ValueError, match="search.warmup must be <= search.n"):
        DeepConf(n=8, warmup=16)
    with pytest.raises(ValueError, match="search.consensus"):
        DeepConf(consensus=1.5)


def test_a_trimmer_is_refused() -> None:
    # the watched traces stream from the engine, where a trimmer (which takes whole samples
    # through the Context's sampler) cannot act
    from reasoning.build import ConfigError, build_sampler, compose_config

    assert DeepConf.decodes_own_prompts is True
    with pytest.raises(ConfigError, match="trimming cannot act on deepconf"):
        build_sampler(compose_config(["search=deepconf", "+trim=budget"]))


def test_the_fake_streams_top_logprobs_per_token() -> None:
    """The fake's stream gives each delta its token's top-k alternatives (what the watch
    reads), the same as the whole completion's."""
    gen = Traces([trace(1, 2, 3)])

    async def go() -> list[object]:
        sampling = Sampling(max_tokens=8, logprobs=2, seed=seeds(1)[0])
        return [d.top_logprobs async for d in gen.stream(gen.render(PROBLEM), sampling)]

    import asyncio

    got = asyncio.new_event_loop().run_until_complete(go())
    assert got == [({"x": -1.0, "y": -1.0},), ({"x": -2.0, "y": -2.0},), ({"x": -3.0, "y": -3.0},)]


# --- the real engine ------------------------------------------------------------------------


@pytest.mark.engine
def test_deepconf_online_on_the_real_engine(engine) -> None:  # noqa: ANN001
    from evals.arith import generate_arith
    from reasoning.loop import run_sync

    for problem in generate_arith(2, levels=(1,), seed=3):
        ctx = Context(problem, engine, judge=Grader())
        # a tiny window and keep 0.9 (the 10th percentile) so that some traces are cut
        search = DeepConf(
            n=6, warmup=3, confidence_window=4, confidence_keep=0.9, max_tokens=48, in_flight=3
        )
        out = run_sync(search.run(problem, ctx))
        nodes = [d for _, d in ctx.tree.graph.nodes(data=True) if "sample" in d]
        # every delivered token is metered, the cut traces' included, and each is a node
        assert out.ledger.generated_tokens == sum(d["generated"] for d in nodes)
        # every trace that started is a node (one the stop cancelled before its request was
        # sent is a node with no tokens and no request)
        assert len(nodes) == out.details["traces"] and 3 <= out.ledger.samples <= len(nodes)
        assert len(out.details["warmup_confidences"]) == 3
        for event in cut_events(ctx):
            (node,) = [d for d in nodes if d["sample"] == event["sample"]]
            assert node["status"] == "pruned" and node["cut"] == "watch"
            assert node["tokens"] == event["tokens"]
        cut = {c["sample"] for c in out.details["cut"]}
        assert cut == {e["sample"] for e in cut_events(ctx)}


async def test_the_api_runs_deepconf_by_its_config_name() -> None:
    from reasoning.api import asolve

    texts = [trace(2, 2), trace(2, 2, answer="8")] + [trace(2, 2)] * 10
    out = await asolve(
        PROBLEM, search="deepconf", generator=Traces(texts), judge=Grader(),
        overrides=[
            "search.n=12", "search.warmup=2", "search.confidence_window=2",
            "search.consensus=0.8", "search.in_flight=1",
        ],
    )  # fmt: skip
    # the consensus-stop test above, built from conf/search/deepconf.yaml with the overrides
    assert out.details["stopped_after"] == 3 and out.ledger.samples == 5 and out.answer == "7"
