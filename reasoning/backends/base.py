"""What every generator backend shares: its prompts are rendered by one `ChatRenderer`.

Both backends (the in-process engine, the OpenAI-compatible servers) render prompts with the
same renderer and tokenizer, so a controller sees byte-identical prompts (and prefix-cache hits)
whichever backend it runs on. `RenderingBackend` holds that renderer and delegates the text
work to it once, instead of each backend repeating the delegations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reasoning.prompts import ChatRenderer, ThinkingFormat
from reasoning.types import Chain, Messages, Problem


class RenderingBackend:
    """Base of a generator backend: `render`, `chat`, `tokenize` and `detokenize` through one
    `ChatRenderer` (pure text work: no engine or server needed)."""

    tokenizer: Any
    renderer: ChatRenderer
    thinking: ThinkingFormat | None

    def _use_renderer(
        self,
        tokenizer: Any,
        system_prompt: str,
        thinking: ThinkingFormat | Mapping[str, Any] | None,
    ) -> None:
        """Set the tokenizer, the renderer over it, and the thinking format it resolved."""
        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer, system_prompt, thinking)
        self.thinking = self.renderer.thinking

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        """A plain, chat (conversation and tools through the template) or raw completion
        problem's prompt: one renderer, so both backends send the same text."""
        return self.renderer.render(problem, chain)

    def tokenize(self, text: str) -> tuple[int, ...]:
        return self.renderer.tokenize(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.renderer.detokenize(ids)

    def chat(self, messages: Messages) -> str:
        return self.renderer.chat(messages)
