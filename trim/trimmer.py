"""The thought trimmer: a `Sampler` that streams each sample, lets a policy watch its thinking,
and cuts it short with a cue that makes the model conclude (docs/thought-trimming.md).

A controller wrapped by a trimmer (`Context(..., sampler=trimmer)`) keeps calling
`ctx.generate(sampling)`; each of its samples is streamed here instead. A cut aborts the
stream, appends `cue + close tag + answer cue` and asks for the answer in one non-streamed
continuation of the exact token ids, so the model's prefix is never re-tokenized.

The forced end is s1's by default (simplescaling/s1, the lm-evaluation-harness fork's
`vllm_causallms.py`): the close tag, then "\nFinal Answer:", and a free answer phase that may
use what is left of the sample's own `max_tokens` (`answer_tokens` only caps it further). The
toolkit's earlier end, "\n\nFinal answer: $\\boxed{" with 256 answer tokens, is the keys
`answer_cue` and `answer_tokens` set to those values.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from reasoning.budget import BudgetExhausted
from reasoning.context import Context
from reasoning.prompts import ThinkingFormat
from reasoning.settings import AnswerCue, AnswerTokens, Settings, Text, settings
from reasoning.types import (
    Completion,
    Delta,
    EventKind,
    FinishReason,
    Prompt,
    Sampling,
    TokenPrompt,
)
from trim.transcript import Piece, Transcript

S1_ANSWER_CUE = "\nFinal Answer:"
"""What s1 writes after the end-of-thinking delimiter when it forces the end."""
S1_ANSWER_TOKENS = 32768
"""s1's cap on the answer phase (its max_gen_toks); the sample's own cap bounds it first."""


@dataclass
class Cut:
    """A policy's decision to stop thinking: why, with which cue, and where."""

    reason: str  # overthinking | underthinking | repetition | answer_reached | budget
    cue: str  # written before the close tag
    at_char: int | None = None  # cut the text back to here (a thought boundary); None: keep all
    thoughts: int = 0  # finished thoughts at the cut
    answer: str | None = None  # the answer the thinking reached, when the policy knows it
    details: dict[str, Any] = field(default_factory=dict)  # policy specifics (p_yes, ...)


class Watch:
    """One sample's policy state; the base never cuts and never extends."""

    def step(self, transcript: Transcript, tokens: int) -> Cut | None:
        """After each delta while thinking (`tokens`: streamed so far): cut now?"""
        return None

    def extend(self, transcript: Transcript, tokens: int) -> str | None:
        """Thinking just ended: a cue to write instead and think on, or None to let it end."""
        return None

    async def close(self) -> None:
        """Thinking is over: stop side requests (must be safe to call twice)."""


