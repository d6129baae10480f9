"""Parallel reasoning threads: the shared machinery, ThreadWeaver, fork-join and the controller.

Scripted generators answer by what a prompt ends with, so every fork, join and continuation is
checked to the character, and critical-path and total tokens are computed by hand. The real
engine runs every policy in tests/test_threads_engine.py; APR and Hogwild have their own files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from evals.grading import Grader
from reasoning.budget import Budget
from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.tree import ROOT, NodeStatus, SearchTree
from reasoning.types import Chain, Problem, Sampling
from search.threads import STRATEGIES, Threads
from search.threads.fork_join import SUMMARY_CUE, ForkJoin, merged_threads
from search.threads.hogwild import Hogwild
from search.threads.threadweaver import (
    DEFAULT_PREFIX,
    ThreadWeaver,
    joined_text,
    outline_ids,
    thread_opening,
)
from tests.fakes import RuleGenerator, spaces

PROBLEM = Problem("p1", "What is 2 + 3 + 2 * 3?", "11")
HEAD = f"Q: {PROBLEM.question}\nA: "

Reply = tuple[str, str | None]  # text (one token per space-separated word), stop string hit


class ScriptedThreads(RuleGenerator):
    """Answers each prompt by the first rule whose key the prompt ends with: a reply is
    (text, stop string hit), one token per space-separated word; a reply longer than the
    call's cap is cut there (finish "length"); no stop string means EOS."""

    name = "scripted-threads"

    def __init__(
        self,
        rules: Sequence[tuple[str, Reply | Callable[[str, Sampling], Reply]]],
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(rules, unit=spaces, prompt_tokens=9, delay_s=delay_s)


def context(generator: ScriptedThreads, budget: Budget | None = None) -> Context:
    return Context(PROBLEM, generator, judge=Grader(), budget=budget)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# --- the critical path of a tree ----------------------------------------------------------------


def test_critical_path_follows_the_longest_thread_of_a_join() -> None:
    tree = SearchTree()
    plan = Chain(steps=("plan",), tokens=10)
    tree.add(plan)  # 10 tokens
    a, b = plan.extend("a", tokens=4), plan.extend("b", tokens=7)
    tree.add(a), tree.add(b)  # 4 and 7 after the plan
    joined = Chain(steps=("plan", "ab"), tokens=21, parent=plan.id)
    tree.add(joined, NodeStatus.JOINED, parents=[a.id, b.id], generated=0)
    tail = joined.extend("end", tokens=5)
    tree.add(tail)  # 5 decoded after the join
    assert tree.critical_path_tokens() == 10 + 7 + 5
    assert tree.node(tail.id)["generated"] == 5  # the default: its tokens less its parent's
    assert tree.parents(joined.id) == [a.id, b.id]


def test_critical_path_of_independent_samples_is_the_longest_one() -> None:
    tree = SearchTree()
    for tokens in (12, 30, 7):
        tree.add(Chain(steps=("x",), tokens=tokens))
    assert tree.critical_path_tokens() == 30
    assert SearchTree().critical_path_tokens() == 0
    assert ROOT in tree


# --- ThreadWeaver -------------------------------------------------------------------------------


def test_outline_ids_read_the_last_block_only_and_keep_duplicates() -> None:
    text = (
        "<Outlines><Outline>1: old</Outline></Outlines> more "
        "<Outlines>\n<Outline> 2 : a</Outline><Outline>2.1: b</Outline><Outline>2: c</Outline>"
    )
    assert outline_ids(text) == ["2", "2.1", "2"]
    assert outline_ids("<Outline>7: no block opener") == ["7"]  # the whole text is the scope
    assert outline_ids("<Outlines><Outline>x: not a number</Outline></Outlines>") == []
    assert outline_ids("<Outlines><Outline>3 missing colon</Outline></Outlines>") == []


def test_joined_text_is_the_evaluators() -> None:
    # "\n", then <Thread>\n{id}:{text}</Thread> per id, nothing between, then "\n"
    got = joined_text(["1", "2"], {"1": " a</Thread>", "2": " b"})
    assert got == "\n<Thread>\n1: a</Thread><Thread>\n2: b</Thread>\n"
    assert thread_opening("2.1") == "\n<Thread>\n2.1:"
    assert joined_text([], {}) == ""


SEQ = "Plan. <Parallel>\n<Outlines>\n<Outline>1: add</Outline>\n<Outline>2: multiply</Outline>\n"


def weaver_rules(thread2: Reply = (" 2 * 3 = 6", "</Thread>")) -> list:
    return [
        (HEAD, (SEQ, "</Outlines>")),
        ("\n<Thread>\n1:", (" 2 + 3 = 5", "</Thread>")),
        ("\n<Thread>\n2:", thread2),
        ("</Thread>\n", ("</Parallel> so 5 + 6 = \\boxed{11}", None)),  # EOS
    ]


def test_threadweaver_forks_joins_and_continues_like_the_evaluator() -> None:
    gen = ScriptedThreads(weaver_rules())
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""})).run(PROBLEM, ctx))
    ctx.settle(out)
    expected = (
        SEQ
        + "</Outlines>"
        + "\n<Thread>\n1: 2 + 3 = 5</Thread><Thread>\n2: 2 * 3 = 6</Thread>\n"
        + "</Parallel> so 5 + 6 = \\boxed{11}"
    )
    assert out.chain is not None and out.chain.text == expected
    assert out.answer == "11"
    # each thread continued the shared context (with the stop string put back), never a sibling
    thread_prompts = [p for p, _ in gen.calls if "<Thread>" in p[-15:]]
    assert sorted(thread_prompts) == sorted(
        [HEAD + SEQ + "</Outlines>" + thread_opening(i) for i in ("1", "2")]
    )
    assert all(s.stop == ("</Thread>",) for p, s in gen.calls if p in thread_prompts)
    # one token per space-separated word: 4 (plan and block), 6 and 6 (threads), 7 (the end)
    assert ctx.ledger.generated_tokens == 4 + 6 + 6 + 7
    assert ctx.ledger.critical_path_tokens == 4 + 6 + 7
    assert ctx.ledger.samples == 1  # one rollout; threads continue it
    joins = [n for n, d in ctx.tree.graph.nodes(data=True) if d["status"] == NodeStatus.JOINED]
    assert len(joins) == 1 and len(ctx.tree.parents(joins[0])) == 2
    forked = [n for n, d in ctx.tree.graph.nodes(data=True) if d["status"] == NodeStatus.FORKED]
    assert len(forked) == 1
    assert [e["event"] for e in ctx.events] == ["fork", "join"]
    assert out.details["rollouts"][0]["blocks"][0]["ids"] == ["1", "2"]


