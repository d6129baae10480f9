"""What a cached call is keyed on: the sha256 of a canonical JSON of everything it depends on.

A changed setting simply misses instead of returning a stale answer. `KEY_VERSION` is part of
every key: bump it when what a key covers changes (old files then miss rather than mislead).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from reasoning.types import Chain, Problem, Prompt, Sampling, TokenPrompt

# Part of every key: bump when what a key covers changes. 2: Sampling.logprob_token_ids (the
# judge's and generative PRM's scores changed with it, so their recorded calls must miss too).
KEY_VERSION = 2


def cache_key(payload: Mapping[str, Any]) -> str:
    """sha256 of a canonical JSON (sorted keys, no whitespace): the same call, the same key."""
    text = json.dumps(
        {"v": KEY_VERSION, **payload}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_json(prompt: Prompt) -> str | dict[str, list[int]]:
    """A text prompt keys as itself (so keys recorded before token prompts still match)."""
    return {"ids": list(prompt.ids)} if isinstance(prompt, TokenPrompt) else prompt


def sampling_json(sampling: Sampling) -> dict[str, Any]:
    """A field added to `Sampling` later is left out at its default, so the keys recorded before
    it existed still match."""
    fields = asdict(sampling)
    if not fields["keep_special_tokens"]:
        del fields["keep_special_tokens"]
    return fields


def prompt_summary(prompt: Prompt) -> str:
    if isinstance(prompt, TokenPrompt):
        return f"<{len(prompt.ids)} token ids, ending {list(prompt.ids[-8:])}>"
    return prompt


def problem_json(problem: Problem) -> dict[str, Any]:
    """What a render or verifier call reads off a problem. A chat problem's conversation,
    tools and tool choice (and a raw prompt) join only when set, so two conversations that
    end in the same question miss each other while a plain problem keeps its old keys."""
    out: dict[str, Any] = {"id": problem.id, "question": problem.question}
    if problem.messages is not None:
        out["messages"] = [dict(m) for m in problem.messages]
    if problem.tools is not None:
        out["tools"] = [dict(t) for t in problem.tools]
    if problem.tool_choice is not None:
        out["tool_choice"] = problem.tool_choice
    if problem.prompt is not None:
        out["prompt"] = problem.prompt
    return out


def chain_json(chain: Chain) -> dict[str, Any]:
    """What a verifier may read off a chain: its steps, and logprobs where sampled (the
    confidence verifiers score those, so the same text sampled differently must miss)."""
    out: dict[str, Any] = {"steps": list(chain.steps)}
    if chain.logprobs is not None:
        out["logprobs"] = list(chain.logprobs)
    if chain.top_logprobs is not None:
        out["top_logprobs"] = [list(t) for t in chain.top_logprobs]
    return out
