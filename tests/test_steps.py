"""Step splitting and rendering: the formats every verifier and controller shares."""

from __future__ import annotations

import pytest

from reasoning import Chain
from reasoning.steps import render_steps, resplit, split_steps

SAL = (
    "## Step 1: Add the units\n3 + 5 = 8\n\n"
    "## Step 2: Check\nThe sum of 3 and 5 is 8.\n\n"
    "Therefore, the final answer is: $\\boxed{8}$. I hope it is correct."
)


def test_blank_line_steps() -> None:
    assert split_steps("First we add.\n\nThen we check.\n\n\n\nDone, it is 8.") == (
        "First we add.",
        "Then we check.",
        "Done, it is 8.",
    )
    assert split_steps("") == ("",)
    assert render_steps(("a step", "b step")) == "a step\n\nb step"


def test_short_pieces_merge_into_the_next_step() -> None:
    text = "We compute the sum:\n\n$$\n\n3 + 5 = 8\n\n$$\n\nSo the answer is 8."
    steps = split_steps(text)
    assert "$$" not in steps
    assert steps[0] == "We compute the sum:"
    assert steps[1].startswith("$$") and "3 + 5 = 8" in steps[1]
    assert steps[-1].endswith("So the answer is 8.")
    assert split_steps(text, min_chars=0)[1] == "$$"


def test_step_headers() -> None:
    steps = split_steps(SAL, "step_headers")
    assert len(steps) == 2
    assert steps[0].startswith("## Step 1: Add the units")
    assert steps[1].startswith("## Step 2: Check") and steps[1].endswith("I hope it is correct.")
    assert split_steps("Intro line here.\n## Step 1: go on", "step_headers") == (
        "Intro line here.",
        "## Step 1: go on",
    )
    assert render_steps(("add 3 and 5", "## Step 2: done"), "step_headers") == (
        "## Step 1: add 3 and 5\n\n## Step 2: done"
    )


def test_think_traces() -> None:
    text = (
        "<think>Let me add 3 and 5.\n\nThat is 8.\n\nCheck: 8 - 5 = 3.</think>"
        "\n\nThe answer is $\\boxed{8}$."
    )
    steps = split_steps(text, "think")
    assert steps == (
        "Let me add 3 and 5.",
        "That is 8.",
        "Check: 8 - 5 = 3.",
        "The answer is $\\boxed{8}$.",
    )
    assert split_steps(render_steps(steps, "think"), "think") == steps
    unfinished = split_steps("<think>Still thinking about it.\n\nMore thoughts here.", "think")
    assert unfinished == ("Still thinking about it.", "More thoughts here.")


def test_resplit_and_unknown_format() -> None:
    chain = Chain(steps=("## Step 1: a plus b", "## Step 2: equals c"))
    assert resplit(chain, "blank_line") is chain.steps
    assert resplit(chain, "step_headers") == chain.steps
    with pytest.raises(ValueError, match="valid"):
        split_steps("x", "lines")