def test_a_thread_cut_by_its_cap_is_closed_and_ends_the_rollout() -> None:
    long = (" ".join(["w"] * 40), "</Thread>")
    gen = ScriptedThreads(weaver_rules(thread2=long))
    ctx = context(gen)
    search = Threads(strategy=ThreadWeaver(**{"prefix": "", "max_thread_tokens": 8}))
    out = run(search.run(PROBLEM, ctx))
    assert out.chain is not None
    assert out.chain.text.endswith("<Thread>\n2:" + " ".join(["w"] * 8) + "</Thread>\n")
    assert out.chain.finish_reason == "length"
    assert not any(p.endswith("</Thread>\n") for p, _ in gen.calls)  # no continuation
    # the join that ended the rollout keeps its two parents, now also finished (and selected)
    joined = ctx.tree.node(out.chains[0].id)
    assert joined["status"] in (NodeStatus.JOINED, NodeStatus.SELECTED)
    assert joined["finish_reason"] == "length" and len(ctx.tree.parents(out.chains[0].id)) == 2
    assert out.answer is None or "11" not in out.chain.text


def test_a_thread_ended_by_eos_ends_the_rollout_after_the_join() -> None:
    # the evaluator's end_seq: the thread lacks </Thread>, so the rollout is returned as joined
    gen = ScriptedThreads(weaver_rules(thread2=(" 2 * 3 = 6", None)))
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""})).run(PROBLEM, ctx))
    ctx.settle(out)
    joined = "\n<Thread>\n1: 2 + 3 = 5</Thread><Thread>\n2: 2 * 3 = 6</Thread>\n"
    assert out.chain is not None and out.chain.text == SEQ + "</Outlines>" + joined
    assert out.chain.finish_reason == "eos"
    assert not any(p.endswith("</Thread>\n") for p, _ in gen.calls)  # no continuation
    assert len(gen.calls) == 3
    # 4 (plan and block), 6 and 6 (threads), nothing after the join
    assert ctx.ledger.generated_tokens == 4 + 6 + 6  # EOS is a token, as the stop is
    assert ctx.ledger.critical_path_tokens == 4 + 6
    node = ctx.tree.node(out.chains[0].id)
    assert node["finish_reason"] == "eos" and len(ctx.tree.parents(out.chains[0].id)) == 2
    assert out.details["rollouts"][0]["notes"] == ["a thread ended at EOS without </Thread>"]


