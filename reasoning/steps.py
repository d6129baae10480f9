"""Splitting solution text into steps and rendering steps back: the one place that knows how.

A step is a paragraph: steps are separated by "\\n\\n", which is what step-level search
generates with stop="\\n\\n" and what every verifier reads (docs/data-model.md).

"\\n\\n" also appears inside LaTeX display blocks and lists, which would give "steps" of a few
characters or a lone `$$`; pieces shorter than `min_chars` are merged into the next step (the
papers do not say; this is our documented rule).
"""

from __future__ import annotations

import re
from dataclasses import replace

from reasoning.types import STEP_DELIMITER, Chain, Completion, chain_finish

MIN_STEP_CHARS = 8


def _merge_short(pieces: list[str], min_chars: int) -> list[str]:
    """Glue pieces shorter than `min_chars` onto the next one (the last onto the previous)."""
    out: list[str] = []
    carry = ""
    for piece in pieces:
        text = f"{carry}{STEP_DELIMITER}{piece}" if carry else piece
        if len(text.strip()) < min_chars:
            carry = text
            continue
        out.append(text)
        carry = ""
    if carry:
        if out:
            out[-1] = f"{out[-1]}{STEP_DELIMITER}{carry}"
        else:
            out.append(carry)
    return out


def split_steps(text: str, *, min_chars: int = MIN_STEP_CHARS) -> tuple[str, ...]:
    """The steps of `text`; never empty ("" gives one empty step)."""
    pieces = [p.strip("\n") for p in text.split(STEP_DELIMITER) if p.strip()]
    merged = _merge_short(pieces, min_chars) if min_chars > 0 else pieces
    return tuple(merged) or ("",)


def render_steps(steps: tuple[str, ...] | list[str]) -> str:
    """Steps back into text (inverse of split_steps up to whitespace)."""
    return STEP_DELIMITER.join(steps)


def collapse_steps(steps: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The whole text as one step, newline runs collapsed (as the particle-filtering paper's
    code does), so that no step boundary is left inside it."""
    return (re.sub(r"\n\s*\n", "\n", STEP_DELIMITER.join(steps)),)


def whole_prefix(chain: Chain) -> Chain:
    """`chain` as one step: what a verifier scores under "model aggregation"
    (`search.step_reduction=model`, docs/verifiers.md). Logprobs stay, scores go."""
    if not chain.steps:
        return chain
    return replace(chain, steps=collapse_steps(chain.steps), scores=())


def top_logprob_values(completion: Completion) -> tuple[tuple[float, ...], ...] | None:
    """The top-k logprob values per token, largest first (what confidence scores need)."""
    if completion.top_logprobs is None:
        return None
    return tuple(tuple(sorted(pos.values(), reverse=True)) for pos in completion.top_logprobs)


def chain_from_completion(completion: Completion, parent: Chain | None = None) -> Chain:
    """A finished chain holding a whole sampled solution."""
    base = parent or Chain()
    return Chain(
        steps=base.steps + split_steps(completion.text),
        scores=base.scores,
        tokens=base.tokens + completion.tokens,
        finished=True,
        finish_reason=chain_finish(completion),
        parent=base.id if parent is not None else None,
        logprobs=completion.logprobs,
        top_logprobs=top_logprob_values(completion),
    )
