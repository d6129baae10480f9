"""Splitting solution text into steps and back (blank-line steps for now)."""

from __future__ import annotations

from reasoning.types import STEP_DELIMITER, Chain, Completion


def split_steps(text: str) -> tuple[str, ...]:
    """Blank-line separated steps, empty pieces dropped; "" gives one empty step."""
    steps = tuple(s for s in text.strip().split(STEP_DELIMITER) if s.strip())
    return steps or ("",)


def finish_reason(completion: Completion) -> str:
    """Why a sample ended, in the search tree's words: eos, stop, length or abort."""
    if completion.hit_eos:
        return "eos"
    return completion.finish_reason


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


def top_logprob_values(completion: Completion) -> tuple[tuple[float, ...], ...] | None:
    """The top-k logprob values per token, largest first (what confidence scores need)."""
    if completion.top_logprobs is None:
        return None
    return tuple(tuple(sorted(pos.values(), reverse=True)) for pos in completion.top_logprobs)