def test_a_thread_ended_by_eos_is_closed_and_the_rollout_goes_on() -> None:
    # eos_ends_rollout=false: our rule before (decoding goes on after the join)
    gen = ScriptedThreads(weaver_rules(thread2=(" 2 * 3 = 6", None)))
    ctx = context(gen)
    strategy = ThreadWeaver(**{"prefix": "", "eos_ends_rollout": False})
    out = run(Threads(strategy=strategy).run(PROBLEM, ctx))
    assert (
        out.chain is not None and "<Thread>\n2: 2 * 3 = 6</Thread>\n</Parallel>" in out.chain.text
    )
    assert out.answer == "11"


def test_a_block_without_outline_ids_falls_back_to_sequential_decoding() -> None:
    gen = ScriptedThreads(
        [
            (HEAD, ("<Parallel><Outlines><Outline>first: x</Outline>", "</Outlines>")),
            ("</Outlines>", ("so \\boxed{11}", None)),
        ]
    )
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""})).run(PROBLEM, ctx))
    assert out.chain is not None
    assert (
        out.chain.text == "<Parallel><Outlines><Outline>first: x</Outline></Outlines>so \\boxed{11}"
    )
    assert [e["event"] for e in ctx.events] == ["fallback"]
    assert out.details["rollouts"][0]["fallbacks"] == 1
    assert len(gen.calls) == 2


def test_repeated_outline_ids_run_once_and_appear_twice() -> None:
    seq = "<Outlines><Outline>1: a</Outline><Outline>1: again</Outline>"
    gen = ScriptedThreads(
        [
            (HEAD, (seq, "</Outlines>")),
            ("\n<Thread>\n1:", (" one", "</Thread>")),
            ("</Thread>\n", ("\\boxed{11}", None)),
        ]
    )
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""})).run(PROBLEM, ctx))
    assert out.chain is not None
    assert "\n<Thread>\n1: one</Thread><Thread>\n1: one</Thread>\n" in out.chain.text
    assert sum(1 for p, _ in gen.calls if p.endswith("\n<Thread>\n1:")) == 1
    assert "duplicate_outline_ids" in [e["event"] for e in ctx.events]


def test_nested_blocks_inside_a_thread_are_literal_text() -> None:
    nested = (" <Parallel><Outlines><Outline>9: inner</Outline></Outlines> done", "</Thread>")
    gen = ScriptedThreads(weaver_rules(thread2=nested))
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""})).run(PROBLEM, ctx))
    assert out.chain is not None and "<Outline>9: inner" in out.chain.text
    assert not any(p.endswith("\n<Thread>\n9:") for p, _ in gen.calls)  # no fork from it
    assert [e["event"] for e in ctx.events] == ["fork", "join"]


def test_the_default_prefix_forks_an_untrained_model() -> None:
    gen = ScriptedThreads(
        [
            ("\n<Thread>\n1:", (" five", "</Thread>")),
            ("\n<Thread>\n2:", (" five again", None)),
            ("</Thread>\n", ("</Parallel> \\boxed{5}", None)),
        ]
    )
    ctx = context(gen)
    # thread 2 ends at EOS: with the option set the rollout goes on after the join
    out = run(Threads(strategy=ThreadWeaver(eos_ends_rollout=False)).run(PROBLEM, ctx))
    assert out.chain is not None and out.chain.text.startswith(DEFAULT_PREFIX + "\n<Thread>\n1:")
    assert len(gen.calls) == 3  # no decode before the forced block: it forks at once
    assert ctx.ledger.samples == 1  # the rollout's sample starts with its first thread
    # the longer thread (" five again": 3 words) and the continuation (2)
    assert ctx.tree.critical_path_tokens() == 3 + 2


