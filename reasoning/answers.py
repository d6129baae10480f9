"""Answer-presence tests: has a text written a `\\boxed{...}` answer yet, and in which sense.

Controllers read text that may end anywhere (a decode round, a step, a child thread), so
"has an answer" means different things to them; each meaning is one function named for it,
and none of them extracts the answer (that is the judge's job, `reasoning.types.AnswerJudge`).
"""

from __future__ import annotations

BOXED = "\\boxed"
"""The answer marker every prompt asks for (`\\boxed{answer}`)."""
_OPENING = BOXED + "{"


def _closes(text: str, brace: int) -> int | None:
    """Where the group opened by the `{` at `brace` closes (its `}`), or None when it does not."""
    depth = 0
    for i in range(brace, len(text)):
        depth += (text[i] == "{") - (text[i] == "}")
        if depth == 0:
            return i
    return None


def _openings(text: str) -> list[int]:
    """The start of every `\\boxed{` in `text`, in order."""
    starts: list[int] = []
    at = text.find(_OPENING)
    while at >= 0:
        starts.append(at)
        at = text.find(_OPENING, at + 1)
    return starts


def mentions_box(text: str) -> bool:
    """Whether `text` writes `\\boxed` at all, closed or not: a whole step that starts its answer
    has given it (step-level search stops the chain there; the judge extracts what is inside)."""
    return BOXED in text


def last_box_closed(text: str) -> bool:
    """Whether the last `\\boxed{` is closed: text cut at a decode boundary may end inside
    one ("\\boxed{12" of 123), which is no answer yet."""
    at = text.rfind(_OPENING)
    return at >= 0 and _closes(text, at + len(BOXED)) is not None


def any_box_closed(text: str) -> bool:
    """Whether some `\\boxed{` in `text` has its braces closed (an unclosed later one does not
    take back an earlier answer)."""
    return any(_closes(text, at + len(BOXED)) is not None for at in _openings(text))


def nonempty_box_closed(text: str) -> bool:
    """Whether some `\\boxed{...}` closes before the next `\\boxed{` opens and holds more than
    whitespace: `\\boxed{}` or `\\boxed{ }` (a template echoed back) is no answer."""
    starts = _openings(text)
    for i, at in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        empty = text[at + len(_OPENING) :].lstrip().startswith("}")
        if not empty and _closes(text[:end], at + len(BOXED)) is not None:
            return True
    return False
