"""A generative judge: any instruct model asked whether a (partial) solution is right, scored
as P(Yes) from its next-token logprobs. Usable as an outcome verifier (one question per chain)
or a process verifier (one question per prefix), the basis for TrimR/FlexiVe-style checks."""

from __future__ import annotations

from reasoning.prompts import chat_prompt
from reasoning.steps import render_steps
from reasoning.types import Chain, Generator, Problem, StepScores
from verifiers.next_token import NextTokenVerifier

JUDGE_SYSTEM = "You are a careful math teacher. You check solutions and answer only Yes or No."
OUTCOME_QUESTION = (
    "Problem:\n{question}\n\nProposed solution:\n{solution}\n\n"
    "Is this solution correct? Answer Yes or No."
)
PROCESS_QUESTION = (
    "Problem:\n{question}\n\nSolution so far:\n{solution}\n\n"
    "Is every step so far correct? Answer Yes or No."
)
MODES = ("outcome", "process")


class GenerativeJudge(NextTokenVerifier):
    """P(Yes) per chain (`outcome`: every step gets the chain's score) or per prefix (`process`)."""

    positive = ("yes",)
    negative = ("no",)

    def __init__(
        self,
        backend: object | None = None,
        *,
        generator: Generator | None = None,
        mode: str = "outcome",
        system: str = JUDGE_SYSTEM,
    ) -> None:
        super().__init__(backend, generator=generator)
        if mode not in MODES:
            raise ValueError(f"verifier.mode={mode!r}; valid: {list(MODES)}")
        self.mode = mode
        self.system = system
        self.name = f"judge:{mode}"

    def prompt(self, problem: Problem, steps: tuple[str, ...]) -> str:
        template = OUTCOME_QUESTION if self.mode == "outcome" else PROCESS_QUESTION
        user = template.format(question=problem.question, solution=render_steps(steps))
        messages = [{"role": "user", "content": user}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        return chat_prompt(self.tokenizer, messages)

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        if self.mode == "process":
            return await self.score_prefixes(problem, chains)
        probs, tokens = await self.probabilities([self.prompt(problem, c.steps) for c in chains])
        return StepScores(
            [[p] * len(c.steps) for p, c in zip(probs, chains, strict=True)], tokens=tokens
        )