def test_a_truncated_sequential_phase_ends_the_rollout() -> None:
    gen = ScriptedThreads([(HEAD, (" ".join(["t"] * 50), None))])
    ctx = context(gen)
    search = Threads(strategy=ThreadWeaver(**{"prefix": ""}), max_tokens=20)
    out = run(search.run(PROBLEM, ctx))
    assert out.answer is None and out.chains[0].finish_reason == "length"
    assert ctx.ledger.generated_tokens == 20 and len(gen.calls) == 1


# --- fork-join ----------------------------------------------------------------------------------


def fork_rules(answers: Sequence[str]) -> list:
    it = iter(answers)
    return [
        (HEAD, ("First add, then multiply.", "\n\n")),  # 4 tokens
        ("\n\n", lambda p, s: (f"the result is \\boxed{{{next(it)}}}", None)),  # 4 tokens
        (SUMMARY_CUE, ("11}$.", None)),  # 1 token
    ]


def test_fork_join_summary_reads_every_thread_then_answers() -> None:
    gen = ScriptedThreads(fork_rules(["11", "10", "11"]))
    ctx = context(gen)
    search = Threads(strategy=ForkJoin(**{"threads": 3, "join": "summary"}))
    out = run(search.run(PROBLEM, ctx))
    ctx.settle(out)
    plan = "First add, then multiply.\n\n"
    threads = [f"the result is \\boxed{{{a}}}" for a in ("11", "10", "11")]
    summary_prompt = [p for p, _ in gen.calls if p.endswith(SUMMARY_CUE)]
    assert len(summary_prompt) == 1
    # the summary saw all three threads, whatever order they finished in
    for t in threads:
        assert t in summary_prompt[0]
    assert out.chain is not None and out.chain.text.endswith(SUMMARY_CUE + "11}$.")
    assert out.answer == "11"
    assert ctx.ledger.generated_tokens == 4 + 3 * 4 + 1
    assert ctx.ledger.critical_path_tokens == 4 + 4 + 1
    assert out.chain.text.startswith(plan + merged_threads(threads)[:10])


def test_fork_join_vote_keeps_the_majority_thread() -> None:
    gen = ScriptedThreads(fork_rules(["7", "11", "11", "9"]))
    ctx = context(gen)
    out = run(Threads(strategy=ForkJoin(**{"join": "vote"})).run(PROBLEM, ctx))
    assert out.answer == "11"
    assert out.chain is not None and out.chain.text.count("\\boxed") == 1
    assert not any(p.endswith(SUMMARY_CUE) for p, _ in gen.calls)


class LengthVerifier:
    """Scores a step by its length, so the longest thread wins."""

    name = "length"

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return [[min(1.0, len(s) / 100) for s in c.steps] for c in chains]


def test_fork_join_verifier_keeps_the_best_scored_thread() -> None:
    replies = iter(["\\boxed{3}", "a longer thread that says \\boxed{11}", "\\boxed{4}"])
    gen = ScriptedThreads([(HEAD, ("Plan.", "\n\n")), ("\n\n", lambda p, s: (next(replies), None))])
    ctx = Context(PROBLEM, gen, judge=Grader(), verifier=LengthVerifier())
    search = Threads(strategy=ForkJoin(**{"threads": 3, "join": "verifier"}))
    assert search.verifier_use is not None
    out = run(search.run(PROBLEM, ctx))
    assert out.answer == "11" and ctx.ledger.verifier_calls == 3


class WordVerifier:
    """Scores a step 0 if it says "bad", 0.5 if it says "meh", else 1; records what it read."""

    name = "words"

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        self.seen += [c.steps for c in chains]
        return [
            [0.0 if "bad" in s else 0.5 if "meh" in s else 1.0 for s in c.steps] for c in chains
        ]


