"""P(label) from a causal LM's next-token distribution: the core of judges and generative PRMs.

One temperature-0 token with top-k logprobs; the probability mass on the positive label tokens
is renormalised against the negative ones (tokens are matched case-insensitively, ignoring
surrounding spaces, so " Yes", "Yes" and "yes" all count).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from reasoning.types import Chain, Generator, Problem, Sampling, StepScores

UNDECIDED = 0.5  # neither label among the top-k: no evidence either way


def _mass(top: dict[str, float], labels: set[str]) -> float:
    return sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() in labels)


async def label_probability(
    generator: Generator,
    prompt: str,
    positive: Iterable[str],
    negative: Iterable[str],
    top_k: int = 20,
) -> tuple[float, int]:
    """(P(positive | positive or negative), tokens read and written)."""
    pos = {t.strip().lower() for t in positive}
    neg = {t.strip().lower() for t in negative}
    sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=1, n=1, logprobs=top_k)
    (completion,) = await generator.complete(prompt, sampling)
    tokens = completion.prompt_tokens + completion.tokens
    if not completion.top_logprobs:
        return UNDECIDED, tokens
    top = completion.top_logprobs[0]
    p, n = _mass(top, pos), _mass(top, neg)
    if p + n == 0.0:
        return UNDECIDED, tokens
    return p / (p + n), tokens


class NextTokenVerifier:
    """Base of verifiers that read P(label) off a causal LM served by a generator backend.

    The model comes either as a ready `generator` or as a `backend` config (built lazily and
    shared through `reasoning.build`, so a judge on the policy's own model reuses its engine and
    a replayed run never starts it). The generator must expose its HF `tokenizer` for the chat
    template.
    """

    name = "next-token"
    positive: tuple[str, ...] = ("yes",)
    negative: tuple[str, ...] = ("no",)

    def __init__(
        self, backend: object | None = None, *, generator: Generator | None = None, top_k: int = 20
    ) -> None:
        if backend is None and generator is None:
            raise ValueError(f"{type(self).__name__} needs a generator or a backend config")
        self._backend = backend
        self._generator = generator
        self.top_k = top_k

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            from reasoning.build import generator_for

            self._generator = generator_for(self._backend)
        return self._generator

    @property
    def tokenizer(self) -> object:
        tokenizer = getattr(self.generator, "tokenizer", None)
        if tokenizer is None:
            raise TypeError(f"{self.name} needs a generator with a `tokenizer` (chat template)")
        return tokenizer

    async def probabilities(self, prompts: list[str]) -> tuple[list[float], int]:
        """P(positive) for each prompt, all requests in flight together; plus total tokens."""
        import asyncio

        results = await asyncio.gather(
            *(
                label_probability(self.generator, p, self.positive, self.negative, self.top_k)
                for p in prompts
            )
        )
        return [p for p, _ in results], sum(t for _, t in results)

    def prompt(self, problem: Problem, steps: tuple[str, ...]) -> str:
        raise NotImplementedError

    async def score_prefixes(self, problem: Problem, chains: list[Chain]) -> StepScores:
        """One question per step prefix of every chain: a per-step (process) score."""
        prompts = [
            self.prompt(problem, c.steps[:k]) for c in chains for k in range(1, len(c.steps) + 1)
        ]
        probs, tokens = await self.probabilities(prompts)
        out: list[list[float]] = []
        for chain in chains:
            out.append(probs[: len(chain.steps)])
            probs = probs[len(chain.steps) :]
        return StepScores(out, tokens=tokens)