@settings
class Trimmer(Settings):
    """Base of the trimming policies: the shared keys and the streaming loop.

    Subclasses set `name` and return a `Watch` from `watch`; their settings are declared
    (reasoning/settings.py) and `check` holds their cross-field rules (raise `self.invalid`).
    """

    settings_key: ClassVar[str] = "trim"
    settings_kind: ClassVar[str] = "trim"
    name: ClassVar[str] = ""

    # s1's answer phase: its own cap is max_gen_toks (32768 in s1's eval/commands.sh); here
    # the answer is also bounded by what is left of the sample's max_tokens, so the sample
    # never exceeds its cap
    answer_tokens: AnswerTokens = S1_ANSWER_TOKENS
    answer_cue: AnswerCue = S1_ANSWER_CUE
    conclude_cue: Text = "\n\nI have thought enough; time to write the answer.\n"
    """written before the close tag at a cut"""

    def __post_init__(self) -> None:
        if self.answer_tokens < 1:
            raise self.invalid("answer_tokens", self.answer_tokens, "must be >= 1 for a trimmer")
        self.check()

    def check(self) -> None:
        """Policy-specific cross-field validation (raise `self.invalid`)."""

    def watch(self, ctx: Context, prompt_ids: tuple[int, ...], sampling: Sampling) -> Watch:
        return Watch()

    async def sample(self, ctx: Context, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        """`sampling.n` samples of `prompt`, each streamed and watched on its own."""
        if isinstance(prompt, TokenPrompt):
            ids, prompt_text = prompt.ids, ctx.detokenize(prompt.ids)
        else:
            ids, prompt_text = ctx.tokenize(prompt), prompt
        watched = thinking_ahead(ctx.thinking, prompt_text)
        runs = []
        for k in range(sampling.n):
            seed = ctx.rng.randrange(2**31) if sampling.seed is None else sampling.seed + k
            one = replace(sampling, n=1, seed=seed)
            runs.append(SampleRun(self, ctx, ids, one, k, watched).run())
        results = await asyncio.gather(*runs, return_exceptions=True)
        done = [r for r in results if isinstance(r, Completion)]
        for error in results:
            if isinstance(error, BaseException) and not isinstance(error, BudgetExhausted):
                raise error
        if not done:  # every sample met the budget: say so as an untrimmed call would
            raise next(r for r in results if isinstance(r, BaseException))
        return done


def thinking_ahead(thinking: ThinkingFormat | None, prompt: str) -> bool:
    """Whether the sample starts in (or will open) a thinking block: watched. A model that does
    not think is watched whole; a prompt whose block is already closed is not watched."""
    if thinking is None:
        return True
    return thinking.open not in prompt or thinking.is_open(prompt)


class SampleRun:
    """One sample: stream (and perhaps extend) while the watch looks on, then conclude."""

    def __init__(
        self,
        trimmer: Trimmer,
        ctx: Context,
        prompt_ids: tuple[int, ...],
        sampling: Sampling,
        k: int,
        watched: bool,
    ) -> None:
        self.trimmer, self.ctx, self.prompt_ids, self.sampling, self.k = (
            trimmer, ctx, prompt_ids, sampling, k,
        )  # fmt: skip
        self.watching = watched
        self.close_tag = ctx.thinking.close if ctx.thinking is not None else ""
        # a tag made of special tokens (s1's "<|im_start|>answer") vanishes from text decoded
        # the usual way: ask for the special tokens, or the end of thinking is never seen
        keep = bool(self.close_tag) and self.close_tag not in ctx.detokenize(
            ctx.tokenize(self.close_tag)
        )
        self.sampling = replace(sampling, keep_special_tokens=keep)
        self.transcript = Transcript()
        self.spent = 0  # tokens streamed (and metered) for this sample
        self.prompt_tokens = 0
        self.last: Delta | None = None

    def _tokenize(self, text: str) -> tuple[int, ...]:
        return self.ctx.tokenize(text)

    async def run(self) -> Completion:
        watch = self.trimmer.watch(self.ctx, self.prompt_ids, self.sampling)
        try:
            cut = await self._think(watch)
        finally:
            await watch.close()
        return await self._conclude(cut) if cut is not None else self._completion(None)

    async def _think(self, watch: Watch) -> Cut | None:
        """Stream segments until the sample ends (None) or the watch cuts it."""
        first = True
        while True:
            ending = await self._segment(watch, first)
            first = False
            if ending is None or isinstance(ending, Cut):
                return ending
            at_char, cue = ending
            self.transcript.truncate(at_char, self._tokenize)
            self.transcript.force(cue, self._tokenize)
            self.ctx.record(
                EventKind.EXTEND,
                policy=self.trimmer.name,
                sample=self.k,
                at_token=self.spent,
                at_char=at_char,
                cue=cue,
            )

    async def _segment(self, watch: Watch, first: bool) -> Cut | tuple[int, str] | None:
        """One stream from the transcript so far: a Cut, an extension (where thinking ended,
        the cue to think on with), or None when the stream ran to its end."""
        left = self.sampling.max_tokens - self.spent
        segment = replace(self.sampling, max_tokens=left)
        prompt = TokenPrompt(self.prompt_ids + self.transcript.ids)
        stream = self.ctx.stream(segment, prompt=prompt, new_samples=first)
        async with contextlib.aclosing(stream) as deltas:
            async for delta in deltas:
                before = len(self.transcript.text)
                self.spent += delta.tokens
                self.prompt_tokens = self.prompt_tokens or delta.prompt_tokens
                self.transcript.add(Piece.of(delta))
                self.last = delta
                if self.watching:
                    ending = await self._look(watch, delta, before)
                    if ending is not None:
                        return ending  # leaving the stream aborts the request
        last = self.last
        ended_thinking = last is not None and last.finish_reason == FinishReason.EOS
        if self.watching and ended_thinking:  # EOS with the block still open
            cue = watch.extend(self.transcript, self.spent)
            if cue is not None and self.spent < self.sampling.max_tokens:
                return len(self.transcript.text), cue
        return None

    async def _look(self, watch: Watch, delta: Delta, before: int) -> Cut | tuple[int, str] | None:
        """After one delta while thinking: did thinking end, or does the policy cut?"""
        if self.close_tag:
            at = self.transcript.text.find(self.close_tag, max(0, before - len(self.close_tag) + 1))
            if at >= 0:
                cue = watch.extend(self.transcript, self.spent)
                if cue is not None and self.spent < self.sampling.max_tokens:
                    return at, cue
                self.watching = False
                await watch.close()
                return None
        if delta.finish_reason is not None:
            return None  # the sample is over: nothing left to cut
        return watch.step(self.transcript, self.spent)

    async def _conclude(self, cut: Cut) -> Completion:
        """Close the thinking with the cue and let the model write the answer."""
        at_token = self.spent
        if cut.at_char is not None:
            self.transcript.truncate(cut.at_char, self._tokenize)
        at_char = len(self.transcript.text)
        cue = cut.cue + self.close_tag + self.trimmer.answer_cue
        self.transcript.force(cue, self._tokenize)
        s = self.sampling
        # the answer phase is free up to the sample's own cap (what thinking left of it)
        room = max(1, min(self.trimmer.answer_tokens, s.max_tokens - self.spent))
        answer = Sampling(
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=room,
            stop=s.stop,
            n=1,
            seed=s.seed,
            logprobs=s.logprobs,
            logprob_token_ids=s.logprob_token_ids,
            keep_special_tokens=s.keep_special_tokens,
        )
        prompt = TokenPrompt(self.prompt_ids + self.transcript.ids)
        # a refused answer call comes back as a refusal (finish BUDGET, nothing generated)
        (continuation,) = await self.ctx.try_generate(answer, prompt=prompt)
        self.ctx.record(
            EventKind.TRIM,
            policy=self.trimmer.name,
            sample=self.k,
            reason=cut.reason,
            at_token=at_token,
            at_char=at_char,
            thoughts=cut.thoughts,
            answer=cut.answer,
            tokens_saved=max(0, s.max_tokens - at_token),
            continuation_tokens=continuation.tokens,
            **cut.details,
        )
        return self._completion(continuation)

    def _completion(self, continuation: Completion | None) -> Completion:
        """What the controller gets: the kept text, the cue and the answer; `tokens` counts
        every token generated for it, `token_ids` only the model's own (cues left out)."""
        t, last = self.transcript, self.last
        if continuation is not None:  # cut: the answer call's end (BUDGET when refused)
            reason, stop = continuation.finish_reason, continuation.stop
        else:
            reason = (last.finish_reason or FinishReason.ABORT) if last else FinishReason.ABORT
            stop = last.stop if last else None
        extra = continuation or Completion(text="", tokens=0, finish_reason=reason, token_ids=())
        wants = self.sampling.logprobs is not None
        if continuation is not None and continuation.refused:
            continuation = None  # nothing to join: the streamed part is the whole sample
        return Completion(
            text=t.text + extra.text,
            tokens=self.spent + extra.tokens,
            finish_reason=reason,
            stop=stop,
            prompt_tokens=self.prompt_tokens,
            logprobs=_joined(t.logprobs(), extra.logprobs, continuation) if wants else None,
            top_logprobs=_joined(t.top_logprobs(), extra.top_logprobs, continuation),
            token_ids=_joined(t.generated_ids, extra.token_ids, continuation),
            top_token_ids=_joined(t.top_token_ids(), extra.top_token_ids, continuation),
        )


def _joined(head: tuple | None, tail: tuple | None, continuation: Completion | None) -> Any:  # type: ignore[type-arg]
    """Streamed per-token data plus the continuation's; None when either part lacks it."""
    if head is None or (continuation is not None and tail is None):
        return None
    return head + (tail or ())