@pytest.mark.parametrize(("reduction", "answer"), [("model", "11"), ("last", "3")])
def test_fork_join_model_reduction_scores_each_thread_as_one_step(
    reduction: str, answer: str
) -> None:
    # thread 1's last step looks good but its whole text does not; thread 2 is "meh" throughout
    replies = iter(["a bad start\n\n\nthen a fine \\boxed{3}", "a meh guess \\boxed{11}"])
    gen = ScriptedThreads([(HEAD, ("Plan.", "\n\n")), ("\n\n", lambda p, s: (next(replies), None))])
    verifier = WordVerifier()
    ctx = Context(PROBLEM, gen, judge=Grader(), verifier=verifier)
    strategy = ForkJoin(**{"threads": 2, "join": "verifier", "step_reduction": reduction})
    out = run(Threads(strategy=strategy).run(PROBLEM, ctx))
    assert out.answer == answer
    if reduction == "model":  # one step per thread, newline runs collapsed
        assert verifier.seen == [
            ("Plan.\na bad start\nthen a fine \\boxed{3}",),
            ("Plan.\na meh guess \\boxed{11}",),
        ]
    else:
        assert all(len(steps) > 1 for steps in verifier.seen[:1])


def test_a_plan_cut_by_its_cap_is_forked_where_it_was_cut() -> None:
    gen = ScriptedThreads(
        [(HEAD, ("a plan that goes on and on", "\n\n")), ("that", ("\\boxed{11}", None))]
    )
    ctx = context(gen)
    search = Threads(strategy=ForkJoin(**{"plan_tokens": 3, "join": "vote"}))
    out = run(search.run(PROBLEM, ctx))
    assert out.answer == "11" and len(gen.calls) == 1 + 4
    assert all(p == HEAD + "a plan that" for p, _ in gen.calls[1:])


def test_a_plan_ended_by_eos_is_not_forked() -> None:
    gen = ScriptedThreads([(HEAD, ("so \\boxed{11}", None))])
    ctx = context(gen)
    out = run(Threads(strategy=ForkJoin(**{"join": "vote"})).run(PROBLEM, ctx))
    assert out.answer == "11" and len(gen.calls) == 1
    assert "fork" not in [e["event"] for e in ctx.events]


def test_fork_join_at_the_start_forks_the_bare_prompt() -> None:
    gen = ScriptedThreads([(HEAD, ("\\boxed{11}", None))])
    ctx = context(gen)
    search = Threads(strategy=ForkJoin(**{"fork_after": "start", "join": "vote"}))
    out = run(search.run(PROBLEM, ctx))
    assert len(gen.calls) == 4 and all(p == HEAD for p, _ in gen.calls)
    assert ctx.ledger.samples == 1
    assert out.answer == "11" and ctx.tree.critical_path_tokens() == 1


def test_budget_bounds_hold_across_concurrent_threads() -> None:
    gen = ScriptedThreads(
        [(HEAD, ("plan", "\n\n")), ("\n\n", (" ".join(["x"] * 300), None))], delay_s=0.01
    )
    ctx = context(gen, Budget(generated_tokens=100))
    search = Threads(strategy=ForkJoin(**{"threads": 8, "join": "vote"}), n=2)
    out = run(search.run(PROBLEM, ctx))
    # every call in flight holds its share, so the spend ends within one token per sample
    assert ctx.ledger.generated_tokens <= 100 + 16
    assert ctx.ledger.generated_tokens >= 90
    assert out.stopped_by == "generated_tokens" or ctx.stopped_by == "generated_tokens"


# --- the controller -----------------------------------------------------------------------------


def test_rollouts_vote_and_every_strategy_is_registered() -> None:
    assert set(STRATEGIES) == {"threadweaver", "apr", "fork_join", "hogwild"}
    replies = iter(["\\boxed{11}", "\\boxed{12}", "\\boxed{11}"])
    gen = ScriptedThreads([(HEAD, lambda p, s: (next(replies), None))])
    ctx = context(gen)
    out = run(Threads(strategy=ThreadWeaver(**{"prefix": ""}), n=3).run(PROBLEM, ctx))
    assert out.answer == "11" and ctx.ledger.samples == 3
    assert len(out.details["rollouts"]) == 3 and out.details["strategy"] == "threadweaver"


