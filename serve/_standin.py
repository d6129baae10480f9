"""Stand-ins until reasoning.chat lands (the integrator deletes this file at merge).

# stand-in until reasoning.chat lands: the agreed interface (BRIEF interface 2), minimally:
# the conversation's last user message is the question; thinking split by the model's tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasoning.types import Problem

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    content: str | None
    reasoning: str | None
    tool_calls: tuple[ToolCall, ...] = ()


def chat_problem(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    id: str,
) -> Problem:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    question = None
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be an object")
        if m.get("role") not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ValueError(f"messages[{i}].content must be a string or a list of parts")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if m["role"] == "user":
            question = content or ""
    if question is None:
        raise ValueError("messages must hold a user message")
    return Problem(id=id, question=question, metadata={"messages": [dict(m) for m in messages]})


def completion_problem(prompt: str, *, id: str) -> Problem:
    return Problem(id=id, question=prompt)


def split_reply(text: str, problem: Problem, thinking: Any) -> Reply:
    if thinking is not None and thinking.close in text:
        head, _, tail = text.partition(thinking.close)
        return Reply(tail.strip() or None, head.replace(thinking.open, "", 1).strip())
    return Reply(text, None)
