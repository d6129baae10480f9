"""Scripted stand-ins for unit tests of control flow (never the only test of a capability)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import replace

from reasoning.types import (
    STEP_DELIMITER,
    Chain,
    Completion,
    Delta,
    FinishReason,
    Messages,
    Problem,
    Prompt,
    Sampling,
    TokenPrompt,
)

StepScript = Callable[[tuple[str, ...], Sampling, int], str]
"""Sample k's text from (the steps already written, the call's sampling, k)."""

EOS = " <eos>"
"""Ends a scripted step text that finishes the solution; it is not part of the completion."""


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
        finish_reason=FinishReason.LENGTH if cut else FinishReason.of("stop", stop),
        stop=None if cut else stop,
        prompt_tokens=prompt_tokens,
    )


def steps_of(prompt: str) -> tuple[str, ...]:
    """The steps already written in a prompt made by `ScriptedGenerator.render`."""
    return tuple(prompt.split("\nA: ", 1)[1].split(STEP_DELIMITER)[:-1])


def _cycled(texts: Sequence[str]) -> Callable[..., str]:
    it = itertools.cycle(texts)
    return lambda *_: next(it)


_PIECE = re.compile(r"\s*\S+|\s+$")


class WordVocabulary:
    """A reversible toy tokenizer: a token is a word with the whitespace before it."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.pieces: list[str] = []

    def encode(self, text: str) -> tuple[int, ...]:
        out = []
        for piece in _PIECE.findall(text):
            if piece not in self.ids:
                self.ids[piece] = len(self.pieces)
                self.pieces.append(piece)
            out.append(self.ids[piece])
        return tuple(out)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


class ScriptedGenerator:
    """Returns scripted texts; one token per space-separated word.

    `texts` are whole solutions, so each ends at EOS. Step searches need steps that end on the
    stop string as with the real backend, so `steps` (a script of the steps so far, or a
    cycled list) switches to that: a text ends on the call's first stop string unless the call
    has none (a last step) or the text ends in `EOS`. `concurrent` yields once per call, so
    all calls of one expansion pass the budget check before any is metered (the worst case).
    `ids=False` plays a server that sends text only (no token ids, no counts: anything but
    vLLM), so the Context must count what it delivered itself.
    """

    name = "scripted"

    def __init__(
        self,
        texts: Sequence[str] | Callable[[str, Sampling], str] = ("\\boxed{1}",),
        *,
        steps: Sequence[str] | StepScript | None = None,
        delay_s: float = 0.0,
        fail_on: Callable[[str], bool] | None = None,
        concurrent: bool = False,
        ids: bool = True,
    ) -> None:
        self._text: Callable[[str, Sampling, int], str]
        if steps is None:
            whole = texts if callable(texts) else _cycled(texts)
            self._text = lambda prompt, sampling, k: whole(prompt, sampling)
        else:
            step = steps if callable(steps) else _cycled(steps)
            self._text = lambda prompt, sampling, k: step(steps_of(prompt), sampling, k)
        self.stepwise = steps is not None
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.concurrent = concurrent
        self.ids = ids
        self.calls: list[tuple[str, Sampling]] = []
        self.vocabulary = WordVocabulary()
        self.thinking = None  # a reasoning.prompts.ThinkingFormat to make it a thinking model
        self.streams: list[tuple[str, Sampling]] = []  # streamed calls, as (prompt, sampling)
        self.aborted = 0  # streams the caller closed before their last delta

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        head = f"Q: {problem.question}\nA: "
        if self.thinking is not None and self.thinking.forced:
            head += self.thinking.open + "\n"
        return head + (chain.text + STEP_DELIMITER if chain and chain.steps else "")

    def tokenize(self, text: str) -> tuple[int, ...]:
        return self.vocabulary.encode(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.vocabulary.decode(ids)

    def chat(self, messages: Messages) -> str:
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _text_of(self, prompt: Prompt) -> str:
        return self.detokenize(prompt.ids) if isinstance(prompt, TokenPrompt) else prompt

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """The scripted sample for `prompt`, one word-token per delta (ids from `tokenize`)."""
        text_prompt = self._text_of(prompt)
        self.streams.append((text_prompt, sampling))
        whole = self._sample(text_prompt, sampling, 0)
        pieces = _PIECE.findall(whole.text)
        finished = False
        try:
            for at, piece in enumerate(pieces):
                await asyncio.sleep(self.delay_s)
                last = at == len(pieces) - 1
                yield Delta(
                    text=piece,
                    token_ids=self.tokenize(piece) if self.ids else (),
                    logprobs=(-0.1,) if sampling.logprobs is not None else None,
                    finish_reason=whole.finish_reason if last else None,
                    stop=whole.stop if last else None,
                    prompt_tokens=whole.prompt_tokens if at == 0 else 0,
                )
            finished = True
        finally:
            if not finished:
                self.aborted += 1

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        prompt = self._text_of(prompt)
        self.calls.append((prompt, sampling))
        if self.fail_on is not None and self.fail_on(prompt):
            raise ConnectionError("scripted backend failure")
        if self.delay_s or self.concurrent:
            await asyncio.sleep(self.delay_s)
        return [self._sample(prompt, sampling, k) for k in range(sampling.n)]

    def _sample(self, prompt: str, sampling: Sampling, k: int) -> Completion:
        text = self._text(prompt, sampling, k)
        eos = not self.stepwise or not sampling.stop or text.endswith(EOS)
        completion = word_completion(
            text.removesuffix(EOS),
            sampling.max_tokens,
            stop=None if eos else sampling.stop[0],
            prompt_tokens=len(prompt.split()),
        )
        if not self.ids:
            return replace(completion, tokens=0)
        return replace(completion, token_ids=self.tokenize(completion.text))


class ConstantVerifier:
    """Scores each step by a function of the chain's text."""

    name = "constant"

    def __init__(self, score: Callable[[str], float] = lambda text: 0.5) -> None:
        self._score = score

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return [[self._score(c.text)] * len(c.steps) for c in chains]


class StepVerifier:
    """Scores each step by its own text, so a hand-computed tree can give each node its score.

    A mapping is looked up strictly: a step the test did not expect fails loudly.
    """

    name = "steps"

    def __init__(self, scores: Mapping[str, float] | Callable[[str], float]) -> None:
        self._score = scores if callable(scores) else scores.__getitem__

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return [[self._score(s) for s in c.steps] for c in chains]