@pytest.mark.parametrize(
    ("build", "names"),
    [
        (lambda: Threads(strategy="tree"), "search.strategy"),
        (lambda: ThreadWeaver(max_thread_tokens=0), "search.strategy.max_thread_tokens"),
        (lambda: ThreadWeaver(bogus=1), "search.strategy.bogus is not a threadweaver setting"),
        (lambda: ForkJoin(join="merge"), "search.strategy.join"),
        (lambda: ForkJoin(threads=0), "search.strategy.threads"),
        (lambda: Hogwild(delta=8), "search.strategy.delta is not a hogwild setting"),
        (lambda: Threads(aggregate="rpc"), "search.aggregate"),
        (lambda: Threads(n=0), "search.n"),
    ],
)
def test_bad_settings_name_their_key(build: Any, names: str) -> None:
    with pytest.raises(ValueError, match=names.replace(".", r"\.")):
        build()


# --- search.max_tokens: one context's cap, threads included ---------------------------------------


def _context_tokens(ctx: Context, out: Outcome) -> int:
    """The decoded tokens the answer's context holds: every node on its way from the root
    (a join counts each thread it merges)."""
    assert out.chain is not None
    return int(ctx.tree.node(out.chain.id)["tokens"])


def test_threadweaver_threads_each_take_what_is_left_of_the_rollouts_context() -> None:
    long = (" ".join(["w"] * 40), "</Thread>")
    gen = ScriptedThreads(weaver_rules(thread2=long))
    ctx = context(gen)
    search = Threads(strategy=ThreadWeaver(**{"prefix": ""}), max_tokens=30)
    out = run(search.run(PROBLEM, ctx))
    # the outlines took 4 tokens; each thread's request continues the rollout's context, so each
    # may take the 26 left (the evaluator caps every request by its own context), and the long
    # one is cut there; the joined context is then full and the rollout ends
    thread_caps = [s.max_tokens for p, s in gen.calls if p.endswith(("1:", "2:"))]
    assert thread_caps == [26, 26]
    assert out.chain is not None and out.chain.finish_reason == "length"
    assert not [p for p, _ in gen.calls if p.endswith("</Thread>\n</Parallel>")]


def test_fork_join_keeps_the_summarys_tokens_inside_the_cap() -> None:
    gen = ScriptedThreads(
        [
            (HEAD, ("First add, then multiply.", "\n\n")),  # 4 tokens
            ("\n\n", (" ".join(["w"] * 40), None)),  # threads that would fill any room
            (SUMMARY_CUE, ("11}$.", None)),
        ]
    )
    ctx = context(gen)
    strategy = ForkJoin(**{"threads": 2, "join": "summary", "answer_tokens": 6})
    out = run(Threads(strategy=strategy, max_tokens=30).run(PROBLEM, ctx))
    # 30 - 4 (plan) - 6 (the summary's, kept aside) = 20, split between two threads
    assert [s.max_tokens for p, s in gen.calls if p.endswith("\n\n")] == [10, 10]
    (summary,) = [s for p, s in gen.calls if p.endswith(SUMMARY_CUE)]
    assert summary.max_tokens == 6  # the summary still gets all of its tokens, no more
    assert out.answer == "11"
    assert _context_tokens(ctx, out) <= 30 and ctx.ledger.generated_tokens <= 30


def test_fork_join_with_no_room_for_its_threads_ends_before_the_fork() -> None:
    gen = ScriptedThreads(fork_rules(["11", "11"]))
    ctx = context(gen)
    strategy = ForkJoin(**{"threads": 2, "join": "summary", "answer_tokens": 4})
    out = run(Threads(strategy=strategy, max_tokens=9).run(PROBLEM, ctx))
    # 9 - 4 (plan) - 4 (summary) leaves 1 token for 2 threads: no fork
    assert len(gen.calls) == 1 and ctx.tree.critical_path_tokens() == 4
    assert out.chains[0].finish_reason == "length"


def test_only_the_runtime_writes_a_rollouts_tree_and_state() -> None:
    """Strategies use the Rollout's verbs: none adds tree nodes, moves a rollout's chain or
    sample flag, or changes its cap by hand."""
    from pathlib import Path

    import search.threads.runtime as runtime

    here = Path(runtime.__file__).parent
    hand_written = ("tree.add(", "tree.mark(", ".chain =", ".new_samples =", ".max_tokens =")
    found = {
        (path.name, bad)
        for path in here.glob("*.py")
        if path.name != "runtime.py"
        for bad in hand_written
        if bad in path.read_text()
    }
    assert found == set()
