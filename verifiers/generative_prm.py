"""RLHFlow-style generative PRMs: each step is a user turn, the model answers "+" or "-".

The conversation for step k is: user = question + " " + step 1, assistant = "+", user = step 2,
..., user = step k, and the score is the two-way softmax over the `+` and `-` logits at the
assistant's next token, as the reference code computes it (search-and-learn's `RLHFFlow`, after
RLHFlow's prm_evaluate.py; RLHFlow/Llama3.1-8B-PRM-Deepseek-Data and -Mistral-Data are queried
this way). The backend returns the exact logprobs of those two token ids whatever their rank
(`Sampling.logprob_token_ids`), and their ratio is that softmax. The model is an ordinary causal
LM served by the generator backend, so the prefix cache makes the k prompts of one chain cheap.
"""

from __future__ import annotations

from reasoning.prompts import chat_prompt
from reasoning.types import Chain, Generator, Problem, StepScores
from verifiers.next_token import NextTokenVerifier, single_token


class GenerativePRM(NextTokenVerifier):
    """Per-step P("+") from a conversation in which every earlier step was judged "+"."""

    positive = ("+",)
    negative = ("-",)

    def __init__(
        self,
        backend: object | None = None,
        *,
        generator: Generator | None = None,
        name: str = "rlhflow-prm",
    ) -> None:
        super().__init__(backend, generator=generator)
        self.name = name
        self._checked_position = False

    def label_token_ids(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The reference's candidate tokens: the ids of "+" and "-" as the tokenizer encodes
        them alone (`tokenizer.encode("+")[-1]`), one token each; no other spellings."""
        return self._exact_ids(self.positive), self._exact_ids(self.negative)

    def _exact_ids(self, labels: tuple[str, ...]) -> tuple[int, ...]:
        ids = []
        for label in labels:
            tid = single_token(self.tokenizer, label)
            if tid is None:
                raise ValueError(f"{self.name}: {label!r} is not a single token")
            ids.append(tid)
        return tuple(ids)

    def _check_label_position(self, prompt: str) -> None:
        """The model learnt "+"/"-" as the token right after the assistant header: check that
        the header plus a label tokenizes as the prompt's tokens plus exactly that label id (a
        tokenizer could merge the label with the header's last characters)."""
        encode = self.tokenizer.encode  # type: ignore[attr-defined]
        head = list(encode(prompt, add_special_tokens=False))
        pos, neg = self.label_ids
        for label, tid in zip((*self.positive, *self.negative), (*pos, *neg), strict=True):
            if list(encode(prompt + label, add_special_tokens=False)) != [*head, tid]:
                raise ValueError(
                    f"{self.name}: after this chat template's assistant header, {label!r} does "
                    f"not tokenize as its own token {tid}, so P(+) would be read at the wrong "
                    f"position (prompt ends {prompt[-40:]!r})"
                )
        self._checked_position = True

    def prompt(self, problem: Problem, steps: tuple[str, ...]) -> str:
        messages: list[dict[str, str]] = []
        for i, step in enumerate(steps):
            if i:
                messages.append({"role": "assistant", "content": "+"})
            content = f"{problem.question} {step}" if i == 0 else step
            messages.append({"role": "user", "content": content})
        text = chat_prompt(self.tokenizer, messages)
        if not self._checked_position:
            self._check_label_position(text)
        return text

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return await self.score_prefixes(problem, chains)
