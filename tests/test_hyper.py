"""HyPER (docs/hyper.md): statistics, the phase rule, forks and aborts, token-fork refinement,
the weighted vote, the token budget and the trace, on hand-made pools and scripted runs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoning import Budget, Context
from reasoning.answers import last_box_closed
from reasoning.logprobs import (
    ConfidenceTrail,
    min_group_confidence,
    tail_confidence,
    token_confidence,
)
from reasoning.settings import fields_of
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Completion, FinishReason, Sampling
from search import HyPER
from search.chunked import Chunk, ChunkSampling, decode_chunks, fork_at, start_chain
from search.hyper import (
    ANSWER_CUE,
    _Path,
    _Tally,
    agreement,
    answer_diversity,
    bottom_indices,
    expand_wanted,
    path_weights,
    reduce_fraction,
    refine_site,
    top_indices,
)
from tests.test_chunked import PROBLEM, TokenScript, context, follow

# --- statistics -------------------------------------------------------------------------------

TABLE = [
    [-0.1, -2.0, -3.0],  # c = 5.1 / 3 = 1.7
    [-1.0, -1.0, -1.0],  # c = 1.0
    [-0.5, -1.5, -4.0],  # c = 2.0
    [-0.2, -2.2, -2.6],  # c = 5.0 / 3
]


def test_token_tail_and_group_confidence_of_a_hand_table() -> None:
    assert token_confidence(TABLE[0]) == pytest.approx(1.7)
    assert token_confidence(TABLE[0], k=2) == pytest.approx(1.05)  # the 2 largest: 0.1, 2.0
    assert token_confidence([-math.inf, math.nan]) is None
    assert tail_confidence(TABLE, window=2) == pytest.approx((2.0 + 5 / 3) / 2)
    assert tail_confidence(TABLE, window=10) == pytest.approx((1.7 + 1.0 + 2.0 + 5 / 3) / 4)
    # windows of 2: (1.7, 1.0) -> 1.35, (1.0, 2.0) -> 1.5, (2.0, 5/3) -> 1.833
    assert min_group_confidence(TABLE, window=2) == pytest.approx(1.35)
    assert min_group_confidence(TABLE, window=8) == pytest.approx(6.3666667 / 4)
    assert tail_confidence([], 4) == min_group_confidence([], 4) == 0.0
    # an unusable position is skipped, not counted as zero
    assert tail_confidence([[-1.0, -3.0], [math.nan]], window=2) == pytest.approx(2.0)


async def test_hyper_confidence_ignores_the_servers_minus_9999_placeholder() -> None:
    """Over a server that sends -9999 for -inf alternatives, HyPER's own scores (the tail it
    ranks and aborts by, the group minimum it records) equal those with the placeholder dropped."""
    rows = [(-0.1, -2.0), (-1.0, -1.0), (-0.5, -1.5), (-0.2, -2.2)] * 20
    clean = Chain(steps=("thinking",), tokens=len(rows), top_logprobs=tuple(rows), delimiter="")
    sent = replace(clean, top_logprobs=tuple((*r, -9999.0, -9999.0) for r in rows))
    search = HyPER()
    assert search._tail(sent) == pytest.approx(search._tail(clean))
    assert search._tail(clean) == pytest.approx((1.05 + 1.0 + 1.0 + 1.2) / 4)
    ctx = context(TokenScript(follow("x")))
    (with_placeholder,), _ = await search._stats(ctx, [_Path(sent)])
    (without,), _ = await search._stats(ctx, [_Path(clean)])
    assert with_placeholder == without
    assert without["min_group_confidence"] == pytest.approx(1.0625, abs=1e-6)


def test_hyper_confidence_counts_the_sampled_token_outside_the_top_k() -> None:
    """A position whose sampled token is outside the top k comes with k + 1 entries (vLLM);
    HyPER's confidence averages them all by default, as DeepConf's compute_confidence does
    (facebookresearch/deepconf, deepconf/utils.py); `confidence_entries=top_k` keeps the k
    largest, the older reading."""
    rows = ((-0.5, -1.5, -2.0, -4.0),) * 4  # k = 3, the sampled token's -4.0 is the 4th
    chain = Chain(steps=("thinking",), tokens=4, top_logprobs=rows, delimiter="")
    assert HyPER(top_logprobs=3)._tail(chain) == pytest.approx(8.0 / 4)
    assert HyPER(top_logprobs=3, confidence_entries="top_k")._tail(chain) == pytest.approx(4 / 3)


def test_answers_diversity_and_agreement() -> None:
    assert answer_diversity([0, 0, 1, None]) == pytest.approx(1 / 3)
    assert answer_diversity([0, 0, 0, 1]) == pytest.approx(0.25)
    assert answer_diversity([0, None, None]) is None
    assert agreement([0, 0, 1, None], 0) == pytest.approx(0.5)
    assert agreement([0, 0, 1, None], 3) is None and agreement([0, None], 0) is None
    assert last_box_closed("so \\boxed{\\frac{1}{2}} done")
    assert not last_box_closed("so \\boxed{12") and not last_box_closed("so 12")


def test_phase_rule_and_reduce_fraction() -> None:
    assert expand_wanted(0.1, None, 0.3, 0.25)  # early
    assert expand_wanted(0.1, 0.0, 0.3, 0.25)  # early, even when the answers agree
    assert expand_wanted(0.8, 0.5, 0.3, 0.25)  # late but disagreeing
    assert not expand_wanted(0.8, 0.25, 0.3, 0.25)  # late, agreeing (not above the threshold)
    assert not expand_wanted(0.3, None, 0.3, 0.25)  # late, no answers yet
    assert reduce_fraction(0.0, 0.5) == 0.0 and reduce_fraction(0.5, 0.5) == 0.25
    assert reduce_fraction(2.0, 0.5) == 0.5
    assert top_indices([1.0, 3.0, 2.0, 3.0], 2) == [1, 3]  # ties: the first ranks first
    assert bottom_indices([1.0, 0.5, 2.0, 0.5], 2) == [3, 1]  # ties: the later goes first


# --- the controller on hand-made pools --------------------------------------------------------


def hand(conf: float, tokens: int = 8, text: str = "thinking", finished: bool = False) -> Chain:
    """A chunked path whose every token has confidence `conf`."""
    return Chain(
        steps=(text,),
        tokens=tokens,
        finished=finished,
        finish_reason=FinishReason.EOS if finished else None,
        top_logprobs=((-conf, -conf),) * tokens,
        delimiter="",
        token_ids=tuple(range(tokens)),
    )


async def control(
    search: HyPER, chains: list[Chain], spent: int
) -> tuple[Context, list[_Path], dict[str, object]]:
    """One control step over a hand-made pool; returns the pool after it and its event."""
    ctx = context(TokenScript(follow("x")))
    for chain in chains:
        ctx.tree.add(chain, NodeStatus.FINISHED if chain.finished else NodeStatus.EXPANDED)
    pool = [_Path(c, fresh=False) for c in chains]
    tally = _Tally(rounds=1)
    await search._control(ctx, pool, tally, spent, 4096)  # budget.generated_tokens=4096
    (event,) = ctx.events
    return ctx, pool, event


async def test_expansion_forks_the_most_confident_open_paths() -> None:
    chains = [hand(c) for c in (1.0, 3.0, 2.0, 2.5)]
    ctx, pool, event = await control(HyPER(expand_top=2), chains, spent=400)
    assert [p.chain for p in pool] == [*chains, chains[1], chains[3]]
    assert all(p.fresh for p in pool[4:])  # a fork starts a new sample with its own seed
    statuses = [ctx.tree.status(c.id) for c in chains]
    assert statuses == [NodeStatus.EXPANDED, NodeStatus.FORKED, NodeStatus.EXPANDED] + [
        NodeStatus.FORKED
    ]
    assert event["rule"] == event["action"] == "expand" and event["forked"] == 2
    assert event["paths"] == 6 and event["phase"] == round(400 / 4096, 4)
    assert ctx.tree.node(chains[1].id)["tail_confidence"] == 3.0


async def test_expansion_never_exceeds_max_paths_nor_the_budget() -> None:
    chains = [hand(c) for c in (1.0, 3.0, 2.0, 2.5)]
    _, pool, event = await control(HyPER(n=4, max_paths=5), chains, spent=400)
    assert [p.chain for p in pool] == [*chains, chains[1]] and event["forked"] == 1
    _, pool, event = await control(HyPER(n=4, max_paths=4), chains, spent=400)
    assert len(pool) == 4 and event["rule"] == "expand" and event["action"] == "hold"
    # each path must afford one more interval and its finisher: (4096 - 3712) // 96 = 4 paths
    _, pool, event = await control(HyPER(explore_until=1.0), chains, spent=3712)
    assert len(pool) == 4 and event["action"] == "hold"
    _, pool, event = await control(HyPER(explore_until=1.0), chains, spent=3616)
    assert len(pool) == 5 and event["forked"] == 1


async def test_reduction_aborts_the_least_confident_fraction_late() -> None:
    chains = [hand(c) for c in (1.0, 3.0, 0.5, 2.5, 2.0, 0.5)]
    # phase 3000 / 4096 = 0.732; rho = 0.5 * 0.732 = 0.366; floor(6 * 0.366) = 2 aborted
    ctx, pool, event = await control(HyPER(), chains, spent=3000)
    assert [p.chain for p in pool] == [chains[0], chains[1], chains[3], chains[4]]
    assert ctx.tree.status(chains[2].id) == ctx.tree.status(chains[5].id) == NodeStatus.PRUNED
    assert ctx.tree.status(chains[0].id) == NodeStatus.EXPANDED
    assert event["rule"] == event["action"] == "reduce" and event["aborted"] == 2
    # never below min_paths: 6 paths, min 5 -> one abort, the later of the two tied
    ctx, pool, event = await control(HyPER(min_paths=5), chains, spent=3000)
    assert len(pool) == 5 and event["aborted"] == 1
    assert ctx.tree.status(chains[5].id) == NodeStatus.PRUNED
    assert ctx.tree.status(chains[2].id) == NodeStatus.EXPANDED
    # early, rho is near 0: the rule says reduce, nothing is aborted
    _, pool, event = await control(HyPER(explore_until=0.0), chains, spent=100)
    assert len(pool) == 6 and event["rule"] == "reduce" and event["action"] == "hold"


async def test_disagreement_expands_and_agreement_reduces_late() -> None:
    open_ = [hand(c) for c in (1.0, 3.0, 2.0, 2.5)]
    split = [
        hand(9.0, text="\\boxed{8}", finished=True),
        hand(9.0, text="\\boxed{9}", finished=True),
    ]
    _, pool, event = await control(HyPER(), [*split, *open_], spent=3000)
    assert event["answered"] == 2 and event["diversity"] == 0.5
    assert event["action"] == "expand" and [p.chain for p in pool[6:]] == [open_[1], open_[3]]
    agree = [
        hand(9.0, text="\\boxed{9}", finished=True),
        hand(9.0, text="\\boxed{9}", finished=True),
    ]
    ctx, pool, event = await control(HyPER(), [*agree, *open_], spent=3000)
    # 4 open paths, rho = 0.366: one abort, the least confident open path (finished ones stay)
    assert event["diversity"] == 0.0 and event["action"] == "reduce" and event["aborted"] == 1
    assert [p.chain for p in pool] == [*agree, *open_[1:]]
    assert ctx.tree.status(open_[0].id) == NodeStatus.PRUNED


def test_refine_site_skips_the_sampled_token_and_the_confident_ones() -> None:
    parent = hand(1.0, tokens=3)
    completion = Completion(
        "a b",
        2,
        "length",
        top_logprobs=({"a": -0.05, "x": -4.0, "y": -5.0}, {"p": -0.9, "b": -1.0, "q": -1.5}),
        top_token_ids=((10, 11, 12), (20, 21, 22)),
        token_ids=(10, 21),
    )
    chunk = Chunk(parent, parent, completion)
    site = refine_site(chunk, threshold=0.5, k=3, siblings=2)
    # position 1 (top-1 prob e^-0.9 = 0.41 < 0.5); the sampled id 21 is not forced again
    assert site is not None and site.position == 3 + 1
    assert site.alternatives == ((20, -0.9), (22, -1.5))
    assert site.confidence == pytest.approx((0.9 + 1.0 + 1.5) / 3)
    assert refine_site(chunk, threshold=0.4, k=3, siblings=2) is None  # 0.41 is not below


# --- scripted runs ----------------------------------------------------------------------------

REFINE_TRACE = "we add 4 and 5 to get 9 so \\boxed{9}"  # 10 tokens


def refine_table(before: str, piece: str) -> dict[str, float]:
    """ " add" is uncertain but above the threshold, " and" and " to" below; " to" is the least
    confident (c = 1.1 against 1.4)."""
    special = {
        " add": {" add": -0.8, " Z3": -1.0, " Z4": -3.0},  # top-1 0.449: not refined
        " and": {" and": -1.2, " Z1": -1.4, " Z2": -1.6},  # top-1 0.301, c = 1.4
        " to": {" to": -1.0, " Z5": -1.1, " Z6": -1.2},  # top-1 0.368, c = 1.1
    }
    return special.get(piece, {piece: -0.05, " Z8": -4.0, " Z9": -5.0})


async def test_fork_refinement_forks_the_runner_up_tokens_from_the_exact_prefix() -> None:
    """refine=fork (the option; in_path is the default): siblings added to the pool."""
    gen = TokenScript(follow(REFINE_TRACE, fallback=" so \\boxed{7}"), refine_table)
    ctx = context(gen, Budget(generated_tokens=1000))
    search = HyPER(
        n=2,
        max_paths=4,
        round_tokens=8,
        top_logprobs=3,
        expand_top=0,
        max_refinements=1,
        refine="fork",
    )
    out = await search.run(PROBLEM, ctx)
    head = gen.tokenize(gen.render(PROBLEM))
    first = out.chains[0]
    ids = first.token_ids or ()
    z5, z6 = gen.tokenize(" Z5")[0], gen.tokenize(" Z6")[0]
    # round 1: two paths from the bare prompt; round 2: both, then the two siblings that
    # keep the first path's 5 tokens and force the 2nd and 3rd most likely token at " to"
    assert gen.token_prompts[:2] == [head, head]
    assert gen.token_prompts[4:] == [head + ids[:5] + (z5,), head + ids[:5] + (z6,)]
    assert [c.text for c in out.chains] == [
        REFINE_TRACE,
        REFINE_TRACE,
        "we add 4 and 5 Z5 so \\boxed{7}",
        "we add 4 and 5 Z6 so \\boxed{7}",
    ]
    assert out.details["refinements"] == 1 and out.details["refined_paths"] == 2
    refined_parent = out.tree.parents(out.chains[2].id)[0]
    (parent_node,) = out.tree.parents(refined_parent)
    assert out.tree.status(parent_node) == NodeStatus.FORKED
    assert out.tree.node(parent_node)["refined_at"] == 5
    assert out.ledger.samples == 4 and out.ledger.generated_tokens == 8 * 2 + 2 * 4
    # the vote, by hand: originals c = (7 * 3.01667 + 1.6 + 1.4 + 1.1) / 10 = 2.52167 over 10
    # tokens; siblings (5 * 3.01667 + 1.6 + 1.4 + 1.1) / 8 = 2.39792 over 6 + 2 = 8 tokens.
    # w(9) = 2 * 2.52167 * 8 / 10 = 4.03467; w(7) = 2 * 2.39792 = 4.79583: the siblings win
    default = (0.05 + 4.0 + 5.0) / 3
    original = (7 * default + 1.6 + 1.4 + 1.1) / 10
    sibling = (5 * default + 1.6 + 1.4 + 1.1) / 8
    assert out.details["votes"] == {
        "9": pytest.approx(2 * original * 8 / 10, abs=1e-5),
        "7": pytest.approx(2 * sibling, abs=1e-5),
    }
    assert out.answer == "7" and out.chain is out.chains[2]
    assert out.tree.status(out.chains[2].id) == NodeStatus.SELECTED


async def test_in_path_refinement_rewrites_the_token_without_adding_a_path() -> None:
    """The default (the paper's exploitation inside a path): the least confident path is
    replaced by its prefix up to " to" plus the best other token (" Z5"), and goes on from
    there as the same path; the pool keeps 2 paths and 2 samples."""
    gen = TokenScript(follow(REFINE_TRACE, fallback=" so \\boxed{7}"), refine_table)
    ctx = context(gen, Budget(generated_tokens=1000))
    search = HyPER(
        n=2, max_paths=4, round_tokens=8, top_logprobs=3, expand_top=0, max_refinements=1
    )
    assert search.refine == "in_path"
    out = await search.run(PROBLEM, ctx)
    head = gen.tokenize(gen.render(PROBLEM))
    refined, untouched = out.chains
    z5 = gen.tokenize(" Z5")[0]
    ids = untouched.token_ids or ()
    assert (refined.token_ids or ())[:6] == ids[:5] + (z5,)  # the token changed in place
    assert [c.text for c in out.chains] == ["we add 4 and 5 Z5 so \\boxed{7}", REFINE_TRACE]
    # round 2 continued the refined path from its new prefix, not from a new sample
    assert sorted(gen.token_prompts[2:]) == sorted([head + ids[:5] + (z5,), head + ids[:8]])
    assert len(gen.token_prompts) == 4
    assert out.ledger.samples == 2 and out.ledger.generated_tokens == 8 * 2 + 2 * 2
    assert [e["paths"] for e in ctx.events] == [2] * len(ctx.events)
    assert [e["refined_in_place"] for e in ctx.events][0] == 1
    assert all(e["refined"] == 0 for e in ctx.events)
    assert out.details["refine"] == "in_path"
    assert out.details["refinements"] == out.details["refined_in_place"] == 1
    assert out.details["refined_paths"] == 0
    # the tree: the unrefined chain is dropped for the rewritten one
    forced = out.tree.parents(refined.id)[0]
    (old,) = out.tree.parents(forced)
    assert out.tree.status(old) == NodeStatus.PRUNED
    assert out.tree.node(old)["refined_at"] == 5 and out.tree.node(old)["replaced_by"] == forced
    assert out.tree.node(forced)["refined_in_path"] is True
    # the vote, as in the fork test: the rewritten path (8 tokens) against the original (10)
    default = (0.05 + 4.0 + 5.0) / 3
    original = (7 * default + 1.6 + 1.4 + 1.1) / 10
    rewritten = (5 * default + 1.6 + 1.4 + 1.1) / 8
    assert out.details["votes"] == {
        "7": pytest.approx(rewritten, abs=1e-5),
        "9": pytest.approx(original * 8 / 10, abs=1e-5),
    }
    assert out.answer == "7"


async def test_in_path_refinement_leaves_a_path_just_copied_by_expansion() -> None:
    """A path that expansion copied this round is not rewritten: its copy would continue
    from a chain the tree had dropped."""
    gen = TokenScript(follow(REFINE_TRACE, fallback=" so \\boxed{7}"), refine_table)
    ctx = context(gen, Budget(generated_tokens=1000))
    search = HyPER(n=2, max_paths=4, round_tokens=8, top_logprobs=3, expand_top=2)
    out = await search.run(PROBLEM, ctx)
    assert ctx.events[0]["forked"] == 2 and ctx.events[0]["refined_in_place"] == 0
    assert out.details["refined_paths"] == 0


def test_a_path_refined_in_place_that_never_decoded_again_gets_its_chain_back() -> None:
    gen = TokenScript(follow("x"))
    ctx = context(gen)
    ids = tuple(gen.tokenize(" a b c d e f"))
    old = replace(hand(1.0, tokens=len(ids)), token_ids=ids)
    ctx.tree.add(old, NodeStatus.EXPANDED)
    kid = fork_at(ctx, old, 3, gen.tokenize(" z")[0])
    ctx.tree.mark_pruned(old.id, replaced_by=kid.id)
    pool = [_Path(kid, fresh=False, unrefined=old)]
    kept = HyPER()._drop_unstarted(ctx, pool)
    assert [p.chain for p in kept] == [old] and kept[0].unrefined is None
    assert ctx.tree.status(old.id) == NodeStatus.EXPANDED
    assert ctx.tree.status(kid.id) == NodeStatus.PRUNED


async def test_the_weighted_vote_lets_a_short_confident_minority_win() -> None:
    chains = [
        hand(2.0, tokens=10, text="so \\boxed{7}", finished=True),
        hand(1.5, tokens=40, text="so \\boxed{9}", finished=True),
        hand(1.5, tokens=40, text="so \\boxed{9}", finished=True),
        hand(5.0, tokens=2, text="still thinking"),  # unanswered: no vote, not L_min
    ]
    for beta, answer, votes in (
        (1.0, "7", {"7": 2.0, "9": 0.75}),
        (0.0, "9", {"7": 2.0, "9": 3.0}),
    ):
        ctx = context(TokenScript(follow("x")))
        for chain in chains:
            ctx.tree.add(chain, NodeStatus.FINISHED)
        out = await HyPER(length_penalty=beta)._conclude(ctx, chains, _Tally(), "finished")
        assert out.answer == answer and out.details["votes"] == votes
    assert out.details["weights"] == [2.0, 1.5, 1.5, 0.0]
    assert out.chain is chains[1] and out.tree.status(chains[1].id) == NodeStatus.SELECTED
    assert path_weights([2.0, 1.5], [10, 40], [True, True], 1.0) == [2.0, 0.375]


def endless(before: str, sampling: Sampling) -> str:
    """Never finishes on its own; after the answer cue it answers 9."""
    if before.endswith("\\boxed{"):
        return "9}$"
    return (" step" if before else "step") + " step" * 1000


async def test_the_token_budget_bounds_the_pool_and_the_finisher_closes_open_paths() -> None:
    gen = TokenScript(endless)
    ctx = context(gen, Budget(generated_tokens=300))
    search = HyPER(n=4, max_paths=8, round_tokens=16, answer_tokens=8, top_logprobs=3)
    out = await search.run(PROBLEM, ctx)
    spent = out.ledger.generated_tokens
    assert 300 - 8 * 8 <= spent <= 300 + 8 * 16  # at most one interval per path past it
    assert out.details["stop"] == "generated_tokens" and out.stopped_by is None
    closed = out.details["closed_by_finisher"]
    assert closed == len(out.chains) >= 2 and all(c.finished for c in out.chains)
    cue = gen.tokenize(ANSWER_CUE)
    finisher_calls = [ids for ids in gen.token_prompts if ids[-len(cue) :] == cue]
    assert len(finisher_calls) == closed
    assert all(ANSWER_CUE + "9}$" in c.text for c in out.chains) and out.answer == "9"
    # the loop stopped at the first interval after which the open paths' finisher reserve no
    # longer fit; the finisher then wrote "9}$", one token per path
    last, before = ctx.events[-1], ctx.events[-2]
    assert spent == last["tokens"] + closed and last["open"] == closed
    assert last["tokens"] + 8 * last["open"] >= 300 > before["tokens"] + 8 * before["open"]
    assert all(2 <= e["paths"] <= 8 for e in ctx.events)  # within [min_paths, max_paths]


async def test_a_lower_context_budget_takes_the_place_of_the_token_budget() -> None:
    ctx = context(TokenScript(endless), Budget(generated_tokens=120))
    search = HyPER(n=4, max_paths=8, round_tokens=16, answer_tokens=8, top_logprobs=3)
    out = await search.run(PROBLEM, ctx)
    assert out.ledger.generated_tokens <= 120 + 4
    phases = [e["phase"] for e in ctx.events]
    assert phases[0] == round(64 / 120, 4)  # the phase is measured against the 120 tokens


async def test_the_trace_records_every_interval_and_decision() -> None:
    traces = ["we add 4 and 5 to get 9 so \\boxed{9}", "four plus five is nine \\boxed{9}"]

    def script(before: str, sampling: Sampling) -> str:
        if not before:
            return traces[(sampling.seed or 0) % 2]
        if before.endswith("\\boxed{"):
            return "9}$"
        return follow(*traces, fallback=" hmm")(before, sampling)

    ctx = context(TokenScript(script), Budget(generated_tokens=400))
    out = await HyPER(n=4, round_tokens=4, top_logprobs=3).run(PROBLEM, ctx)
    events = ctx.events
    assert [e["round"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) == out.details["rounds"] >= 2
    assert all(
        e["event"] == "hyper" and e["action"] in {"expand", "reduce", "hold"} for e in events
    )
    assert [e["phase"] for e in events] == sorted(e["phase"] for e in events)
    assert out.details["expansions"] == sum(e["action"] == "expand" for e in events)
    assert out.details["forks"] == sum(e["forked"] for e in events)
    assert out.details["aborted"] == sum(e["aborted"] for e in events)
    pruned = [n for n in out.tree.to_json()["nodes"] if n["status"] == "pruned"]
    forked = [n for n in out.tree.to_json()["nodes"] if n["status"] == "forked"]
    assert len(pruned) == out.details["aborted"] and bool(forked) == bool(out.details["forks"])
    assert out.answer == "9" and out.chain is not None
    assert out.tree.status(out.chain.id) == NodeStatus.SELECTED
    for chain in out.chains:
        assert chain.id in out.tree and chain.finished
        assert chain.text in traces or chain.text.startswith(tuple(traces))


async def test_paths_refused_before_they_start_are_dropped() -> None:
    ctx = context(TokenScript(endless), Budget(samples=2, generated_tokens=64))
    search = HyPER(n=4, round_tokens=8, top_logprobs=3, answer_tokens=4)
    out = await search.run(PROBLEM, ctx)
    assert len(out.chains) == 2 and ctx.ledger.samples == 2
    assert all(c.token_ids for c in out.chains) and out.stopped_by == "samples"
    assert len({c.id for c in out.chains}) == 2  # no undecoded fork votes twice
    assert ctx.events[0]["action"] == "hold"  # no fork once the sample limit is reached


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("top_logprobs", 1),
        ("top_logprobs", None),
        ("round_tokens", 0),
        ("n", 1),  # below min_paths
        ("max_paths", True),
        ("max_reduce_fraction", 1.0),
        ("explore_until", 1.5),
        ("refine_threshold", math.nan),
        ("refine", "sideways"),
        ("confidence_entries", "all"),
        ("length_penalty", -1),
        ("answer_tokens", -1),
        ("answer_cue", 3),
        ("temperature", -1.0),  # a shared key, checked by the shared rule
    ],
)
def test_bad_keys_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"search.{key} "):
        HyPER(**{key: value})  # type: ignore[arg-type]


def test_hyper_reads_its_phase_from_budget_generated_tokens() -> None:
    """No search key is a budget: HyPER's denominator is budget.generated_tokens, which it
    needs, and which must afford one round and a forced answer per initial path."""
    search = HyPER()
    with pytest.raises(ValueError, match=r"needs budget\.generated_tokens"):
        search.check_budget(Budget())
    with pytest.raises(ValueError, match=r"budget\.generated_tokens must afford .* = 768"):
        search.check_budget(Budget(generated_tokens=8 * (64 + 32) - 1))
    search.check_budget(Budget(generated_tokens=8 * (64 + 32)))
    assert "token_budget" not in fields_of(HyPER)


async def test_hyper_refuses_to_run_without_a_token_budget() -> None:
    with pytest.raises(ValueError, match=r"budget\.generated_tokens"):
        await HyPER().run(PROBLEM, context(TokenScript(endless)))


# --- a controller that cannot work as configured fails before it starts, or at the first ----
# --- response that shows it (issue 19 point 7) -----------------------------------------------


class NoLogprobs(TokenScript):
    """A server that ignores `logprobs`: text and token ids, but no logprobs (`empty`: the
    per-token tables come back, each empty)."""

    def __init__(self, script: Callable[[str, Sampling], str], *, empty: bool = False) -> None:
        super().__init__(script)
        self.empty = empty

    def sample(self, prompt: object, sampling: Sampling, k: int) -> Completion:
        out = super().sample(prompt, sampling, k)  # type: ignore[arg-type]
        tables = tuple({} for _ in range(out.tokens)) if self.empty else None
        return replace(out, logprobs=None, top_logprobs=tables, top_token_ids=None)


@pytest.mark.parametrize("empty", [False, True])
async def test_hyper_on_a_server_without_logprobs_stops_at_its_first_response(
    empty: bool,
) -> None:
    """Every vote weight would be 0 (issue 19): the first round's responses stop the search,
    naming the key and what the backend left out."""
    gen = NoLogprobs(endless, empty=empty)
    ctx = context(gen, Budget(generated_tokens=2000))
    search = HyPER(n=4, round_tokens=16, answer_tokens=8, top_logprobs=3)
    with pytest.raises(
        ValueError,
        match=r"search=hyper reads the top-3 token logprobs \(search\.top_logprobs=3\) and "
        r"the backend returned none",
    ):
        await search.run(PROBLEM, ctx)
    assert ctx.ledger.generator_calls == 4  # the first round, nothing after it


async def test_chunks_that_asked_for_sampled_logprobs_refuse_a_reply_without_them() -> None:
    ctx = context(NoLogprobs(endless))
    with pytest.raises(ValueError, match=r"search\.top_logprobs=0\) and the backend returned none"):
        await decode_chunks(ctx, [start_chain()], ChunkSampling(round_tokens=4, top_logprobs=0))
    # a call that asks for none takes a reply without any
    (chunk,) = await decode_chunks(ctx, [start_chain()], ChunkSampling(round_tokens=4))
    assert chunk.decoded


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 8),
    round_tokens=st.integers(1, 64),
    answer_tokens=st.integers(0, 32),
    short=st.integers(1, 500),
)
def test_a_token_budget_below_hypers_first_round_is_refused_before_any_call(
    n: int, round_tokens: int, answer_tokens: int, short: int
) -> None:
    """Property: under budget.generated_tokens below n * (round_tokens + answer_tokens) HyPER
    makes no call and records nothing; the refusal names the budget key and the minimum."""
    first = n * (round_tokens + answer_tokens)
    tokens = max(1, first - short)
    search = HyPER(
        n=n, max_paths=8, round_tokens=round_tokens, answer_tokens=answer_tokens, top_logprobs=3
    )
    gen = TokenScript(endless)
    ctx = context(gen, Budget(generated_tokens=tokens))
    with pytest.raises(ValueError, match=rf"budget\.generated_tokens must afford .* = {first}\b"):
        asyncio.run(search.run(PROBLEM, ctx))
    assert gen.calls == [] and ctx.ledger.generator_calls == 0


# --- cost: each token's confidence is computed a bounded number of times ---------------------


def test_a_confidence_trail_matches_the_whole_sequence_statistics_as_it_grows() -> None:
    trail = ConfidenceTrail(window=2)
    for end in range(1, len(TABLE) + 1):
        trail.update(TABLE[:end])
        assert trail.tail(2) == pytest.approx(tail_confidence(TABLE[:end], 2))
        assert trail.lowest_window_mean() == pytest.approx(min_group_confidence(TABLE[:end], 2))
    # windows of 2 over (1.7, 1.0, 2.0, 5/3): the lowest mean is (1.7 + 1.0) / 2
    assert trail.lowest_window_mean() == pytest.approx(1.35)
    # a rewritten sequence (same length, another last token) starts over instead of extending
    rewritten = [*TABLE[:3], [-3.0, -3.0, -3.0]]  # c = 3.0: windows 1.35, 1.5, 2.5
    trail.update(rewritten)
    assert trail.values == pytest.approx([1.7, 1.0, 2.0, 3.0])
    assert trail.tail(1) == pytest.approx(3.0) and trail.lowest_window_mean() == pytest.approx(1.35)
    # shorter than its window: the mean of what there is, as min_group_confidence gives it
    assert ConfidenceTrail(window=8).update(TABLE).lowest_window_mean() == pytest.approx(
        min_group_confidence(TABLE, 8)
    )


async def test_hyper_reads_each_tokens_confidence_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rebuilding every path's statistics from its first token each round made HyPER quadratic
    # in the path length: 4 paths of up to 300 tokens in 16-token rounds read ~19 rounds x ~150
    # tokens x 4 paths ~ 11k confidences; read once per token (plus a fork's one rebuild and the
    # final vote's tail windows) they stay within a few times the tokens generated
    import reasoning.logprobs as logprobs

    calls = 0
    real = logprobs.token_confidence

    def counted(top: object, k: int | None = None) -> float | None:
        nonlocal calls
        calls += 1
        return real(top, k)  # type: ignore[arg-type]

    monkeypatch.setattr(logprobs, "token_confidence", counted)
    ctx = context(TokenScript(endless), Budget(generated_tokens=1200))
    search = HyPER(n=4, max_paths=8, round_tokens=16, answer_tokens=8, top_logprobs=3)
    out = await search.run(PROBLEM, ctx)
    tokens = out.ledger.generated_tokens
    assert tokens >= 1000
    assert calls <= 4 * tokens, (calls, tokens)
