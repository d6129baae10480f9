"""RLHFlow-style generative PRMs: each step is a user turn, the model answers "+" or "-".

The conversation for step k is: user = question + " " + step 1, assistant = "+", user = step 2,
..., user = step k, and the score is P("+") against P("-") for the assistant's next token
(RLHFlow/Llama3.1-8B-PRM-Deepseek-Data and -Mistral-Data are queried this way). The model is an
ordinary causal LM served by the generator backend, so the prefix cache makes the k prompts of
one chain cheap.
"""

from __future__ import annotations

from reasoning.prompts import chat_prompt
from reasoning.types import Chain, Generator, Problem, StepScores
from verifiers.next_token import NextTokenVerifier


class GenerativePRM(NextTokenVerifier):
    """Per-step P("+") from a conversation in which every earlier step was judged "+"."""

    positive = ("+",)
    negative = ("-",)

    def __init__(
        self,
        backend: object | None = None,
        *,
        generator: Generator | None = None,
        top_k: int = 20,
        name: str = "rlhflow-prm",
    ) -> None:
        super().__init__(backend, generator=generator, top_k=top_k)
        self.name = name

    def prompt(self, problem: Problem, steps: tuple[str, ...]) -> str:
        messages: list[dict[str, str]] = []
        for i, step in enumerate(steps):
            if i:
                messages.append({"role": "assistant", "content": "+"})
            content = f"{problem.question} {step}" if i == 0 else step
            messages.append({"role": "user", "content": content})
        return chat_prompt(self.tokenizer, messages)

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return await self.score_prefixes(problem, chains)
