"""Thoughts: the pieces of a long chain of thought, split where the model changes its mind.

A thought ends at a blank line ("\\n\\n") whose next paragraph opens with a reflection cue
("Wait", "Alternatively", ...), as TrimR (arXiv 2505.17155) segments thinking. While the
model streams, the words after a blank line may not be visible yet: such a boundary stays
undecided until they are, so a policy never acts on half a word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from reasoning.settings import Allowed, NonEmptyText

Cues = Annotated[
    Sequence[NonEmptyText],
    Field(min_length=1),
    Allowed("a non-empty list of non-empty strings"),
    Field(
        description="a blank line followed by a paragraph opening with one of these ends a "
        "thought (where sdv probes, where trimr splits)"
    ),
]
"""Paragraph openings that mark a thought boundary (a list in the config)."""

REFLECTION_CUES: tuple[str, ...] = (
    "Wait",
    "But",
    "Alternatively",
    "Hmm",
    "Let me check",
    "Let me verify",
    "However",
    "Actually",
)
BREAK = "\n\n"


def opens_with_cue(paragraph: str, cues: Sequence[str]) -> bool | None:
    """Whether `paragraph` opens with one of `cues` as whole words; None while the visible
    start could still become one ("Wai", "Wait" with nothing after it yet)."""
    undecided = False
    for cue in cues:
        if paragraph.startswith(cue):
            rest = paragraph[len(cue) :]
            if not rest:
                undecided = True  # "Wait" might still grow into "Waiting"
            elif not rest[0].isalnum():
                return True
        elif cue.startswith(paragraph):
            undecided = True
    return None if undecided else False


class Thoughts:
    """Incremental splitter: feed it the growing text, get the boundaries decided since."""

    def __init__(self, cues: Sequence[str]) -> None:
        self.cues = tuple(cues)
        self.boundaries: list[int] = []  # char offsets where a finished thought ends
        self._pos = 0  # where the next blank line is searched from

    def update(self, text: str) -> list[int]:
        """New thought boundaries in `text` (offsets of their blank line), in order."""
        self._pos = min(self._pos, len(text))
        found: list[int] = []
        while True:
            at = text.find(BREAK, self._pos)
            if at < 0:
                self._pos = max(self._pos, len(text) - len(BREAK) + 1)
                return found
            start = at + len(BREAK)
            while start < len(text) and text[start].isspace():
                start += 1
            verdict = opens_with_cue(text[start:], self.cues) if start < len(text) else None
            if verdict is None:
                self._pos = at  # look again once more text is in
                return found
            if verdict and (not self.boundaries or at > self.boundaries[-1]):
                self.boundaries.append(at)
                found.append(at)
            self._pos = start

    @property
    def count(self) -> int:
        """Finished thoughts so far (the one being written is not counted)."""
        return len(self.boundaries)

    def span(self, k: int) -> tuple[int, int]:
        """Char span of finished thought k (0-based), without its closing blank line."""
        start = 0 if k == 0 else self.boundaries[k - 1] + len(BREAK)
        return start, self.boundaries[k]


def thought_boundaries(text: str, cues: Sequence[str] = REFLECTION_CUES) -> list[int]:
    """Offsets of the decided thought boundaries of `text` (pure; see `Thoughts`)."""
    return Thoughts(cues).update(text)
