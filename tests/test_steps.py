"""Step splitting and rendering: the one step format every verifier and controller shares."""

from __future__ import annotations

from reasoning.steps import render_steps, split_steps


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


def test_render_inverts_split() -> None:
    text = "Let me add 3 and 5.\n\nThat is 8.\n\nThe answer is $\\boxed{8}$."
    assert render_steps(split_steps(text)) == text
    assert split_steps(render_steps(split_steps(text))) == split_steps(text)
