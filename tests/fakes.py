"""Scripted stand-ins for unit tests of control flow (never the only test of a capability)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

from reasoning.types import STEP_DELIMITER, Chain, Completion, Problem, Sampling


def word_completion(
    text: str, max_tokens: int, *, stop: str | None = None, prompt_tokens: int = 0
) -> Completion:
    """`text` as one sample of one token per word, cut at `max_tokens` (a cut hits no stop)."""
    words = text.split(" ")
    cut = len(words) > max_tokens
    words = words[:max_tokens]
    return Completion(
        text=" ".join(words),
        tokens=len(words),
        finish_reason="length" if cut else "stop",
        stop=None if cut else stop,
        prompt_tokens=prompt_tokens,
    )


class ScriptedGenerator:
    """Returns scripted texts; one token per whitespace-separated word."""

    name = "scripted"

    def __init__(
        self,
        texts: Sequence[str] | Callable[[str, Sampling], str] = ("\\boxed{1}",),
        *,
        delay_s: float = 0.0,
        fail_on: Callable[[str], bool] | None = None,
    ) -> None:
        self._next = texts if callable(texts) else self._cycle(list(texts))
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.calls: list[tuple[str, Sampling]] = []

    @staticmethod
    def _cycle(texts: list[str]) -> Callable[[str, Sampling], str]:
        it = itertools.cycle(texts)
        return lambda prompt, sampling: next(it)

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        head = f"Q: {problem.question}\nA: "
        return head + (chain.text + STEP_DELIMITER if chain and chain.steps else "")

    async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
        self.calls.append((prompt, sampling))
        if self.fail_on is not None and self.fail_on(prompt):
            raise ConnectionError("scripted backend failure")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return [
            word_completion(
                self._next(prompt, sampling), sampling.max_tokens, prompt_tokens=len(prompt.split())
            )
            for _ in range(sampling.n)
        ]


class ConstantVerifier:
    """Scores each step by a function of the chain's text."""

    name = "constant"

    def __init__(self, score: Callable[[str], float] = lambda text: 0.5) -> None:
        self._score = score

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return [[self._score(c.text)] * len(c.steps) for c in chains]
