"""An instant generator and verifier: the engine made free, so what is left is the toolkit.

`InstantGenerator` is a real backend in every way the toolkit can see (the embedded SmolLM2's
tokenizer and chat template render its prompts, its completions carry token ids and logprobs,
it streams one token per delta like an engine step) except that it decodes nothing: every
sample is cut from a script of ~22-token steps tokenized once at start-up, so a call costs a
slice. A whole sample is `sample_tokens` long (its steps joined by blank lines, the last one
boxing an answer); a call with the step delimiter as its stop gets one step; a thinking model's
sample closes its thinking before the last step. Which steps and which answer a sample gets
follows its seed, so votes split and searches branch.

`InstantVerifier` scores every step from its length and position: free, deterministic, and in
[0, 1], so beam, A* and the particle filters rank and resample as they would under a PRM.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from reasoning.backends.base import RenderingBackend
from reasoning.models import resolve_model_path
from reasoning.prompts import ThinkingFormat
from reasoning.tokenizer import load_text_tokenizer
from reasoning.types import (
    STEP_DELIMITER,
    Chain,
    Completion,
    Delta,
    FinishReason,
    Problem,
    Prompt,
    Sampling,
    StepScores,
    TokenPrompt,
)

ANSWERS = ("42", "17", "42", "3/4", "42", "0.75")  # a majority, and two spellings of one
_SENTENCE = (
    "We add the two terms and carry the remainder to the next column, which gives a partial "
    "sum that we check against the bound from the previous step before going on"
)
_WORDS = _SENTENCE.split(" ")


@dataclass(frozen=True)
class Piece:
    """A run of tokens with its text, ready to slice."""

    ids: tuple[int, ...]
    texts: tuple[str, ...]  # per token, as incremental detokenization would deliver them

    @property
    def text(self) -> str:
        return "".join(self.texts)


class InstantGenerator(RenderingBackend):
    """A generator whose decoding costs nothing (see the module docstring)."""

    def __init__(
        self,
        model_path: str = "embedded:smollm2-135m",
        *,
        sample_tokens: int = 256,
        step_tokens: int = 22,
        system_prompt: str = "steps",
        thinking: ThinkingFormat | dict[str, Any] | None = None,
        top_k: int = 20,
    ) -> None:
        self.name = "instant"
        tokenizer = load_text_tokenizer(resolve_model_path(model_path), use_transformers=False)
        self._use_renderer(tokenizer, system_prompt, thinking)
        self.step_tokens = step_tokens
        self.steps_per_sample = max(1, round(sample_tokens / (step_tokens + 1)))
        self.calls = 0
        self.steps = [self._piece(self._sentence(i)) for i in range(8)]
        self.finals = [self._piece(f"So the answer is $\\boxed{{{a}}}$.") for a in ANSWERS]
        self.delimiter = self._piece(STEP_DELIMITER)
        close = self.thinking.close if self.thinking is not None else None
        self.close = self._piece("\n" + close + "\n") if close else None
        self.eos = tokenizer.eos_token
        # one logprob per token and one top-k table shared by every position: free to hand out
        self._logprob = -0.25
        vocab = list(range(100, 100 + top_k))
        self._top_ids = tuple(vocab)
        self._top = {
            self.renderer.detokenize([i]) or f"t{i}": -0.25 - j for j, i in enumerate(vocab)
        }
        self.samples = [self._sample(seed) for seed in range(64)]

    # -- the script ------------------------------------------------------------------------

    def _sentence(self, i: int) -> str:
        words = _WORDS[i % len(_WORDS) :] + _WORDS[: i % len(_WORDS)]
        text = f"Step {i + 1}: " + " ".join(words)
        ids = self.renderer.tokenize(text)[: self.step_tokens]
        return self.renderer.detokenize(ids)

    def _piece(self, text: str) -> Piece:
        ids = self.renderer.tokenize(text)
        texts, before = [], ""
        for k in range(1, len(ids) + 1):
            now = self.renderer.detokenize(ids[:k])
            texts.append(now[len(before) :])
            before = now
        return Piece(ids, tuple(texts))

    def _sample(self, seed: int) -> tuple[Piece, int]:
        """A whole sample for `seed`: its pieces joined, and the answer it boxes."""
        rng = random.Random(seed)
        answer = rng.randrange(len(self.finals))
        parts: list[Piece] = []
        for _ in range(self.steps_per_sample - 1):
            parts += [self.steps[rng.randrange(len(self.steps))], self.delimiter]
        if self.close is not None:
            parts.append(self.close)
        parts.append(self.finals[answer])
        return Piece(
            tuple(i for p in parts for i in p.ids), tuple(t for p in parts for t in p.texts)
        ), answer

    def _step(self, seed: int) -> tuple[Piece, bool]:
        """One step for a step-level call: the final step with probability 1/steps_per_sample."""
        rng = random.Random(seed)
        if rng.randrange(self.steps_per_sample) == 0:
            return self.finals[rng.randrange(len(self.finals))], True
        return self.steps[rng.randrange(len(self.steps))], False

    # -- the backend -----------------------------------------------------------------------

    def _pick(self, sampling: Sampling, seed: int) -> tuple[Piece, bool]:
        if STEP_DELIMITER in sampling.stop:
            return self._step(seed)
        return self.samples[seed % len(self.samples)][0], True

    def _completion(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        piece, last = self._pick(sampling, seed)
        cap = sampling.max_tokens
        ids, texts = piece.ids[:cap], piece.texts[:cap]
        if len(piece.ids) > cap:
            finish, stop = FinishReason.LENGTH, None
        elif last:
            finish, stop = FinishReason.EOS, None
        else:
            finish, stop = FinishReason.STOP, STEP_DELIMITER
        n = len(ids)
        logprobs = top = top_ids = None
        if sampling.logprobs is not None:
            logprobs = (self._logprob,) * n
            if sampling.logprobs > 0:
                k = sampling.logprobs
                table = dict(list(self._top.items())[:k])
                top, top_ids = (table,) * n, (self._top_ids[:k],) * n
        return Completion(
            text="".join(texts),
            tokens=n,
            finish_reason=finish,
            stop=stop,
            prompt_tokens=len(prompt.ids) if isinstance(prompt, TokenPrompt) else 0,
            logprobs=logprobs,
            top_logprobs=top,
            top_token_ids=top_ids,
            token_ids=ids,
        )

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        self.calls += 1
        base = sampling.seed if sampling.seed is not None else self.calls
        return [self._completion(prompt, sampling, base + i) for i in range(sampling.n)]

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """One token per delta, as an engine step delivers it."""
        self.calls += 1
        seed = sampling.seed or self.calls
        whole = self._completion(prompt, sampling, seed)
        ids, n = whole.token_ids or (), whole.tokens
        texts = self._pick(sampling, seed)[0].texts
        for k in range(n):
            last = k == n - 1
            yield Delta(
                text=texts[k],
                token_ids=(ids[k],),
                logprobs=None if whole.logprobs is None else (whole.logprobs[k],),
                top_logprobs=None if whole.top_logprobs is None else (whole.top_logprobs[k],),
                top_token_ids=None if whole.top_token_ids is None else (whole.top_token_ids[k],),
                finish_reason=whole.finish_reason if last else None,
                stop=whole.stop if last else None,
                prompt_tokens=whole.prompt_tokens if k == 0 else 0,
            )


class InstantVerifier:
    """Per-step scores in [0, 1] at no cost: deterministic in each step's text."""

    name = "instant"

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        return StepScores([[_score(s) for s in c.steps] for c in chains])


def _score(step: str) -> float:
    return 0.3 + 0.6 * (zlib.crc32(step.encode()) & 0xFFFF) / 0xFFFF


def instant_runner(cfg: Any, generator: Any, label: str, needs_verifier: bool) -> Any:
    """The real `Runner` a benchmark child drives: the run's search, judge, budget and trimmer
    from `cfg`, `InstantVerifier` where the search needs one, a fresh temporary run directory."""
    import tempfile

    from evals.runner import Runner
    from reasoning.build import build_budget, build_judge, build_sampler, build_search

    return Runner(
        generator,
        build_search(cfg),
        tempfile.mkdtemp(prefix=f"{label}-"),
        verifier=InstantVerifier() if needs_verifier else None,
        grader=build_judge(cfg),
        budget=build_budget(cfg),
        seed=0,
        concurrency=int(cfg.concurrency),
        progress=False,
        sampler=build_sampler(cfg),
    )
