"""Splitting solution text into steps and rendering steps back: the one place that knows how.

Formats:
- `blank_line`: steps separated by "\\n\\n" (what step-level search generates with stop="\\n\\n");
- `step_headers`: `## Step k:` blocks (the SAL prompt's format); text before the first header
  is a step of its own;
- `think`: a reasoning model's `<think>...</think>` trace split on paragraph breaks, and the
  answer after `</think>` as the last step.

"\\n\\n" also appears inside LaTeX display blocks and lists, which would give "steps" of a few
characters or a lone `$$`; pieces shorter than `min_chars` are merged into the next step (the
papers do not say; this is our documented rule).
"""

from __future__ import annotations

import re

from reasoning.types import STEP_DELIMITER, Chain, Completion, FinishReason

STEP_FORMATS = ("blank_line", "step_headers", "think")
MIN_STEP_CHARS = 8

_HEADER = re.compile(r"^(?=#{1,6}\s*Step\s+\d+\s*:)", re.MULTILINE | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)(.*)", re.DOTALL)


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


def _blank_line(text: str) -> list[str]:
    return [p.strip("\n") for p in text.split(STEP_DELIMITER) if p.strip()]


def split_steps(
    text: str, fmt: str = "blank_line", *, min_chars: int = MIN_STEP_CHARS
) -> tuple[str, ...]:
    """The steps of `text` in format `fmt`; never empty ("" gives one empty step)."""
    if fmt == "blank_line":
        pieces = _blank_line(text)
    elif fmt == "step_headers":
        pieces = [p.strip() for p in _HEADER.split(text) if p.strip()]
    elif fmt == "think":
        m = _THINK.search(text)
        if m is None:
            pieces = _blank_line(text)
        else:
            pieces = _blank_line(m.group(1))
            answer = m.group(2).strip()
            if answer:
                pieces.append(answer)
    else:
        raise ValueError(f"unknown step format {fmt!r}; valid: {list(STEP_FORMATS)}")
    merged = _merge_short(pieces, min_chars) if min_chars > 0 else pieces
    return tuple(merged) or ("",)


def render_steps(steps: tuple[str, ...] | list[str], fmt: str = "blank_line") -> str:
    """Steps back into text in format `fmt` (inverse of split_steps up to whitespace)."""
    if fmt == "blank_line":
        return STEP_DELIMITER.join(steps)
    if fmt == "step_headers":
        return STEP_DELIMITER.join(
            s if _HEADER.match(s) else f"## Step {i}: {s}" for i, s in enumerate(steps, 1)
        )
    if fmt == "think":
        if not steps:
            return "<think>\n</think>"
        *trace, answer = steps
        return f"<think>\n{STEP_DELIMITER.join(trace)}\n</think>\n\n{answer}"
    raise ValueError(f"unknown step format {fmt!r}; valid: {list(STEP_FORMATS)}")


def resplit(chain: Chain, fmt: str) -> tuple[str, ...]:
    """A chain's steps as a verifier with step format `fmt` wants them."""
    if fmt == "blank_line":
        return chain.steps
    return split_steps(chain.text, fmt)


def finish_reason(completion: Completion) -> FinishReason:
    """Why a whole sample ended: eos, stop (a stop string), length or abort."""
    if completion.hit_eos:
        return FinishReason.EOS
    try:
        return FinishReason(completion.finish_reason)
    except ValueError:  # a server's own reason (e.g. "content_filter"): it did not finish
        return FinishReason.ABORT


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
        finish_reason=finish_reason(completion),
        parent=base.id if parent is not None else None,
        logprobs=completion.logprobs,
        top_logprobs=top_logprob_values(completion),
    )
