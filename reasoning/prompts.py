"""Prompt rendering: the chat template applied once per problem, partial answers appended as text.

Siblings of a partial solution must share a byte-identical prompt prefix or the engine's prefix
cache misses, so the templated head is computed once per problem and the chain's steps are
appended verbatim (never re-templated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reasoning.types import Chain, Problem

SYSTEM_PROMPTS: dict[str, str] = {
    # Search-and-learn's step-by-step prompt: `## Step k:` blocks separated by blank lines make
    # "\n\n" a reliable step delimiter and end with a boxed answer.
    "steps": (
        "Solve the following math problem efficiently and clearly:\n\n"
        "- For simple problems (2 steps or fewer):\n"
        "Provide a concise solution with minimal explanation.\n\n"
        "- For complex problems (3 steps or more):\n"
        "Use this step-by-step format:\n\n"
        "## Step 1: [Concise description]\n[Brief explanation and calculations]\n\n"
        "## Step 2: [Concise description]\n[Brief explanation and calculations]\n\n"
        "...\n\n"
        "Regardless of the approach, always conclude with:\n\n"
        "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n"
        "Where [answer] is just the final number or expression that solves the problem."
    ),
    # The Qwen2.5-Math prompt.
    "qwen_math": "Please reason step by step, and put your final answer within \\boxed{}.",
    # Short enough for a 135M model to follow at all.
    "short": ("Solve the math problem step by step. Write the final answer as \\boxed{answer}."),
    "none": "",
}

# Llama-3.x templates insert today's date unless told otherwise: pin it so prompts (and the
# prefix cache, and the record/replay cache) are the same every day.
PINNED_TEMPLATE_KWARGS: dict[str, Any] = {"date_string": "26 Jul 2024"}


def system_prompt(name_or_text: str) -> str:
    """A named system prompt, or the text itself when it is not a known name."""
    return SYSTEM_PROMPTS.get(name_or_text, name_or_text)


def chat_prompt(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> str:
    """`messages` through the tokenizer's chat template, ending with the assistant's turn open;
    `tools` (OpenAI function schemas) go to the template when given."""
    extra: dict[str, Any] = {} if tools is None else {"tools": tools}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **extra, **PINNED_TEMPLATE_KWARGS
    )


@dataclass(frozen=True)
class ThinkingFormat:
    """How a model marks its thinking: the tags around it, and whether the prompt must open
    the block itself (`forced`: for models whose template does not, or that never think on
    their own: the answer after `close` is what gets graded)."""

    open: str = "<think>"
    close: str = "</think>"
    forced: bool = False

    @classmethod
    def of(cls, spec: ThinkingFormat | Mapping[str, Any] | None) -> ThinkingFormat | None:
        """From a config mapping (model.thinking), or None for a model that does not think."""
        if spec is None or isinstance(spec, ThinkingFormat):
            return spec
        unknown = set(spec) - {"open", "close", "forced"}
        if unknown:
            raise ValueError(
                f"model.thinking has unknown key(s) {sorted(unknown)}; valid: open, close, forced"
            )
        made = cls(**dict(spec))
        if not made.open or not made.close:
            raise ValueError("model.thinking.open and .close must be non-empty tags")
        return made

    def is_open(self, text: str) -> bool:
        """Whether `text` (prompt and generation so far) ends inside a thinking block."""
        at = text.rfind(self.open)
        return at >= 0 and text.find(self.close, at) < 0

    def tracker(self, head: str = "") -> ThinkingTracker:
        """Follows a text fed piece by piece (`ThinkingTracker`), starting with `head`."""
        return ThinkingTracker(self, head)


class ThinkingTracker:
    """`ThinkingFormat.is_open` of a growing text, fed piece by piece: each piece is scanned with
    the few characters before it that a tag could start in, never the whole text again (asking
    `is_open` of the whole text at every streamed token made a stream quadratic)."""

    def __init__(self, thinking: ThinkingFormat, head: str = "") -> None:
        self.thinking = thinking
        self.inside = False  # the text so far ends inside a thinking block
        self.closed = False  # a close tag occurred somewhere
        self._carry = max(len(thinking.open), len(thinking.close)) - 1
        self._tail = ""
        self.feed(head)

    def feed(self, piece: str) -> bool:
        """Add `piece`; whether the text now ends inside a thinking block."""
        if not piece:
            return self.inside
        window = self._tail + piece  # a tag found here ends in `piece`: it was not seen before
        t = self.thinking
        opened = window.rfind(t.open)
        shut = window.find(t.close, opened if opened >= 0 else 0)
        if opened >= 0:
            self.inside = shut < 0
        elif shut >= 0:
            self.inside = False
        self.closed = self.closed or window.find(t.close) >= 0
        self._tail = window[-self._carry :] if self._carry else ""
        return self.inside


class ChatRenderer:
    """Turns (problem, chain) into the exact prompt string sent to a completions endpoint."""

    def __init__(
        self,
        tokenizer: Any,
        system: str = "steps",
        thinking: ThinkingFormat | Mapping[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.system = system_prompt(system)
        self.thinking = ThinkingFormat.of(thinking)
        self._head = lru_cache(maxsize=4096)(self._template)
        self._chat_head = lru_cache(maxsize=1024)(self._chat_template)

    def _opened(self, head: str) -> str:
        """The templated head, with the thinking block opened when the format forces it."""
        if self.thinking is not None and self.thinking.forced:
            head += self.thinking.open + "\n"
        return head

    def _template(self, question: str) -> str:
        messages = [{"role": "user", "content": question}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return self._opened(chat_prompt(self.tokenizer, messages))

    def _chat_template(self, conversation: str) -> str:
        """A chat problem's head, from its canonical JSON (hashable, so it is cached like a
        question): the client's system message wins, else the configured one is prepended."""
        parts = json.loads(conversation)
        messages, tools = parts["messages"], parts["tools"]
        if self.system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.system})
        return self._opened(chat_prompt(self.tokenizer, messages, tools))

    def head(self, problem: Problem) -> str:
        """The prompt of `problem` before any step: a raw completion prompt as it is, a chat
        problem's conversation (and tools) through the template, else the question."""
        if problem.prompt is not None:
            return problem.prompt
        if problem.messages is not None:
            from reasoning.chat import offered_tools, template_messages

            conversation = {"messages": template_messages(problem), "tools": offered_tools(problem)}
            return self._chat_head(json.dumps(conversation, ensure_ascii=False))
        return self._head(problem.question)

    def chat(self, messages: Any) -> str:
        return chat_prompt(self.tokenizer, [dict(m) for m in messages])

    def tokenize(self, text: str) -> tuple[int, ...]:
        """Token ids of `text` as prompt material: no special tokens added."""
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of `ids` as the engines detokenize generated text (special tokens skipped)."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        head = self.head(problem)
        if chain is None or not chain.steps:
            return head
        # a step chain's next step starts after its delimiter; a chunked chain ("") goes on
        return head + chain.text + chain.delimiter
