"""APR (search/threads/apr.py): calling blocks, child prompts, results, the exact join text,
recursion depth, the tree's critical path and the budget, on a scripted generator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.grading import Grader
from reasoning import Budget, Context
from reasoning.tree import NodeStatus
from reasoning.types import Chain, FinishReason, Problem, Sampling
from search.threads import Threads
from search.threads.apr import APR
from search.threads.apr_format import (
    DEFAULT_PREFIX,
    MalformedBlock,
    Node,
    calling_block,
    child_prompt,
    countdown_nodes,
    search_result,
)
from search.threads.runtime import RolloutResult, trimmed
from tests.fakes import RuleGenerator, words

PROBLEM = Problem("p", "What is 4 + 5?", "9")
COUNTDOWN = Problem(
    "countdown-0000",
    "Use the numbers 2, 3, 4, 1 to make 24.",
    "2 * 3 * 4 * 1",
    metadata={"task": "countdown", "numbers": [2, 3, 4, 1], "target": 24},
)


class Script(RuleGenerator):
    """A generator that answers from `rules` (question, prompt suffix, text): the first rule
    whose question the prompt asks and whose suffix ends it. One token per word; a stop string
    cuts the text and is left out of it (as vLLM does) but its words are counted; a text longer
    than `max_tokens` words is cut there ("length"). Calls yield first, so concurrent calls
    really overlap."""

    name = "apr-script"

    def __init__(self, rules: list[tuple[str, str, str]]) -> None:
        super().__init__(
            [(asks(question, suffix), text) for question, suffix, text in rules],
            unit=words,
            count_stop=True,
            delay_s=0.0,
        )

    def asked(self, question: str) -> list[str]:
        return [p for p in self.prompts if p.startswith(f"Q: {question}\nA: ")]


def asks(question: str, suffix: str) -> Callable[[str], bool]:
    return lambda prompt: prompt.startswith(f"Q: {question}\nA: ") and prompt.endswith(suffix)


def context(gen: Script, problem: Problem = PROBLEM, budget: Budget | None = None) -> Context:
    return Context(problem, gen, judge=Grader(), budget=budget)


def run(policy: APR, ctx: Context, max_tokens: int = 1000) -> RolloutResult:
    return asyncio.run(policy.rollout(ctx, Sampling(max_tokens=max_tokens), "r0"))


def block(*tasks: str, level: int = 1) -> str:
    lines = "".join(f"<Start Sub Search {i} at level {level}> {t}\n" for i, t in enumerate(tasks))
    return f"<Calling Sub Searches>\n{lines}<End Calling Sub Searches>"


# --- calling blocks -------------------------------------------------------------------------


def test_a_well_formed_block_gives_its_start_lines_and_where_it_starts() -> None:
    text = "I split.\n" + block("Moving to Node #0,0", "Check 4 + 5")
    got = calling_block(text)
    assert got.start == len("I split.\n")
    assert [(s.index, s.level, s.task) for s in got.searches] == [
        (0, 1, "Moving to Node #0,0"),
        (1, 1, "Check 4 + 5"),
    ]


def test_only_the_last_of_nested_blocks_counts() -> None:
    outer = "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> outer\n"
    text = outer + block("inner A", "inner B")
    got = calling_block(text)
    assert [s.task for s in got.searches] == ["inner A", "inner B"]
    assert got.start == len(outer)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<Calling Sub Searches>\n<Start Sub Search 0 at level 1> cut off", "no end line"),
        ("<Calling Sub Searches>\nsome thoughts\n<End Calling Sub Searches>", "no start lines"),
        ("<Calling Sub Searches>\n<End Calling Sub Searches>", "no start lines"),
        ("<Start Sub Search 0 at level 1> A\n<End Calling Sub Searches>", "no opening line"),
        (
            "<Calling Sub Searches>\n<Start Sub Search x at level 1> A\n<End Calling Sub Searches>",
            "bad start line",
        ),
        (
            "<Calling Sub Searches>\n<Start Sub Search 0 at level 1>\n<End Calling Sub Searches>",
            "bad start line",
        ),
    ],
)
def test_malformed_blocks_say_why(text: str, reason: str) -> None:
    with pytest.raises(MalformedBlock, match=reason):
        calling_block(text)


def test_stray_lines_in_a_block_are_ignored_as_the_reference_does() -> None:
    text = block("A").replace("\n", "\nplan:\n", 1)
    assert text.startswith("<Calling Sub Searches>\nplan:\n<Start Sub Search 0")
    assert [s.task for s in calling_block(text).searches] == ["A"]


# --- Countdown nodes and child prompts -------------------------------------------------------

TRACE = (
    "Moving to Node #1\nCurrent State: 24:[4, 6], Operations: ['2*3=6', '4-3=1']\n"
    "Exploring Operation: 4*6=24, Resulting Numbers: [24]\n"
    "Generated Node #1,0: 24:[24] Operation: 4*6=24\n"
    "Generated Node #7,0: 24:[1] Operation: 1*1=1\n"  # parent #7 unknown: skipped
    "Moving to Node #2\nCurrent State: 24:[2, x], Operations: []\n"  # bad numbers: skipped
    "Moving to Node #3\nCurrent State: 24:[2, 5], Operations: [__import__('os')]\n"  # not a literal
)


def test_nodes_from_state_pairs_and_generated_lines() -> None:
    nodes = countdown_nodes(TRACE, Node("0", 24, (2, 3, 4, 1), ()))
    assert set(nodes) == {"0", "1", "1,0"}
    assert nodes["1"] == Node("1", 24, (4, 6), ("2*3=6", "4-3=1"))
    assert nodes["1,0"] == Node("1,0", 24, (24,), ("2*3=6", "4-3=1", "4*6=24"))


def test_child_prompt_is_the_reference_node_prompt_or_the_task_itself() -> None:
    nodes = countdown_nodes(TRACE)
    assert child_prompt("Moving to Node #1,0", nodes) == (
        "Moving to Node #1,0\nCurrent State: 24:[24], Operations: ['2*3=6', '4-3=1', '4*6=24']"
    )
    assert child_prompt("Moving to Node #9", nodes) == "Moving to Node #9"  # unknown node
    assert child_prompt("Check 4 + 5", nodes) == "Check 4 + 5"


# --- results ---------------------------------------------------------------------------------

SOLVED = (
    "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n24,24 equal: Goal Reached\n"
    "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 1], Operations: []\n"
    "Exploring Operation: 2*3=6, Resulting Numbers: [4, 1, 6]\n24,24 equal: Goal Reached\n"
)
PATH = (
    "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 1], Operations: []\n"
    "Exploring Operation: 2*3=6, Resulting Numbers: [4, 1, 6]\n24,24 equal: Goal Reached"
)


def test_results_goal_reached_twice_boxed_or_none() -> None:
    assert search_result(SOLVED) == PATH
    assert search_result("x equal: Goal Reached\n") is None  # once is not a replayed path
    assert (
        search_result("first \\boxed{8}\n\nthen \\boxed{9} done\n\nbye") == "then \\boxed{9} done"
    )
    assert search_result("open \\boxed{9") is None
    assert search_result("No solution found.") is None
    # a nested join's "<Goal Reached in ...>" lines are not the model's own marks
    joined = (
        "<Goal Reached in Sub Search 0 at level 2 at Node 0>\nx\n"
        "<Goal Reached in Sub Search 1 at level 2 at Node 1>\ny"
    )
    assert search_result(joined) is None


def test_trimmed_cuts_inside_a_step_and_keeps_the_id() -> None:
    chain = Chain(delimiter="").extend("ab", tokens=1).extend("cde", tokens=2)
    cut_chain = trimmed(chain, 3)
    assert cut_chain.steps == ("ab", "c") and cut_chain.id == chain.id and cut_chain.tokens == 3


# --- whole rollouts --------------------------------------------------------------------------


def generic_script() -> Script:
    return Script(
        [
            ("Find the answer to: What is 4 + 5?", "A: ", "4 plus 5 is nine.\n\nSo \\boxed{9}"),
            ("Check the answer to: What is 4 + 5?", "A: ", "I cannot check it."),
            ("What is 4 + 5?", "<End Sub Searches>\n", "The answer is \\boxed{9}"),
        ]
    )


def test_default_prefix_spawns_two_children_and_joins_their_results() -> None:
    gen = generic_script()
    ctx = context(gen)
    result = run(APR(), ctx)
    expected = (
        "<Sub Searches>\n"
        "<Goal Reached in Sub Search 0 at level 1 at Node 0>\nSo \\boxed{9}\n"
        "<No Solution in Sub Search 1 at level 1 at Node 1>\n"
        "<End Sub Searches>\n"
        "The answer is \\boxed{9}"
    )
    assert result.chain.text == expected and result.chain.finished
    assert result.chain.finish_reason == FinishReason.EOS
    # children read only their task, in the problem's template: never the parent's text
    assert gen.asked("Find the answer to: What is 4 + 5?") == [
        "Q: Find the answer to: What is 4 + 5?\nA: "
    ]
    assert all("Calling" not in p for p in gen.prompts)
    # 7 + 4 words for the children, 4 for the parent's last segment
    assert ctx.ledger.generated_tokens == 15
    assert ctx.tree.critical_path_tokens() == 7 + 4  # the forced block decoded nothing
    assert result.details["spawns"] == [
        {
            "label": "r0",
            "depth": 0,
            "tasks": ["Find the answer to: What is 4 + 5?", "Check the answer to: What is 4 + 5?"],
            "dropped": 0,
            "child_tokens": [7, 4],
            "solved": [True, False],
        }
    ]
    assert ctx.ledger.samples == 1  # the first child's call started the rollout's sample


def test_the_tree_has_a_forked_spawn_children_and_a_joined_node() -> None:
    ctx = context(generic_script())
    result = run(APR(), ctx)
    tree = ctx.tree
    joined = [n for n in tree.graph.nodes if tree.graph.nodes[n]["status"] == NodeStatus.JOINED]
    assert len(joined) == 1
    kids = tree.parents(joined[0])
    assert len(kids) == 2
    (spawn,) = {tree.parents(k)[0] for k in kids}
    assert tree.status(spawn) == NodeStatus.FORKED
    assert tree.node(spawn)["step"] == DEFAULT_PREFIX.replace("{question}", "What is 4 + 5?")
    assert sorted(tree.node(k)["thread"] for k in kids) == ["r0/0", "r0/1"]
    assert tree.parents(result.chain.id) == [joined[0]]
    assert tree.status(result.chain.id) == NodeStatus.FINISHED
    assert [e["event"] for e in ctx.events] == ["fork", "join"]


PARENT = (
    "Exploring Operation: 2*3=6, Resulting Numbers: [4, 1, 6]\n"
    "Generated Node #0,0: 24:[4, 1, 6] Operation: 2*3=6\n"
    "Exploring Operation: 4-1=3, Resulting Numbers: [2, 3, 3]\n"
    "Generated Node #0,1: 24:[2, 3, 3] Operation: 4-1=3\n"
)
CHILD_0 = "Moving to Node #0,0\nCurrent State: 24:[4, 1, 6], Operations: ['2*3=6']"
CHILD_1 = "Moving to Node #0,1\nCurrent State: 24:[2, 3, 3], Operations: ['4-1=3']"


def test_countdown_nodes_prompts_and_the_exact_join() -> None:
    question = COUNTDOWN.question
    gen = Script(
        [
            (
                question,
                "Sub Call Budget: 2 ",
                PARENT + block("Moving to Node #0,0", "Moving to Node #0,1") + "\nnever read",
            ),
            (CHILD_0, "A: ", "Exploring Operation: 4*6=24, Resulting Numbers: [1, 24]\n" + SOLVED),
            (
                CHILD_1,
                "A: ",
                "Exploring Operation: 3*3=9, Resulting Numbers: [2, 9]\nNo solution found.",
            ),
            (question, "<End Sub Searches>\n", "24,24 equal: Goal Reached"),
        ]
    )
    ctx = context(gen, COUNTDOWN)
    result = run(APR(prefix="", sub_call_budget=2), ctx)
    assert result.chain.text == (
        "Sub Call Budget: 2 "
        + PARENT
        + "<Sub Searches>\n"
        + "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n"
        + PATH
        + "\n<No Solution in Sub Search 1 at level 1 at Node #0,1>\n"
        + "<End Sub Searches>\n"
        + "24,24 equal: Goal Reached"
    )
    # each child's context is its node's state only (no budget line, no parent trace)
    assert gen.asked(CHILD_0) == [f"Q: {CHILD_0}\nA: "]
    assert gen.asked(CHILD_1) == [f"Q: {CHILD_1}\nA: "]
    assert not any("Exploring Operation: 2*3=6" in p for p in gen.asked(CHILD_0))
    assert gen.prompts[0] == f"Q: {question}\nA: Sub Call Budget: 2 "


def test_results_written_by_the_parent_become_a_calling_line() -> None:
    gen = Script(
        [
            ("What is 4 + 5?", "A: ", "Let me split. <Sub Searches> made up"),
            (
                "What is 4 + 5?",
                "split. <Calling Sub Searches>",
                "\n<Start Sub Search 0 at level 1> add\n<End Calling Sub Searches>",
            ),
            ("add", "A: ", "\\boxed{9}"),
            ("What is 4 + 5?", "<End Sub Searches>\n", "so \\boxed{9}"),
        ]
    )
    ctx = context(gen)
    result = run(APR(prefix=""), ctx)
    assert result.chain.text == (
        "Let me split. <Sub Searches>\n"
        "<Goal Reached in Sub Search 0 at level 1 at Node 0>\n\\boxed{9}\n"
        "<End Sub Searches>\nso \\boxed{9}"
    )
    assert "made up" not in "".join(gen.prompts)


def test_a_malformed_block_falls_back_to_sequential_decoding() -> None:
    gen = Script(
        [
            (
                "What is 4 + 5?",
                "A: ",
                "<Calling Sub Searches>\nno lines\n<End Calling Sub Searches>",
            ),
            ("What is 4 + 5?", "<End Calling Sub Searches>", "\nso \\boxed{9}"),
        ]
    )
    ctx = context(gen)
    result = run(APR(prefix=""), ctx)
    assert (
        result.chain.text
        == "<Calling Sub Searches>\nno lines\n<End Calling Sub Searches>\nso \\boxed{9}"
    )
    assert result.details["fallbacks"] == 1 and result.details["spawns"] == []
    assert {
        "event": "fallback",
        "policy": "apr",
        "reason": "no start lines",
        "at": "r0",
    } in ctx.events
    assert len(gen.prompts) == 2


def test_a_block_inside_a_childs_result_is_never_read_as_the_parents() -> None:
    child = "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> X\n<End Calling Sub Searches>"
    gen = Script(
        [
            ("A", "A: ", child + " \\boxed{1}"),
            ("What is 4 + 5?", "<End Sub Searches>\n", "stray <End Calling Sub Searches> tail"),
            ("What is 4 + 5?", "<End Calling Sub Searches>", " \\boxed{1}"),
        ]
    )
    ctx = context(gen)
    result = run(APR(prefix=block("A")), ctx)
    assert gen.asked("X") == []
    assert result.details["fallbacks"] == 1 and len(result.details["spawns"]) == 1
    assert result.chain.text.endswith(
        "<End Sub Searches>\nstray <End Calling Sub Searches> \\boxed{1}"
    )


def test_max_children_drops_the_extra_start_lines() -> None:
    gen = Script(
        [
            ("A", "A: ", "\\boxed{1}"),
            ("B", "A: ", "\\boxed{2}"),
            ("What is 4 + 5?", "<End Sub Searches>\n", "done"),
        ]
    )
    ctx = context(gen)
    result = run(APR(prefix=block("A", "B", "C"), max_children=2), ctx)
    assert gen.asked("C") == []
    assert result.details["spawns"][0]["dropped"] == 1
    assert "Sub Search 2" not in result.chain.text


def nested_script() -> Script:
    return Script(
        [
            ("Sub A", "A: ", "Split. " + block("B", "C", level=2)),
            ("B", "A: ", "B wrote " + block("D", level=3) + "\n\nthen \\boxed{2}"),
            ("C", "A: ", "C fails"),
            ("Sub A", "<End Sub Searches>\n", "\n\nA got \\boxed{2}"),
            ("What is 4 + 5?", "<End Sub Searches>\n", "Final \\boxed{2}"),
        ]
    )


def test_children_spawn_up_to_max_depth_and_no_further() -> None:
    gen = nested_script()
    ctx = context(gen)
    result = run(APR(prefix=block("Sub A"), max_depth=2), ctx)
    assert gen.asked("D") == []  # B is at max depth: its block is text
    assert {"event": "not_expanded", "policy": "apr", "at": "r0/0/0"} in ctx.events
    assert result.chain.text == (
        "<Sub Searches>\n<Goal Reached in Sub Search 0 at level 1 at Node 0>\n"
        "A got \\boxed{2}\n<End Sub Searches>\nFinal \\boxed{2}"
    )
    # the child's own context after its join
    (after,) = [p for p in gen.asked("Sub A") if p.endswith("<End Sub Searches>\n")]
    assert after == (
        "Q: Sub A\nA: Split. <Sub Searches>\n"
        "<Goal Reached in Sub Search 0 at level 2 at Node 0.0>\nthen \\boxed{2}\n"
        "<No Solution in Sub Search 1 at level 2 at Node 0.1>\n<End Sub Searches>\n"
    )
    # words: Sub A 24 (1 + 3 + 8 + 8 + its stop's 4), B 19 (2 + 3 + 8 + 4 + 2), C 2,
    # Sub A after its join 3, the root after its join 2
    assert ctx.ledger.generated_tokens == 24 + 19 + 2 + 3 + 2
    assert ctx.tree.critical_path_tokens() == 24 + 19 + 3 + 2  # C waits for nobody
    assert [(s["label"], s["depth"], s["child_tokens"]) for s in result.details["spawns"]] == [
        ("r0/0", 1, [19, 2]),
        ("r0", 0, [24 + 19 + 2 + 3]),
    ]


def test_max_depth_one_does_not_expand_a_childs_block() -> None:
    gen = nested_script()
    ctx = context(gen)
    result = run(APR(prefix=block("Sub A")), ctx)
    assert gen.asked("B") == [] and gen.asked("C") == []
    assert len(result.details["spawns"]) == 1
    # the child's text ends in its unexpanded block, which is no result
    assert "<No Solution in Sub Search 0 at level 1 at Node 0>" in result.chain.text


def test_children_share_the_budget_and_the_rollout_ends_cleanly() -> None:
    tasks = [f"T{i}" for i in range(8)]
    long = " ".join(["w"] * 30) + " \\boxed{1}"
    gen = Script([(t, "A: ", long) for t in tasks] + [("What is 4 + 5?", "", "the end \\boxed{1}")])
    ctx = context(gen, budget=Budget(generated_tokens=100))
    result = run(APR(prefix=block(*tasks)), ctx)
    assert 90 <= ctx.ledger.generated_tokens <= 100 + len(tasks)
    assert result.chain.finished and result.chain.finish_reason == FinishReason.BUDGET
    assert ctx.stopped_by == "generated_tokens"
    assert result.chain.text.startswith("<Sub Searches>\n") and result.chain.text.endswith(
        "<End Sub Searches>\n"
    )


def test_max_thread_tokens_caps_each_child() -> None:
    gen = Script(
        [
            ("A", "A: ", "one two three four five \\boxed{1}"),
            ("What is 4 + 5?", "<End Sub Searches>\n", "ok"),
        ]
    )
    ctx = context(gen)
    result = run(APR(prefix=block("A") + "\n", max_thread_tokens=3), ctx)  # a forced block
    assert result.details["spawns"][0]["child_tokens"] == [3]
    assert "<No Solution in Sub Search 0" in result.chain.text  # cut before its box


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_depth", 0),
        ("max_depth", None),
        ("max_thread_tokens", 0),
        ("max_children", True),
        ("sub_call_budget", -1),
        ("prefix", 3),
    ],
)
def test_bad_settings_name_their_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"search\.strategy\.{key}"):
        APR(**{key: value})  # type: ignore[arg-type]


def test_max_tokens_caps_every_context_separately() -> None:
    """The parent's context and each child's are capped by max_tokens on their own: a child
    gets what is left of its parent's, and the parent's cap counts only what it decodes."""
    long = " ".join(["w"] * 20)
    gen = Script([("A", "A: ", long), ("B", "A: ", long), ("What is 4 + 5?", "Searches>\n", long)])
    ctx = context(gen)
    result = run(APR(prefix=block("A", "B") + "\n"), ctx, max_tokens=6)  # a forced block
    assert result.details["spawns"][0]["child_tokens"] == [6, 6]
    decoded: dict[str, int] = {}
    for node in ctx.tree.graph.nodes.values():
        if "thread" in node:
            decoded[node["thread"]] = decoded.get(node["thread"], 0) + node["generated"]
    assert decoded == {"r0": 6, "r0/0": 6, "r0/1": 6}
    assert result.chain.finish_reason == "length"


# --- fan-out bounds (issue 19: 20 start lines per block at max_depth=3 made 8,842 calls) ------


def flood(width: int) -> RuleGenerator:
    """A model that writes a calling block of `width` start lines in every fresh context, and
    a short boxed answer wherever it goes on after a join or an unexpanded block."""

    def spawn_block(prompt: str, sampling: Sampling) -> str:
        return "Split. " + block(*(f"T{i}" for i in range(width)))

    return RuleGenerator(
        [
            ("A: ", spawn_block),
            ("<End Sub Searches>\n", "done \\boxed{1}"),
            (lambda prompt: True, " then \\boxed{1}"),
        ],
        unit=words,
        count_stop=True,
        delay_s=0.0,
    )


def test_the_issue_case_is_bounded_by_default() -> None:
    gen = flood(20)
    ctx = context(gen)
    result = run(APR(prefix="", max_depth=3), ctx)
    spawned = sum(len(s["tasks"]) for s in result.details["spawns"])
    assert spawned == APR().max_spawns == 32
    assert ctx.ledger.generator_calls <= 2 * (1 + 32) + len(result.details["spawns"])
    caps = [e["cap"] for e in ctx.events if e["event"] == "dropped_children"]
    assert caps[0] == "max_children" and "max_spawns" in caps
    assert any(e["event"] == "not_expanded" for e in ctx.events)
    assert result.chain.text.endswith("done \\boxed{1}")  # the root still answers


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 25),
    depth=st.integers(1, 4),
    max_children=st.one_of(st.none(), st.integers(1, 10)),
    max_spawns=st.integers(1, 40),
)
def test_fan_out_never_passes_its_caps(
    width: int, depth: int, max_children: int | None, max_spawns: int
) -> None:
    """Property: however many start lines the model writes and however deep spawning may go,
    a rollout spawns at most `max_spawns` contexts, at most `max_children` per block, and makes
    at most two calls per context plus one per block."""
    gen = flood(width)
    ctx = context(gen)
    policy = APR(prefix="", max_depth=depth, max_children=max_children, max_spawns=max_spawns)
    result = run(policy, ctx)
    spawns = result.details["spawns"]
    spawned = sum(len(s["tasks"]) for s in spawns)
    assert spawned <= max_spawns
    assert all(len(s["tasks"]) <= (max_children or width) for s in spawns)
    assert ctx.ledger.generator_calls <= 2 * (1 + spawned) + len(spawns)
    assert result.chain.finished


# --- APR as its evaluator runs it: raw prompts, its sampling, its grading -----------------------

BOS = "<s>"
ROOT_0 = "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 1], Operations: []"
# a trained model's root: explores, spawns two nodes, and after the join writes the path again
ROOT_TRACE = "\n" + PARENT + block("Moving to Node #0,0", "Moving to Node #0,1")
CHILD_TRACE = (
    "\nExploring Operation: 4*6=24, Resulting Numbers: [1, 24]\n"
    "Generated Node #0,0,0: 24:[1, 24] Operation: 4*6=24\n"
    "Moving to Node #0,0,0\nCurrent State: 24:[1, 24], Operations: ['2*3=6', '4*6=24']\n"
    "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n24,24 equal: Goal Reached\n"
    "Moving to Node #0,0\nCurrent State: 24:[4, 1, 6], Operations: ['2*3=6']\n"
    "Exploring Operation: 4*6=24, Resulting Numbers: [1, 24]\n"
    "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n24,24 equal: Goal Reached\n"
)
FINAL_PATH = (
    "Moving to Node #0\nCurrent State: 24:[2, 3, 4, 1], Operations: []\n"
    "Exploring Operation: 2*3=6, Resulting Numbers: [4, 1, 6]\n"
    "Exploring Operation: 4*6=24, Resulting Numbers: [1, 24]\n"
    "Exploring Operation: 24*1=24, Resulting Numbers: [24]\n24,24 equal: Goal Reached"
)
ROOT_END = "Sub search 0 solved it.\n24,24 equal: Goal Reached\n" + FINAL_PATH + "\n"


class RawModel(RuleGenerator):
    """A trained APR model on a completion endpoint: answers raw prompts (no template) by
    their ending, and has a tokenizer whose BOS token is `<s>`."""

    name = "apr-raw"

    def __init__(self) -> None:
        super().__init__(
            [
                (lambda p: p.endswith(ROOT_0), ROOT_TRACE),
                (lambda p: p.removeprefix(BOS) == CHILD_0, CHILD_TRACE),
                (
                    lambda p: p.removeprefix(BOS) == CHILD_1,
                    "\nExploring Operation: 3*3=9\nNo solution.",
                ),
                ("<End Sub Searches>\n", ROOT_END),
            ],
            unit=words,
            count_stop=True,
            delay_s=0.0,
        )
        self.tokenizer = type("Tokenizer", (), {"bos_token": BOS})()


def test_raw_prompts_are_apr_s_text_without_a_template() -> None:
    gen = RawModel()
    ctx = context(gen, COUNTDOWN)
    result = run(APR(prompt="raw", sub_call_budget=2), ctx)
    # the root: BOS, the sub-call budget, node #0 from the problem's metadata; no "Q: ... A: "
    assert gen.prompts[0] == BOS + "Sub Call Budget: 2 " + ROOT_0
    # each child: BOS and its node's state, nothing else
    assert sorted(gen.prompts[1:3]) == [BOS + CHILD_0, BOS + CHILD_1]
    assert not any(p.startswith("Q: ") for p in gen.prompts)
    assert result.chain.text.endswith(ROOT_END) and "Calling" not in result.chain.text
    # the null prefix forces nothing under raw: the root's text starts with what it decoded
    assert result.chain.text.startswith(ROOT_TRACE[:40])


def test_raw_without_budget_and_without_a_tokenizer() -> None:
    gen = RawModel()
    del gen.tokenizer
    ctx = context(gen, COUNTDOWN)
    run(APR(prompt="raw"), ctx)
    assert gen.prompts[0] == ROOT_0
    assert sorted(gen.prompts[1:3]) == [CHILD_0, CHILD_1]


def test_raw_refuses_a_problem_that_is_not_countdown() -> None:
    ctx = context(RawModel(), PROBLEM)
    with pytest.raises(ValueError, match=r"search\.strategy\.prompt=raw .* problem 'p' has none"):
        run(APR(prompt="raw"), ctx)
    assert APR().prompt == "chat"  # untrained models keep the chat template by default


def test_apr_as_published_samples_at_its_temperature_and_scores_by_its_path() -> None:
    """search.temperature / top_p reach every call (root and children), and the root's output
    is graded as APR grades it: its replayed path, through the problem-bound judge."""
    gen = RawModel()
    grader = Grader()
    ctx = Context(COUNTDOWN, gen, judge=grader)
    search = Threads(strategy=APR(prompt="raw"), temperature=1.0, top_p=1.0, max_tokens=4096)
    outcome = asyncio.run(search.run(COUNTDOWN, ctx))
    assert len(gen.calls) == 4  # root, two children, the root after the join
    assert {(s.temperature, s.top_p) for _, s in gen.calls} == {(1.0, 1.0)}
    assert outcome.answer == FINAL_PATH
    grade = asyncio.run(grader.grade(outcome.answer, COUNTDOWN.answer, COUNTDOWN))
    assert grade.correct is True, grade.reason
