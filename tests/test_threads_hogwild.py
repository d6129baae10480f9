"""Hogwild! by rounds (search/threads/hogwild.py): the views each worker continues, the step-end
rule, commit order, "Quick check" insertion, the answer stop, the merged response and its
finisher, the tree and its critical path, round metrics and the budget, on scripted workers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from evals.grading import Grader
from reasoning import Budget, Context, Problem
from reasoning.settings import SettingsError
from reasoning.tree import ROOT, NodeStatus
from reasoning.types import Completion, Delta, FinishReason, Prompt, Sampling
from search.threads.hogwild import (
    FINISHER,
    QUICK_CHECK,
    Hogwild,
    ends_step,
    paper_rules,
    short_rules,
)
from search.threads.runtime import RolloutResult
from tests.fakes import RuleGenerator, always

PROBLEM = Problem("p", "What is 2 + 2?", "4")
HEAD = "<user>RULES\n\nWhat is 2 + 2?</user>\n<assistant>\n"  # rules="RULES" in this template
OTHERS = "\n\n### Work in progress (others)\n\n"
OWN = "### Work in progress (own)\n\n"
ALICE_1 = "**Alice [1]:** Hi, I'm Alice. Here's how we can"
BOB_1 = "**Bob [1]:** Hi, I'm Bob."
CACHED = 10  # prompt tokens the fake prefix cache serves per call (at most)


def step(text: str, tokens: int) -> Completion:
    """A call that stopped at "\\n\\n" (excluded from the text, as vLLM does)."""
    return Completion(text, tokens, "stop", stop="\n\n")


def cut(text: str, tokens: int) -> Completion:
    return Completion(text, tokens, "length")


def eos(text: str, tokens: int) -> Completion:
    return Completion(text, tokens, "stop")


def worker_of(prompt: str) -> str:
    """Whose view `prompt` is: the name that opens the step after the own-section header."""
    own = prompt.rsplit(OWN, 1)[1]
    return own.removeprefix("**").split(" [", 1)[0]


class Workers(RuleGenerator):
    """Answers each view from the script of the worker it belongs to; a worker out of script
    writes "more" up to its cap. `delay` holds a worker's reply back (to reorder arrivals)."""

    name = "workers"

    def __init__(
        self,
        scripts: dict[str, Sequence[Completion]] | None = None,
        *,
        finisher: Completion | None = None,
        delay: dict[str, float] | None = None,
    ) -> None:
        super().__init__(
            [(FINISHER, lambda prompt, sampling: self.finisher), (always, self._next)],
            template="<user>{question}</user>\n<assistant>\n",
            prompt_tokens=lambda prompt: len(prompt.split()),
            prefix_cache=CACHED,
            delay_s=self._delay,
        )
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.finisher = finisher or eos("4}", 2)
        self.delay = delay or {}
        self.arrivals: list[str] = []

    def _delay(self, prompt: str) -> float:
        return 0.0 if prompt.endswith(FINISHER) else self.delay.get(worker_of(prompt), 0.0)

    def _next(self, prompt: str, sampling: Sampling) -> Completion:
        who = worker_of(prompt)
        script = self.scripts.get(who) or []
        self.arrivals.append(who)
        return script.pop(0) if script else cut("more", sampling.max_tokens)

    def of(self, name: str) -> list[tuple[str, Sampling]]:
        return [(p, s) for p, s in self.calls if not p.endswith(FINISHER) and worker_of(p) == name]


