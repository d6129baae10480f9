"""The answer-presence tests of the core: one per meaning, and texts on which the meanings part."""

from __future__ import annotations

import pytest

from reasoning.answers import any_box_closed, last_box_closed, mentions_box, nonempty_box_closed


def test_last_box_closed_reads_only_the_last_box() -> None:
    assert last_box_closed("so \\boxed{\\frac{1}{2}} done")
    assert not last_box_closed("so \\boxed{12") and not last_box_closed("so 12")
    # a decode round may stop inside a second box: the path has not answered (yet)
    assert not last_box_closed("\\boxed{3} or rather \\boxed{12")


def test_any_box_closed_keeps_an_earlier_answer() -> None:
    assert any_box_closed("\\boxed{3} or rather \\boxed{12")
    assert any_box_closed("\\boxed{\\boxed{5}")  # the inner box closes
    assert not any_box_closed("so \\boxed{12") and not any_box_closed("\\boxed 12")


def test_nonempty_box_closed_wants_something_inside() -> None:
    assert nonempty_box_closed("so \\boxed{4}.")
    assert nonempty_box_closed("\\boxed{\\frac{1}{2}} then \\boxed{")
    assert not nonempty_box_closed("so \\boxed{4") and not nonempty_box_closed(
        "\\boxed{ } and \\boxed{}"
    )
    assert not nonempty_box_closed("the answer is 4.")


def test_mentions_box_needs_no_braces() -> None:
    assert mentions_box("so the answer is \\boxed")
    assert not mentions_box("so the answer is 4")


@pytest.mark.parametrize(
    ("text", "last", "any_", "nonempty", "mention"),
    [
        ("\\boxed{}", True, True, False, True),  # an empty template echoed back
        ("\\boxed{7} then \\boxed{", False, True, True, True),
        ("\\boxed{8", False, False, False, True),
        ("no answer", False, False, False, False),
    ],
)
def test_the_meanings_part_where_they_should(
    text: str, last: bool, any_: bool, nonempty: bool, mention: bool
) -> None:
    assert last_box_closed(text) is last
    assert any_box_closed(text) is any_
    assert nonempty_box_closed(text) is nonempty
    assert mentions_box(text) is mention
