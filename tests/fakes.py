"""Scripted stand-ins for unit tests of control flow (never the only test of a capability).

One rule-based fake answers every generator call: `RuleGenerator` (text only) and
`TokenRuleGenerator` (also streams, tokenizes and renders chats) match the prompt against rules
and turn the reply into a `Completion` the way a backend would: cut at the first stop string or
at `max_tokens`, tokens counted by a chosen unit (spaces, words, word pieces or characters),
finish reasons from `reasoning.types.FinishReason`, optional logprobs, top-k tables and the
logprobs of asked-for token ids. `ScriptedGenerator` is the same fake driven by a script of
whole solutions or of steps, which most search tests use.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

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

# --- token units: lossless splits of a text into its tokens ----------------------------------

Unit = Callable[[str], list[str]]
"""A text's tokens as pieces that concatenate back to it; a cut keeps a prefix of them."""

_PIECE = re.compile(r"\s*\S+|\s+$")
_WORD = re.compile(r"\s*\S+(?:\s+$)?")


def spaces(text: str) -> list[str]:
    """One token per `text.split(" ")` item (an empty text is one empty token)."""
    first, *rest = text.split(" ")
    return [first] + [" " + w for w in rest]


def words(text: str) -> list[str]:
    """One token per `text.split()` word, with the whitespace before it (and after the last)."""
    return _WORD.findall(text)


def pieces(text: str) -> list[str]:
    """`WordVocabulary`'s tokens: a word with the whitespace before it, trailing space alone."""
    return _PIECE.findall(text)


def chars(text: str) -> list[str]:
    """One token per character."""
    return list(text)