class TokenizingWorkers(Workers):
    """The same workers on a backend that tokenizes (one token per word)."""

    def tokenize(self, text: str) -> tuple[int, ...]:
        return tuple(range(len(text.split())))

    def detokenize(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def chat(self, messages: Any) -> str:
        raise NotImplementedError

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        raise NotImplementedError
        yield  # pragma: no cover


def run(
    gen: Workers, budget: Budget | None = None, max_tokens: int = 1024, **settings: Any
) -> tuple[Context, RolloutResult]:
    settings.setdefault("rules", "RULES")
    ctx = Context(PROBLEM, gen, judge=Grader(), budget=budget)
    policy = Hogwild(**settings)
    sampling = Sampling(temperature=0.6, max_tokens=max_tokens)
    result = asyncio.run(policy.rollout(ctx, sampling, "r0"))
    return ctx, result


# --- helpers ----------------------------------------------------------------------------------


def chat(question: str) -> str:
    """The Workers' chat template, as the strategy renders the examples' questions."""
    return f"<user>{question}</user>\n<assistant>\n"


def test_the_default_rules_have_the_references_parts_in_the_user_message() -> None:
    rules = paper_rules(["Alice", "Bob"], chat)
    # the rules of the shared workspace, examples, suggestions on collaborating, the task
    parts = ["# Working together", "# Examples", "# How to work together", "# The problem"]
    assert all(part in rules for part in parts)
    assert [rules.index(part) for part in parts] == sorted(rules.index(part) for part in parts)
    assert "Alice and Bob" in rules and "\\boxed{answer}" in rules
    for header in ("### Work in progress (others)", "### Work in progress (own)", "<...>"):
        assert header in rules  # the workspace's layout, explained and shown
    # few-shot exchanges of two workers, each question in the model's chat template
    examples = rules.split("<example>")[1:]
    assert len(examples) >= 3 and all("</example>" in e for e in examples)
    assert all("**Alice [" in e and "**Bob [" in e for e in examples)
    assert chat("Find the sum of the squares of the integers from 1 to 6.") in rules
    assert len(rules) > 4 * len(short_rules(["Alice", "Bob"]))
    # the default: the rules and the problem are one user message, as the reference passes them
    gen = Workers()
    run(gen, rules=None, max_thread_tokens=2)
    head = chat(f"{rules}\n\nWhat is 2 + 2?")
    assert gen.calls and all(p.startswith(head + OTHERS) for p, _ in gen.calls)
    assert Hogwild().rules_style == "paper"


def test_rules_file_is_read_as_the_rules(tmp_path: Any) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("\nMY OWN RULES, verbatim.\n", encoding="utf-8")
    gen = Workers()
    run(gen, rules=None, rules_file=str(path), max_thread_tokens=2)
    head = chat("MY OWN RULES, verbatim.\n\nWhat is 2 + 2?")
    assert gen.calls and all(p.startswith(head + OTHERS) for p, _ in gen.calls)


@pytest.mark.parametrize("name", ["missing.txt", "a_directory", "empty.txt"])
def test_an_unreadable_rules_file_is_refused_with_its_key_and_path(
    tmp_path: Any, name: str
) -> None:
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    path = str(tmp_path / name)
    with pytest.raises(SettingsError, match=r"search\.strategy\.rules_file .*" + re.escape(path)):
        Hogwild(rules_file=path)


def test_rules_and_rules_file_are_not_set_together(tmp_path: Any) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("R", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"search\.strategy\.rules_file"):
        Hogwild(rules="RULES", rules_file=str(path))


def test_step_end_tests() -> None:
    assert ends_step("we add them.") and ends_step("is it 4?  ") and ends_step("so…")
    assert ends_step("答案是4。") and not ends_step("we add them") and not ends_step("first:")
    assert not ends_step("(see above.)")  # the last character counts, as in the reference


def test_default_rules_name_every_worker_and_the_answer_form() -> None:
    # rules_style=short: our one-paragraph rules (the default before the paper-style prompt)
    rules = short_rules(["Alice", "Bob", "Carol"])
    assert "3 workers, Alice, Bob and Carol" in rules
    assert "### Work in progress (others)" in rules and "### Work in progress (own)" in rules
    assert "\\boxed{answer}" in rules
    gen = Workers()
    workers = ["Alice", "Bob", "Carol"]
    run(gen, rules=None, rules_style="short", workers=workers, max_thread_tokens=2)
    head = f"<user>{rules}\n\nWhat is 2 + 2?</user>\n<assistant>\n"
    assert all(p.startswith(head + OTHERS) for p, _ in gen.calls)


# --- views, steps, commits ----------------------------------------------------------------------


def test_two_worker_views_are_the_reference_layout() -> None:
    gen = Workers(
        {
            "Alice": [step(" split the work.", 4), cut("Let me add 2", 4)],
            "Bob": [cut(" I will check", 3), step(" the sum.", 3)],
        }
    )
    ctx, result = run(gen, round_tokens=4, max_thread_tokens=8, answer_tokens=0)
    alice, bob = gen.of("Alice"), gen.of("Bob")
    assert [p for p, _ in alice] == [
        HEAD + OTHERS + BOB_1 + "<...>\n\n" + OWN + ALICE_1,
        HEAD
        + ALICE_1
        + " split the work.\n\n"
        + OTHERS
        + BOB_1
        + " I will check<...>\n\n"
        + OWN
        + "**Alice [2]:** ",
    ]
    history = ALICE_1 + " split the work.\n\n"
    assert [p for p, _ in bob] == [
        HEAD + OTHERS + ALICE_1 + "<...>\n\n" + OWN + BOB_1,
        HEAD + history + OTHERS + "**Alice [2]:** <...>\n\n" + OWN + BOB_1 + " I will check",
        # Alice has spent her 8 tokens; Bob's new step after his commit
        HEAD
        + history
        + BOB_1
        + " I will check the sum.\n\n"
        + OTHERS
        + "**Alice [2]:** Let me add 2<...>\n\n"
        + OWN
        + "**Bob [2]:** ",
    ]
    # each call asks for at most delta tokens and what the worker has left, stopping at a break
    assert [s.max_tokens for _, s in bob] == [4, 4, 2]
    assert all(s.stop == ("\n\n",) and s.temperature == 0.6 for _, s in gen.calls)
    assert ctx.ledger.samples == 1  # only the first call starts a sample
    merged = (
        history
        + BOB_1
        + " I will check the sum.\n\n"
        + OTHERS
        + "**Alice [2]:** Let me add 2<...>\n\n"
        + "**Bob [2]:** more<...>\n\n"
    )
    assert result.chain.text == merged
    assert result.chain.finished and result.chain.finish_reason == FinishReason.LENGTH
    assert result.details["stopped"] == "tokens"
    assert result.details["totals"]["commits"] == {"Alice": 1, "Bob": 1}
    assert result.details["totals"]["worker_tokens"] == {"Alice": 8, "Bob": 8}


def test_a_break_without_a_sentence_end_stays_in_the_step() -> None:
    gen = Workers(
        {
            "Alice": [step(" add them", 2), step("2 + 2 = 4, right?", 5), cut("x", 1)],
            "Bob": [cut(" wait", 1), cut(" a", 1), cut(" b", 1)],
        }
    )
    _, result = run(gen, round_tokens=5, max_thread_tokens=8, answer_tokens=0)
    (r1, _), (r2, _), (r3, _) = gen.of("Alice")
    assert r2.endswith(OWN + ALICE_1 + " add them\n\n")  # the break is kept in the step
    assert r2.startswith(HEAD + OTHERS)  # and nothing was committed
    step_one = ALICE_1 + " add them\n\n2 + 2 = 4, right?\n\n"
    assert r3.startswith(HEAD + step_one + OTHERS)  # "?" ends the step: committed
    assert r3.endswith(OWN + "**Alice [2]:** ")
    assert result.details["totals"]["commits"] == {"Alice": 1, "Bob": 0}


def test_commits_follow_worker_order_not_arrival_order() -> None:
    gen = Workers(
        {"Alice": [step(" go.", 2)], "Bob": [step(" Sure.", 2)]},
        delay={"Alice": 0.02},
    )
    _, result = run(gen, round_tokens=4, max_thread_tokens=2, answer_tokens=0)
    assert gen.arrivals == ["Bob", "Alice"]  # Bob's reply came first
    assert result.chain.text.startswith(
        ALICE_1 + " go.\n\n" + BOB_1 + " Sure.\n\n" + OTHERS + "**Alice [2]:** <...>\n\n"
    )


def test_quick_check_opens_the_step_after_collab_every_tokens() -> None:
    scripts = {
        "Alice": [step(" go.", 3), step("First.", 3), step(" no.", 1)],
        "Bob": [cut(" hm", 3), step(" ok.", 3), step("Fine.", 3)],
    }
    gen = Workers(scripts)
    ctx, result = run(gen, round_tokens=3, max_thread_tokens=9, collab_every=5, answer_tokens=0)
    # shared counter: r1 Alice 3 (commits, 3 <= 5), Bob 6; r2 Alice 9 > 5: her step 3 asks, reset;
    # Bob 3 (commits, 3 <= 5); r3 Alice 4 (commits, no), Bob 7 > 5: his step 3 asks
    alice, bob = gen.of("Alice"), gen.of("Bob")
    assert alice[2][0].endswith(OWN + "**Alice [3]:** " + QUICK_CHECK)
    assert bob[2][0].endswith(OWN + "**Bob [2]:** ")
    assert "**Alice [3]:** " + QUICK_CHECK + "<...>" in bob[2][0]
    checks = [e for e in ctx.events if e["event"] == "collab_check"]
    assert [(e["worker"], e["step"], e["round"]) for e in checks] == [
        ("Alice", 3, 2),
        ("Bob", 3, 3),
    ]
    assert result.chain.text.endswith(
        OTHERS + "**Alice [4]:** more<...>\n\n**Bob [3]:** " + QUICK_CHECK + "<...>\n\n"
    )
    assert result.details["totals"]["collab_checks"] == 2

    gen = Workers({k: list(v) for k, v in scripts.items()})
    ctx, result = run(gen, round_tokens=3, max_thread_tokens=9, collab_every=None, answer_tokens=0)
    assert QUICK_CHECK not in result.chain.text
    assert not [e for e in ctx.events if e["event"] == "collab_check"]


def test_quick_check_needs_more_than_collab_every_tokens_from_all_workers() -> None:
    gen = Workers({"Alice": [step(" go.", 6)], "Bob": [step(" ok.", 6)]})
    ctx, result = run(gen, round_tokens=6, max_thread_tokens=6, collab_every=6, answer_tokens=0)
    # Alice's 6 tokens are not more than 6; with Bob's (a shared count) they are
    assert result.chain.text.endswith(
        OTHERS + "**Alice [2]:** <...>\n\n**Bob [2]:** " + QUICK_CHECK + "<...>\n\n"
    )
    assert [e["worker"] for e in ctx.events if e["event"] == "collab_check"] == ["Bob"]


def test_a_boxed_answer_in_a_committed_step_ends_the_run() -> None:
    gen = Workers(
        {
            "Alice": [cut(" solve it", 4), step(" so the answer is \\boxed{4}.", 6)],
            "Bob": [step(" I'll verify.", 3), step("An empty \\boxed{} is no answer.", 5)],
        }
    )
    ctx, result = run(gen, round_tokens=8)
    assert len(gen.calls) == 4  # two rounds; no third, and no finisher: the answer is there
    assert result.chain.text == (
        BOB_1
        + " I'll verify.\n\n"
        + ALICE_1
        + " solve it so the answer is \\boxed{4}.\n\n"
        + "**Bob [2]:** An empty \\boxed{} is no answer.\n\n"
        + OTHERS
        + "**Alice [2]:** <...>\n\n**Bob [3]:** <...>\n\n"
    )
    assert result.chain.finish_reason == FinishReason.BOXED
    assert result.details["stopped"] == "answer" and result.details["finisher"] is None
    assert Grader().extract(result.chain.text) == "4"
    assert not [e for e in ctx.events if e["event"] == "finisher"]


def test_a_boxed_answer_still_being_written_does_not_end_the_run() -> None:
    gen = Workers({"Alice": [cut(" \\boxed{4}", 3)], "Bob": [cut(" hm", 3)]})
    _, result = run(gen, round_tokens=3, max_thread_tokens=6, answer_tokens=0)
    assert len(gen.calls) == 4 and result.details["stopped"] == "tokens"


def test_eos_commits_the_step_and_ends_only_that_worker() -> None:
    gen = Workers({"Alice": [cut(" think", 2)], "Bob": [eos(" bye", 1)]})
    _, result = run(gen, round_tokens=2, max_thread_tokens=4, answer_tokens=0)
    alice = gen.of("Alice")
    assert len(alice) == 2 and len(gen.of("Bob")) == 1
    # Bob's step is history; he has no step in progress to show
    assert alice[1][0] == HEAD + BOB_1 + " bye\n\n" + OTHERS + OWN + ALICE_1 + " think"
    assert result.chain.text == BOB_1 + " bye\n\n" + OTHERS + ALICE_1 + " thinkmore<...>\n\n"


def test_finisher_forces_an_answer_when_none_was_written() -> None:
    gen = Workers({"Alice": [cut(" think", 4)], "Bob": [cut(" think too", 4)]})
    ctx, result = run(gen, round_tokens=4, max_thread_tokens=4)
    merged = OTHERS + ALICE_1 + " think<...>\n\n" + BOB_1 + " think too<...>\n\n"
    prompt, sampling = gen.calls[-1]
    assert prompt == HEAD + merged + FINISHER
    assert sampling.temperature == 0.0 and sampling.max_tokens == 16 and sampling.stop == ()
    assert result.chain.text == merged + FINISHER + "4}"
    assert result.chain.finish_reason == FinishReason.EOS
    assert Grader().extract(result.chain.text) == "4"
    assert [e["tokens"] for e in ctx.events if e["event"] == "finisher"] == [2]
    assert ctx.ledger.samples == 1  # the finisher continues the sample

    gen = Workers({"Alice": [cut(" think", 4)], "Bob": [cut(" think too", 4)]})
    ctx, result = run(gen, round_tokens=4, max_thread_tokens=4, answer_tokens=0)
    assert len(gen.calls) == 2 and result.chain.text == merged
    assert not [e for e in ctx.events if e["event"] == "finisher"]


def test_three_workers_see_the_others_in_worker_order() -> None:
    gen = Workers(
        {"Alice": [step(" go.", 2)], "Bob": [step(" Yes.", 2)], "Carol": [step(" Ok!", 2)]},
        delay={"Alice": 0.02, "Bob": 0.01},
    )
    names = ["Alice", "Bob", "Carol"]
    ctx, result = run(gen, workers=names, round_tokens=2, max_thread_tokens=2, answer_tokens=0)
    carol_1 = "**Carol [1]:** Hi, I'm Carol."
    views = {n: gen.of(n)[0][0] for n in names}
    cut_off = "<...>\n\n"
    assert views["Alice"] == HEAD + OTHERS + BOB_1 + cut_off + carol_1 + cut_off + OWN + ALICE_1
    assert views["Bob"] == HEAD + OTHERS + ALICE_1 + cut_off + carol_1 + cut_off + OWN + BOB_1
    assert views["Carol"] == HEAD + OTHERS + ALICE_1 + cut_off + BOB_1 + cut_off + OWN + carol_1
    assert gen.arrivals == ["Carol", "Bob", "Alice"]
    assert result.chain.text == (
        ALICE_1
        + " go.\n\n"
        + BOB_1
        + " Yes.\n\n"
        + carol_1
        + " Ok!\n\n"
        + OTHERS
        + "**Alice [2]:** <...>\n\n**Bob [2]:** <...>\n\n**Carol [2]:** <...>\n\n"
    )
    assert ctx.ledger.samples == 1


# --- tree, metrics, budget ----------------------------------------------------------------------


def test_rounds_are_tree_layers_and_the_critical_path_takes_each_rounds_longest_call() -> None:
    gen = Workers(
        {"Alice": [cut("a", 5), cut("b", 5)], "Bob": [step(" b.", 2), cut("c", 3)]},
    )
    ctx, result = run(gen, round_tokens=5, max_thread_tokens=10)
    tree = ctx.tree
    rounds: dict[int, list[str]] = {}
    for node, data in tree.graph.nodes(data=True):
        if "round" in data:
            rounds.setdefault(data["round"], []).append(node)
    assert sorted(len(v) for v in rounds.values()) == [1, 2, 2]  # Alice is done after round 2
    assert all(tree.parents(n) == [ROOT] for n in rounds[1])
    assert all(set(tree.parents(n)) == set(rounds[1]) for n in rounds[2])
    assert all(set(tree.parents(n)) == set(rounds[2]) for n in rounds[3])
    assert [tree.node(n)["worker"] for n in rounds[3]] == ["Bob"]
    finisher = result.chain.id
    (joined,) = tree.parents(finisher)
    assert tree.status(joined) == NodeStatus.JOINED and tree.node(joined)["generated"] == 0
    # the join merges every worker: Alice's last call (round 2) and Bob's (round 3)
    alice_last = next(n for n in rounds[2] if tree.node(n)["worker"] == "Alice")
    assert tree.parents(joined) == [alice_last, *rounds[3]]
    assert tree.status(finisher) == NodeStatus.FINISHED and tree.node(finisher)["generated"] == 2
    # rounds: max(5, 2) + max(5, 3) + 5 (Bob alone) + the finisher's 2
    assert tree.critical_path_tokens() == 17
    # the tree is the one place the critical path is computed (Context.settle records it)
    assert "critical_path_tokens" not in result.details["totals"]
    assert ctx.ledger.generated_tokens == result.details["totals"]["decoded_tokens"] == 22
    assert result.details["totals"]["rounds"] == 3
    assert result.details["totals"]["sequential_steps"] == 15


def test_round_metrics_count_reprefill_and_shared_prefix_hits() -> None:
    gen = TokenizingWorkers({"Alice": [step(" split the work.", 4)], "Bob": [cut(" ok", 4)]})
    _, result = run(gen, round_tokens=4, max_thread_tokens=8, answer_tokens=0)
    r1, r2 = result.details["rounds"]
    calls = [len(p.split()) for p, _ in gen.calls]
    assert r1["calls"] == r2["calls"] == 2
    assert r1["prompt_tokens"] == calls[0] + calls[1]
    assert r2["prompt_tokens"] == calls[2] + calls[3]
    assert r1["cached_prompt_tokens"] == r2["cached_prompt_tokens"] == 2 * CACHED
    assert r1["reprefill_tokens"] == r1["prompt_tokens"] - 2 * CACHED
    assert r2["reprefill_tokens"] == r2["prompt_tokens"] - 2 * CACHED
    # the head is 7 words; round 2 adds Alice's committed step of 12
    assert r1["shared_prefix_tokens"] == 7 and r1["shared_cache_hit_rate"] == 1.0
    assert r2["shared_prefix_tokens"] == 19
    assert r2["shared_cache_hit_rate"] == pytest.approx(10 / 19)
    totals = result.details["totals"]
    assert totals["reprefill_tokens"] == r1["reprefill_tokens"] + r2["reprefill_tokens"]
    assert totals["prompt_tokens"] == sum(calls)

    _, plain = run(Workers(), round_tokens=4, max_thread_tokens=4, answer_tokens=0)
    (only,) = plain.details["rounds"]
    assert only["shared_prefix_tokens"] is None and only["shared_cache_hit_rate"] is None


class CountingWorkers(TokenizingWorkers):
    """Tokenizing workers that keep every text they were asked to tokenize."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoded: list[str] = []

    def tokenize(self, text: str) -> tuple[int, ...]:
        self.encoded.append(text)
        return super().tokenize(text)


def test_the_shared_prefix_is_encoded_once_per_part_not_once_per_round() -> None:
    # re-encoding the head plus the whole history every round made a rollout quadratic; the
    # head and each committed step are encoded once
    steps = [step(f" step {i} done.", 3) for i in range(3)]
    gen = CountingWorkers({"Alice": steps, "Bob": [cut(" ok", 4)] * 4})
    _, result = run(gen, round_tokens=4, max_thread_tokens=16, answer_tokens=0)
    rounds = result.details["rounds"]
    # the head is encoded once, as the rules every problem shares and the rest of it
    rules, rest = gen.encoded[:2]
    assert rules.endswith("RULES\n\n") and "RULES" not in rest
    assert len(rounds) >= 4 and len((rules + rest).split()) == rounds[0]["shared_prefix_tokens"]
    assert rounds[0]["shared_prefix_tokens"] == 7
    assert not any(rules + rest in text for text in gen.encoded)
    # each committed step once (the Context also counts the calls' own texts: no ids here)
    commits = [t for t in gen.encoded if t.startswith("**")]
    assert len(commits) == len(set(commits)) >= 3
    assert 7 < rounds[-1]["shared_prefix_tokens"] <= 7 + sum(len(t.split()) for t in commits)
    # another problem of the run on the same backend: its rules are not encoded again
    seen = len(gen.encoded)
    _, other = run(gen, round_tokens=4, max_thread_tokens=8, answer_tokens=0)
    assert other.details["rounds"][0]["shared_prefix_tokens"] == 7
    assert not any(t.endswith("RULES\n\n") for t in gen.encoded[seen:])


def test_concurrent_workers_stay_inside_a_token_budget() -> None:
    gen = Workers()  # every call writes all it may
    budget = Budget(generated_tokens=30)
    ctx, result = run(gen, budget=budget, workers=["Alice", "Bob", "Carol"], round_tokens=8)
    assert 30 <= ctx.ledger.generated_tokens <= 30 + 3
    assert result.details["stopped"] == "budget"
    assert result.chain.finish_reason in (FinishReason.BUDGET, FinishReason.LENGTH)
    assert ctx.ledger.samples == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workers", ["Alice"]),
        ("workers", "Alice"),
        ("workers", ["Alice", "Alice"]),
        ("workers", ["Alice", ""]),
        ("round_tokens", 0),
        ("round_tokens", True),
        ("max_thread_tokens", 0),
        ("collab_every", -1),
        ("answer_tokens", -1),
        ("answer_tokens", 1.5),
        ("rules", 3),
        ("rules_style", "long"),
        ("rules_file", 3),
    ],
)
def test_bad_settings_name_their_key(key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"search\.strategy\.{key} "):
        Hogwild(**{key: value})


def test_defaults_are_valid() -> None:
    policy = Hogwild(workers=("Ann", "Ben"), collab_every=0, max_thread_tokens=None)  # type: ignore[arg-type]
    assert policy.workers == ["Ann", "Ben"] and policy.round_tokens == 32
    assert Hogwild().workers == ["Alice", "Bob"] and Hogwild().answer_tokens == 16


def test_workers_share_one_context_capped_by_max_tokens() -> None:
    """An explicit per-worker cap above the shared context's room: the workers together never
    decode past max_tokens - answer_tokens, and the finisher still fits."""
    gen = Workers()  # out of script: every worker writes "more" up to its cap
    ctx, result = run(gen, max_tokens=30, round_tokens=8, max_thread_tokens=20, answer_tokens=6)
    worker_caps = [s.max_tokens for p, s in gen.calls if not p.endswith(FINISHER)]
    # round 1: 8 each; round 2: the 8 left go to Alice (worker order), none to Bob; then full
    assert worker_caps == [8, 8, 8] and sum(worker_caps) == 30 - 6
    assert sum(result.details["totals"]["worker_tokens"].values()) == 24
    assert result.details["stopped"] == "tokens"
    finisher = [s for p, s in gen.calls if p.endswith(FINISHER)]
    assert [s.max_tokens for s in finisher] == [6]
    assert ctx.tree.node(result.chain.id)["tokens"] <= 30
    assert ctx.ledger.generated_tokens <= 30
