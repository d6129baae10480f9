"""Scripted stand-ins for unit tests of control flow (never the only test of a capability)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

from reasoning.types import STEP_DELIMITER, Chain, Completion, Problem, Sampling


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
        out = []
        for _ in range(sampling.n):
            words = self._next(prompt, sampling).split(" ")
            truncated = len(words) > sampling.max_tokens
            words = words[: sampling.max_tokens]
            out.append(
                Completion(
                    text=" ".join(words),
                    tokens=len(words),
                    finish_reason="length" if truncated else "stop",
                    prompt_tokens=len(prompt.split()),
                )
            )
        return out


class ConstantVerifier:
    """Scores each step by a function of the chain's text."""

    name = "constant"

    def __init__(self, score: Callable[[str], float] = lambda text: 0.5) -> None:
        self._score = score

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return [[self._score(c.text)] * len(c.steps) for c in chains]