# --- replies and rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the model writes for one sample, when the call's stop strings are not searched.

    `stop` says the sample ended on that stop string right after `text` (None: at EOS, unless
    `finish` says otherwise); `tokens` overrides the count of `text`'s tokens. A plain `str`
    reply is searched instead: it ends at the earliest of the call's stop strings, else EOS.
    """

    text: str
    stop: str | None = None
    finish: FinishReason | None = None
    tokens: int | None = None
    logprob: float | None = None  # every token's sampled logprob (else the generator's table)


Answer = str | Reply | tuple[str, str | None] | Completion | list["Answer"]
"""A reply: a searched text, a `Reply`, its `(text, stop)` shorthand, a canned `Completion`
(used as it is; it must fit the call's `max_tokens`), or a list: sample k gets item k."""

Match = str | Callable[[str], bool]
"""A prompt's suffix, or a test of the whole prompt text."""

Rule = tuple[Match, Answer | Callable[[str, Sampling], Answer]]
"""The first rule whose match fits the prompt answers it; a callable gets (prompt, sampling)."""

Table = Callable[[str, str], Mapping[str, float]]
"""(text before the token, the token) -> {token text: logprob} of its top-k alternatives; the
sampled token's logprob is its own entry (-9.0 when absent)."""

IdTable = Callable[[str, tuple[int, ...]], Mapping[int, float] | None]
"""(prompt, the ids the call asks for) -> {token id: logprob} at every generated position; ids
left out have logprob -inf, and None returns no token-id logprobs (a server that drops them)."""


def always(prompt: str) -> bool:
    """A match for every prompt (a last, catch-all rule)."""
    return True


def matches(match: Match, prompt: str) -> bool:
    return prompt.endswith(match) if isinstance(match, str) else match(prompt)


def word_completion(
    text: str, max_tokens: int, *, stop: str | None = None, prompt_tokens: int = 0
) -> Completion:
    """`text` as one sample of one token per word, cut at `max_tokens` (a cut hits no stop)."""
    words_ = text.split(" ")
    cut = len(words_) > max_tokens
    words_ = words_[:max_tokens]
    return Completion(
        text=" ".join(words_),
        tokens=len(words_),
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


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str | None]:
    """Where the earliest stop string starts in `text` (the first listed wins a tie)."""
    at, hit = len(text), None
    for stop in stops:
        i = text.find(stop)
        if 0 <= i < at:
            at, hit = i, stop
    return at, hit


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


class RuleGenerator:
    """A text-only generator that answers each prompt by the first rule that matches it.

    A searched reply ends at the earliest of the call's stop strings: `stop_cut="text"` cuts the
    text where the stop begins (as vLLM leaves it out), `"token"` drops the whole token it
    begins in, so the text stays the detokenized ids. `count_stop` counts the stop string's
    tokens (the engine decoded them). A sample longer than `max_tokens` tokens is cut there
    and hits no stop ("length"). `delay_s` (seconds, or per prompt) makes each call yield
    first, so concurrent calls overlap; None answers without yielding. `fail_on` raises a
    backend error for the prompts it selects. No rule for a prompt fails the test.
    """

    name = "rules"

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        *,
        unit: Unit = spaces,
        stop_cut: Literal["text", "token"] = "text",
        count_stop: bool = False,
        template: str = "Q: {question}\nA: ",
        prompt_tokens: int | Callable[[str], int] | None = None,
        prefix_cache: int = 0,
        delay_s: float | Callable[[str], float] | None = None,
        fail_on: Callable[[str], bool] | None = None,
        table: Table | None = None,
        id_logprobs: IdTable | None = None,
    ) -> None:
        self.rules = list(rules)
        self.unit = unit
        self.stop_cut = stop_cut
        self.count_stop = count_stop
        self.template = template
        self.prompt_tokens = prompt_tokens
        self.prefix_cache = prefix_cache  # prompt tokens a fake prefix cache serves (at most)
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.table = table
        self.id_logprobs = id_logprobs
        self.calls: list[tuple[str, Sampling]] = []

    @property
    def prompts(self) -> list[str]:
        return [p for p, _ in self.calls]

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        return self.template.format(question=problem.question) + (chain.text if chain else "")

    def _text_of(self, prompt: Prompt) -> str:
        assert isinstance(prompt, str), "this fake does not take token prompts"
        return prompt

    def delay_of(self, prompt: str) -> float:
        """Seconds a call on `prompt` waits before it answers (0 when it does not wait)."""
        if callable(self.delay_s):
            return self.delay_s(prompt)
        return self.delay_s or 0.0

    def count_prompt(self, prompt: Prompt) -> int:
        """The prompt tokens a call reports: `prompt_tokens` (a number, or one of the prompt
        text), else the generator's own count (0 here)."""
        if callable(self.prompt_tokens):
            return self.prompt_tokens(self._text_of(prompt))
        return self.prompt_tokens or 0

    def answer(self, prompt: str, sampling: Sampling, k: int) -> Answer:
        """Sample k's reply: from the first rule that matches `prompt`."""
        for match, reply in self.rules:
            if matches(match, prompt):
                reply = reply(prompt, sampling) if callable(reply) else reply
                return reply[k] if isinstance(reply, list) else reply
        raise AssertionError(f"no rule for a prompt ending {prompt[-60:]!r}")

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        text = self._text_of(prompt)
        self.calls.append((text, sampling))
        if self.fail_on is not None and self.fail_on(text):
            raise ConnectionError("scripted backend failure")
        if self.delay_s is not None:
            await asyncio.sleep(self.delay_of(text))
        return [self.sample(prompt, sampling, k) for k in range(sampling.n)]

    def sample(self, prompt: Prompt, sampling: Sampling, k: int) -> Completion:
        """Sample k of a call: the matched reply cut and counted as a backend would."""
        text = self._text_of(prompt)
        reply = self.answer(text, sampling, k)
        assert not isinstance(reply, list), "a list of replies inside a list"
        used = self.count_prompt(prompt)
        cached = min(used, self.prefix_cache)
        if isinstance(reply, Completion):
            assert reply.tokens <= sampling.max_tokens, (
                "a script asked for more than the call allows"
            )
            return replace(reply, prompt_tokens=used, cached_prompt_tokens=cached)
        out = self.cut(reply, sampling)
        return self.with_logprobs(
            replace(out, prompt_tokens=used, cached_prompt_tokens=cached), text, sampling, reply
        )

    def cut(self, reply: str | Reply | tuple[str, str | None], sampling: Sampling) -> Completion:
        """A reply as one sample: ended by a stop string, by `max_tokens`, or at EOS."""
        if isinstance(reply, str):
            reply = Reply(reply)
            at, hit = _first_stop(reply.text, sampling.stop)
        else:
            if not isinstance(reply, Reply):
                reply = Reply(*reply)
            at, hit = len(reply.text), reply.stop
            if reply.tokens is not None:
                assert reply.tokens <= sampling.max_tokens, (
                    "a script asked for more than the call allows"
                )
        text, finish = reply.text, reply.finish
        if self.stop_cut == "token" and hit is not None:
            kept, ends = [], 0
            for piece in self.unit(text):
                if ends + len(piece) > at:
                    break
                kept.append(piece)
                ends += len(piece)
            produced = kept + (self.unit(hit) if self.count_stop else [])
            kept_text = "".join(kept)
        else:
            kept_text = text[:at]
            produced = self.unit(kept_text + (hit if hit is not None and self.count_stop else ""))
        if reply.tokens is None and len(produced) > sampling.max_tokens:
            cut_text = "".join(produced[: sampling.max_tokens])
            return Completion(cut_text, sampling.max_tokens, FinishReason.LENGTH)
        tokens = len(produced) if reply.tokens is None else reply.tokens
        if finish is None:
            finish = FinishReason.of("stop", hit)  # EOS when no stop string was hit
        return Completion(kept_text, tokens, finish, hit if finish == FinishReason.STOP else None)

    def with_logprobs(
        self, out: Completion, prompt: str, sampling: Sampling, reply: Answer
    ) -> Completion:
        """`out` with the logprobs the call asked for and the fake can give."""
        generated = self.unit(out.text) if out.text else []
        if sampling.logprob_token_ids and self.id_logprobs is not None:
            table = self.id_logprobs(prompt, sampling.logprob_token_ids)
            if table is not None:
                row = {t: table.get(t, -math.inf) for t in sampling.logprob_token_ids}
                out = replace(out, token_id_logprobs=(row,) * max(out.tokens, 1))
            return out
        if sampling.logprobs is None:
            return out
        if isinstance(reply, Reply) and reply.logprob is not None:
            return replace(out, logprobs=(reply.logprob,) * out.tokens)
        if self.table is None:
            return out
        tables, before = [], prompt
        for piece in generated:
            tables.append(dict(self.table(before, piece)))
            before += piece
        logprobs = tuple(t.get(p, -9.0) for t, p in zip(tables, generated, strict=True))
        top = tuple(tables) if sampling.logprobs else None
        return replace(out, logprobs=logprobs, top_logprobs=top)


class TokenRuleGenerator(RuleGenerator):
    """The rule-based fake on a backend that streams, tokenizes (a `WordVocabulary`) and renders
    chats. It takes token prompts (`token_prompts` keeps each as ids) and returns token ids
    (and the ids of top-k alternatives); a stream sends one word piece per delta."""

    name = "token-rules"

    def __init__(self, rules: Sequence[Rule] = (), *, ids: bool = True, **options: object) -> None:
        options.setdefault("unit", pieces)
        super().__init__(rules, **options)  # type: ignore[arg-type]
        self.ids = ids
        self.vocabulary = WordVocabulary()
        self.thinking = None  # a reasoning.prompts.ThinkingFormat to make it a thinking model
        self.token_prompts: list[tuple[int, ...]] = []  # every prompt, as ids
        self.streams: list[tuple[str, Sampling]] = []  # streamed calls, as (prompt, sampling)
        self.aborted = 0  # streams the caller closed before their last delta

    def tokenize(self, text: str) -> tuple[int, ...]:
        return self.vocabulary.encode(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.vocabulary.decode(ids)

    def chat(self, messages: Messages) -> str:
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _text_of(self, prompt: Prompt) -> str:
        return self.detokenize(prompt.ids) if isinstance(prompt, TokenPrompt) else prompt

    def count_prompt(self, prompt: Prompt) -> int:
        """By default, the prompt's ids (as given, or tokenized)."""
        if self.prompt_tokens is not None:
            return super().count_prompt(prompt)
        return len(prompt.ids if isinstance(prompt, TokenPrompt) else self.tokenize(prompt))

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        ids = prompt.ids if isinstance(prompt, TokenPrompt) else self.tokenize(prompt)
        self.token_prompts.append(tuple(ids))
        return await super().complete(prompt, sampling)

    def sample(self, prompt: Prompt, sampling: Sampling, k: int) -> Completion:
        out = super().sample(prompt, sampling, k)
        top_ids = None
        if out.top_logprobs is not None:
            top_ids = tuple(tuple(self.tokenize(t)[0] for t in row) for row in out.top_logprobs)
        if not self.ids:
            return replace(out, tokens=0, top_token_ids=top_ids)
        return replace(out, token_ids=self.tokenize(out.text), top_token_ids=top_ids)

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """The sample for `prompt`, one word piece per delta (ids from `tokenize`); logprobs
        from the table, else -0.1 each; the table's top-k alternatives when the call asks for
        k > 0."""
        text_prompt = self._text_of(prompt)
        self.streams.append((text_prompt, sampling))
        whole = self.sample(text_prompt, sampling, 0)
        parts = _PIECE.findall(whole.text)
        finished = False
        try:
            for at, piece in enumerate(parts):
                await asyncio.sleep(self.delay_of(text_prompt))
                last = at == len(parts) - 1
                logprob = None
                if sampling.logprobs is not None:
                    logprob = (whole.logprobs[at],) if whole.logprobs else (-0.1,)
                # the table's top-k alternatives of this piece, as a backend streams them
                top = whole.top_logprobs
                yield Delta(
                    text=piece,
                    token_ids=self.tokenize(piece) if self.ids else (),
                    logprobs=logprob,
                    top_logprobs=(top[at],) if top is not None and at < len(top) else None,
                    finish_reason=whole.finish_reason if last else None,
                    stop=whole.stop if last else None,
                    prompt_tokens=whole.prompt_tokens if at == 0 else 0,
                )
            finished = True
        finally:
            if not finished:
                self.aborted += 1


class ScriptedGenerator(TokenRuleGenerator):
    """Returns scripted texts; one token per space-separated word.

    `texts` are whole solutions, so each ends at EOS. Step searches need steps that end on the
    stop string as with the real backend, so `steps` (a script of the steps so far, or a
    cycled list) switches to that: a text ends on the call's first stop string unless the call
    has none (a last step) or the text ends in `EOS`; a script may also return a `Reply`.
    `concurrent` yields once per call, so all calls of one expansion pass the budget check
    before any is metered (the worst case). `ids=False` plays a server that sends text only (no
    token ids, no counts: anything but vLLM), so the Context must count what it delivered itself.
    `options` are `RuleGenerator`'s (a table of logprobs, token-id logprobs, another unit).
    """

    name = "scripted"

    def __init__(
        self,
        texts: Sequence[str] | Callable[[str, Sampling], str | Reply] = ("\\boxed{1}",),
        *,
        steps: Sequence[str] | StepScript | None = None,
        delay_s: float = 0.0,
        fail_on: Callable[[str], bool] | None = None,
        concurrent: bool = False,
        **options: object,
    ) -> None:
        options.setdefault("unit", spaces)
        options.setdefault("prompt_tokens", lambda text: len(text.split()))
        super().__init__(
            delay_s=delay_s if delay_s or concurrent else None, fail_on=fail_on, **options
        )
        self._text: Callable[[str, Sampling, int], str | Reply]
        if steps is None:
            whole = texts if callable(texts) else _cycled(texts)
            self._text = lambda prompt, sampling, k: whole(prompt, sampling)
        else:
            step = steps if callable(steps) else _cycled(steps)
            self._text = lambda prompt, sampling, k: step(steps_of(prompt), sampling, k)
        self.stepwise = steps is not None
        self.concurrent = concurrent

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        head = f"Q: {problem.question}\nA: "
        if self.thinking is not None and self.thinking.forced:
            head += self.thinking.open + "\n"
        return head + (chain.text + STEP_DELIMITER if chain and chain.steps else "")

    def answer(self, prompt: str, sampling: Sampling, k: int) -> Answer:
        """The script's text, ended on the call's first stop string or at EOS (see above)."""
        text = self._text(prompt, sampling, k)
        if isinstance(text, Reply):
            return text
        eos = not self.stepwise or not sampling.stop or text.endswith(EOS)
        return Reply(text.removesuffix(EOS), None if eos else sampling.stop[0])


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
